"""English and Spanish on the patient side (ADR 0013): the pages follow the switch's cookie, else Accept-Language;
the switch is a plain form on every page and never echoes a token; emails and texts are written in the patient's
language (FHIR Patient.communication at pre-fill, then the patient's own choice on the pages)."""

import re
from datetime import date

import pytest
import sms
from django.conf import settings
from django.core import mail
from django.test import Client
from django.utils import translation

from healthcommerce.audit.models import AuditEvent
from healthcommerce.catalog.models import Product
from healthcommerce.orders.models import Order
from healthcommerce.outbox.services import outbox_deliver
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import purchase_link_issue
from tests.pipeline import downstream
from tests.purchaselinks.conftest import BIRTH_DATE
from tests.purchaselinks.test_channels import submitted, texting  # noqa: F401  (fixture)
from tests.purchaselinks.test_pages import CONFIRM, dob
from tests.purchaselinks.test_status_notices import report

pytestmark = pytest.mark.django_db
Issued = tuple[PurchaseLink, str]
SPANISH = {"HTTP_ACCEPT_LANGUAGE": "es-MX,es;q=0.9,en;q=0.5"}


def opened(token: str, **headers: str) -> Client:
    client = Client(**headers)
    assert client.get(f"/p/{token}/")["Location"] == "/p/verify/"
    return client


def verified(token: str, **headers: str) -> Client:
    client = opened(token, **headers)
    assert client.post("/p/verify/", dob(BIRTH_DATE))["Location"] == "/p/confirm/"
    return client


def html_lang(response) -> str:  # type: ignore[no-untyped-def]
    found = re.search(r'<html lang="([^"]*)"', response.content.decode())
    assert found, response.content[:200]
    return found.group(1)


