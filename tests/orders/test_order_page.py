"""The clinician's order page through HTTP against the real sandbox EHR: an item that does not fulfil the EHR
request is signed only when the clinician confirms it (audited, and the request's code stays on the order);
a refused sign says what to fix at the top of the page and marks each field; the form shows what the patient
will pay before signing (the patient's own quote, ``catalog.pricing``)."""

import re

import pytest

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import CodeMapping, Payer, Product
from healthcommerce.catalog.pricing import money_format, price_quote
from healthcommerce.orders.fields import order_content
from healthcommerce.orders.models import Order, OrderEvent
from tests.conftest import complete_launch
from tests.orders.test_sign import FORM

pytestmark = pytest.mark.django_db


def _draft(client, sandbox_ehr) -> tuple[str, Order]:  # type: ignore[no-untyped-def]
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    client.get(f"/o/{result.launch_id}/")
    order = Order.objects.get(launch_id=result.launch_id)
    return f"/o/{result.launch_id}/orders/{order.pk}/", order


@pytest.fixture
def cpap_draft(client, ehr_site, sandbox_ehr):  # type: ignore[no-untyped-def]
    return _draft(client, sandbox_ehr)


@pytest.fixture
def unmapped_draft(client, ehr_site, sandbox_ehr):  # type: ignore[no-untyped-def]
    """pat014's CPAP request (HCPCS E0601) at a site whose catalog maps no product to E0601."""
    CodeMapping.objects.filter(code="E0601").delete()
    return _draft(client, sandbox_ehr)


def bed() -> Product:
    return Product.objects.get(sku="DME-BED-FIXED")


def test_an_item_the_request_does_not_map_to_is_signed_only_when_the_clinician_confirms_it(client, unmapped_draft):
    url, order = unmapped_draft
    assert order.product is None and order.request_code == "E0601"

    refused = client.post(url, FORM | {"product": str(bed().pk), "action": "sign"})

    body = refused.content.decode()
    assert refused.status_code == 200
    order.refresh_from_db()
    assert order.status == Order.Status.DRAFT
    assert "does not say Hospital bed, fixed height" in body and 'id="product-mismatch"' in body
    assert re.search(r"I confirm <strong>Hospital bed[^<]*</strong> fulfils this <code>E0601</code> request", body)
    assert 'href="#id_confirm_product"' in body  # the error summary links to the box to tick
    assert AuditEvent.objects.filter(action="order.sign", outcome="product_mismatch").count() == 1

    signed = client.post(url, FORM | {"product": str(bed().pk), "confirm_product": "on", "action": "sign"})

    assert signed.status_code == 302
    order.refresh_from_db()
    assert order.status == Order.Status.SIGNED and order.request_code == "E0601"
    row = AuditEvent.objects.get(action="order.sign", outcome="success", target=f"Order/{order.pk}")
    assert row.detail["product_mismatch_confirmed"] == {
        "request_code": "E0601",
        "sku": "DME-BED-FIXED",
        "hcpcs": "E0250",
    }
    assert OrderEvent.objects.filter(order=order, kind="product_mismatch_confirmed").exists()
    page = client.get(url).content.decode()
    requested = re.search(r'id="requested">(.*?)</td>', page, re.S)
    assert requested and "<code>E0601</code>" in requested.group(1)
    assert "the signer confirmed it fulfils the request" in page


def test_the_catalogs_item_for_the_request_needs_no_confirmation(client, cpap_draft):
    url, order = cpap_draft

    assert 'id="product-mismatch"' not in client.get(url).content.decode()
    response = client.post(url, FORM | {"product": str(order.product_id), "action": "sign"})

    assert response.status_code == 302
    assert not OrderEvent.objects.filter(kind="product_mismatch_confirmed").exists()


def test_a_refused_sign_lists_each_problem_at_the_top_and_marks_the_fields(client, cpap_draft):
    url, order = cpap_draft

    response = client.post(url, FORM | {"product": str(order.product_id), "contact_email": "", "action": "sign"})

    body = response.content.decode()
    summary = re.search(
        r'<div class="card error error-summary" role="alert" id="error-summary"[^>]*>(.*?)</div>', body, re.S
    )
    assert summary, "no error summary at the top"
    assert body.index('id="error-summary"') < body.index('id="id_product"')  # before the first field
    assert 'tabindex="-1" autofocus' in body  # the browser moves focus to it (tests/e2e checks it)
    assert "The order was not signed" in summary.group(1)
    assert 'href="#id_contact_email"' in summary.group(1) and "This field is required." in summary.group(1)
    email = re.search(r"<input[^>]*id=\"id_contact_email\"[^>]*>", body)
    assert email and 'aria-invalid="true"' in email.group(0)
    assert 'aria-describedby="id_contact_email_error"' in email.group(0) and " required" in email.group(0)
    assert 'id="id_contact_email_error"' in body
    email_label = re.search(r'<label for="id_contact_email">(.*?)</label>', body, re.S)
    assert email_label and 'class="required-mark"' in email_label.group(1)
    missing = re.search(r'id="missing"[^>]*>(.*?)</div>', body, re.S)
    assert missing and 'href="#id_contact_email"' in missing.group(1)  # the pre-fill had no email
    assert body.index('id="missing"') < body.index('id="sign"')  # next to the Sign button, not grey text
    assert 'class="muted" id="missing"' not in body


