"""Patient pages (docs/reliability.md "Purchase links"): the link, the date-of-birth check, confirmation and
tracking.

The token is in the URL only once: ``/p/<token>/`` binds this browser's session to the link (a fresh session
id) and redirects to ``/p/verify/``; every later page (``/p/verify/``, ``/p/confirm/``, ``/p/track/``) finds the
link through the session, so the token never sits in the address bar, the history, a Referer or a log line of
those pages. The binding lapses after ``PATIENT_SESSION_IDLE_SECONDS`` (15 minutes) without a request.

Every response is ``Cache-Control: no-store``, ``Referrer-Policy: same-origin`` and ``X-Robots-Tag: noindex``.
Unusable links answer 404 with one message and no PHI; a wrong date of birth, a locked link and a link that
became unusable meanwhile get the same answer.
"""

import logging
import time
from collections.abc import Callable
from functools import wraps
from uuid import UUID

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render

from healthcommerce.core.clientip import client_ip
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.errors import UNAVAILABLE_MESSAGE, LinkUnavailable
from healthcommerce.purchaselinks.forms import AddressForm, BirthDateForm, ReviewForm
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import (
    purchase_link_complete,
    purchase_link_open,
    purchase_link_ship_to_change,
    purchase_link_verify,
)

logger = logging.getLogger(__name__)

SESSION_KEY = "purchaselinks_link"
# The version of templates/purchaselinks/terms.html; recorded on the order with the patient's consent.
TERMS_VERSION = "2026-11"
PATIENT_SESSION_IDLE_SECONDS = 15 * 60
NOT_VERIFIED_MESSAGE = (
    "We could not confirm that date of birth for this link. Check it and try again. If it keeps failing, "
    "please contact your clinic for a new link."
)
SESSION_ENDED_MESSAGE = "Your session has ended. Please open the link from your message again."

View = Callable[..., HttpResponse]


def _unavailable(
    request: HttpRequest, *, message: str = UNAVAILABLE_MESSAGE, status: int = 404, title: str = "Link not available"
) -> HttpResponse:
    return render(request, "purchaselinks/unavailable.html", {"title": title, "message": message}, status=status)


def patient_page(view: View) -> View:
    """Answer GET/POST only, turn service errors into a PHI-free page, and set the privacy headers."""

    @wraps(view)
    def wrapper(request: HttpRequest, **kwargs: str) -> HttpResponse:
        if request.method not in ("GET", "POST"):
            response: HttpResponse = HttpResponseNotAllowed(["GET", "POST"])
        else:
            try:
                response = view(request, **kwargs)
            except HealthcommerceError as exc:
                title = "Link not available" if exc.status == 404 else "Please try again later"
                response = _unavailable(request, message=exc.message, status=exc.status, title=title)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "same-origin"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return wrapper


class SessionEnded(HealthcommerceError):
    """This browser holds no link, or its binding lapsed: open the link from the message again (403)."""

    code = "patient_session_ended"
    status = 403
    message = SESSION_ENDED_MESSAGE


def _bound(request: HttpRequest) -> dict[str, object]:
    """The session's binding ``{"link_id", "seen", "verified"}``, refreshed; raises ``SessionEnded`` when there is
    none or it has been idle longer than ``PATIENT_SESSION_IDLE_SECONDS``."""
    entry = request.session.get(SESSION_KEY)
    now = time.time()
    try:
        fresh = isinstance(entry, dict) and now - float(entry.get("seen", 0)) <= PATIENT_SESSION_IDLE_SECONDS
        UUID(str(entry["link_id"]) if isinstance(entry, dict) else "")
    except (TypeError, ValueError, KeyError):
        fresh = False
    if not fresh or not isinstance(entry, dict):
        request.session.pop(SESSION_KEY, None)
        raise SessionEnded()
    entry["seen"] = now
    request.session[SESSION_KEY] = entry
    return entry


