"""Purchase links: issue, send, access, verify, complete, revoke (docs/reliability.md "Purchase links").

A link is ``{APP_BASE_URL}/p/<token>/`` with a 256-bit random token of which only the SHA-256 is stored. It
expires after ``PURCHASE_LINK_TTL_DAYS``, locks after ``PURCHASE_LINK_MAX_FAILURES`` wrong dates of birth,
is single use once completed, and revocable. Every open, verify and complete writes one audit row
(actor ``patient-link:<link id>``, target ``Order/<id>``, where = client IP). Rows recording a refusal are
written outside the refused transaction so they survive its rollback.
"""

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.text import format_lazy
from django.utils.translation import gettext_lazy

from healthcommerce.audit.services import audit_record, audit_refusal, audit_retention
from healthcommerce.orders.events import TOPIC_PATIENT_CONFIRMED, order_event_key, order_for_subject, order_subject
from healthcommerce.orders.models import Order
from healthcommerce.orders.transitions import order_event_add
from healthcommerce.outbox.models import OutboxMessage
from healthcommerce.outbox.services import outbox_publish
from healthcommerce.purchaselinks.errors import (
    EmailFailed,
    LinkUnavailable,
    NotificationFailed,
    NotSendable,
    SmsFailed,
    TooManyAttempts,
)
from healthcommerce.purchaselinks.models import PurchaseLink
from healthcommerce.purchaselinks.notify import patient_email_send, patient_phone, patient_sms_send

logger = logging.getLogger(__name__)

SYSTEM_ACTOR = "system:purchaselinks"
TOKEN_BYTES = 32  # 256 bits (docs/reliability.md "Purchase links": >= 256-bit random token)
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")
# Per client address: at most this many wrong dates of birth per fixed one-hour window (OWASP ASVS V6).
IP_FAILURE_LIMIT = 20
IP_WINDOW_SECONDS = 3600
_ORDER_CLOSED = {Order.Status.CANCELLED, Order.Status.FAILED}
EMAIL = "email"
SMS = "sms"
CHANNELS = (EMAIL, SMS)  # in sending order
# Why a text was not sent that is configuration, not something about this order: not put on its timeline.
_QUIET_SMS_REASONS = {"sms_off", "site_sms_off"}


def token_hash(token: str) -> str:
    """Return the SHA-256 hex digest (64 chars) under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def purchase_link_url(token: str) -> str:
    """Return the absolute patient URL ``{APP_BASE_URL}/p/<token>/``."""
    return settings.APP_BASE_URL.rstrip("/") + reverse("purchaselinks:start", kwargs={"token": token})


def _actor(link: PurchaseLink | None) -> str:
    return f"patient-link:{link.pk}" if link is not None else "patient-link:unknown"


def _audit(link: PurchaseLink | None, *, action: str, ip: str, outcome: str = "success", **detail: object) -> None:
    target = f"Order/{link.order_id}" if link is not None else ""
    audit_record(actor=_actor(link), action=action, target=target, where=ip, outcome=outcome, detail=detail, ip=ip)


@transaction.atomic
def purchase_link_issue(*, order: Order, actor: str = "system:purchaselinks") -> tuple[PurchaseLink, str]:
    """Create a link for ``order`` and return ``(link, raw token)``; the raw token exists only in this return.

    Idempotent per order: when an unrevoked, unexpired link exists (even locked or completed) it is
    returned with an empty token, because a stored hash cannot be turned back into a URL to re-send; use
    ``purchase_link_reissue`` to replace it. ``expires_at`` = now + ``PURCHASE_LINK_TTL_DAYS`` days.
    """
    list(Order.objects.select_for_update().filter(pk=order.pk).values_list("pk", flat=True))  # serialize per order
    now = timezone.now()
    existing = (
        PurchaseLink.objects.filter(order_id=order.pk, revoked_at__isnull=True, expires_at__gt=now)
        .order_by("-created_at")
        .first()
    )
    if existing is not None:
        return existing, ""
    return _link_create(order=order, actor=actor)


def _link_create(*, order: Order, actor: str, expires_at: datetime | None = None) -> tuple[PurchaseLink, str]:
    """Create a new link (expiring at ``expires_at``, default now + ``PURCHASE_LINK_TTL_DAYS`` days), audited."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    expires_at = expires_at or timezone.now() + timedelta(days=settings.PURCHASE_LINK_TTL_DAYS)
    link = PurchaseLink.objects.create(order=order, token_hash=token_hash(token), expires_at=expires_at)
    audit_record(
        actor=actor, action="purchase_link.issue", target=f"Order/{order.pk}", detail={"link_id": str(link.pk)}
    )
    return link, token


