"""Admin: the outbox is read-only with "retry now"; local orders are shipped and delivered by actions."""

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME

from healthcommerce.audit.models import AuditEvent
from healthcommerce.fulfillment.backends.local.models import LocalCommerceOrder
from healthcommerce.orders.models import Order, OrderEvent
from healthcommerce.outbox.models import OutboxMessage
from tests.pipeline import deliver

OUTBOX = "/admin/outbox/outboxmessage/"
LOCAL = "/admin/commerce_local/localcommerceorder/"


def test_the_outbox_list_shows_rows_and_offers_no_add(admin_client, message: OutboxMessage, order: Order) -> None:
    response = admin_client.get(OUTBOX)
    assert response.status_code == 200
    assert f"Order/{order.id}" in response.content.decode()
    assert admin_client.get(f"{OUTBOX}add/").status_code == 403
    assert admin_client.get(f"{OUTBOX}{message.id}/change/").status_code == 200


def test_retry_now_resets_a_dead_row(admin_client, message: OutboxMessage) -> None:
    OutboxMessage.objects.filter(pk=message.pk).update(
        status=OutboxMessage.Status.DEAD, attempts=8, last_error="http_503"
    )
    response = admin_client.post(OUTBOX, {"action": "retry_now", ACTION_CHECKBOX_NAME: [str(message.id)]})
    assert response.status_code == 302
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxMessage.Status.PENDING, 0)


def test_mark_shipped_asks_for_tracking_numbers_then_ships(admin_client, message: OutboxMessage, order: Order) -> None:
    deliver(message)
    local = LocalCommerceOrder.objects.get()
    ask = admin_client.post(LOCAL, {"action": "mark_shipped", ACTION_CHECKBOX_NAME: [str(local.id)]})
    assert ask.status_code == 200
    assert f'name="tracking_{local.id}"' in ask.content.decode()

    done = admin_client.post(
        LOCAL,
        {
            "action": "mark_shipped",
            ACTION_CHECKBOX_NAME: [str(local.id)],
            "confirm": "yes",
            f"tracking_{local.id}": "1Z42",
        },
    )
    assert done.status_code == 302
    local.refresh_from_db()
    assert (local.status, local.tracking_number) == (LocalCommerceOrder.Status.SHIPPED, "1Z42")
    assert Order.objects.get(pk=order.pk).status == Order.Status.FULFILLED
    assert OrderEvent.objects.get(order=order, kind="shipped").actor == "admin:admin"

    admin_client.post(LOCAL, {"action": "mark_delivered", ACTION_CHECKBOX_NAME: [str(local.id)]})
    local.refresh_from_db()
    assert local.status == LocalCommerceOrder.Status.DELIVERED


def test_mark_shipped_takes_a_carrier_and_links_the_carriers_tracking_page(
    admin_client, message: OutboxMessage, order: Order
) -> None:
    deliver(message)
    local = LocalCommerceOrder.objects.get()
    ask = admin_client.post(LOCAL, {"action": "mark_shipped", ACTION_CHECKBOX_NAME: [str(local.id)]}).content.decode()
    assert f'<select name="carrier_{local.id}"' in ask and '<option value="usps">USPS</option>' in ask
    assert '<option value="other">Other</option>' in ask and f'name="tracking_url_{local.id}"' in ask

    ship = {"action": "mark_shipped", ACTION_CHECKBOX_NAME: [str(local.id)], "confirm": "yes"}
    admin_client.post(LOCAL, {**ship, f"carrier_{local.id}": "usps", f"tracking_{local.id}": "9400 1000"})
    order.refresh_from_db()
    assert (order.carrier, order.tracking_number) == ("USPS", "9400 1000")
    assert order.tracking_url == "https://tools.usps.com/go/TrackConfirmAction?tLabels=9400%201000"
    local.refresh_from_db()
    assert (local.carrier, local.tracking_url) == ("USPS", order.tracking_url)


def test_mark_shipped_takes_another_carriers_name_and_refuses_a_url_that_is_not_https(
    admin_client, message: OutboxMessage, order: Order
) -> None:
    deliver(message)
    local = LocalCommerceOrder.objects.get()
    ship = {"action": "mark_shipped", ACTION_CHECKBOX_NAME: [str(local.id)], "confirm": "yes"}
    fields = {f"carrier_{local.id}": "other", f"carrier_other_{local.id}": "OnTrac", f"tracking_{local.id}": "C1"}
    refused = admin_client.post(
        LOCAL, {**ship, **fields, f"tracking_url_{local.id}": "javascript:alert(1)"}, follow=True
    )
    assert "The tracking URL must start with https://" in refused.content.decode()
    local.refresh_from_db()
    assert local.status != LocalCommerceOrder.Status.SHIPPED and Order.objects.get(pk=order.pk).tracking_url == ""

    admin_client.post(LOCAL, {**ship, **fields, f"tracking_url_{local.id}": "https://www.ontrac.com/t/C1"})
    order.refresh_from_db()
    assert (order.carrier, order.tracking_number, order.tracking_url) == ("OnTrac", "C1", "https://www.ontrac.com/t/C1")


def test_a_backwards_mark_is_reported_not_raised(admin_client, message: OutboxMessage) -> None:
    deliver(message)
    local = LocalCommerceOrder.objects.get()
    response = admin_client.post(
        LOCAL, {"action": "mark_delivered", ACTION_CHECKBOX_NAME: [str(local.id)]}, follow=True
    )
    assert response.status_code == 200
    assert "Mark the order shipped first." in response.content.decode()


def test_opening_a_local_order_is_audited(admin_client, message: OutboxMessage) -> None:
    deliver(message)
    local = LocalCommerceOrder.objects.get()
    response = admin_client.get(f"{LOCAL}{local.id}/change/")
    assert response.status_code == 200
    assert "7525 Colshire Dr" in response.content.decode()
    assert AuditEvent.objects.filter(
        action="admin.phi.view", target=f"LocalCommerceOrder/{local.id}", actor="admin:admin"
    ).exists()


def test_the_change_form_offers_no_save_and_a_post_changes_nothing(admin_client, message: OutboxMessage) -> None:
    url = f"{OUTBOX}{message.id}/change/"
    assert 'name="_save"' not in admin_client.get(url).content.decode()
    admin_client.post(url, {"status": "done", "attempts": "99"})
    message.refresh_from_db()
    assert (message.status, message.attempts) == (OutboxMessage.Status.PENDING, 0)


def test_the_local_orders_old_admin_address_redirects_to_the_moved_page(admin_client, message: OutboxMessage) -> None:
    deliver(message)
    local = LocalCommerceOrder.objects.get()
    old = "/admin/fulfillment/localcommerceorder/"

    listed = admin_client.get(f"{old}?status=received")
    changed = admin_client.get(f"{old}{local.pk}/change/")

    assert (listed.status_code, listed["Location"]) == (301, f"{LOCAL}?status=received")
    assert (changed.status_code, changed["Location"]) == (301, f"{LOCAL}{local.pk}/change/")
    assert admin_client.get(listed["Location"]).status_code == 200
