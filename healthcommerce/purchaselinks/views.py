"""Patient pages: date-of-birth check, order confirmation, thank-you (docs/reliability.md "Purchase links").

Every response is ``Cache-Control: no-store`` and ``Referrer-Policy: same-origin``: the token is in the URL
and must not leave this origin (``no-referrer`` would make browsers send ``Origin: null`` on the form posts,
which Django's CSRF check refuses). Unusable links answer 404 with one message and no PHI. A verified link
id lives in the session for ``VERIFIED_TTL_SECONDS``.
"""

import logging
import time
from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse

from healthcommerce.core.clientip import client_ip
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.errors import UNAVAILABLE_MESSAGE
from healthcommerce.purchaselinks.forms import BirthDateForm
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import (
    purchase_link_complete,
    purchase_link_open,
    purchase_link_verify,
)

logger = logging.getLogger(__name__)

SESSION_KEY = "purchaselinks_verified"
VERIFIED_TTL_SECONDS = 30 * 60

View = Callable[[HttpRequest, str], HttpResponse]


def _unavailable(
    request: HttpRequest, *, message: str = UNAVAILABLE_MESSAGE, status: int = 404, title: str = "Link not available"
) -> HttpResponse:
    return render(request, "purchaselinks/unavailable.html", {"title": title, "message": message}, status=status)


def patient_page(view: View) -> View:
    """Answer GET/POST only, turn service errors into a PHI-free page, and set the privacy headers."""

    @wraps(view)
    def wrapper(request: HttpRequest, token: str) -> HttpResponse:
        if request.method not in ("GET", "POST"):
            response: HttpResponse = HttpResponseNotAllowed(["GET", "POST"])
        else:
            try:
                response = view(request, token)
            except HealthcommerceError as exc:
                title = "Link not available" if exc.status == 404 else "Please try again later"
                response = _unavailable(request, message=exc.message, status=exc.status, title=title)
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "same-origin"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return wrapper


def _verified_link_id(request: HttpRequest) -> str | None:
    entry = request.session.get(SESSION_KEY)
    if not isinstance(entry, dict) or time.time() - float(entry.get("at", 0)) > VERIFIED_TTL_SECONDS:
        return None
    return str(entry.get("link_id") or "") or None


def _verify_page(request: HttpRequest, link: PurchaseLink, form: BirthDateForm, *, wrong: bool = False) -> HttpResponse:
    remaining = max(settings.PURCHASE_LINK_MAX_FAILURES - link.failed_attempts, 0)
    context = {"form": form, "reference": link.order.reference, "wrong": wrong, "remaining": remaining}
    return render(request, "purchaselinks/verify.html", context)


@patient_page
def link_start(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the date-of-birth form. POST: verify; on success remember the link in the session and go on."""
    ip = client_ip(request)
    if request.method == "GET":
        link = purchase_link_open(token=token, ip=ip, allow_completed=True)
        return _verify_page(request, link, BirthDateForm())
    link = purchase_link_open(
        token=token, ip=ip, action="purchase_link.verify", audit_success=False, allow_completed=True
    )
    form = BirthDateForm(request.POST)
    if not form.is_valid():
        return _verify_page(request, link, form)
    if purchase_link_verify(link=link, birth_date=form.cleaned_data["birth_date"], ip=ip):
        request.session.cycle_key()  # a fresh session id once the patient is verified
        request.session[SESSION_KEY] = {"link_id": str(link.pk), "at": time.time()}
        return redirect("purchaselinks:track" if link.completed_at else "purchaselinks:confirm", token=token)
    if link.locked_at is not None:
        message = (
            "That date of birth does not match. For your security this link is now locked. Please contact your clinic."
        )
        return _unavailable(request, message=message, status=403, title="Link locked")
    return _verify_page(request, link, BirthDateForm(), wrong=True)


def _ship_to_lines(link: PurchaseLink) -> list[str]:
    order = link.order
    raw = order.ship_to or {}
    lines = [order.patient_name, *[str(line) for line in raw.get("line") or []]]
    lines.append(" ".join(str(raw.get(key) or "") for key in ("city", "state", "postal_code")).strip())
    lines.append(str(raw.get("country") or ""))
    return [line for line in lines if line.strip()]


@patient_page
def link_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the order to confirm (verified sessions only). POST: complete the link and say thank you."""
    verified_id = _verified_link_id(request)
    if verified_id is None:
        return redirect("purchaselinks:start", token=token)
    ip = client_ip(request)
    if request.method == "GET":
        link = purchase_link_open(token=token, ip=ip, action="purchase_link.view", allow_completed=True)
    else:
        link = purchase_link_open(
            token=token, ip=ip, action="purchase_link.complete", audit_success=False, allow_completed=True
        )
    if str(link.pk) != verified_id or link.verified_at is None:
        return redirect("purchaselinks:start", token=token)
    if link.completed_at is not None:  # already confirmed (a second tab, a back button): show where it is
        return redirect("purchaselinks:track", token=token)
    order = link.order
    if request.method == "POST":
        purchase_link_complete(link=link, actor_ip=ip)
        track_url = reverse("purchaselinks:track", kwargs={"token": token})
        return render(request, "purchaselinks/done.html", {"reference": order.reference, "track_url": track_url})
    context = {
        "reference": order.reference,
        "product_name": order.product.name if order.product else "",
        "quantity": order.quantity,
        "ship_to_lines": _ship_to_lines(link),
        "payer_name": order.payer_name,
    }
    return render(request, "purchaselinks/confirm.html", context)


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
def link_track(request: HttpRequest, token: str) -> HttpResponse:
    """GET: where the confirmed order is (status, carrier, tracking number and link), for a verified session.

    Reached with the same link once the patient has confirmed, for ``PURCHASE_LINK_TRACKING_DAYS``; the date of
    birth is asked again when the session's verification has lapsed. Audited as ``purchase_link.track``.
    """
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    verified_id = _verified_link_id(request)
    if verified_id is None:
        return redirect("purchaselinks:start", token=token)
    link = purchase_link_open(token=token, ip=client_ip(request), action="purchase_link.track", allow_completed=True)
    if str(link.pk) != verified_id:
        return redirect("purchaselinks:start", token=token)
    if link.completed_at is None:
        return redirect("purchaselinks:confirm", token=token)
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
