"""Writing, sealing and verifying audit rows (HIPAA 45 CFR 164.312(b); docs/reliability.md "Audit"; ADR 0015).

Call ``audit_record`` inside the service that does the audited action, so the row commits or rolls back with it;
write a refusal after the refused transaction rolled back. Unauthenticated refusals (an unknown ``/p/`` token, an
unknown ``iss``, a bad ``state``, a failed admin login) go through ``audit_refusal``, which aggregates them.

Rows are inserted unsealed (no lock between writers). ``audit_seal`` then chains them under a PostgreSQL advisory
lock: ``seq`` 1, 2, ..., ``prev_hash`` the previous row's ``hash``, ``hash`` = SHA-256 of ``audit_canonical``. It
runs after each commit that wrote a row (in the web and HL7 processes on a timer of their own instead,
``AuditSealTimer``) and from beat every minute; ``audit_verify`` recomputes the chain.
"""

import hashlib
import ipaddress
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache
from django.db import DatabaseError, IntegrityError, connection, transaction

from healthcommerce.audit.context import USER_AGENT_MAX, current_place
from healthcommerce.audit.models import GENESIS_HASH, AuditEvent

logger = logging.getLogger(__name__)

SEAL_LOCK_KEY = 0x48434155  # "HCAU": the one advisory lock key of the sealer
SEAL_BATCH = 2000
# Unauthenticated refusals: one counter per (action, reason, client network, site) and window; a row is written
# at the 1st, 10th, 100th... hit of a window, and at most REFUSAL_MAX_NETWORKS networks per action get rows of
# their own in one window (the rest are counted under the network "*").
REFUSAL_WINDOW_SECONDS = 600
REFUSAL_MAX_NETWORKS = 200
_CHAINED = (
    "id",
    "created_at",
    "actor",
    "action",
    "target",
    "where",
    "outcome",
    "detail",
    "site",
    "ip",
    "user_agent",
    "launch_id",
)


def _row(
    *,
    actor: str,
    action: str,
    target: str = "",
    where: str = "",
    outcome: str = "success",
    detail: dict[str, Any] | None = None,
    site: str = "",
    ip: str | None = None,
    user_agent: str | None = None,
    launch_id: object = "",
) -> AuditEvent:
    place = current_place()
    return AuditEvent(
        actor=actor[:300],
        action=action[:80],
        target=target[:300],
        where=where[:300],
        outcome=outcome[:80],
        detail=detail or {},
        site=site[:300],
        ip=(place.ip if ip is None else ip)[:64],
        user_agent=(place.user_agent if user_agent is None else user_agent)[:USER_AGENT_MAX],
        launch_id=str(launch_id or "")[:64],
    )


def audit_record(
    *,
    actor: str,
    action: str,
    target: str = "",
    where: str = "",
    outcome: str = "success",
    detail: dict[str, Any] | None = None,
    site: str = "",
    ip: str | None = None,
    user_agent: str | None = None,
    launch_id: object = "",
) -> AuditEvent:
    """Insert and return one ``AuditEvent``; it is sealed after the transaction commits.

    ``detail`` must hold no PHI (ids, counts, status codes and field names only). ``ip`` and ``user_agent``
    default to the current request's (``audit.context``; empty outside a request); ``site`` is the EHR site's
    ``iss`` and ``launch_id`` the launch's id when the action belongs to one. Too-long values are cut.
    """
    event = _row(
        actor=actor,
        action=action,
        target=target,
        where=where,
        outcome=outcome,
        detail=detail,
        site=site,
        ip=ip,
        user_agent=user_agent,
        launch_id=launch_id,
    )
    event.save(force_insert=True)
    _seal_after_commit()
    return event


def audit_retention(*, target: str, counts: dict[str, int]) -> AuditEvent:
    """Write a retention job's one ``retention.purge`` row (actor ``system:retention``): ``target`` names what
    was purged (a model, or ``Launch.tokens``), ``counts`` how many and the retention setting used, e.g.
    ``{"orders": 3, "retention_days": 365}`` (docs/reliability.md "Retention"; counts only, no PHI)."""
    return audit_record(actor="system:retention", action="retention.purge", target=target, detail=counts)


def audit_record_many(*, records: Sequence[dict[str, Any]]) -> list[AuditEvent]:
    """Insert one ``AuditEvent`` per item of ``records`` (each holds ``audit_record``'s keyword arguments) in one
    statement and return them; for a service that did the same action on many targets in one transaction
    (``fulfillment_submit_batch``). Same rule: ``detail`` holds no PHI."""
    events = AuditEvent.objects.bulk_create([_row(**record) for record in records])
    _seal_after_commit()
    return events


