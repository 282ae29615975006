"""Read-only queries over the integration buckets and alerts (docs/style.md 1)."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import F, QuerySet, Sum

from healthcommerce.monitoring.models import Alert, IntegrationMinute


@dataclass
class Tally:
    """Calls of one site over a window: ``total``, ``by_outcome`` (outcome class -> calls) per endpoint group."""

    total: int = 0
    by_outcome: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def errors(self, *, excluding: frozenset[str] = frozenset()) -> int:
        """Return the calls whose outcome is not ``ok`` nor in ``excluding``."""
        return sum(n for outcome, n in self.by_outcome.items() if outcome != "ok" and outcome not in excluding)


def endpoint_group(endpoint: str) -> str:
    """Return the group an endpoint kind belongs to: ``fhir`` for ``fhir:<type>``, ``commerce`` for
    ``commerce_*``, the kind itself otherwise (``token``, ``discovery``, ``jwks``, ``style``, ``sign_to_ack``)."""
    if endpoint.startswith("fhir:"):
        return "fhir"
    if endpoint.startswith("commerce_"):
        return "commerce"
    return endpoint


def tallies(*, since: datetime, until: datetime | None = None) -> dict[tuple[str, str], Tally]:
    """Return ``{(site, endpoint group): Tally}`` of the calls in minutes ``[since, until)`` (``sign_to_ack`` is
    not a call and is left out)."""
    rows = IntegrationMinute.objects.filter(minute__gte=since).exclude(endpoint="sign_to_ack")
    if until is not None:
        rows = rows.filter(minute__lt=until)
    found: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for site, endpoint, outcome, count in rows.values_list("site", "endpoint", "outcome").annotate(n=Sum("count")):
        tally = found[(site, endpoint_group(endpoint))]
        tally.total += count
        tally.by_outcome[outcome] += count
    return dict(found)


def sites_seen(*, since: datetime) -> list[str]:
    """Return the site labels with a bucket since ``since``, sorted."""
    return sorted(set(IntegrationMinute.objects.filter(minute__gte=since).values_list("site", flat=True)))


def alerts_live() -> QuerySet[Alert]:
    """Return the alerts not resolved (pending and open), newest first."""
    return Alert.objects.exclude(status=Alert.Status.RESOLVED)


@dataclass
class Series:
    """One site's last hours in ``step``-minute slots, oldest first: ``starts`` (aware datetimes), ``calls``,
    ``errors`` (outcome class -> list per slot), ``fhir_ms`` and ``commerce_ms`` (mean latency, milliseconds,
    ``None`` with no call), ``sign_to_ack_s`` (mean seconds or ``None``)."""

    starts: list[datetime]
    calls: list[int]
    errors: dict[str, list[int]]
    fhir_ms: list[float | None]
    commerce_ms: list[float | None]
    sign_to_ack_s: list[float | None]
    by_endpoint: dict[str, dict[str, int]]


def site_series(*, site: str, until: datetime, hours: int = 24, step: int = 30) -> Series:
    """Return ``Series`` for ``site`` over the ``hours`` before ``until`` in slots of ``step`` minutes, and the
    calls per endpoint kind and outcome class (``by_endpoint``) over the whole span."""
    slots = hours * 60 // step
    start = until - timedelta(minutes=slots * step)
    starts = [start + timedelta(minutes=i * step) for i in range(slots)]
    calls = [0] * slots
    errors: dict[str, list[int]] = defaultdict(lambda: [0] * slots)
    sums = {g: ([0.0] * slots, [0] * slots) for g in ("fhir", "commerce", "sign_to_ack")}
    by_endpoint: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows = (
        IntegrationMinute.objects.filter(site=site, minute__gte=start, minute__lt=until)
        .values("minute", "endpoint", "outcome")
        .annotate(n=Sum("count"), seconds=Sum(F("latency_sum")))
    )
    for row in rows:
        slot = int((row["minute"] - start).total_seconds() // (step * 60))
        if not 0 <= slot < slots:
            continue
        group = endpoint_group(row["endpoint"])
        if group in sums:
            sums[group][0][slot] += row["seconds"] or 0.0
            sums[group][1][slot] += row["n"]
        if group == "sign_to_ack":
            continue
        calls[slot] += row["n"]
        by_endpoint[row["endpoint"]][row["outcome"]] += row["n"]
        if row["outcome"] != "ok":
            errors[row["outcome"]][slot] += row["n"]

    def means(group: str, scale: float) -> list[float | None]:
        total, count = sums[group]
        return [total[i] / count[i] * scale if count[i] else None for i in range(slots)]

    return Series(
        starts=starts,
        calls=calls,
        errors=dict(errors),
        fhir_ms=means("fhir", 1000.0),
        commerce_ms=means("commerce", 1000.0),
        sign_to_ack_s=means("sign_to_ack", 1.0),
        by_endpoint={k: dict(v) for k, v in sorted(by_endpoint.items())},
    )