def purchase_link_deliver(message: OutboxMessage) -> None:
    """Handle ``order.submitted``: issue the order's purchase link and send it by email and text (ADR 0008, 0010).

    Each channel is delivered once, independently: a channel is done when a live link of the order was sent over
    it. The first try sends one link over every channel; a retry sends a fresh link over the channels still
    pending only, so a text that went out is never sent again because the email failed, nor the reverse. The
    fresh link expires with the one already delivered; the earlier link stays valid (the patient holds it), and
    completing either revokes the other. A live link sent over no channel is revoked first (its raw token no
    longer exists; none is ever stored). Texts that do not apply (``NotSendable``) count as done for this try.
    Raises ``LinkEmailFailed`` or else ``LinkSmsFailed`` (temporary) when a channel failed, after trying all.
    """
    order = order_for_subject(message.subject).select_related("site").get()
    with transaction.atomic():
        now = timezone.now()
        live = list(
            PurchaseLink.objects.select_for_update()
            .filter(order_id=order.pk, revoked_at__isnull=True, expires_at__gt=now)
            .order_by("created_at")
        )
        delivered = [link for link in live if _channels_sent(link)]
        pending = [channel for channel in CHANNELS if not any(channel in _channels_sent(link) for link in live)]
        if not _worth_a_link(order, pending):
            return
        for link in live:
            if link not in delivered:
                purchase_link_revoke(link=link, actor=SYSTEM_ACTOR)
        expires_at = delivered[0].expires_at if delivered else None
        link, token = _link_create(order=order, actor=SYSTEM_ACTOR, expires_at=expires_at)
    purchase_link_send(link=link, token=token, channels=pending, raise_on_error=True)


def _channels_sent(link: PurchaseLink) -> set[str]:
    sent = {EMAIL: link.sent_at, SMS: link.sms_sent_at}
    return {channel for channel, at in sent.items() if at is not None}


def _worth_a_link(order: Order, pending: Sequence[str]) -> bool:
    """Whether a pending channel may send something: email always tries (and records why not), a text only when
    it applies to this order."""
    if EMAIL in pending:
        return True
    if SMS not in pending:
        return False
    try:
        patient_phone(order)
    except NotSendable:
        return False
    return True


def _expiry_day(link: PurchaseLink) -> date:
    """The link's last day (``TIME_ZONE``); the message template writes it in the patient's language."""
    return timezone.localdate(link.expires_at)


@transaction.atomic
def _link_not_sent(link: PurchaseLink, reason: str, channel: str = "") -> None:
    detail = {"reason": reason, "link_id": str(link.pk)} | ({"channel": channel} if channel else {})
    order_event_add(order=link.order, kind="link_not_sent", actor=SYSTEM_ACTOR, detail=detail)
    logger.info(
        "purchase link not sent order=%s link=%s channel=%s reason=%s",
        link.order.reference,
        link.pk,
        channel or "all",
        reason,
    )


class LinkEmailFailed(EmailFailed):
    """The mail relay refused or did not answer; the outbox sends the link again later (temporary)."""

    message = "The purchase link email could not be sent."


class LinkSmsFailed(SmsFailed):
    """The SMS provider failed or did not answer; the outbox texts the link again later (temporary)."""

    message = "The purchase link text message could not be sent."


def purchase_link_send(
    *, link: PurchaseLink, token: str, channels: Sequence[str] = CHANNELS, raise_on_error: bool = False
) -> list[str]:
    """Send the link over each of ``channels`` (``"email"``, ``"sms"``, in that order); return those it went out on.

    Email: to ``order.contact_email``, subject ``"Your order HC-XXXX is ready"``, the URL and the expiry date; in
    the patient's language (``Order.patient_language``, applied by ``notify``).
    Text (``notify.patient_sms_send``: the site enables it, a mobile number): the site's name, the URL and the
    expiry date. Neither holds clinical details (not even the product) nor the patient's name. Each send records
    ``sent_to``/``sent_at`` (email) or ``sms_sent_to``/``sms_sent_at`` (text) and a ``link_sent`` OrderEvent with
    its ``channel``. A channel that does not apply records ``link_not_sent`` with ``channel`` and ``reason``
    (``no_contact_email``, ``no_contact_phone``, ``phone_unparseable``, ``phone_not_mobile``, ``sms_rejected``;
    texts turned off for the site or globally record nothing); without a date of birth to verify against nothing
    is sent (``no_birth_date``). A relay or provider failure records ``email_error`` or ``sms_error``, logs an
    ERROR, and the other channel is still tried; with ``raise_on_error`` it then raises ``LinkEmailFailed`` or
    else ``LinkSmsFailed`` (temporary: the outbox retries).
    """
    if link.order.patient_birth_date is None:
        _link_not_sent(link, "no_birth_date")
        return []
    sent, failed = [], []
    for channel in channels:
        try:
            _send_over(channel, link=link, token=token)
        except NotSendable as exc:
            if not (channel == SMS and exc.reason in _QUIET_SMS_REASONS):
                _link_not_sent(link, exc.reason, channel)
            continue
        except NotificationFailed as exc:
            _link_not_sent(link, exc.code, channel)
            failed.append(channel)
            continue
        sent.append(channel)
    if failed and raise_on_error:
        raise LinkEmailFailed() if EMAIL in failed else LinkSmsFailed()
    return sent