def _network(ip: str) -> str:
    """Return the client's network: ``a.b.c.0/24`` for IPv4, the ``/64`` for IPv6, ``""`` when unparseable."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def _count(key: str) -> int:
    """Add one to the cache counter ``key`` (kept for two windows) and return it."""
    cache.add(key, 0, timeout=2 * REFUSAL_WINDOW_SECONDS)
    try:
        return int(cache.incr(key))
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=2 * REFUSAL_WINDOW_SECONDS)
        return 1


def _refusal_key(scope: str, part: str) -> str:
    return "audit:refusal:" + hashlib.sha256(f"{scope}|{part}".encode()).hexdigest()[:32]


def _power_of_ten(count: int) -> bool:
    while count >= 10 and count % 10 == 0:
        count //= 10
    return count == 1


def audit_refusal(
    *,
    action: str,
    reason: str,
    actor: str = "anonymous",
    ip: str | None = None,
    site: str = "",
    target: str = "",
    detail: dict[str, Any] | None = None,
) -> AuditEvent | None:
    """Record a refusal of an unauthenticated request without letting a flood of them flood the table.

    Hits are counted in the cache per (``action``, ``reason``, client network, ``site``, ``actor``) and 10-minute window
    (``REFUSAL_WINDOW_SECONDS``); a row is written only at the 1st, 10th, 100th, ... hit of a window, with
    ``outcome`` = ``reason``, ``ip`` = the client's ``/24`` (IPv4) or ``/64`` (IPv6) network and ``detail``
    ``{"aggregated": true, "count": <hits so far>, "window_start": <ISO 8601>, "window_seconds": 600}``. Past
    ``REFUSAL_MAX_NETWORKS`` networks with rows in one window for ``action``, further networks are counted together
    under ``ip`` ``"*"``. Returns the row written, or ``None`` when the hit was only counted. Written at once (in
    autocommit it commits alone): call it outside the refused transaction.
    """
    network = _network(current_place().ip if ip is None else ip)
    window = int(time.time()) // REFUSAL_WINDOW_SECONDS * REFUSAL_WINDOW_SECONDS
    scope = f"{action}|{reason}|{site}|{actor}|{window}"
    key = _refusal_key(scope, network)
    count = _count(key)
    if count == 1 and _count(_refusal_key(scope, "networks")) > REFUSAL_MAX_NETWORKS:
        cache.set(key + ":overflow", 1, timeout=2 * REFUSAL_WINDOW_SECONDS)
    if cache.get(key + ":overflow"):
        network = "*"
        count = _count(_refusal_key(scope, network))
    if not _power_of_ten(count):
        return None
    aggregate = {
        "aggregated": True,
        "count": count,
        "window_start": datetime.fromtimestamp(window, tz=UTC).isoformat(),
        "window_seconds": REFUSAL_WINDOW_SECONDS,
    }
    return audit_record(
        actor=actor,
        action=action,
        target=target,
        where=network,
        outcome=reason,
        site=site,
        ip=network,
        detail=(detail or {}) | aggregate,
    )


def audit_canonical(event: AuditEvent) -> bytes:
    """Return the bytes a row's ``hash`` covers: compact JSON with sorted keys (UTF-8) of ``seq``, ``prev_hash`` and
    every recorded column (``_CHAINED``); ``created_at`` in UTC ISO 8601 with microseconds, ``id`` as text."""
    values: dict[str, Any] = {name: getattr(event, name) for name in _CHAINED}
    values["id"] = str(event.id)
    values["created_at"] = event.created_at.astimezone(UTC).isoformat(timespec="microseconds")
    values["seq"], values["prev_hash"] = event.seq, event.prev_hash
    return json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def audit_hash(event: AuditEvent) -> str:
    """Return the SHA-256 hex digest of ``audit_canonical(event)``."""
    return hashlib.sha256(audit_canonical(event)).hexdigest()


def _locked(wait: bool) -> bool:
    """Take the sealer's transaction-scoped advisory lock on PostgreSQL (always ``True`` elsewhere)."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        if wait:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
            return True
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [SEAL_LOCK_KEY])
        return bool(cursor.fetchone()[0])


def _seal_batch(wait: bool) -> int:
    with transaction.atomic():
        if not _locked(wait):
            return 0
        head = AuditEvent.objects.filter(seq__isnull=False).order_by("-seq").values_list("seq", "hash").first()
        seq, prev = (head[0] or 0, head[1] or "") if head is not None else (0, GENESIS_HASH)
        rows = list(AuditEvent.objects.filter(hash__isnull=True).order_by("created_at", "id")[:SEAL_BATCH])
        for event in rows:
            seq += 1
            event.seq, event.prev_hash = seq, prev
            event.hash = prev = audit_hash(event)
        AuditEvent.objects.bulk_update(rows, ["seq", "prev_hash", "hash"], batch_size=500)
        return len(rows)


def audit_seal(*, wait: bool = False) -> int:
    """Seal every committed unsealed row into the chain, oldest ``created_at`` first; return how many were sealed.

    One sealer at a time: on PostgreSQL it holds ``pg_advisory_xact_lock(SEAL_LOCK_KEY)`` for each batch of
    ``SEAL_BATCH`` rows (without ``wait`` it returns 0 at once when another sealer holds it; the next run seals).
    Writers never wait for it. Idempotent; a race that slips past the lock (SQLite) fails on the unique ``seq``
    and seals nothing. Each batch is one short transaction. Raises what the database raises, except that race.
    """
    total = 0
    while True:
        try:
            sealed = _seal_batch(wait)
        except IntegrityError:
            logger.warning("audit seal: another sealer won the race; nothing sealed this time")
            return total
        total += sealed
        if sealed < SEAL_BATCH:
            return total


