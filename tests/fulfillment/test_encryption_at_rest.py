"""PHI, OAuth tokens and EHR site secrets are encrypted at rest (issue 9 "PHI and secrets at rest", ADR 0016): no
plaintext fixture PHI in any raw row of any table, on SQLite and PostgreSQL; keys rotate with ``encryption_rotate``.

Run on PostgreSQL with ``DATABASE_URL=postgres://...``: the raw scan reads every table with ``connection.cursor()``.
"""

import io
from collections.abc import Callable
from datetime import date, timedelta

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.contrib.sessions.backends.db import SessionStore
from django.core.exceptions import FieldError
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from healthcommerce.core.encryption import encrypted_fields, encryption_rotate
from healthcommerce.ehr.models import EHRSite, Launch
from healthcommerce.ehr.sitefeatures import site_settings_update
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.fulfillment.backends.local.services import local_order_confirm
from healthcommerce.orders.fields import Phi, phi_columns
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.models import PurchaseLink
from tests.conftest import complete_launch
from tests.fulfillment.conftest import BIRTH_DATE, PATIENT_NAME, SHIP_TO
from tests.pipeline import deliver, signed

pytestmark = pytest.mark.django_db

ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiJ9.access-fixture-7f3a9c"
REFRESH_TOKEN = "refresh-fixture-c41d7e2b9a"
CLIENT_SECRET = "client-secret-fixture-9b8e7d"
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDfixture"
PRIVATE_KEY = f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n"
CORRECTED_LINE = "41 Harbourview Terrace"
FIXTURE_PHI = [
    PATIENT_NAME,
    "Lopez",
    BIRTH_DATE.isoformat(),
    BIRTH_DATE.strftime("%m/%d/%Y"),
    SHIP_TO["line"][0],
    "camila.lopez@example.org",
    "703 555 0100",
    "+17035550100",
    "BRH987654321",
    CORRECTED_LINE,
    ACCESS_TOKEN,
    REFRESH_TOKEN,
    CLIENT_SECRET,
    PEM_BODY,
]


def raw_database_text() -> dict[str, str]:
    """Return each table's raw rows as text (every column; bytes as latin-1; Django sessions decoded), read with
    ``connection.cursor()``. The sandbox's tables are left out: they are the EHR's own chart, not ours."""
    quote = connection.ops.quote_name
    texts = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            if table.startswith("sandbox_"):
                continue
            cursor.execute(f"SELECT * FROM {quote(table)}")
            parts = []
            for row in cursor.fetchall():
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        parts.append(bytes(value).decode("latin-1"))
                    elif value is not None:
                        parts.append(str(value))
                if table == "django_session":
                    parts.append(str(SessionStore().decode(row[1])))
            texts[table] = "\n".join(parts)
    return texts


def plaintext_found(values: list[str]) -> list[tuple[str, str]]:
    """Return ``(table, value)`` for every value of ``values`` found in a raw row."""
    found = []
    for table, text in raw_database_text().items():
        found.extend((table, value) for value in values if value and value in text)
    return found


def _texts(value: object) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _texts(item)]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, date):
        return [value.isoformat()]
    return [value] if isinstance(value, str) and value else []


def phi_values(order: Order) -> list[str]:
    """Return the text of every PHI column of ``order`` (the ``Phi.ENCRYPTED`` rows of ``orders.fields.FIELDS``), of
    five characters or more: a shorter one ("VA", "US") turns up by chance in base64 ciphertext."""
    texts = [text for name in phi_columns(Phi.ENCRYPTED) for text in _texts(getattr(order, name))]
    return [text for text in texts if len(text) >= 5]


def test_no_table_holds_the_fixture_phi_tokens_or_secrets_in_plaintext(  # type: ignore[no-untyped-def]
    client, ehr_site, sandbox_ehr, make_order: Callable[..., Order]
) -> None:
    # A real launch and pre-fill from the sandbox EHR: the draft holds the chart's PHI.
    result = complete_launch(client, sandbox_ehr, patient="pat014", request="DeviceRequest/devreq021")
    assert client.get(f"/o/{result.launch_id}/", follow=True).status_code == 200
    draft = Order.objects.get(launch_id=result.launch_id)
    chart_phi = phi_values(draft)
    assert draft.patient_name and len([v for v in chart_phi if v]) >= 3
    # A site with secrets, a launch holding tokens, and an order through the pipeline to its links.
    site = EHRSite.objects.create(
        name="Secret clinic",
        iss="https://secret.example/fhir",
        client_id="hc-secret",
        client_secret=CLIENT_SECRET,
        private_key_pem=PRIVATE_KEY,
    )
    site_settings_update(site, {"sms_enabled": True})
    Launch.objects.create(
        site=site,
        state="state-fixture",
        code_verifier="v" * 43,
        nonce="n",
        launch_token="l",
        expires_at=timezone.now() + timedelta(hours=1),
        access_token=ACCESS_TOKEN,
        refresh_token=REFRESH_TOKEN,
        token_expires_at=timezone.now() + timedelta(hours=1),
    )
    order = make_order(site=site, contact_phone="+1 703 555 0100")
    deliver(signed(order))
    local = LocalCommerceOrder.objects.get(order_reference=order.reference)
    corrected = dict(SHIP_TO, line=[CORRECTED_LINE])
    Order.objects.filter(pk=order.pk).update(patient_ship_to=corrected)
    local_order_confirm(local_order_id=local.pk, confirmation={"ship_to": corrected, "delivery_preference": ""})
    links = PurchaseLink.objects.filter(order=order)
    assert {link.sent_to for link in links} >= {"camila.lopez@example.org"}
    assert {link.sms_sent_to for link in links} >= {"+17035550100"}
    # The app reads everything back decrypted...
    assert Order.objects.get(pk=order.pk).patient_name == PATIENT_NAME
    assert LocalCommerceOrder.objects.get(pk=local.pk).confirmation["ship_to"]["line"] == [CORRECTED_LINE]
    assert EHRSite.objects.get(pk=site.pk).client_secret == CLIENT_SECRET
    # ...and no raw row anywhere holds any of it.
    assert plaintext_found(FIXTURE_PHI + chart_phi) == []
    # The scan itself works: a value in a plain column is found.
    assert ("orders_order", order.reference) in plaintext_found([order.reference])


