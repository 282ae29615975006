"""The intake messages' admin: read-only, filtered by ACK code and site, the raw message never on a page."""

from collections.abc import Iterator

import pytest

from healthcommerce.intake.models import IntakeMessage
from healthcommerce.intake.registry import intake_handler_register, intake_handler_unregister
from healthcommerce.intake.services import intake_hl7_receive
from tests.intake.hl7core import TEST_TYPE, Recorder, hl7_site, message

pytestmark = pytest.mark.django_db


@pytest.fixture
def handler() -> Iterator[Recorder]:
    recorder = Recorder()
    intake_handler_register(TEST_TYPE, recorder)
    yield recorder
    intake_handler_unregister(TEST_TYPE)


def test_the_admin_lists_and_shows_messages_without_their_raw_content(admin_client, handler: Recorder) -> None:  # type: ignore[no-untyped-def]
    hl7_site()
    intake_hl7_receive(message(control_id="ADM1").encode())
    intake_hl7_receive(message(control_id="ADM2", order_control="XO").encode())
    stored = IntakeMessage.objects.get(control_id="ADM2")

    listing = admin_client.get("/admin/intake/intakemessage/", {"ack_code__exact": "AE"})
    page = admin_client.get(f"/admin/intake/intakemessage/{stored.pk}/change/")

    assert listing.status_code == 200 and page.status_code == 200
    assert "ADM2" in listing.content.decode() and "ADM1" not in listing.content.decode()
    for body in (listing.content.decode(), page.content.decode()):
        assert "Doe" not in body and "E11.9" not in body and "Springfield" not in body
    assert "ORC-1" in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.get("/admin/intake/intakemessage/add/").status_code == 403
