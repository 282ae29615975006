"""Patient pages (docs/reliability.md "Purchase links"): the link, the date-of-birth check, confirmation and
tracking.

The token is in the URL only once: ``/p/<token>/`` binds this browser's session to the link (a fresh session
id) and redirects to ``/p/verify/``; every later page (``/p/verify/``, ``/p/confirm/``, ``/p/track/``) finds the
link through the session, so the token never sits in the address bar, the history, a Referer or a log line of
those pages. The binding lapses after ``PATIENT_SESSION_IDLE_SECONDS`` (15 minutes) without a request.

Every response is ``Cache-Control: no-store``, ``Referrer-Policy: same-origin`` and ``X-Robots-Tag: noindex``.
Unusable links answer 404 with one message and no PHI; a wrong date of birth, a locked link and a link that
became unusable meanwhile get the same answer.

Pages are in English or Spanish (``language.PatientLocaleMiddleware``: the switch's cookie, else
``Accept-Language``); every page has the switch (``templates/purchaselinks/base.html``, ``link_language``).
"""

import logging
import time
from collections.abc import Callable
from functools import wraps
from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop

from healthcommerce.core.clientip import client_ip
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.http import origin
from healthcommerce.core.language import language_supported
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.errors import LinkUnavailable
from healthcommerce.purchaselinks.forms import AddressForm, BirthDateForm, ReviewForm
from healthcommerce.purchaselinks.models import PatientLinkSite, Payment, PurchaseLink
from healthcommerce.purchaselinks.payments import CardDeclined, payment_pay_with_token, payment_start
from healthcommerce.purchaselinks.pricing import money_format, patient_quote
from healthcommerce.purchaselinks.receipt import order_receipt
from healthcommerce.purchaselinks.services import (
    purchase_link_choices_record,
    purchase_link_complete,
    purchase_link_language_set,
    purchase_link_open,
    purchase_link_ship_to_change,
    purchase_link_verify,
)

logger = logging.getLogger(__name__)

SESSION_KEY = "purchaselinks_link"
# The version of templates/purchaselinks/terms.html; recorded on the order with the patient's consent.
TERMS_VERSION = "2026-11"
PATIENT_SESSION_IDLE_SECONDS = 15 * 60
NOT_VERIFIED_MESSAGE = gettext_lazy(
    "We could not confirm that date of birth for this link. Check it and try again. If it keeps failing, "
    "please contact your clinic for a new link."
)
SESSION_ENDED_MESSAGE = gettext_noop("Your session has ended. Please open the link from your message again.")
# The pages the language switch may return to (URL names of purchaselinks.urls): never /p/<token>/.
SWITCH_RETURNS = ("verify", "confirm", "track", "address", "pay", "terms")

View = Callable[..., HttpResponse]


