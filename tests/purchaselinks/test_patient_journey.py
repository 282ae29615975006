"""Issue 18, the patient's side: Spanish all the way through (product names, the ZIP error, an es-US browser, the
language used on the pages in later emails and in another browser), the receipt on the thank-you page and in
the confirmation email, tracking links, and errors a patient can find."""

import re

import pytest
from django.core import mail
from django.template import Context, Template

from healthcommerce.catalog.models import Product
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.models import PatientLinkSite, Payment, PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.pipeline import downstream
from tests.purchaselinks.conftest import PATIENT_NAME
from tests.purchaselinks.test_i18n import html_lang, opened, switch, verified
from tests.purchaselinks.test_pages import CONFIRM
from tests.purchaselinks.test_status_notices import report

pytestmark = pytest.mark.django_db
Issued = tuple[PurchaseLink, str]
ES_US = {"HTTP_ACCEPT_LANGUAGE": "es-US,es;q=0.9"}


def sent(order: Order) -> None:
    """Mark the order's link as emailed (status notices go only to patients who got a link) and hand it over."""
    PurchaseLink.objects.filter(order=order).update(sent_at=order.created_at)
    Order.objects.filter(pk=order.pk).update(commerce_backend="local", commerce_id="x")


def test_an_es_us_browser_gets_spanish_pages_even_when_the_chart_says_english(issued: Issued) -> None:
    link, token = issued
    Order.objects.filter(pk=link.order_id).update(patient_language="en-US")  # what Synthea and most charts hold
    page = opened(token, **ES_US).get("/p/verify/")
    assert html_lang(page) == "es" and "Confirme su identidad" in page.content.decode()


def test_the_language_read_on_the_pages_drives_the_confirmation_email(issued: Issued) -> None:
    link, token = issued
    sent(link.order)
    client = verified(token, **ES_US)  # Spanish from Accept-Language alone: no switch pressed
    client.post("/p/confirm/", CONFIRM)
    downstream()
    assert [m.subject for m in mail.outbox] == ["Su pedido está confirmado"]
    assert mail.outbox[0].body.startswith(f"Hola, {PATIENT_NAME}:")