def _bound_link(request: HttpRequest, *, action: str, audit_success: bool = True) -> tuple[PurchaseLink, bool]:
    """The session's link (usable, or completed within the tracking window) and whether it is verified in this
    session. Raises ``SessionEnded`` or ``LinkUnavailable``."""
    entry = _bound(request)
    link = purchase_link_open(
        link_id=str(entry["link_id"]),
        ip=client_ip(request),
        action=action,
        audit_success=audit_success,
        allow_completed=True,
    )
    verified = bool(entry.get("verified")) and link.verified_at is not None
    return link, verified


@patient_page
def link_start(request: HttpRequest, token: str) -> HttpResponse:
    """GET ``/p/<token>/``: bind this browser's session (a fresh session id) to the link and redirect to
    ``/p/verify/``. An unknown, tampered, expired, revoked or locked link answers 404 with one message."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    link = purchase_link_open(token=token, ip=client_ip(request), allow_completed=True)
    request.session.cycle_key()
    request.session[SESSION_KEY] = {"link_id": str(link.pk), "seen": time.time(), "verified": False}
    return redirect("purchaselinks:verify")


def _verify_page(
    request: HttpRequest, link: PurchaseLink, form: BirthDateForm, *, failed: bool = False
) -> HttpResponse:
    context = {
        "form": form,
        "reference": link.order.reference,
        "failed": failed,
        "message": NOT_VERIFIED_MESSAGE,
    }
    return render(request, "purchaselinks/verify.html", context)


@patient_page
def link_verify(request: HttpRequest) -> HttpResponse:
    """GET: the date-of-birth form. POST: verify (``purchase_link_verify``); on success mark the session
    verified (a fresh session id) and go on to confirm, or to tracking once confirmed. A wrong date, a locked link
    and a link that became unusable get the same page."""
    if request.method == "GET":
        link, _ = _bound_link(request, action="purchase_link.open")
        return _verify_page(request, link, BirthDateForm())
    entry = _bound(request)
    found = PurchaseLink.objects.select_related("order").filter(pk=str(entry["link_id"])).first()
    if found is None:
        raise LinkUnavailable("unknown")
    link = found
    form = BirthDateForm(request.POST)
    if not form.is_valid():
        return _verify_page(request, link, form)
    if not purchase_link_verify(link=link, birth_date=form.cleaned_data["birth_date"], ip=client_ip(request)):
        return _verify_page(request, link, BirthDateForm(), failed=True)
    request.session.cycle_key()  # a fresh session id once the patient is verified
    request.session[SESSION_KEY] = {**entry, "verified": True, "seen": time.time()}
    return redirect("purchaselinks:track" if link.completed_at else "purchaselinks:confirm")


def _ship_to_lines(link: PurchaseLink) -> list[str]:
    """The address the order will go to (the patient's correction, else the signed one), as display lines."""
    order = link.order
    raw = order.patient_ship_to or order.ship_to or {}
    lines = [order.patient_name, *[str(line) for line in raw.get("line") or []]]
    lines.append(" ".join(str(raw.get(key) or "") for key in ("city", "state", "postal_code")).strip())
    lines.append(str(raw.get("country") or ""))
    return [line for line in lines if line.strip()]


def _review_page(request: HttpRequest, link: PurchaseLink, form: ReviewForm) -> HttpResponse:
    order = link.order
    product = order.product
    context = {
        "form": form,
        "reference": order.reference,
        "product_name": product.name if product else "",
        "product_description": product.description if product else "",
        "quantity": order.quantity,
        "ship_to_lines": _ship_to_lines(link),
        "ship_to_changed": bool(order.patient_ship_to),
        "payer_name": order.payer_name,
    }
    return render(request, "purchaselinks/confirm.html", context)


@patient_page
def link_confirm(request: HttpRequest) -> HttpResponse:
    """GET: the review page (verified sessions only): the item, the ship-to (with a link to correct it), a
    delivery preference and consent to the terms. POST: with a valid choice and consent, complete the link and
    say thank you; otherwise the page again with the errors."""
    if request.method == "GET":
        link, verified = _bound_link(request, action="purchase_link.view")
    else:
        link, verified = _bound_link(request, action="purchase_link.complete", audit_success=False)
    if not verified:
        return redirect("purchaselinks:verify")
    if link.completed_at is not None:  # already confirmed (a second tab, a back button): show where it is
        return redirect("purchaselinks:track")
    if request.method == "GET":
        return _review_page(request, link, ReviewForm())
    form = ReviewForm(request.POST)
    if not form.is_valid():
        return _review_page(request, link, form)
    purchase_link_complete(
        link=link,
        actor_ip=client_ip(request),
        delivery_preference=form.cleaned_data["delivery_preference"],
        terms_version=TERMS_VERSION,
    )
    return render(request, "purchaselinks/done.html", {"reference": link.order.reference})


@patient_page
def link_address(request: HttpRequest) -> HttpResponse:
    """GET: the ship-to to correct (verified sessions only, before confirming). POST: validate (US state, ZIP
    code) and keep the correction beside the signed address (``purchase_link_ship_to_change``), then back to the
    review page."""
    link, verified = _bound_link(request, action="purchase_link.view")
    if not verified:
        return redirect("purchaselinks:verify")
    if link.completed_at is not None:
        return redirect("purchaselinks:track")
    order = link.order
    if request.method == "GET":
        form = AddressForm(initial=AddressForm.initial_for(order.patient_ship_to or order.ship_to or {}))
    else:
        form = AddressForm(request.POST)
        if form.is_valid():
            purchase_link_ship_to_change(link=link, address=form.cleaned_address(), actor_ip=client_ip(request))
            return redirect("purchaselinks:confirm")
    return render(request, "purchaselinks/address.html", {"form": form, "name": order.patient_name})


@patient_page
def link_terms(request: HttpRequest) -> HttpResponse:
    """GET: the terms of sale (version ``TERMS_VERSION``); public, no session needed."""
    return render(request, "purchaselinks/terms.html", {"version": TERMS_VERSION})


# What the patient reads for each status at the commerce backend (``Order.fulfillment_status``).
TRACKING_STATUS = {
    "": "We have your order and are passing it to the supplier.",
    "received": "The supplier has your order.",
    "confirmed": "The supplier is preparing your order.",
    "shipped": "Your order is on its way.",
    "delivered": "Your order was delivered.",
    "cancelled": "This order was cancelled. Please contact your clinic if you did not expect this.",
}


@patient_page
def link_track(request: HttpRequest) -> HttpResponse:
    """GET: where the confirmed order is (status, carrier, tracking number and link), for a verified session.

    Reached with the same link once the patient has confirmed, for ``PURCHASE_LINK_TRACKING_DAYS``; the date of
    birth is asked again when the session's verification has lapsed. Audited as ``purchase_link.track``.
    """
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    link, verified = _bound_link(request, action="purchase_link.track")
    if not verified:
        return redirect("purchaselinks:verify")
    if link.completed_at is None:
        return redirect("purchaselinks:confirm")
    order = link.order
    status = "cancelled" if order.status == Order.Status.CANCELLED else order.fulfillment_status
    events = order.events.filter(kind__in=["patient_confirmed", "shipped", "delivered", "cancelled_by_platform"])
    context = {
        "reference": order.reference,
        "product_name": order.product.name if order.product else "",
        "quantity": order.quantity,
        "status": status or "submitted",
        "status_text": TRACKING_STATUS.get(status, TRACKING_STATUS[""]),
        "carrier": order.carrier,
        "tracking_number": order.tracking_number,
        "tracking_url": order.tracking_url if order.tracking_url.startswith("https://") else "",
        "events": [{"at": event.created_at, "label": _TRACK_LABELS[event.kind]} for event in events],
    }
    return render(request, "purchaselinks/track.html", context)


_TRACK_LABELS = {
    "patient_confirmed": "You confirmed the order",
    "shipped": "Shipped",
    "delivered": "Delivered",
    "cancelled_by_platform": "Cancelled by the supplier",
}
