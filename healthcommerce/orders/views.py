"""Clinician pages, reached only under a launch id: ``/o/<launch>/`` and ``/o/<launch>/orders/<order>/``.

Every page checks the launch belongs to this browser (``ehr.services.launch_access``) and the order to the
launch's site and patient (``orders.selectors.order_access``).
"""

import logging
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from healthcommerce.audit.services import audit_record
from healthcommerce.catalog.pricing import Quote
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.views import render_error
from healthcommerce.coverage.quote import coverage_quote
from healthcommerce.coverage.services import eligibility_fresh, eligibility_latest
from healthcommerce.ehr.fhir import fhir_error
from healthcommerce.ehr.framing import framing_site
from healthcommerce.ehr.models import Launch
from healthcommerce.ehr.services import launch_access
from healthcommerce.orders import fields as order_fields
from healthcommerce.orders.eligibility import order_coverage_summary, service_type_for
from healthcommerce.orders.errors import ProductMismatch
from healthcommerce.orders.forms import OrderForm
from healthcommerce.orders.models import CoverageStatus, Order
from healthcommerce.orders.prefill import REQUEST_MODELS, can_sign, named_requests
from healthcommerce.orders.selectors import (
    order_access,
    order_clinician_status,
    order_ship_to,
    order_tracking,
    orders_for_patient,
)
from healthcommerce.orders.services import (
    launch_prefill,
    launch_reread,
    order_edit,
    order_missing_fields,
    order_product_mismatch,
)

logger = logging.getLogger(__name__)


def _warnings(launch: Launch) -> list[str]:
    failed = [
        f"{label}: {fhir_error(code).message}" for label, code in launch.prefill_outcomes.items() if code != "success"
    ]
    return failed + list(launch.prefill_warnings)


def _launch_orders(launch: Launch) -> QuerySet[Order]:
    """The orders this launch's pre-fill made or found: its own and those it shares with another launch."""
    return Order.objects.filter(Q(launch=launch) | Q(launches=launch)).distinct()


def _requests_unread(launch: Launch) -> bool:
    """Return True when a read of the EHR's requests (named or searched) failed: "no request found" would be false."""
    return any(
        code != "success" for label, code in launch.prefill_outcomes.items() if label.split("/")[0] in REQUEST_MODELS
    )


def _drafts(launch: Launch) -> QuerySet[Order]:
    """This launch's drafts, with their products."""
    return _launch_orders(launch).filter(status=Order.Status.DRAFT).select_related("product")


def _context(launch: Launch, **extra: Any) -> dict[str, Any]:
    return {
        "launch": launch,
        "drafts": _drafts(launch),
        "set_aside": launch.prefill_set_aside,
        "warnings": _warnings(launch),
        "banner": _banner(launch, extra.get("order")),
        "can_sign": can_sign(launch.fhir_user),
        "requests_unread": _requests_unread(launch),
        **extra,
    }


def _audit_view(launch: Launch, target: str, page: str) -> None:
    """One ``phi.view`` row per clinician page served: the launch's user, site and id; the client address and user
    agent come from the request (``audit.context``)."""
    audit_record(
        actor=launch.fhir_user or "unknown",
        action="phi.view",
        target=target,
        site=launch.site.iss,
        launch_id=launch.pk,
        detail={"page": page},
    )


def _banner(launch: Launch, shown: Order | None = None) -> dict[str, Any] | None:
    """The patient banner: the name pre-fill kept on the launch (whether or not it made a draft), the birth date
    from the order on screen (``shown``), else from one of the launch's orders when it has one; None when the EHR
    shows its own banner."""
    if not launch.need_patient_banner:
        return None
    # patient_name is encrypted (no lookups): a launch has a handful of drafts, so pick in Python.
    order = shown if shown is not None and shown.patient_name else None
    order = order or next((o for o in _launch_orders(launch) if o.patient_name), None)
    name = launch.patient_name or (order.patient_name if order else "")
    return {"name": name, "birth_date": order.patient_birth_date if order else None}


@never_cache
@require_http_methods(["GET"])
def launch_home(request: HttpRequest, launch_id: UUID) -> HttpResponse:
    """Pre-fill on the first visit, then list this launch's drafts, the requests set apart (not ordered through
    this app) and the patient's earlier orders.

    Opens a draft directly, unless ``?all=1``: on the visit that pre-filled, the draft of the one request the
    launch names (``fhirContext`` or ``appContext``), even when the patient has earlier orders (the form links
    back here for them); on any visit, a single draft with nothing else to show. A temporary EHR failure during
    pre-fill shows a 503 page saying to reload (nothing was recorded, so the reload reads again).
    """
    try:
        launch = launch_access(launch_id=launch_id, session=request.session)
        framing_site(request, launch.site)
        first_visit = launch_prefill(launch=launch)
    except HealthcommerceError as exc:
        title = "The EHR could not be reached" if exc.temporary else "We could not continue"
        response = render_error(request, exc, title=title)
        if exc.temporary:
            response["Retry-After"] = "5"
        return response
    _audit_view(launch, f"Patient/{launch.patient_id}", "orders:launch")
    drafts = list(_drafts(launch))
    named = named_requests(launch)
    if first_visit and len(named) == 1 and not request.GET.get("all"):
        chosen = [draft for draft in drafts if draft.request_reference == named[0]]
        if chosen:
            return _open(launch, chosen[0])
    context = _context(launch, previous=orders_for_patient(launch=launch), drafts=drafts)
    alone = not (context["previous"] or context["warnings"] or context["set_aside"] or request.GET.get("all"))
    if len(drafts) == 1 and alone:
        return _open(launch, drafts[0])
    return render(request, "orders/launch.html", context)