def switch_form(response) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The language switch on a page: its action, ``next`` and the language its button asks for."""
    body = response.content.decode()
    form = re.search(r'<form class="language-switch" method="post" action="([^"]*)">(.*?)</form>', body, re.S)
    assert form, body[:500]
    inner = form.group(2)
    return {
        "action": form.group(1),
        "next": re.search(r'name="next" value="([^"]*)"', inner).group(1),  # type: ignore[union-attr]
        "language": re.search(r'name="language" value="([^"]*)"', inner).group(1),  # type: ignore[union-attr]
        "csrf": re.search(r'name="csrfmiddlewaretoken" value="([^"]*)"', inner).group(1),  # type: ignore[union-attr]
    }


def switch(client: Client, language: str, next_path: str = "/p/verify/"):  # type: ignore[no-untyped-def]
    return client.post("/p/language/", {"language": language, "next": next_path})


def test_accept_language_spanish_gives_the_pages_in_spanish(issued: Issued) -> None:
    page = opened(issued[1], **SPANISH).get("/p/verify/")
    body = page.content.decode()
    assert page.status_code == 200 and html_lang(page) == "es" and page["Content-Language"] == "es"
    assert "Confirme su identidad" in body and '<label for="id_birth_date">Fecha de nacimiento</label>' in body
    assert "Confirm it is you" not in body
    assert "Accept-Language" in page["Vary"]
    assert switch_form(page)["language"] == "en"  # the switch offers the other language


@pytest.mark.parametrize("accept", ["en-US,en;q=0.9", "", "fr-CA,fr;q=0.9,de;q=0.5", "*"])
def test_english_otherwise(issued: Issued, accept: str) -> None:
    headers = {"HTTP_ACCEPT_LANGUAGE": accept} if accept else {}
    page = opened(issued[1], **headers).get("/p/verify/")
    assert html_lang(page) == "en" and "Confirm it is you" in page.content.decode()
    assert switch_form(page)["language"] == "es"


def test_the_terms_and_an_unusable_link_are_in_spanish_too() -> None:
    client = Client(**SPANISH)
    terms = client.get("/p/terms/")
    assert html_lang(terms) == "es" and "Condiciones de venta" in terms.content.decode()
    gone = client.get(f"/p/{'x' * 43}/")
    assert gone.status_code == 404 and html_lang(gone) == "es"
    assert "Este enlace venció o ya no es válido" in gone.content.decode()
    ended = client.get("/p/confirm/")
    assert ended.status_code == 403 and "Su sesión terminó" in ended.content.decode()


def test_the_switch_works_without_javascript_and_lasts_for_the_browser_session(issued: Issued) -> None:
    client = opened(issued[1], HTTP_ACCEPT_LANGUAGE="en-US")
    form = switch_form(client.get("/p/verify/"))
    assert form["action"] == "/p/language/" and form["next"] == "/p/verify/" and form["language"] == "es"

    response = client.post(form["action"], {"language": form["language"], "next": form["next"]})
    assert (response.status_code, response["Location"]) == (302, "/p/verify/")
    cookie = response.cookies[settings.LANGUAGE_COOKIE_NAME]
    assert cookie.value == "es" and cookie["max-age"] == "" and cookie["expires"] == ""  # until the browser closes
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"

    for path in ("/p/verify/", "/p/terms/", "/p/verify/"):  # the cookie wins over Accept-Language: en-US
        assert html_lang(client.get(path)) == "es"
    back = switch(client, "en", "/p/terms/")
    assert back["Location"] == "/p/terms/" and html_lang(client.get("/p/terms/")) == "en"


def test_the_switch_is_a_csrf_protected_post(issued: Issued) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.get(f"/p/{issued[1]}/").status_code == 302
    assert client.post("/p/language/", {"language": "es", "next": "/p/verify/"}).status_code == 403
    form = switch_form(client.get("/p/verify/"))
    data = {"language": "es", "next": form["next"], "csrfmiddlewaretoken": form["csrf"]}
    assert client.post("/p/language/", data)["Location"] == "/p/verify/"
    assert Client().get("/p/language/").status_code == 405


@pytest.mark.parametrize("language", ["fr", "", "es-MX-x-" + "a" * 40, "<script>"])
def test_an_unsupported_language_changes_nothing(issued: Issued, language: str) -> None:
    client = opened(issued[1])
    response = switch(client, language)
    assert response["Location"] == "/p/verify/" and settings.LANGUAGE_COOKIE_NAME not in response.cookies
    assert html_lang(client.get("/p/verify/")) == "en"


def test_a_regional_code_is_served_by_its_language(issued: Issued) -> None:
    client = opened(issued[1])
    assert switch(client, "es-MX").cookies[settings.LANGUAGE_COOKIE_NAME].value == "es"


def test_the_token_never_appears_in_a_url_the_switch_makes(issued: Issued) -> None:
    token = issued[1]
    client = Client()
    bad = client.get(f"/p/{'y' * 43}/")  # the error page is shown at the token URL itself
    assert bad.status_code == 404 and switch_form(bad)["next"] == "" and "y" * 43 not in bad.content.decode()
    client = opened(token)
    for next_path in (f"/p/{token}/", f"http://testserver/p/{token}/", "https://evil.example/", "//evil.example/"):
        response = switch(client, "es", next_path)
        assert response["Location"] == "/p/verify/", next_path
        assert token not in response["Location"] and token not in str(response.cookies)
    for path in ("/p/verify/", "/p/terms/"):
        page = client.get(path)
        assert token not in page.content.decode() and switch_form(page)["next"] == path


def test_every_page_of_the_journey_has_the_switch_back_to_itself(issued: Issued) -> None:
    client = verified(issued[1], **SPANISH)
    for path in ("/p/confirm/", "/p/address/", "/p/terms/"):
        page = client.get(path)
        assert page.status_code == 200 and html_lang(page) == "es", path
        form = switch_form(page)
        assert (form["action"], form["next"], form["language"]) == ("/p/language/", path, "en")
    done = client.post("/p/confirm/", CONFIRM)
    assert "Gracias" in done.content.decode() and switch_form(done)["next"] == "/p/confirm/"
    track = client.get("/p/track/")
    assert "Su pedido" in track.content.decode() and switch_form(track)["next"] == "/p/track/"


def test_form_errors_are_in_spanish(issued: Issued) -> None:
    client = opened(issued[1], **SPANISH)
    empty = client.post("/p/verify/", {"birth_date": ""}).content.decode()
    assert "Escriba su fecha de nacimiento." in empty
    odd = client.post("/p/verify/", {"birth_date": "25.03.1980"}).content.decode()
    assert "Escriba una fecha como 1980-03-25." in odd
    future = client.post("/p/verify/", {"birth_date": "2999-01-01"}).content.decode()
    assert "Escriba una fecha de nacimiento real." in future
    wrong = client.post("/p/verify/", dob(date(1961, 4, 4))).content.decode()
    assert "No pudimos confirmar esa fecha de nacimiento" in wrong

    client.post("/p/verify/", dob(BIRTH_DATE))
    review = client.post("/p/confirm/", {"delivery_preference": "standard"}).content.decode()
    assert "Para continuar, acepte las condiciones de venta." in review
    assert "Déjenlo en mi puerta" in review and "Entrega" in review
    address = client.post("/p/address/", {"line1": "", "city": "Portland", "state": "ME", "postal_code": "123"})
    body = address.content.decode()
    assert "Este campo es obligatorio." in body and "código postal" in body  # Django's and localflavor's own
    assert "Código postal (ZIP)" in body and "Nueva York" in body


def test_the_price_and_why_are_in_spanish_with_us_number_formats(make_order) -> None:  # type: ignore[no-untyped-def]
    product = Product.objects.create(sku="WC-T", name="Wheelchair", kind="device", unit_price_cents=123456)
    _, token = purchase_link_issue(order=make_order(product=product, payer_name=""))
    review = verified(token, **SPANISH).get("/p/confirm/").content.decode()
    assert "$1,234.56" in review  # es-US: the same separators as on a US bill
    assert "No tenemos un seguro registrado: usted paga el precio completo." in review
    assert "Usted paga" in review and "Continuar al pago" in review


def test_the_tracking_history_has_dates_and_status_names_in_spanish(issued: Issued) -> None:
    link, token = issued
    client = verified(token, **SPANISH)
    client.post("/p/confirm/", CONFIRM)
    Order.objects.filter(pk=link.order_id).update(commerce_backend="local", commerce_id="x")
    report(link.order, "shipped", carrier="UPS", tracking_number="1Z999AA10123456784")
    body = client.get("/p/track/").content.decode()
    assert "Su pedido va en camino." in body and "Usted confirmó el pedido" in body and "Enviado" in body
    assert re.search(r"<li>\d{1,2} de [a-z]+ de \d{4}: Usted confirmó el pedido</li>", body), body


def test_a_spanish_request_leaves_no_language_behind(issued: Issued) -> None:
    opened(issued[1], **SPANISH).get("/p/verify/")
    assert translation.get_language() == settings.LANGUAGE_CODE == "en"


def test_clinician_pages_and_the_admin_stay_in_english() -> None:
    client = Client(**SPANISH)
    for path in ("/", "/admin/login/"):
        page = client.get(path, follow=True)
        assert page.status_code == 200 and html_lang(page) == "en", path
        assert "language-switch" not in page.content.decode()
    assert "Log in" in client.get("/admin/login/").content.decode()
    assert client.post("/p/language/", {"language": "es"}).status_code == 302
    assert html_lang(client.get("/admin/login/")) == "en"  # the patient's cookie does not reach them either


# Messages: rendered in Order.patient_language by notify, whoever sends them.


def test_the_link_goes_out_in_the_patients_language(texting: Order) -> None:  # noqa: F811
    Order.objects.filter(pk=texting.pk).update(patient_language="es")
    outbox_deliver(message_id=submitted(texting).pk)
    email, text = mail.outbox[0], sms.outbox[0].body
    assert email.subject == f"Su pedido {texting.reference} está listo"
    assert email.body.startswith("Hola:\n") and "Abra su enlace personal" in email.body
    assert "Mateo" not in email.body and "sueño" not in email.body and "sleep" not in email.body
    assert re.search(r"El enlace vence el \d{1,2} de [a-z]+ de \d{4}\.", email.body), email.body
    assert text.startswith("Harbor clinic: su pedido está listo.") and re.search(r"Vence el \d{1,2} de [a-z]+", text)
    assert translation.get_language() == "en"


def test_a_patient_without_a_known_language_gets_english(texting: Order) -> None:  # noqa: F811
    Order.objects.filter(pk=texting.pk).update(patient_language="fr")
    outbox_deliver(message_id=submitted(texting).pk)
    assert mail.outbox[0].subject == f"Your order {texting.reference} is ready"
    assert re.search(r"The link expires on [A-Z][a-z]+ \d{1,2}, \d{4}\.", mail.outbox[0].body)
    assert "your order is ready" in sms.outbox[0].body


def test_shipping_notices_follow_the_language_the_patient_chose_on_the_pages(texting: Order) -> None:  # noqa: F811
    outbox_deliver(message_id=submitted(texting).pk)
    token = re.search(r"/p/([A-Za-z0-9_-]{20,})/", mail.outbox[0].body).group(1)  # type: ignore[union-attr]
    assert mail.outbox[0].subject.startswith("Your order")  # no language on file: English
    mail.outbox.clear()
    sms.outbox.clear()

    client = verified(token)
    assert switch(client, "es", "/p/confirm/")["Location"] == "/p/confirm/"
    texting.refresh_from_db()
    assert texting.patient_language == "es"
    audit = AuditEvent.objects.filter(action="purchase_link.language").order_by("created_at").last()
    assert audit is not None
    assert audit.detail == {"language": "es"} and audit.target == f"Order/{texting.pk}"
    Order.objects.filter(pk=texting.pk).update(commerce_backend="local", commerce_id="x")
    client.post("/p/confirm/", CONFIRM)
    downstream()  # the supplier's confirmation and the patient's notice
    assert [m.subject for m in mail.outbox] == ["Su pedido está confirmado"]
    assert "Gracias: su pedido" in mail.outbox[0].body and "está confirmado" in sms.outbox[0].body
    report(texting, "shipped", carrier="UPS", tracking_number="1Z999AA10123456784")
    downstream()
    email = mail.outbox[-1]
    assert email.subject == "Su pedido fue enviado"
    assert "Transportista: UPS" in email.body and "Número de seguimiento: 1Z999AA10123456784" in email.body
    assert "fue enviado (UPS 1Z999AA10123456784)" in sms.outbox[-1].body

    switch(client, "en", "/p/track/")
    texting.refresh_from_db()
    assert texting.patient_language == "en"


def test_a_switch_before_the_date_of_birth_is_kept_once_verified(issued: Issued) -> None:
    link, token = issued
    client = opened(token)
    switch(client, "es")
    assert Order.objects.get(pk=link.order_id).patient_language == ""  # not verified: the order is not touched
    assert client.post("/p/verify/", dob(BIRTH_DATE))["Location"] == "/p/confirm/"
    assert Order.objects.get(pk=link.order_id).patient_language == "es"


def test_a_switch_in_another_browser_does_not_touch_the_order(issued: Issued) -> None:
    link, token = issued
    stranger = Client()
    switch(stranger, "es")
    opened(token)  # bound but never verified
    switch(opened(token), "es")
    assert Order.objects.get(pk=link.order_id).patient_language == ""
    assert not AuditEvent.objects.filter(action="purchase_link.language").exists()


def test_an_unexpected_error_on_a_patient_page_is_explained_in_spanish(issued: Issued, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def broken(**kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("database went away")

    monkeypatch.setattr("healthcommerce.purchaselinks.views.purchase_link_open", broken)
    page = Client(raise_request_exception=False, **SPANISH).get(f"/p/{issued[1]}/")
    assert page.status_code == 500 and html_lang(page) == "es"
    assert "Algo salió mal" in page.content.decode() and "Referencia:" in page.content.decode()


def test_the_pages_open_in_the_language_of_the_messages_unless_this_browser_chose(issued: Issued) -> None:
    link, token = issued
    Order.objects.filter(pk=link.order_id).update(patient_language="es")

    page = opened(token, HTTP_ACCEPT_LANGUAGE="en-US").get("/p/verify/")  # a phone set to English
    assert html_lang(page) == "es" and switch_form(page)["language"] == "en"

    chose = Client(HTTP_ACCEPT_LANGUAGE="en-US")
    chose.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"  # switched to English earlier in this browser
    chose.get(f"/p/{token}/")
    assert html_lang(chose.get("/p/verify/")) == "en"

    Order.objects.filter(pk=link.order_id).update(patient_language="")
    assert html_lang(opened(token, **SPANISH).get("/p/verify/")) == "es"  # no chart language: the browser's
