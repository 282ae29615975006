"""Alert rules over the integration buckets and the outbox (docs/reliability.md "Integration health").

Each rule returns ``Observation``s: per site a value, its threshold and the sentence an alert opens with. A site
with a live alert and no observation counts as clear, unless the rule returns it in ``held`` (the silence rule
outside working hours: neither opened nor resolved). Texts name a site, an endpoint kind and numbers: no PHI.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Min

from healthcommerce.monitoring.selectors import Tally, tallies
from healthcommerce.outbox.models import OutboxMessage


@dataclass(frozen=True)
class Observation:
    """``value`` against ``threshold`` (breach when greater) for ``site``, with the alert's ``text``."""

    site: str
    value: float
    threshold: float
    text: str


@dataclass
class Evaluation:
    """What one rule saw: ``observations`` and the sites whose alerts it leaves as they are (``held``)."""

    observations: list[Observation] = field(default_factory=list)
    held: set[str] = field(default_factory=set)


def _classes(tally: Tally, excluding: frozenset[str] = frozenset()) -> str:
    parts = sorted(((n, o) for o, n in tally.by_outcome.items() if o != "ok" and o not in excluding), reverse=True)
    return ", ".join(f"{o} {n}" for n, o in parts)


def _rate(
    window: dict[tuple[str, str], Tally], *, group: str, threshold: float, label: str, excluding: frozenset[str]
) -> Evaluation:
    minutes = settings.ALERT_WINDOW_MINUTES
    found = Evaluation()
    for (site, kind), tally in window.items():
        if kind != group or tally.total < settings.ALERT_MIN_CALLS:
            continue
        errors = tally.errors(excluding=excluding)
        rate = 100.0 * errors / tally.total
        text = (
            f"{label.format(site=site)} at {rate:.0f}% over the last {minutes} minutes (threshold {threshold:.0f}%): "
            f"{errors} of {tally.total} calls ({_classes(tally, excluding)})"
        )
        found.observations.append(Observation(site, rate, threshold, text))
    return found


def auth_failures(now: datetime, window: dict[tuple[str, str], Tally]) -> Evaluation:
    """Share of token endpoint calls that failed (any class but ``ok``), per site, in percent."""
    return _rate(
        window,
        group="token",
        threshold=settings.ALERT_AUTH_FAILURE_PERCENT,
        label="Authentication failures on {site} token endpoint",
        excluding=frozenset(),
    )


def fhir_errors(now: datetime, window: dict[tuple[str, str], Tally]) -> Evaluation:
    """Share of FHIR reads that failed, per site, in percent; 404 is an answer (no such record), not a failure."""
    return _rate(
        window,
        group="fhir",
        threshold=settings.ALERT_ERROR_PERCENT,
        label="FHIR errors on {site}",
        excluding=frozenset({"404"}),
    )


def commerce_errors(now: datetime, window: dict[tuple[str, str], Tally]) -> Evaluation:
    """Share of commerce calls that failed, per backend (``commerce:<name>``), in percent; 409 (a replay of a
    known idempotency key) is counted as ``4xx`` and so as a failure only when it dominates."""
    return _rate(
        window,
        group="commerce",
        threshold=settings.ALERT_ERROR_PERCENT,
        label="Commerce errors on {site}",
        excluding=frozenset(),
    )


def _unanswered(window: dict[tuple[str, str], Tally], kind: str, sentence: str) -> Evaluation:
    """Share of the calls of endpoint ``kind`` that got no good answer, per label, in percent, against
    ``ALERT_ERROR_PERCENT``, once a label has ``ALERT_MIN_CALLS`` in the window. ``sentence`` is the alert's text
    with ``{label}``, ``{errors}``, ``{total}``, ``{minutes}``, ``{classes}`` and ``{threshold}`` to fill."""
    minutes = settings.ALERT_WINDOW_MINUTES
    threshold = settings.ALERT_ERROR_PERCENT
    found = Evaluation()
    for (label, group), tally in window.items():
        if group != kind or tally.total < settings.ALERT_MIN_CALLS:
            continue
        errors = tally.errors()
        values = {"label": label, "errors": errors, "total": tally.total, "minutes": minutes}
        text = sentence.format(**values, classes=_classes(tally), threshold=f"{threshold:.0f}")
        found.observations.append(Observation(label, 100.0 * errors / tally.total, threshold, text))
    return found


def hl7_status(now: datetime, window: dict[tuple[str, str], Tally]) -> Evaluation:
    """Share of HL7 v2 status messages (``orders.hl7status``, endpoint kind ``hl7_status``) a site's interface
    engine did not accept with AA (an AE or AR, no answer in time, no connection), per site, in percent, once the
    site has ``ALERT_MIN_CALLS`` of them in the window (retries count: one message a peer keeps refusing is tried
    ``FULFILLMENT_MAX_ATTEMPTS`` times within minutes)."""
    return _unanswered(
        window,
        "hl7_status",
        "{label}: HL7 status peer not acknowledging: {errors} of {total} status messages over the last {minutes} "
        "minutes got no AA ({classes}; threshold {threshold}%)",
    )