def _seal_now() -> None:
    try:
        audit_seal()
    except DatabaseError as exc:  # never fail the request that committed; beat seals within a minute
        logger.warning("audit seal after commit failed: %s", type(exc).__name__)


# Whether this process seals after each commit that wrote audit rows (the default). A process that writes many small
# transactions, or serves requests, seals on a timer of its own instead (``audit_seal_after_commit``,
# ``AuditSealTimer``); then a commit that wrote rows only sets ``_PENDING``.
_SEAL_AFTER_COMMIT = True
_PENDING = threading.Event()


def audit_seal_after_commit(enabled: bool) -> None:
    """Turn this process's seal after each commit on or off. Off, the process must run ``audit_seal`` on a timer of its
    own (``manage.py hl7_listen`` seals every ``AUDIT_SEAL_INTERVAL`` seconds, a gunicorn worker runs an
    ``AuditSealTimer``): the rows are the same, only when they are chained moves, and beat's ``seal`` still runs
    every minute (ADR 0015)."""
    global _SEAL_AFTER_COMMIT
    _SEAL_AFTER_COMMIT = enabled


def _seal_after_commit() -> None:
    """Seal once the current transaction commits (at once in autocommit); once per transaction. When this process
    seals on its own timer (``audit_seal_after_commit``), only mark a seal as due once the transaction commits."""
    conn = transaction.get_connection()
    func = _seal_now if _SEAL_AFTER_COMMIT else _PENDING.set
    if conn.in_atomic_block and any(queued is func for _sids, queued, _robust in conn.run_on_commit):
        return
    transaction.on_commit(func)


class AuditSealTimer:
    """A daemon thread that runs ``audit_seal`` every ``interval`` seconds when this process committed audit rows
    since the last run, so sealing is off the request path (issue 22); the process's seal after each commit is
    off while it runs. ``start()`` once per process (gunicorn's ``post_worker_init``), ``stop()`` on the way out
    (``worker_exit``): it seals what is left. A database error is logged and left to the next run (and to beat,
    every minute). Its database connection is its own (Django's are per thread)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="audit-seal", daemon=True)

    def start(self) -> None:
        """Turn the seal after commit off and start the thread."""
        audit_seal_after_commit(False)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread after one last seal (waiting at most ``timeout`` seconds); seal after commit again."""
        self._stop.set()
        self._thread.join(timeout)
        audit_seal_after_commit(True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._seal_if_pending()
        self._seal_if_pending()
        connection.close()

    def _seal_if_pending(self) -> None:
        if not _PENDING.is_set():
            return
        _PENDING.clear()
        try:
            connection.close_if_unusable_or_obsolete()
            audit_seal()
        except DatabaseError as exc:
            _PENDING.set()
            connection.close()
            logger.warning("audit seal on the timer failed: %s", type(exc).__name__)


@dataclass(frozen=True)
class ChainReport:
    """What ``audit_verify`` found: ``sealed`` and ``unsealed`` row counts, the ``head`` seq and hash, and the first
    broken link (``broken_seq``, ``broken_id``, ``problem``: ``seq_gap``, ``prev_hash_mismatch``,
    ``hash_mismatch``) or ``None``."""

    sealed: int
    unsealed: int
    head_seq: int
    head_hash: str
    broken_seq: int | None = None
    broken_id: str = ""
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


def audit_verify() -> ChainReport:
    """Recompute the chain from ``seq`` 1 and return a ``ChainReport`` naming the first broken link.

    A changed column shows as ``hash_mismatch`` on its row; a deleted or inserted row as ``seq_gap`` or
    ``prev_hash_mismatch`` on the row after it. Rows deleted from the head are not visible to the chain alone:
    compare ``head_seq``/``head_hash`` with a copy kept elsewhere (ADR 0015). Read-only.
    """
    expected_seq, prev, sealed = 1, GENESIS_HASH, 0
    rows = AuditEvent.objects.filter(seq__isnull=False).order_by("seq")
    for event in rows.iterator(chunk_size=SEAL_BATCH):
        problem = ""
        if event.seq != expected_seq:
            problem = "seq_gap"
        elif event.prev_hash != prev:
            problem = "prev_hash_mismatch"
        elif event.hash != audit_hash(event):
            problem = "hash_mismatch"
        if problem:
            unsealed = AuditEvent.objects.filter(hash__isnull=True).count()
            return ChainReport(sealed, unsealed, expected_seq - 1, prev, event.seq, str(event.pk), problem)
        sealed += 1
        expected_seq, prev = expected_seq + 1, event.hash or ""
    unsealed = AuditEvent.objects.filter(hash__isnull=True).count()
    return ChainReport(sealed=sealed, unsealed=unsealed, head_seq=expected_seq - 1, head_hash=prev)