def _send_over(channel: str, *, link: PurchaseLink, token: str) -> None:
    """Send ``link`` over ``channel`` and record it; raises what ``notify`` raises."""
    order = link.order
    context: dict[str, Any] = {"url": purchase_link_url(token), "expires": _expiry_day(link)}
    reminder = link.purpose == PurchaseLink.Purpose.REMINDER
    if channel == EMAIL:
        subject = format_lazy(
            gettext_lazy("Reminder: your order {reference} is waiting for you")
            if reminder
            else gettext_lazy("Your order {reference} is ready"),
            reference=order.reference,
        )
        template = f"purchaselinks/messages/{link.purpose}_email.txt"
        context["reference"] = order.reference  # in the email only: a text shows on a lock screen
        address = patient_email_send(order=order, subject=subject, template=template, context=context)
        fields = {"sent_to": address, "sent_at": timezone.now()}
    else:
        context["clinic"] = order.site.name
        template = f"purchaselinks/messages/{link.purpose}_sms.txt"
        number = patient_sms_send(order=order, template=template, context=context)
        fields = {"sms_sent_to": number, "sms_sent_at": timezone.now()}
    with transaction.atomic():
        for name, value in fields.items():
            setattr(link, name, value)
        link.save(update_fields=[*fields, "updated_at"])
        detail = {"link_id": str(link.pk), "channel": channel} | ({"reminder": True} if reminder else {})
        order_event_add(order=order, kind="link_sent", actor=SYSTEM_ACTOR, detail=detail)


def _tracking_since() -> datetime:
    """Links completed after this instant still open the tracking page (``PURCHASE_LINK_TRACKING_DAYS``)."""
    return timezone.now() - timedelta(days=settings.PURCHASE_LINK_TRACKING_DAYS)


def _unavailable_reason(link: PurchaseLink, *, allow_completed: bool = False) -> str:
    """Return why ``link`` cannot be used now, or ``""``. With ``allow_completed`` a link completed within
    ``PURCHASE_LINK_TRACKING_DAYS`` is usable (for the tracking page), whatever its expiry or order status."""
    if link.revoked_at is not None:
        return "revoked"
    if link.completed_at is not None:
        if allow_completed and link.locked_at is None and link.completed_at > _tracking_since():
            return ""
        return "completed"
    if link.locked_at is not None:
        return "locked"
    if link.expires_at <= timezone.now():
        return "expired"
    if link.order.status in _ORDER_CLOSED:
        return f"order_{link.order.status}"
    if link.order.patient_birth_date is None:
        return "no_birth_date"
    return ""


def purchase_link_access(
    *, token: str | None = None, link_id: str | None = None, allow_completed: bool = False
) -> PurchaseLink:
    """Return the usable link for a raw ``token`` or, on the pages after the first, the ``link_id`` the session
    was bound to (with its order, site and product loaded).

    The one access helper: raises ``LinkUnavailable`` with the same patient-facing message for an unknown
    or tampered token, an expired, revoked, locked or completed link, or a cancelled/failed order; the
    ``reason`` attribute tells which, and ``link`` is set when the link was found (for the audit row).
    ``allow_completed`` also accepts a link completed within ``PURCHASE_LINK_TRACKING_DAYS`` (the tracking page).
    """
    links = PurchaseLink.objects.select_related("order", "order__product", "order__site")
    if link_id is not None:
        link = links.filter(pk=link_id).first()
    elif _TOKEN_RE.fullmatch(token or ""):
        link = links.filter(token_hash=token_hash(token or "")).first()
    else:
        raise LinkUnavailable("malformed")
    if link is None:
        raise LinkUnavailable("unknown")
    reason = _unavailable_reason(link, allow_completed=allow_completed)
    if reason:
        raise LinkUnavailable(reason, link=link)
    return link


