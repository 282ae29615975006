"""Reminders before a purchase link expires (issue 8 "Messages"; docs/reliability.md "Purchase links").

Beat runs ``purchase_link_reminders_due`` every hour. For each order still waiting for the patient whose link
expires within ``PURCHASE_LINK_REMINDER_HOURS`` and was sent at least ``PURCHASE_LINK_REMINDER_MIN_AGE_HOURS``
ago, it publishes one ``purchase_link.reminder_due`` outbox row (idempotency key
``<order id>:reminder:<expiry, epoch seconds>``: one reminder per link expiry, however often beat runs or how many
beat processes run). A worker delivers it to ``purchase_link_remind``, which sends a fresh link that expires with
the first one (the raw token of the first link is never stored, so it cannot be sent again) over email and text,
with the reminder templates. Each channel is retried on its own through the outbox, like the first link
(ADR 0010). No reminder goes to a link that is locked, revoked, completed or expired, nor for an order that is
no longer waiting (cancelled, failed, fulfilled, or confirmed by the patient).
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from healthcommerce.orders.events import order_for_subject, order_subject
from healthcommerce.orders.models import Order
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_publish
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.services import (
    CHANNELS,
    SYSTEM_ACTOR,
    _channels_sent,
    _link_create,
    _worth_a_link,
    purchase_link_revoke,
    purchase_link_send,
)

logger = logging.getLogger(__name__)

TOPIC_LINK_REMINDER_DUE = "purchase_link.reminder_due"


def reminder_key(order: Order, link: PurchaseLink) -> str:
    """The reminder's idempotency key: ``<order id>:reminder:<link expiry as epoch seconds>``."""
    return f"{order.pk}:reminder:{int(link.expires_at.timestamp())}"


def _waiting_links() -> list[PurchaseLink]:
    """Live first links (purpose ``link``) of orders still waiting for the patient, whose expiry falls within the
    reminder window and that went out over some channel long enough ago; newest per order first."""
    window = timedelta(hours=settings.PURCHASE_LINK_REMINDER_HOURS)
    min_age = timedelta(hours=settings.PURCHASE_LINK_REMINDER_MIN_AGE_HOURS)
    now = timezone.now()
    other_links = PurchaseLink.objects.filter(order_id=OuterRef("order_id"))
    return list(
        PurchaseLink.objects.select_related("order")
        .filter(
            purpose=PurchaseLink.Purpose.LINK,
            order__status=Order.Status.SUBMITTED,
            revoked_at__isnull=True,
            completed_at__isnull=True,
            locked_at__isnull=True,
            expires_at__gt=now,
            expires_at__lte=now + window,
            created_at__lte=now - min_age,
        )
        .filter(Q(sent_at__isnull=False) | Q(sms_sent_at__isnull=False))
        # Not when the patient already confirmed through another link, or someone is guessing on one.
        .exclude(Exists(other_links.filter(Q(completed_at__isnull=False) | Q(locked_at__isnull=False))))
        .order_by("order_id", "-created_at")
    )


def purchase_link_reminders_due() -> int:
    """Publish a ``purchase_link.reminder_due`` outbox row for every order whose link is about to expire (see the
    module docstring); return how many rows were new. Idempotent: a reminder already published for the same
    expiry is not published again. ``PURCHASE_LINK_REMINDER_HOURS`` = 0 turns reminders off (returns 0)."""
    if settings.PURCHASE_LINK_REMINDER_HOURS <= 0:
        return 0
    published = 0
    seen: set[object] = set()
    for link in _waiting_links():
        if link.order_id in seen:
            continue
        seen.add(link.order_id)
        key = reminder_key(link.order, link)
        if OutboxMessage.objects.filter(idempotency_key=key).exists():
            continue
        with transaction.atomic():
            outbox_publish(topic=TOPIC_LINK_REMINDER_DUE, key=key, subject=order_subject(link.order))
        published += 1
    if published:
        logger.info("purchase link reminders published count=%d", published)
    return published


def purchase_link_remind(message: OutboxMessage) -> None:
    """Handle ``purchase_link.reminder_due``: send the order's patient a reminder with a fresh link.

    The fresh link (purpose ``reminder``) expires with the first link, starts with its count of wrong dates of
    birth (so a reminder never adds guesses), and goes over each channel the first one may use (email always, a
    text where ``_worth_a_link`` says it applies). On a retry, a channel a reminder link already went out on is not
    used again and a reminder link sent over no channel is revoked first (its raw token is gone). Does nothing
    when the order is no longer waiting or its link is no longer live (locked, revoked, completed, expired).
    Raises ``LinkEmailFailed`` or else ``LinkSmsFailed`` (temporary: the outbox retries) when a channel failed.
    """
    order = order_for_subject(message.subject).select_related("site").get()
    with transaction.atomic():
        now = timezone.now()
        links = list(PurchaseLink.objects.select_for_update().filter(order_id=order.pk).order_by("created_at"))
        live = [link for link in links if link.revoked_at is None and link.expires_at > now]
        firsts = [link for link in live if link.purpose == PurchaseLink.Purpose.LINK]
        if not _still_waiting(order, links, firsts):
            logger.info("purchase link reminder skipped order=%s", order.reference)
            return
        reminders = [link for link in live if link.purpose == PurchaseLink.Purpose.REMINDER]
        done = set().union(*(_channels_sent(link) for link in reminders))
        pending = [channel for channel in CHANNELS if channel not in done]
        if not _worth_a_link(order, pending):
            return
        link, token = _reminder_link_create(order, live=live, first=firsts[-1], reminders=reminders)
    purchase_link_send(link=link, token=token, channels=pending, raise_on_error=True)


def _still_waiting(order: Order, links: list[PurchaseLink], firsts: list[PurchaseLink]) -> bool:
    """Whether ``order`` still waits for its patient: submitted, with a live first link, and no link of it
    completed or locked (``links``: all of the order's links; ``firsts``: its live first links)."""
    if order.status != Order.Status.SUBMITTED or not firsts:
        return False
    return not any(link.completed_at is not None or link.locked_at is not None for link in links)


def _reminder_link_create(
    order: Order, *, live: list[PurchaseLink], first: PurchaseLink, reminders: list[PurchaseLink]
) -> tuple[PurchaseLink, str]:
    """Revoke the reminder links that went out nowhere (their raw tokens are gone), then make the reminder link
    (purpose ``reminder``) expiring with ``first`` and carrying the most wrong dates of birth of any ``live``
    link; return it with its raw token. Runs inside ``purchase_link_remind``'s transaction."""
    for link in reminders:
        if not _channels_sent(link):
            purchase_link_revoke(link=link, actor=SYSTEM_ACTOR)
    link, token = _link_create(order=order, actor=SYSTEM_ACTOR, expires_at=first.expires_at)
    link.purpose = PurchaseLink.Purpose.REMINDER
    link.failed_attempts = max(candidate.failed_attempts for candidate in live)
    link.save(update_fields=["purpose", "failed_attempts", "updated_at"])
    return link, token
