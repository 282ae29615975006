"""Eligibility checks (ADR 0026): ask the payer, through the site's clearinghouse, whether a member's coverage is
active and what they will pay for the service type, and keep the answer.

``eligibility_check`` is the one way to ask. It takes what the 270 needs and nothing else (``Subscriber``: name,
birth date, member id; the payer record; the provider's NPI; the service type), so no diagnosis, note or request
text can reach a clearinghouse. It stores the check (what was sent and what came back, encrypted), counts it
(``core.metrics`` endpoint kind ``eligibility``, labelled ``<site>: <clearinghouse> <payer id>``, and
``hc_eligibility_answers_total``), and writes an audit row: a disclosure of PHI to a business associate.

Callers: orders' ``orders.eligibility`` outbox subscriber after sign-off (trigger ``signed``) and the patient's
checkout when the last answer is older than the site's ``answer_max_age_hours`` (trigger ``checkout``).
"""

import datetime
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass
from uuid import UUID

from django.conf import settings
from django.db import transaction
from django.db.models import Exists
from django.utils import timezone
from prometheus_client import Counter

from healthcommerce.audit.services import audit_record
from healthcommerce.catalog.models import Payer
from healthcommerce.core import metrics
from healthcommerce.core.errors import OutboundRefused
from healthcommerce.coverage import types
from healthcommerce.coverage.clearinghouse import ClearinghouseConfig, ClearinghouseError, clearinghouse_for
from healthcommerce.coverage.models import ControlNumber, CoverageSite, EligibilityCheck
from healthcommerce.ehr.models import EHRSite

logger = logging.getLogger(__name__)

ENDPOINT_KIND = "eligibility"
ANSWERS = Counter(
    "hc_eligibility_answers_total",
    "Eligibility checks by clearinghouse, payer id and outcome (coverage.types.OUTCOMES, or failed:<error>).",
    ["clearinghouse", "payer", "outcome"],
)
# How a readable answer counts in the integration buckets: the payer's own "cannot answer now" is an error of the
# integration (the alert names it); every other answer, a rejection included, is the payer answering.
_BUCKET_OUTCOME = {types.PAYER_UNAVAILABLE: "unavailable", types.UNREADABLE: "other"}


@dataclass(frozen=True)
class Subscriber:
    """The member as the 270's loop 2100C names them: ``first_name``, ``last_name``, ``birth_date``, ``member_id``
    (the Coverage's ``subscriberId``). PHI: never logged."""

    first_name: str
    last_name: str
    birth_date: datetime.date
    member_id: str


class EligibilityNotPossible(Exception):
    """The check cannot be made as configured (``reason`` names what is missing, no PHI): eligibility off, the
    payer has no payer id, the member has no id or birth date, no provider NPI. Permanent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def member_digest(*, site: EHRSite, payer_id: str, member_id: str) -> str:
    """Return the HMAC-SHA256 (hex, 64 characters) of the site, payer id and member id, keyed with the Django
    ``SECRET_KEY``: finds a member's last answer without storing the member id in clear."""
    text = f"{site.pk}|{payer_id.strip().upper()}|{member_id.strip().upper()}"
    return hmac.new(settings.SECRET_KEY.encode(), text.encode(), hashlib.sha256).hexdigest()


def eligibility_wanted(*, site: EHRSite, payer: Payer | None) -> bool:
    """Whether a check can be asked for at ``site`` for ``payer``: the site has checks on and the payer record has
    a clearinghouse payer id."""
    return bool(payer is not None and payer.payer_id and CoverageSite.of(site).eligibility_enabled)


def payer_checkable(*, site: EHRSite, payer_pk: UUID | str) -> bool:
    """``eligibility_wanted`` for a payer record known by its key, in one statement: the record has a clearinghouse
    payer id and ``site`` has checks on (for sign-off, where the payer is not loaded)."""
    enabled = CoverageSite.objects.filter(site=site, eligibility_enabled=True)
    return Payer.objects.filter(pk=payer_pk).exclude(payer_id="").filter(Exists(enabled)).exists()


def clearinghouse_config(site_settings: CoverageSite, *, timeout: float | None = None) -> ClearinghouseConfig:
    """Return the clearinghouse adapter's configuration from a site's eligibility settings; ``timeout`` (seconds)
    overrides the site's ``timeout_seconds``."""
    return ClearinghouseConfig(
        kind=site_settings.clearinghouse,
        url=site_settings.clearinghouse_url,
        api_key=site_settings.clearinghouse_api_key,
        timeout_seconds=float(timeout or site_settings.timeout_seconds),
    )


def _control_number() -> int:
    """Return the next interchange control number, 1 to 999,999,999."""
    return (ControlNumber.objects.create().pk - 1) % 999_999_999 + 1