def purchase_link_open(
    *,
    ip: str,
    token: str | None = None,
    link_id: str | None = None,
    action: str = "purchase_link.open",
    audit_success: bool = True,
    allow_completed: bool = False,
) -> PurchaseLink:
    """``purchase_link_access`` plus its audit row under ``action`` (``purchase_link.open``, ``.view``...).

    A refusal is always audited with its reason; pass ``audit_success=False`` when the service called next
    (verify, complete) writes the success row itself. A token that matches no link (``malformed``, ``unknown``)
    is anyone's guess, so those refusals are aggregated per client network and 10 minutes (``audit_refusal``)
    instead of one row each. Raises ``LinkUnavailable``.
    """
    try:
        link = purchase_link_access(token=token, link_id=link_id, allow_completed=allow_completed)
    except LinkUnavailable as exc:
        if exc.link is None:
            audit_refusal(action=action, reason=exc.reason, actor=_actor(None), ip=ip)
        else:
            _audit(exc.link, action=action, ip=ip, outcome=exc.reason)
        raise
    if audit_success:
        _audit(link, action=action, ip=ip)
    return link


def _ip_key(ip: str) -> str:
    window = int(time.time() // IP_WINDOW_SECONDS)
    return f"purchaselinks:ipfail:{hashlib.sha256(ip.encode()).hexdigest()[:32]}:{window}"


def _ip_failure_add(ip: str) -> None:
    key = _ip_key(ip)
    cache.add(key, 0, timeout=IP_WINDOW_SECONDS)
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=IP_WINDOW_SECONDS)


def purchase_link_verify(*, link: PurchaseLink, birth_date: date, ip: str) -> bool:
    """Check the patient's date of birth; return ``True`` (and set ``verified_at``) only when it matches a
    link that may still be used, ``False`` for a wrong date and for a link that is locked or no longer usable.

    An attempt is reserved before the comparison: a conditional UPDATE adds one to ``failed_attempts`` only
    while it is below ``PURCHASE_LINK_MAX_FAILURES`` on an unlocked, usable link, so however many guesses arrive
    at once, at most that many are ever compared (OWASP ASVS V2.2.1). A match clears the count; a miss that
    reaches the limit locks the link. The caller answers wrong, locked and unusable alike. A link completed
    within ``PURCHASE_LINK_TRACKING_DAYS`` can be verified again (to see its tracking page). Raises
    ``TooManyAttempts`` after ``IP_FAILURE_LIMIT`` misses from ``ip`` within the hour. Audited.
    """
    if (cache.get(_ip_key(ip)) or 0) >= IP_FAILURE_LIMIT:
        _audit(link, action="purchase_link.verify", ip=ip, outcome="ip_rate_limited")
        raise TooManyAttempts()
    now = timezone.now()
    max_failures = settings.PURCHASE_LINK_MAX_FAILURES
    usable = PurchaseLink.objects.filter(pk=link.pk, locked_at__isnull=True, revoked_at__isnull=True).filter(
        Q(completed_at__isnull=True, expires_at__gt=now) | Q(completed_at__gt=_tracking_since())
    )
    reserved = usable.filter(failed_attempts__lt=max_failures).update(failed_attempts=F("failed_attempts") + 1)
    if not reserved:
        link.refresh_from_db()
        reason = _unavailable_reason(link, allow_completed=True) or "locked"
        _audit(link, action="purchase_link.verify", ip=ip, outcome=f"refused_{reason}")  # never compared
        _ip_failure_add(ip)
        return False
    expected = link.order.patient_birth_date
    if expected is not None and hmac.compare_digest(birth_date.isoformat(), expected.isoformat()):
        PurchaseLink.objects.filter(pk=link.pk).update(failed_attempts=0, verified_at=now)
        link.verified_at, link.failed_attempts = now, 0
        _audit(link, action="purchase_link.verify", ip=ip)
        return True
    PurchaseLink.objects.filter(pk=link.pk, locked_at__isnull=True, failed_attempts__gte=max_failures).update(
        locked_at=now
    )
    link.refresh_from_db(fields=["failed_attempts", "locked_at"])
    outcome = "locked" if link.locked_at is not None else "wrong_birth_date"
    _audit(link, action="purchase_link.verify", ip=ip, outcome=outcome, failed_attempts=link.failed_attempts)
    _ip_failure_add(ip)
    return False