def test_encrypted_columns_cannot_be_filtered_by_value(make_order: Callable[..., Order]) -> None:
    make_order()

    with pytest.raises(FieldError):
        Order.objects.filter(patient_name=PATIENT_NAME).exists()
    assert Order.objects.filter(patient_birth_date__isnull=False).count() == 1  # isnull works


# Encrypted columns outside the order's field table: tokens and site secrets, the banner's name on the launch, and
# the later stages' copies of the order's PHI (docs/reliability.md "PHI and secrets at rest").
OUTSIDE_THE_ORDER = {
    "commerce_local.LocalCommerceOrder.payload",
    "commerce_local.LocalCommerceOrder.confirmation",
    "ehr.Launch.access_token",
    "ehr.Launch.refresh_token",
    "ehr.Launch.patient_name",
    "ehr.EHRSite.client_secret",
    "ehr.EHRSite.private_key_pem",
    "ehr.AppSigningKey.private_jwk",
    "purchaselinks.PurchaseLink.sent_to",
    "purchaselinks.PurchaseLink.sms_sent_to",
    "intake.IntakeMessage.raw",  # the inbound message as received (issue 20)
    "intake.IntakeSite.fhir_notify_token",  # the bearer token of a site's FHIR notifications (issue 20)
    "coverage.CoverageSite.clearinghouse_api_key",  # a site's clearinghouse API key (issue 21)
    "coverage.EligibilityCheck.request",  # the 270 (or JSON) sent: the member's name, birth date, member id
    "coverage.EligibilityCheck.response",  # the 271 received
    "coverage.EligibilityCheck.answer",  # what was read from it (plan, amounts)
}


def test_every_phi_column_of_the_order_table_and_every_secret_is_encrypted() -> None:
    encrypted = {f"{model._meta.label}.{f.name}" for model, fields in encrypted_fields() for f in fields}
    order_phi = {f"orders.Order.{name}" for name in phi_columns(Phi.ENCRYPTED)}

    assert len(order_phi) >= 8 and order_phi <= encrypted  # the table's PHI rows (orders/checks.py says the rest)
    assert encrypted - order_phi == OUTSIDE_THE_ORDER


@pytest.fixture
def old_key(settings) -> str:  # type: ignore[no-untyped-def]
    """A fresh key set before any other fixture writes a row, so every encrypted value in the test is under it."""
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    return settings.FIELD_ENCRYPTION_KEYS[0]


def raw_value(table: str, column: str, pk: object) -> bytes:
    """The stored bytes of ``table.column`` for the row ``pk``, read with ``connection.cursor()``."""
    key = Order._meta.pk.get_db_prep_value(pk, connection)  # a UUID as this database stores it
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [key])
        return bytes(cursor.fetchone()[0])


def test_keys_rotate_old_key_still_decrypts_then_rotate_then_drop_it(  # type: ignore[no-untyped-def]
    old_key: str, settings, make_order: Callable[..., Order]
) -> None:
    old, new = old_key, Fernet.generate_key().decode()
    order = make_order()
    site = EHRSite.objects.create(name="Rotating", iss="https://rot.example/fhir", client_id="c", client_secret="s3")
    pk = Order.objects.get(pk=order.pk).pk
    assert Fernet(old.encode()).decrypt(raw_value("orders_order", "patient_name", pk)) == PATIENT_NAME.encode()

    settings.FIELD_ENCRYPTION_KEYS = [new, old]  # the new key first: it encrypts, both decrypt
    assert Order.objects.get(pk=order.pk).patient_name == PATIENT_NAME
    out = io.StringIO()
    call_command("encryption_rotate", "--batch-size", "1", stdout=out)
    assert "orders.Order.patient_name: 1 rotated, 0 current, 0 failed" in out.getvalue()
    assert "ehr.EHRSite.client_secret: 2 rotated" in out.getvalue()  # ful_site's empty secret is a token too
    again = encryption_rotate()
    assert sum(again.rotated.values()) == 0 and again.current["orders.Order.patient_name"] == 1  # idempotent

    settings.FIELD_ENCRYPTION_KEYS = [new]  # the old key removed
    fresh = Order.objects.get(pk=order.pk)
    assert (fresh.patient_name, fresh.patient_birth_date, fresh.ship_to) == (PATIENT_NAME, BIRTH_DATE, SHIP_TO)
    assert EHRSite.objects.get(pk=site.pk).client_secret == "s3"
    with pytest.raises(InvalidToken):
        Fernet(old.encode()).decrypt(raw_value("orders_order", "patient_name", pk))

    settings.FIELD_ENCRYPTION_KEYS = [old]  # a key that no longer matches fails loudly, never shows ciphertext
    with pytest.raises(InvalidToken):
        Order.objects.get(pk=order.pk)


def test_rotation_without_the_old_key_fails_and_changes_nothing(  # type: ignore[no-untyped-def]
    old_key: str, settings, make_order: Callable[..., Order]
) -> None:
    order = make_order()
    before = raw_value("orders_order", "patient_name", order.pk)

    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError, match="decrypt with none of FIELD_ENCRYPTION_KEYS"):
        call_command("encryption_rotate", stdout=io.StringIO())
    assert raw_value("orders_order", "patient_name", order.pk) == before