def eligibility_check(
    *,
    site: EHRSite,
    subject: str,
    payer: Payer,
    subscriber: Subscriber,
    provider_npi: str,
    service_type: str,
    trigger: str,
    timeout: float | None = None,
) -> EligibilityCheck:
    """Ask ``payer`` whether ``subscriber`` is covered for ``service_type`` (``types.SERVICE_TYPE_DME`` or
    ``SERVICE_TYPE_LAB``) and return the stored ``EligibilityCheck`` (``outcome`` one of ``types.OUTCOMES``).

    ``subject`` is the order asked for (``Order/<id>``); ``provider_npi`` the signing practitioner's, used when the
    site names no supplier NPI; ``trigger`` an ``EligibilityCheck.Trigger``; ``timeout`` (seconds) overrides the
    site's for a caller that cannot wait (checkout).

    Raises ``EligibilityNotPossible`` (permanent) when it cannot be asked (settings or data missing, an element the
    270 cannot carry such as an NPI that is not ten digits, a clearinghouse URL the outbound rules refuse), and
    ``ClearinghouseError`` when no answer came (timeout, refused, 429, 5xx, 4xx: ``temporary`` says whether to
    retry); the failed check is stored first (outcome ``failed``). Source: ASC X12N 005010X279A1; HIPAA
    164.312(b) (the audit row).
    """
    site_settings = CoverageSite.of(site)
    npi = site_settings.provider_npi or provider_npi
    missing = [
        label
        for label, value in {
            "eligibility is off at this site": site_settings.eligibility_enabled,
            "the payer record has no payer id": payer.payer_id,
            "the order has no member id": subscriber.member_id.strip(),
            "the order has no birth date": subscriber.birth_date,
            "no provider NPI": npi,
        }.items()
        if not value
    ] + site_settings.needs()
    if missing:
        raise EligibilityNotPossible("; ".join(missing))
    config = clearinghouse_config(site_settings, timeout=timeout)
    adapter = clearinghouse_for(config)
    check = EligibilityCheck(
        site=site,
        subject=subject,
        member_digest=member_digest(site=site, payer_id=payer.payer_id, member_id=subscriber.member_id),
        payer=payer,
        clearinghouse_payer_id=payer.payer_id,
        clearinghouse=config.name[:120],
        control_number=_control_number(),
        service_type=service_type,
        trigger=trigger,
    )
    inquiry = types.EligibilityInquiry(
        control_number=check.control_number,
        trace=check.pk.hex,
        submitter_id=site_settings.submitter_id or "HEALTHCOMMERCE",
        receiver_id=site_settings.receiver_id or "CLEARINGHOUSE",
        payer_id=payer.payer_id,
        payer_name=payer.name,
        provider_npi=npi,
        provider_name=site_settings.provider_name or site.name,
        member_id=subscriber.member_id.strip(),
        first_name=subscriber.first_name,
        last_name=subscriber.last_name,
        birth_date=subscriber.birth_date,
        service_type=service_type,
        service_date=timezone.localdate(),
        usage=site_settings.usage,
    )
    started = time.monotonic()
    try:
        exchange = adapter.eligibility(inquiry)
    except (ValueError, OutboundRefused) as exc:  # an inquiry a 270 cannot carry, a URL the outbound rules refuse
        raise EligibilityNotPossible(str(exc)) from exc
    except ClearinghouseError as exc:
        check.outcome, check.error, check.request = EligibilityCheck.FAILED, exc.outcome, exc.request
        check.seconds = time.monotonic() - started
        _record(check, bucket=exc.outcome, label=f"failed:{exc.outcome}")
        raise
    check.outcome = exchange.answer.outcome
    check.reason_code = exchange.answer.reason_code[:4]
    check.answer = exchange.answer.to_json()
    check.request, check.response, check.seconds = exchange.request, exchange.response, exchange.seconds
    _record(check, bucket=_BUCKET_OUTCOME.get(check.outcome, "ok"), label=check.outcome)
    return check


def _record(check: EligibilityCheck, *, bucket: str, label: str) -> None:
    """Store ``check`` with its audit row, and count it (integration bucket ``bucket``, answers counter ``label``)."""
    with transaction.atomic():
        check.save()
        audit_record(
            actor=f"system:eligibility:{check.trigger}",
            action="coverage.eligibility",
            target=check.subject,
            where=check.clearinghouse,
            outcome="success" if check.outcome != EligibilityCheck.FAILED else "failure",
            detail={"payer_id": check.clearinghouse_payer_id, "outcome": check.outcome, "error": check.error},
            site=check.site.name[:100],
        )
    metrics.record(
        site=f"{check.site.name}: {check.clearinghouse} {check.clearinghouse_payer_id}"[:100],
        endpoint=ENDPOINT_KIND,
        outcome=bucket if bucket in metrics.OUTCOMES else "other",
        seconds=check.seconds,
    )
    ANSWERS.labels(check.clearinghouse.split(":")[0], check.clearinghouse_payer_id[:40], label).inc()
    logger.info(
        "eligibility site=%s payer=%s outcome=%s error=%s seconds=%.2f",
        check.site_id,
        check.clearinghouse_payer_id,
        check.outcome,
        check.error,
        check.seconds,
    )


def eligibility_latest(
    *, site: EHRSite, payer: Payer | None, member_id: str, service_type: str
) -> EligibilityCheck | None:
    """Return the newest check with an answer (not ``failed``) for this member of ``payer`` at ``site`` about
    ``service_type``, or None."""
    if payer is None or not payer.payer_id or not member_id.strip():
        return None
    digest = member_digest(site=site, payer_id=payer.payer_id, member_id=member_id)
    return (
        EligibilityCheck.objects.filter(site=site, member_digest=digest, service_type=service_type)
        .exclude(outcome=EligibilityCheck.FAILED)
        .defer("request", "response")
        .order_by("-created_at")
        .first()
    )


def eligibility_fresh(check: EligibilityCheck | None) -> bool:
    """Whether ``check`` answered (not ``payer_unavailable``) within its site's ``answer_max_age_hours``."""
    if check is None or check.outcome in (EligibilityCheck.FAILED, types.PAYER_UNAVAILABLE):
        return False
    age = timezone.now() - check.created_at
    return age <= datetime.timedelta(hours=CoverageSite.of(check.site).answer_max_age_hours)