def purchase_link_complete(
    *,
    link: PurchaseLink,
    actor_ip: str,
    delivery_preference: str = "",
    terms_version: str = "",
    paid: bool = False,
) -> PurchaseLink:
    """Record the patient's confirmation: set ``completed_at`` (single use from now on), keep the delivery
    preference and the version of the terms the patient accepted (with the time) on the order, add a
    ``patient_confirmed`` OrderEvent, and publish ``order.patient_confirmed`` (fulfillment tells the backend,
    with a corrected ship-to and the preference: ``commerce_confirmation_build``).

    Requires a verified, usable link; otherwise raises ``LinkUnavailable``. With ``paid`` (the payment
    succeeded: ``purchase_link_paid``) the link's expiry and lock no longer matter, and the choices recorded
    before the payment (``purchase_link_choices_record``) stand. Audited either way.
    """
    now = timezone.now()
    usable = PurchaseLink.objects.filter(
        pk=link.pk, completed_at__isnull=True, revoked_at__isnull=True, verified_at__isnull=False
    )
    if not paid:
        usable = usable.filter(locked_at__isnull=True, expires_at__gt=now)
    try:
        with transaction.atomic():
            updated = usable.update(completed_at=now)
            if updated != 1:
                raise LinkUnavailable("not_completable", link=link)
            order = Order.objects.select_for_update().get(pk=link.order_id)
            if order.status in _ORDER_CLOSED:
                raise LinkUnavailable(f"order_{order.status}", link=link)
            if terms_version:
                Order.objects.filter(pk=order.pk).update(
                    delivery_preference=delivery_preference, terms_version=terms_version, terms_accepted_at=now
                )
            detail = {"link_id": str(link.pk), "terms_version": terms_version}
            order_event_add(order=order, kind="patient_confirmed", actor=_actor(link), detail=detail)
            # The order's other link (a retry sent it over another channel, ADR 0010) has no use left.
            for sibling in PurchaseLink.objects.filter(order_id=order.pk, revoked_at__isnull=True).exclude(pk=link.pk):
                purchase_link_revoke(link=sibling, actor=SYSTEM_ACTOR)
            outbox_publish(topic=TOPIC_PATIENT_CONFIRMED, key=order_event_key(order), subject=order_subject(order))
            _audit(link, action="purchase_link.complete", ip=actor_ip)
    except LinkUnavailable as exc:
        _audit(link, action="purchase_link.complete", ip=actor_ip, outcome=exc.reason)
        raise
    link.completed_at = now
    return link


@transaction.atomic
def purchase_link_choices_record(*, link: PurchaseLink, delivery_preference: str, terms_version: str) -> None:
    """Keep the patient's delivery preference and accepted terms (with the time) on the order before the payment
    step; the link is completed when the payment succeeds (``purchase_link_paid``)."""
    Order.objects.filter(pk=link.order_id).update(
        delivery_preference=delivery_preference, terms_version=terms_version, terms_accepted_at=timezone.now()
    )


def purchase_link_paid(*, order: Order, payment_id: str) -> PurchaseLink | None:
    """Complete the order's purchase link once its payment succeeded (``payments.payment_succeeded``, in its
    transaction): the verified, unrevoked link the patient paid through, even if it expired while Stripe
    answered. Adds ``patient_confirmed`` and publishes ``order.patient_confirmed``. Returns the link, or ``None``
    when it was already completed; logs an ALERT when the order has no such link (paid, but no link to complete:
    someone must look)."""
    link = (
        PurchaseLink.objects.filter(order_id=order.pk, revoked_at__isnull=True, verified_at__isnull=False)
        .order_by("-verified_at")
        .first()
    )
    if link is None:
        logger.error("ALERT paid order has no verified link order=%s payment=%s", order.reference, payment_id)
        return None
    if link.completed_at is not None:
        return None
    return purchase_link_complete(link=link, actor_ip="stripe", paid=True)


