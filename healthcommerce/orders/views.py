"""Clinician pages, reached only under a launch id: ``/o/<launch>/`` and ``/o/<launch>/orders/<order>/``.

Every page checks the launch belongs to this browser (``ehr.services.launch_access``) and the order to the
launch's site and patient (``orders.selectors.order_access``).
"""

import logging
from typing import Any
from uuid import UUID

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from healthcommerce.audit.services import audit_record
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.views import render_error
from healthcommerce.ehr.fhir import fhir_error
from healthcommerce.ehr.models import Launch
from healthcommerce.ehr.services import launch_access
from healthcommerce.orders.forms import OrderForm
from healthcommerce.orders.models import Order
from healthcommerce.orders.prefill import prefill_gather
from healthcommerce.orders.selectors import order_access, orders_for_patient
from healthcommerce.orders.services import order_drafts_create, order_missing, order_sign, order_update_draft

logger = logging.getLogger(__name__)


def _prefill_once(launch: Launch) -> None:
    claimed = Launch.objects.filter(pk=launch.pk, prefilled_at__isnull=True).update(prefilled_at=timezone.now())
    if not claimed:
        return
    found = prefill_gather(launch=launch)
    order_drafts_create(launch=launch, found=found)
    launch.prefill_outcomes, launch.prefill_seconds = found.outcomes, found.seconds
    launch.save(update_fields=["prefill_outcomes", "prefill_seconds", "updated_at"])


def _warnings(launch: Launch) -> list[str]:
    return [
        f"{label}: {fhir_error(code).message}" for label, code in launch.prefill_outcomes.items() if code != "success"
    ]


def _context(launch: Launch, **extra: Any) -> dict[str, Any]:
    drafts = Order.objects.filter(launch=launch, status=Order.Status.DRAFT).select_related("product")
    return {"launch": launch, "drafts": drafts, "warnings": _warnings(launch), "banner": _banner(launch), **extra}


def _banner(launch: Launch) -> dict[str, Any] | None:
    if not launch.need_patient_banner:
        return None
    order = Order.objects.filter(launch=launch).exclude(patient_name="").first()
    return {"name": order.patient_name if order else "", "birth_date": order.patient_birth_date if order else None}


@never_cache
@require_http_methods(["GET"])
def launch_home(request: HttpRequest, launch_id: UUID) -> HttpResponse:
    """Pre-fill on the first visit, then list this launch's drafts and the patient's earlier orders with status."""
    try:
        launch = launch_access(launch_id=launch_id, session=request.session)
        _prefill_once(launch)
    except HealthcommerceError as exc:
        return render_error(request, exc)
    audit_record(
        actor=launch.fhir_user or "unknown",
        action="phi.view",
        target=f"Patient/{launch.patient_id}",
        where="orders:launch",
    )
    context = _context(launch, previous=orders_for_patient(launch=launch))
    drafts = list(context["drafts"])
    if len(drafts) == 1 and not context["previous"] and not context["warnings"]:
        return HttpResponseRedirect(reverse("orders:order", kwargs={"launch_id": launch.pk, "order_id": drafts[0].pk}))
    return render(request, "orders/launch.html", context)


@never_cache
@require_http_methods(["GET", "POST"])
def order_page(request: HttpRequest, launch_id: UUID, order_id: UUID) -> HttpResponse:
    """Show the pre-filled order (GET); save edits and, with ``action=sign``, sign it in the same click (POST)."""
    try:
        launch = launch_access(launch_id=launch_id, session=request.session)
        order = order_access(launch=launch, order_id=order_id)
    except HealthcommerceError as exc:
        return render_error(request, exc)
    audit_record(
        actor=launch.fhir_user or "unknown", action="phi.view", target=f"Order/{order.pk}", where="orders:order"
    )
    if order.status != Order.Status.DRAFT:
        return render(request, "orders/detail.html", _context(launch, order=order, events=order.events.all()))
    form = OrderForm(request.POST or None, initial=OrderForm.initial_for(order))
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                order = order_update_draft(order=order, actor=launch.fhir_user, changes=form.changes(order))
                if request.POST.get("action") == "sign":
                    order = order_sign(order=order, launch=launch)
                    messages.success(request, f"Order {order.reference} signed. It is on its way to fulfillment.")
        except HealthcommerceError as exc:
            form.add_error(None, exc.message)
        else:
            return HttpResponseRedirect(request.path)
    return render(request, "orders/form.html", _context(launch, order=order, form=form, missing=order_missing(order)))