def _unavailable(request: HttpRequest, *, message: str, status: int, title: str) -> HttpResponse:
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
                title = _("Link not available") if exc.status == 404 else _("Please try again later")
                response = _unavailable(request, message=_(exc.message), status=exc.status, title=title)
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
    ``/p/verify/``, in the order's ``patient_language`` unless this browser chose a language already. An unknown,
    tampered, expired, revoked or locked link answers 404 with one message."""
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    link = purchase_link_open(token=token, ip=client_ip(request), allow_completed=True)
    request.session.cycle_key()
    request.session[SESSION_KEY] = {"link_id": str(link.pk), "seen": time.time(), "verified": False}
    response = redirect("purchaselinks:verify")
    chart_language = language_supported(link.order.patient_language)
    chosen_here = language_supported(request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME))
    if chart_language and chart_language != settings.LANGUAGE_CODE and not chosen_here:
        # The pages open in the language the messages were written in (the chart's, or the language the patient
        # used on the pages before, in any browser); the switch still changes it, and an earlier choice in this
        # browser wins. English (the default, and most charts' "en-US") does not override a browser asking for
        # Spanish (Accept-Language: es-US).
        _language_cookie_set(response, chart_language)
    return response


def _language_cookie_set(response: HttpResponse, language: str) -> None:
    """Set the language cookie that ``PatientLocaleMiddleware`` reads before ``Accept-Language`` (for the
    browser session: ``LANGUAGE_COOKIE_AGE`` is unset)."""
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        path=settings.LANGUAGE_COOKIE_PATH,
        domain=settings.LANGUAGE_COOKIE_DOMAIN,
        secure=settings.LANGUAGE_COOKIE_SECURE,
        httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
        samesite=settings.LANGUAGE_COOKIE_SAMESITE,  # type: ignore[arg-type]  # "Lax" (settings.py)
    )


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
    _language_keep(request, link)
    return redirect("purchaselinks:track" if link.completed_at else "purchaselinks:confirm")


def _language_keep(request: HttpRequest, link: PurchaseLink) -> None:
    """Keep the language this verified patient reads the pages in (the switch's cookie, else Accept-Language:
    ``PatientLocaleMiddleware``) on the order, so later emails and texts, and the pages in another browser, follow
    it (``purchase_link_language_set``; a no-op when unchanged)."""
    language = language_supported(translation.get_language())
    if language:
        purchase_link_language_set(link=link, language=language, actor_ip=client_ip(request))


def _ship_to_lines(link: PurchaseLink) -> list[str]:
    """The address the order will go to (the patient's correction, else the signed one), as display lines."""
    order = link.order
    raw = order.current_ship_to
    lines = [order.patient_name, *[str(line) for line in raw.get("line") or []]]
    lines.append(" ".join(str(raw.get(key) or "") for key in ("city", "state", "postal_code")).strip())
    lines.append(str(raw.get("country") or ""))
    return [line for line in lines if line.strip()]


def _review_page(
    request: HttpRequest, link: PurchaseLink, form: ReviewForm, *, error: str = "", status: int = 200
) -> HttpResponse:
    order = link.order
    product = order.product
    quote = patient_quote(order=order, refresh=True)  # the moment it matters: an old answer is asked again
    context = {
        "quote": quote,
        "image": product.image if product else "",
        "error": error,
        "form": form,
        "reference": order.reference,
        "product_name": product.name_for(translation.get_language() or "") if product else "",
        "product_description": product.description_for(translation.get_language() or "") if product else "",
        "quantity": order.quantity,
        "ship_to_lines": _ship_to_lines(link),
        "ship_to_changed": bool(order.patient_ship_to),
        # the payer record's name, else the chart's text when no record matched it; nothing for self-pay
        "payer_name": order.payer.name
        if order.payer
        else ("" if order.coverage_status == "self_pay" else order.payer_name),
    }
    return render(request, "purchaselinks/confirm.html", context, status=status)


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
    _language_keep(request, link)  # the confirmation email goes out in the language the patient confirmed in
    quote = patient_quote(order=link.order, refresh=True)
    if quote.needs_payment:
        try:
            payment_start(order=link.order, quote=quote)
        except HealthcommerceError as exc:
            return _review_page(request, link, form, error=_(exc.message), status=exc.status)
        purchase_link_choices_record(
            link=link, delivery_preference=form.cleaned_data["delivery_preference"], terms_version=TERMS_VERSION
        )
        return redirect("purchaselinks:pay")
    purchase_link_complete(
        link=link,
        actor_ip=client_ip(request),
        delivery_preference=form.cleaned_data["delivery_preference"],
        terms_version=TERMS_VERSION,
    )
    return _done_page(request, link)


def _done_page(request: HttpRequest, link: PurchaseLink) -> HttpResponse:
    """The thank-you page with the receipt (``receipt.order_receipt``, the confirmation email's too): item,
    quantity, amount and card, the delivery window, where it goes and whom to call."""
    order = Order.objects.select_related("product", "site").get(pk=link.order_id)
    context = {
        "receipt": order_receipt(order=order, language=translation.get_language() or settings.LANGUAGE_CODE),
        "reference": order.reference,
        "ship_to_lines": _ship_to_lines(link),
        "clinic": order.site.name,
        "support_phone": PatientLinkSite.of(order.site).patient_support_phone.strip(),
    }
    return render(request, "purchaselinks/done.html", context)


def _live_payment(link: PurchaseLink) -> Payment | None:
    return (
        Payment.objects.filter(order_id=link.order_id, order_version=link.order.version)
        .exclude(status=Payment.Status.CANCELLED)
        .order_by("-created_at")
        .first()
    )


def _pay_page(request: HttpRequest, link: PurchaseLink, payment: Payment, *, error: str = "") -> HttpResponse:
    """The card form. stripe.js (``STRIPE_JS_URL``) and ``static/js/pay.js`` turn the card into a token; the CSP
    of this page alone admits Stripe's script, frames and API."""
    api = settings.STRIPE_API_BASE or "https://api.stripe.com"
    context = {
        "reference": link.order.reference,
        "amount": money_format(payment.amount_cents, payment.currency),
        "publishable_key": settings.STRIPE_PUBLISHABLE_KEY,
        "stripe_js_url": settings.STRIPE_JS_URL,
        "error": error,
    }
    response = render(request, "purchaselinks/pay.html", context, status=402 if error else 200)
    stripe_js = origin(settings.STRIPE_JS_URL)
    response._csp_update = {  # type: ignore[attr-defined]
        "script-src": [stripe_js],
        "connect-src": [origin(api)],
        "frame-src": [stripe_js, "https://hooks.stripe.com"],
        "img-src": [stripe_js],
    }
    return response


@patient_page
def link_pay(request: HttpRequest) -> HttpResponse:
    """GET: the card form for the order's live payment (after the review page). POST: ``stripeToken`` from
    stripe.js; pay (``payment_pay_with_token``) and say thank you, or show the form again with why the card was
    refused. The only patient page that needs JavaScript."""
    link, verified = _bound_link(request, action="purchase_link.pay")
    if not verified:
        return redirect("purchaselinks:verify")
    if link.completed_at is not None:
        return redirect("purchaselinks:track")
    payment = _live_payment(link)
    if payment is None or payment.status == Payment.Status.FAILED:
        return redirect("purchaselinks:confirm")  # start again from the review page (a fresh PaymentIntent)
    if payment.status in (Payment.Status.SUCCEEDED, Payment.Status.PROCESSING):
        return _done_page(request, link)
    if request.method == "GET":
        return _pay_page(request, link, payment)
    token = request.POST.get("stripeToken", "")
    if not token.startswith("tok_") or len(token) > 255:
        return _pay_page(request, link, payment, error=_("Enter your card details to pay."))
    try:
        payment = payment_pay_with_token(payment=payment, token=token)
    except CardDeclined as exc:
        fresh = payment_start(order=link.order, quote=patient_quote(order=link.order))
        return _pay_page(request, link, fresh, error=_(exc.message))
    return _done_page(request, link)


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
        form = AddressForm(initial=AddressForm.initial_for(order.current_ship_to))
    else:
        form = AddressForm(request.POST)
        if form.is_valid():
            purchase_link_ship_to_change(link=link, address=form.cleaned_address(), actor_ip=client_ip(request))
            return redirect("purchaselinks:confirm")
    return render(request, "purchaselinks/address.html", {"form": form, "name": order.patient_name})


def switch_return(name: str | None) -> str:
    """Return the path the language switch goes back to from the page named ``name`` (a URL name of
    ``purchaselinks.urls``): that page when it is one of ``SWITCH_RETURNS``, else ``""`` (``/p/<token>/`` and
    anything else: the token never goes into a form or a redirect)."""
    return reverse(f"purchaselinks:{name}") if name in SWITCH_RETURNS else ""


@patient_page
def link_language(request: HttpRequest) -> HttpResponse:
    """POST ``/p/language/`` (``language``: ``en`` or ``es``; ``next``: the page it came from), the language
    switch on every patient page; a plain form, no JavaScript.

    Sets the language cookie (``LANGUAGE_COOKIE_NAME``, for the browser session; ``PatientLocaleMiddleware``
    reads it before ``Accept-Language``) and redirects to ``next`` when it is one of the ``SWITCH_RETURNS`` pages,
    else to ``/p/verify/``; never to a URL holding a token. On a verified session the choice is also kept on the
    order (``purchase_link_language_set``), so later emails and texts follow it. An unsupported ``language``
    changes nothing. Django's ``set_language`` is not used: its ``next`` accepts any same-host URL.
    """
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    next_path = str(request.POST.get("next", ""))
    paths = {switch_return(name) for name in SWITCH_RETURNS}
    response = redirect(next_path if next_path in paths else reverse("purchaselinks:verify"))
    language = language_supported(request.POST.get("language"))
    if not language:
        return response
    _language_cookie_set(response, language)
    entry = request.session.get(SESSION_KEY)
    if isinstance(entry, dict) and entry.get("verified"):
        try:
            link, verified = _bound_link(request, action="purchase_link.language", audit_success=False)
        except HealthcommerceError:
            return response  # the page it goes back to says why
        if verified:
            purchase_link_language_set(link=link, language=language, actor_ip=client_ip(request))
    return response


@patient_page
def link_terms(request: HttpRequest) -> HttpResponse:
    """GET: the terms of sale (version ``TERMS_VERSION``); public, no session needed."""
    return render(request, "purchaselinks/terms.html", {"version": TERMS_VERSION})


# What the patient reads for each status at the commerce backend (``Order.fulfillment_status``).
TRACKING_STATUS = {
    "": gettext_lazy("We have your order and are passing it to the supplier."),
    "received": gettext_lazy("The supplier has your order."),
    "confirmed": gettext_lazy("The supplier is preparing your order."),
    "shipped": gettext_lazy("Your order is on its way."),
    "delivered": gettext_lazy("Your order was delivered."),
    "cancelled": gettext_lazy("This order was cancelled. Please contact your clinic if you did not expect this."),
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
        "product_name": order.product.name_for(translation.get_language() or "") if order.product else "",
        "quantity": order.quantity,
        "status": status or "submitted",
        "status_text": TRACKING_STATUS.get(status, TRACKING_STATUS[""]),
        "carrier": order.carrier,
        "tracking_number": order.tracking_number,
        "tracking_url": order.tracking_url,  # linked only when https (the template's ``https_url`` filter)
        "events": [{"at": event.created_at, "label": _TRACK_LABELS[event.kind]} for event in events],
        "clinic": order.site.name,
        "support_phone": PatientLinkSite.of(order.site).patient_support_phone.strip(),
    }
    return render(request, "purchaselinks/track.html", context)


_TRACK_LABELS = {
    "patient_confirmed": gettext_lazy("You confirmed the order"),
    "shipped": gettext_lazy("Shipped"),
    "delivered": gettext_lazy("Delivered"),
    "cancelled_by_platform": gettext_lazy("Cancelled by the supplier"),
}