def test_the_form_shows_what_the_plan_and_the_patient_will_pay_before_signing(client, cpap_draft):
    url, order = cpap_draft
    assert (order.payer.name, order.coverage_status) == ("Medicare", "matched")  # by Organization/org1234
    quote = price_quote(
        site=order.site, product=order.product, quantity=1, payer=order.payer, coverage_status="matched"
    )

    page = client.get(url).content.decode()

    assert (quote.kind, quote.patient_pays_cents) == ("coinsurance", 13980)  # the seeded Medicare rule: 20%
    patient_pays = re.search(r'id="patient-pays">(.*?)</td>', page, re.S)
    plan_pays = re.search(r'id="plan-pays">(.*?)</td>', page, re.S)
    assert patient_pays and money_format(quote.patient_pays_cents, "USD") in patient_pays.group(1)
    assert plan_pays and money_format(quote.payer_pays_cents, "USD") in plan_pays.group(1)
    assert "$699.00" in page and "Coinsurance" in patient_pays.group(1)

    client.post(url, FORM | {"product": str(order.product_id), "payer": "self_pay", "quantity": "2", "action": "save"})
    self_pay = re.search(r'id="patient-pays">(.*?)</td>', client.get(url).content.decode(), re.S)

    assert self_pay and "$1,398.00" in self_pay.group(1) and "Self-pay" in self_pay.group(1)


def test_the_payer_is_picked_from_the_sites_payers_pre_selected_with_the_charts_match(client, cpap_draft):
    url, _ = cpap_draft

    page = client.get(url).content.decode()

    select = re.search(r'<select name="payer"[^>]*>(.*?)</select>', page, re.S)
    assert select, "no payer picker"
    options = re.findall(r'<option value="([^"]*)"( selected)?>([^<]*)</option>', select.group(1))
    assert [(label, bool(chosen)) for _, chosen, label in options] == [
        ("Medicaid", False),
        ("Medicare", True),
        ("Private insurance", False),
        ("No insurance: self-pay", False),
    ]
    assert "The chart's coverage: Medicare Part B" in page and 'id="coverage-not-recognised"' not in page


def test_coverage_no_payer_record_matches_is_shown_and_signing_needs_a_choice(client, ehr_site, sandbox_ehr):
    Payer.objects.filter(site=ehr_site).delete()  # the chart's Organization/org1234 names no record now
    url, order = _draft(client, sandbox_ehr)
    assert (order.payer, order.coverage_status, order.payer_name) == (None, "not_recognised", "Medicare Part B")

    page = client.get(url).content.decode()
    assert "Coverage not recognised: Medicare Part B" in page
    assert "We could not match your insurance to a plan we know" in page  # the quote says so, not "full price"
    refused = client.post(url, FORM | {"product": str(order.product_id), "action": "sign"})

    order.refresh_from_db()
    assert order.status == Order.Status.DRAFT
    body = refused.content.decode()
    assert "the patient&#x27;s payer (the chart&#x27;s coverage was not recognised)" in body
    assert 'href="#id_payer"' in body

    medicare = Payer.objects.get(site=None, name="Medicare")
    signed = client.post(url, FORM | {"product": str(order.product_id), "payer": str(medicare.pk), "action": "sign"})

    assert signed.status_code == 302
    order.refresh_from_db()
    assert (order.status, order.payer, order.coverage_status) == (Order.Status.SIGNED, medicare, "picked")
    assert order_content(order)["payer"]["name"] == "Medicare"


def test_self_pay_is_a_choice_the_clinician_makes_and_signs(client, ehr_site, sandbox_ehr):
    Payer.objects.filter(site=ehr_site).delete()
    url, order = _draft(client, sandbox_ehr)

    signed = client.post(url, FORM | {"product": str(order.product_id), "payer": "self_pay", "action": "sign"})

    assert signed.status_code == 302
    order.refresh_from_db()
    assert (order.status, order.payer, order.coverage_status) == (Order.Status.SIGNED, None, "self_pay")
    assert order_content(order)["payer"] == {"name": "", "member_id": order.payer_member_id}