@transaction.atomic
def purchase_link_ship_to_change(*, link: PurchaseLink, address: dict[str, Any], actor_ip: str) -> Order:
    """Record the patient's corrected ship-to (``Order.ship_to`` shape, from ``AddressForm.cleaned_address``) in
    ``Order.patient_ship_to``; the signed ``ship_to`` is never changed. Adds a ``ship_to_changed_by_patient``
    event naming the changed fields (no values) and an audit row. Requires a verified link not yet completed;
    raises ``LinkUnavailable`` otherwise."""
    order = Order.objects.select_for_update().get(pk=link.order_id)
    if link.completed_at is not None or link.verified_at is None or order.status in _ORDER_CLOSED:
        raise LinkUnavailable("not_changeable", link=link)
    before = order.current_ship_to
    changed = sorted(
        key for key in ("line", "city", "state", "postal_code", "country") if before.get(key) != address.get(key)
    )
    if not changed:
        return order
    Order.objects.filter(pk=order.pk).update(patient_ship_to=address)
    order.patient_ship_to = address
    detail = {"link_id": str(link.pk), "fields": changed}
    order_event_add(order=order, kind="ship_to_changed_by_patient", actor=_actor(link), detail=detail)
    _audit(link, action="purchase_link.ship_to_change", ip=actor_ip, fields=changed)
    return order


@transaction.atomic
def purchase_link_language_set(*, link: PurchaseLink, language: str, actor_ip: str) -> bool:
    """Record ``language`` (a code of ``settings.LANGUAGES``), chosen by the patient with the switch on the pages
    of a verified session, as the language to write to them in (``Order.patient_language``): later emails and
    texts follow it (``notify``). Returns True when it changed (audited as ``purchase_link.language``), False
    when it already was that language. Idempotent.

    Raises ``LinkUnavailable("not_verified")`` for a link not verified yet, ``ValueError`` for an unsupported code.
    """
    if language not in dict(settings.LANGUAGES):
        raise ValueError(f"unsupported language {language!r}")
    if link.verified_at is None:
        raise LinkUnavailable("not_verified", link=link)
    changed = (
        Order.objects.filter(pk=link.order_id)
        .exclude(patient_language=language)
        .update(patient_language=language, updated_at=timezone.now())
    )
    if changed:
        _audit(link, action="purchase_link.language", ip=actor_ip, language=language)
    return changed == 1


@transaction.atomic
def purchase_link_revoke(*, link: PurchaseLink, actor: str) -> PurchaseLink:
    """Revoke ``link`` (idempotent); record a ``link_revoked`` OrderEvent and an audit row."""
    now = timezone.now()
    if PurchaseLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(revoked_at=now) == 1:
        detail = {"link_id": str(link.pk)}
        order_event_add(order=link.order, kind="link_revoked", actor=actor, detail=detail)
        audit_record(actor=actor, action="purchase_link.revoke", target=f"Order/{link.order_id}", detail=detail)
    link.refresh_from_db(fields=["revoked_at"])
    return link


def purchase_link_reissue(*, order: Order, actor: str) -> list[str]:
    """Revoke the order's live links, issue a new one and send it by email and, where texts apply, by text;
    return the channels it went out on (``purchase_link_send``; failures are on the timeline, never raised).

    For an admin when the first message was lost or the patient locked the link.
    """
    with transaction.atomic():
        for link in PurchaseLink.objects.select_for_update().filter(order_id=order.pk, revoked_at__isnull=True):
            purchase_link_revoke(link=link, actor=actor)
        link, token = purchase_link_issue(order=order, actor=actor)
    return purchase_link_send(link=link, token=token)


@transaction.atomic
def purchase_links_phi_purge() -> int:
    """Blank where the links of PHI-purged orders (``Order.phi_purged_at``) were sent (``sent_to``,
    ``sms_sent_to``), revoke those still open (``revoked_at``: the patient's birth date is gone, so the link could
    only fail) and set ``phi_purged_at``; return how many links. One ``retention.purge`` audit row with the counts
    (docs/reliability.md "Retention"). Run daily by beat after the orders' purge
    (``healthcommerce.purchaselinks.tasks.purge``); idempotent.
    """
    now = timezone.now()
    due = PurchaseLink.objects.filter(order__phi_purged_at__isnull=False, phi_purged_at__isnull=True)
    ids = list(due.select_for_update().values_list("pk", flat=True))
    links = PurchaseLink.objects.filter(pk__in=ids)
    revoked = links.filter(revoked_at__isnull=True).update(revoked_at=now)
    purged = links.update(sent_to="", sms_sent_to="", phi_purged_at=now, updated_at=now)
    audit_retention(target="PurchaseLink", counts={"purchase_links": purged, "revoked": revoked})
    if purged:
        logger.info("retention: purged the addresses of %d purchase link(s), %d revoked", purged, revoked)
    return purged
