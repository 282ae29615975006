"""Admin: purchase links are listed without their token hash and can be revoked or replaced."""

import sms
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core import mail

from healthcommerce.purchaselinks.models import PatientLinkSite, PurchaseLink

LINKS = "/admin/purchaselinks/purchaselink/"


def test_the_list_shows_the_order_reference_but_never_the_token_or_its_hash(admin_client, issued) -> None:
    link, token = issued
    for url in (LINKS, f"{LINKS}{link.id}/change/"):
        response = admin_client.get(url)
        body = response.content.decode()
        assert response.status_code == 200
        assert link.order.reference in body
        assert token not in body
        assert link.token_hash not in body


def test_revoke_action_revokes(admin_client, issued) -> None:
    link, _ = issued
    admin_client.post(LINKS, {"action": "revoke", ACTION_CHECKBOX_NAME: [str(link.id)]})
    link.refresh_from_db()
    assert link.revoked_at is not None


def test_reissue_action_sends_a_new_link(admin_client, issued) -> None:
    link, _ = issued
    admin_client.post(LINKS, {"action": "reissue", ACTION_CHECKBOX_NAME: [str(link.id)]})
    assert PurchaseLink.objects.filter(order=link.order).count() == 2
    assert len(mail.outbox) == 1


def test_reissue_action_also_texts_when_the_site_enables_texts(admin_client, issued) -> None:
    link, _ = issued
    PatientLinkSite.objects.filter(site_id=link.order.site_id).update(sms_enabled=True)
    response = admin_client.post(LINKS, {"action": "reissue", ACTION_CHECKBOX_NAME: [str(link.id)]}, follow=True)
    assert len(mail.outbox) == 1 and len(sms.outbox) == 1
    assert "1 new link(s) issued, 1 emailed, 1 texted" in response.content.decode()