def eligibility(now: datetime, window: dict[tuple[str, str], Tally]) -> Evaluation:
    """Share of eligibility checks (``coverage.services``, endpoint kind ``eligibility``) that got no answer from the
    payer (timeout, refused, 429, 5xx, 4xx, the payer "unable to respond", an unreadable 271), per site,
    clearinghouse and payer (the label ``<site>: <clearinghouse> <payer id>``), in percent, once there are
    ``ALERT_MIN_CALLS`` in the window. A rejection (member not found, coverage inactive) is an answer, not an error."""
    return _unanswered(
        window,
        "eligibility",
        "{label}: eligibility checks not answered: {errors} of {total} over the last {minutes} minutes ({classes}; "
        "threshold {threshold}%); patients see unconfirmed estimates meanwhile",
    )


def working_hours(now: datetime) -> bool:
    """Say whether ``now`` is within ``ALERT_WORKING_HOURS`` (``[start, end)`` hours) on ``ALERT_WORKING_DAYS``
    (0 = Monday) in ``ALERT_TIMEZONE``."""
    local = now.astimezone(ZoneInfo(settings.ALERT_TIMEZONE))
    start, end = settings.ALERT_WORKING_HOURS
    return local.weekday() in settings.ALERT_WORKING_DAYS and start <= local.hour < end


# Endpoint groups whose quiet says nothing about the site: HL7 status messages and eligibility checks follow orders,
# not clinicians' use.
UNWATCHED_FOR_SILENCE = frozenset({"hl7_status", "eligibility"})


def silence(now: datetime, window: dict[tuple[str, str], Tally]) -> Evaluation:
    """A site with at least ``ALERT_SILENCE_MIN_CALLS`` calls in the ``ALERT_SILENCE_LOOKBACK_HOURS`` before the
    last ``ALERT_SILENCE_MINUTES`` and none since, in working hours: value 1 (threshold 0.5), else 0. Outside
    working hours every site is held. Commerce backends are not watched: they are called only after a signature; nor
    are a site's HL7 status messages (``UNWATCHED_FOR_SILENCE``)."""
    found = Evaluation()
    quiet = settings.ALERT_SILENCE_MINUTES
    recent_from = now - timedelta(minutes=quiet)
    before = tallies(since=recent_from - timedelta(hours=settings.ALERT_SILENCE_LOOKBACK_HOURS), until=recent_from)
    recent = tallies(since=recent_from)
    sites: dict[str, int] = {}
    for (site, kind), tally in before.items():
        if not site.startswith("commerce:") and site not in {"alerts", "unknown"} and kind not in UNWATCHED_FOR_SILENCE:
            sites[site] = sites.get(site, 0) + tally.total
    if not working_hours(now):
        found.held |= set(sites)
        return found
    for site, earlier in sites.items():
        if earlier < settings.ALERT_SILENCE_MIN_CALLS:
            continue
        now_calls = sum(t.total for (s, k), t in recent.items() if s == site and k not in UNWATCHED_FOR_SILENCE)
        text = (
            f"No calls to {site} for {quiet} minutes in working hours "
            f"({earlier} calls in the {settings.ALERT_SILENCE_LOOKBACK_HOURS} hours before)"
        )
        found.observations.append(Observation(site, 1.0 if now_calls == 0 else 0.0, 0.5, text))
    return found


def outbox_lag(now: datetime, window: dict[tuple[str, str], Tally]) -> Evaluation:
    """Seconds the oldest due ``pending`` outbox row has waited (site ``pipeline``)."""
    oldest = OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING, available_at__lte=now).aggregate(
        oldest=Min("available_at")
    )["oldest"]
    lag = (now - oldest).total_seconds() if oldest else 0.0
    threshold = float(settings.ALERT_OUTBOX_LAG_SECONDS)
    text = f"Outbox lag at {lag:.0f} s (threshold {threshold:.0f} s): are the Celery workers consuming the queue?"
    return Evaluation([Observation("pipeline", lag, threshold, text)])


def dead_letters(now: datetime, window: dict[tuple[str, str], Tally]) -> Evaluation:
    """Outbox rows dead-lettered in the last ``ALERT_WINDOW_MINUTES`` (site ``pipeline``; threshold 0)."""
    minutes = settings.ALERT_WINDOW_MINUTES
    count = OutboxMessage.objects.filter(
        status=OutboxMessage.Status.DEAD, updated_at__gte=now - timedelta(minutes=minutes)
    ).count()
    text = f"{count} outbox dead letters in the last {minutes} minutes (threshold 0): see Outbox messages in the admin"
    return Evaluation([Observation("pipeline", float(count), 0.0, text)])


RULES = {
    "auth_failures": auth_failures,
    "fhir_errors": fhir_errors,
    "commerce_errors": commerce_errors,
    "silence": silence,
    "outbox_lag": outbox_lag,
    "dead_letters": dead_letters,
    "hl7_status": hl7_status,
    "eligibility": eligibility,
}