def test_a_new_browser_keeps_the_spanish_the_patient_read_in(issued: Issued) -> None:
    link, token = issued
    verified(token, **ES_US)
    assert Order.objects.get(pk=link.order_id).patient_language == "es"
    another = opened(token, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")  # another phone, set to English
    assert html_lang(another.get("/p/verify/")) == "es"


def test_a_spanish_patient_reads_the_products_spanish_name_and_english_when_there_is_none(make_order) -> None:  # type: ignore[no-untyped-def]
    product = Product.objects.create(
        sku="BGM-ES", name="Home blood glucose monitor", name_es="Monitor de glucosa en sangre", kind="device"
    )
    _, token = purchase_link_issue(order=make_order(product=product, payer_name=""))
    review = verified(token, **ES_US).get("/p/confirm/").content.decode()
    assert "Monitor de glucosa en sangre" in review and "Home blood glucose monitor" not in review
    _, other = purchase_link_issue(order=make_order())
    assert "Home sleep test kit" in verified(other, **ES_US).get("/p/confirm/").content.decode()  # no name_es


def test_the_seeded_catalog_has_spanish_names() -> None:
    assert Product.objects.get(sku="DME-CPAP-STD").name_es == "Equipo CPAP con humidificador y mascarilla"
    assert not Product.objects.filter(sku__startswith="KIT-", name_es="").exists()


def test_the_zip_code_error_is_a_sentence_with_an_example_in_both_languages(issued: Issued) -> None:
    bad = {"line1": "1 Main St", "city": "Portland", "state": "ME", "postal_code": "123"}
    spanish = verified(issued[1], **ES_US).post("/p/address/", bad).content.decode()
    assert "Escriba un código postal (ZIP) de 5 dígitos, como 04101, o de 9 dígitos, como 04101-1234." in spanish
    assert "XXXXX" not in spanish
    english = switch(verified(issued[1]), "en", "/p/address/")
    assert english.status_code == 302


def test_the_thank_you_page_and_the_email_are_a_receipt(issued: Issued, order: Order) -> None:
    PatientLinkSite.objects.filter(site_id=order.site_id).update(patient_support_phone="(207) 555-0100")
    sent(order)
    done = verified(issued[1]).post("/p/confirm/", CONFIRM).content.decode()
    receipt = re.search(r'<table id="receipt">(.*?)</table>', done, re.S).group(1)  # type: ignore[union-attr]
    assert "Home sleep test kit \u00d7 1" in receipt and "Expected delivery" in receipt and "Between " in receipt
    assert 'id="receipt-amount"' in receipt and "$" in receipt
    assert 'href="tel:(207) 555-0100"' in done and "Harbor clinic" in done
    downstream()
    body = mail.outbox[0].body
    assert body.startswith(f"Hello {PATIENT_NAME},") and "from Harbor clinic is confirmed" in body
    assert "Item: Home sleep test kit \u00d7 1" in body and "Expected delivery: between " in body
    assert "Call Harbor clinic at (207) 555-0100" in body


def test_a_paid_receipt_names_the_amount_and_the_card(issued: Issued, order: Order) -> None:
    Payment.objects.create(
        order=order,
        order_version=order.version,
        amount_cents=4900,
        currency="USD",
        status=Payment.Status.SUCCEEDED,
        idempotency_key="hc-receipt",
        card_brand="Visa",
        card_last4="4242",
    )
    sent(order)
    client = verified(issued[1], **ES_US)
    client.post("/p/confirm/", CONFIRM)
    downstream()
    body = mail.outbox[0].body
    assert "Monto pagado: $49.00 (Visa terminada en 4242)" in body, body


def test_the_email_comes_from_the_configured_sender_with_its_name(issued: Issued, order: Order, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEFAULT_FROM_EMAIL = "Harbor clinic orders <orders@harbor.example>"
    sent(order)
    verified(issued[1]).post("/p/confirm/", CONFIRM)
    downstream()
    assert mail.outbox[0].from_email == "Harbor clinic orders <orders@harbor.example>"


def test_the_track_page_links_carrier_and_number_to_the_carriers_page(issued: Issued, order: Order) -> None:
    client = verified(issued[1])
    client.post("/p/confirm/", CONFIRM)
    Order.objects.filter(pk=order.pk).update(commerce_backend="local", commerce_id="x")
    report(order, "shipped", carrier="ups", tracking_number="1Z999AA10123456784")
    body = client.get("/p/track/").content.decode()
    assert '<a href="https://www.ups.com/track?tracknum=1Z999AA10123456784"' in body
    assert ">UPS 1Z999AA10123456784</a>" in body


def test_the_spanish_shipping_email_has_the_carrier_number_and_link_or_mentions_no_link(
    issued: Issued, order: Order
) -> None:
    Order.objects.filter(pk=order.pk).update(patient_language="es")
    sent(order)
    report(order, "shipped", carrier="FedEx", tracking_number="7777")
    downstream()
    body = mail.outbox[-1].body
    assert "Transportista: FedEx" in body and "Número de seguimiento: 7777" in body
    assert "https://www.fedex.com/fedextrack/?trknbr=7777" in body


def test_a_shipping_email_without_a_carrier_mentions_no_link(issued: Issued, order: Order) -> None:
    Order.objects.filter(pk=order.pk).update(patient_language="es")
    sent(order)
    report(order, "shipped", tracking_number="ZX-1")
    downstream()
    body = mail.outbox[-1].body
    assert "Número de seguimiento: ZX-1" in body and "enlace de seguimiento" not in body and "Transportista" not in body


def test_the_https_url_filter_links_https_only() -> None:
    template = Template("{% load links %}[{{ url|https_url }}]")
    for url in ("javascript:alert(1)", "http://ups.com/x", "https://", "data:text/html,x", "https://a b.com", None):
        assert template.render(Context({"url": url})) == "[]", url
    assert template.render(Context({"url": " https://www.ups.com/track?t=1 "})) == "[https://www.ups.com/track?t=1]"


def test_a_failed_terms_checkbox_shows_a_summary_and_marks_the_field(issued: Issued) -> None:
    body = verified(issued[1]).post("/p/confirm/", {"delivery_preference": "standard"}).content.decode()
    summary = re.search(r'<div class="card error error-summary" role="alert".*?</div>', body, re.S)
    assert summary and 'href="#id_accept_terms"' in summary.group(0)
    checkbox = re.search(r'<input type="checkbox"[^>]*>', body).group(0)  # type: ignore[union-attr]
    for attribute in ("required", 'aria-required="true"', 'aria-invalid="true"', 'aria-describedby="terms-error"'):
        assert attribute in checkbox
    assert "autofocus" in checkbox and 'id="terms-error"' in body


def test_the_address_form_marks_required_and_invalid_fields(issued: Issued) -> None:
    client = verified(issued[1])
    body = client.post("/p/address/", {"line1": "", "city": "Portland", "state": "ME", "postal_code": "04101"})
    html = body.content.decode()
    line1 = re.search(r'<input type="text" name="line1"[^>]*>', html).group(0)  # type: ignore[union-attr]
    assert 'aria-invalid="true"' in line1 and 'aria-describedby="id_line1-error"' in line1 and "autofocus" in line1
    assert 'aria-required="true"' in line1 and "required" in line1 and 'id="id_line1-error"' in html
    city = re.search(r'<input type="text" name="city"[^>]*>', html).group(0)  # type: ignore[union-attr]
    assert "aria-invalid" not in city and "autofocus" not in city and 'aria-required="true"' in city