def _open(launch: Launch, order: Order) -> HttpResponse:
    return HttpResponseRedirect(reverse("orders:order", kwargs={"launch_id": launch.pk, "order_id": order.pk}))


@never_cache
@require_http_methods(["GET", "POST"])
def order_page(request: HttpRequest, launch_id: UUID, order_id: UUID) -> HttpResponse:
    """Show the pre-filled order (GET); save edits and, with ``action=sign``, sign it in the same click (POST)."""
    try:
        launch = launch_access(launch_id=launch_id, session=request.session)
        framing_site(request, launch.site)
        order = order_access(launch=launch, order_id=order_id)
    except HealthcommerceError as exc:
        return render_error(request, exc)
    _audit_view(launch, f"Order/{order.pk}", "orders:order")
    if order.status != Order.Status.DRAFT:
        return render(request, "orders/detail.html", _context(launch, **_detail(order)))
    if request.method == "POST" and request.POST.get("action") == "reread":
        return _reread(request, launch)
    form = OrderForm(request.POST or None, initial=OrderForm.initial_for(order), order=order)
    if request.method == "POST" and form.is_valid():
        sign = request.POST.get("action") == "sign"
        try:
            order = order_edit(
                order=order,
                launch=launch,
                changes=form.changes(order),
                sign=sign,
                mismatch_confirmed=form.cleaned_data["confirm_product"],
            )
        except ProductMismatch as exc:
            form.add_error("confirm_product", exc.message)
        except HealthcommerceError as exc:
            form.add_error(None, exc.message)
        else:
            if sign:
                messages.success(request, f"Order {order.reference} signed. It is on its way to the supplier.")
            return HttpResponseRedirect(request.path)
    return render(request, "orders/form.html", _context(launch, **_form(order, form)))


def _detail(order: Order) -> dict[str, Any]:
    """The signed order page's context: the order, its timeline, the one clinician-facing status, the ship-to it
    will really go to, its tracking, and the lines the order's field table adds (``orders.fields.shown``)."""
    events = list(order.events.all())
    return {
        "order": order,
        "events": events,
        "clinician_status": order_clinician_status(order, events),
        "ship_to": order_ship_to(order, events),
        "tracking": order_tracking(order),
        "shown": order_fields.shown(order),
    }


def _form(order: Order, form: OrderForm) -> dict[str, Any]:
    """The draft page's context: the form, its error summary, what is still needed (each with the field to fix),
    the quote for the product, quantity and payer on screen, and whether that product fulfils the EHR request."""
    product = form.chosen("product", order.product)
    quote: Quote | None = None
    payer = form.chosen_column("payer", order)
    check = eligibility_latest(
        site=order.site, payer=payer, member_id=order.payer_member_id, service_type=service_type_for(product)
    )
    if product is not None:
        quantity = form.chosen("quantity", order.quantity)
        status = form.chosen_column("coverage_status", order)
        quote = coverage_quote(
            site=order.site,
            product=product,
            quantity=quantity,
            payer=payer,
            coverage_status=status,
            check=check if eligibility_fresh(check) else None,
        )
    coverage_tone, coverage_text = order_coverage_summary(order, payer, check)
    missing = order_missing_fields(order)
    if form.is_bound:  # what the clinician just typed counts; what failed to validate is still needed
        missing = [
            (name, label)
            for name, label in missing
            if not name or form[name].errors or not str(form.data.get(name, "")).strip()
        ]
    return {
        "order": order,
        "form": form,
        "action": _action(form),
        "errors": form.error_summary() if form.is_bound else [],
        "missing": [(f"id_{name}" if name else "", label) for name, label in missing],
        "quote": quote,
        "coverage_tone": coverage_tone,
        "coverage_text": coverage_text,
        "product": product,
        "mismatch": order_product_mismatch(order, product),
        "coverage_not_recognised": order.coverage_status == CoverageStatus.NOT_RECOGNISED,
    }


def _action(form: OrderForm) -> str:
    """The button the clinician pressed (``sign`` or ``save``), "" on a GET."""
    return str(form.data.get("action", "")) if form.is_bound else ""


def _reread(request: HttpRequest, launch: Launch) -> HttpResponse:
    """Read the EHR again with the launch's access token while it lives (refreshing an expired one when the EHR
    granted a refresh token); when it cannot, say why and what to do (launch again, or try again in a moment for a
    temporary failure); the drafts are kept either way."""
    try:
        launch_reread(launch=launch)
    except HealthcommerceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Read again from the EHR.")
    return HttpResponseRedirect(request.path)
