"""Catalog look-ups."""

from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from healthcommerce.catalog.models import CodeMapping, OrderableRule, Payer, PayerRule, name_key
from healthcommerce.ehr.models import EHRSite


def mapping_for_codes(*, site: EHRSite, codings: Iterable[tuple[str, str]]) -> CodeMapping | None:
    """Return the mapping for the first ``(system, code)`` that maps to an active product, or None.

    A mapping for ``site`` wins over a global one (``site`` null), so local codes are per-site configuration.
    """
    for system, code in codings:
        if not system or not code:
            continue
        rows = CodeMapping.objects.select_related("product").filter(
            Q(site=site) | Q(site__isnull=True), system=system, code=code, product__is_active=True
        )
        found = sorted(rows, key=lambda m: m.site_id is None)
        if found:
            return found[0]
    return None


@dataclass(frozen=True)
class Orderability:
    """Whether a request can be ordered here: ``mapping`` when its code maps to a product, else the deciding
    rule's verdict (``rule``; None when no rule matched and the default decided); ``reason`` is shown to the
    clinician when it is not orderable."""

    orderable: bool
    mapping: CodeMapping | None = None
    reason: str = ""
    rule: OrderableRule | None = None


NOT_ORDERABLE_DEFAULT = "This request is not ordered through this app."


def request_orderability(*, site: EHRSite, resource_type: str, codings: Iterable[tuple[str, str]]) -> Orderability:
    """Decide whether a DeviceRequest/ServiceRequest with ``codings`` (``[(system, code)]``) is orderable at ``site``.

    A catalog mapping makes it orderable. Otherwise the most specific ``OrderableRule`` matching any coding
    (site over global, longer code prefix, named resource type) decides; with no rule at all, a DeviceRequest
    is orderable (the clinician picks a product) and anything else is not.
    """
    codings = [(s, c) for s, c in codings if s and c]
    mapping = mapping_for_codes(site=site, codings=codings)
    if mapping is not None:
        return Orderability(orderable=True, mapping=mapping)
    rules = OrderableRule.objects.filter(Q(site=site) | Q(site__isnull=True), resource_type__in=["", resource_type])
    matching = [rule for rule in rules if _rule_matches(rule, codings)]
    if not matching:
        orderable = resource_type == "DeviceRequest"
        return Orderability(orderable=orderable, reason="" if orderable else NOT_ORDERABLE_DEFAULT)
    rule = max(matching, key=_rule_rank)  # the first of equally specific rules
    return Orderability(
        orderable=rule.orderable, reason="" if rule.orderable else rule.reason or NOT_ORDERABLE_DEFAULT, rule=rule
    )


def _rule_matches(rule: OrderableRule, codings: list[tuple[str, str]]) -> bool:
    """Whether ``rule`` applies to a request coded ``codings``: a coding in its system (any, when blank) whose code
    starts with its prefix; a rule with neither system nor prefix applies to every request."""
    if not rule.system and not rule.code_prefix:
        return True
    return any(
        (not rule.system or rule.system == system) and code.startswith(rule.code_prefix) for system, code in codings
    )


def _rule_rank(rule: OrderableRule) -> tuple[bool, int, bool]:
    """How specific ``rule`` is (higher wins): a site's own rule, then a longer code prefix (a named system counts
    one more), then a named resource type."""
    return (rule.site_id is not None, len(rule.code_prefix) + bool(rule.system), bool(rule.resource_type))


def payer_rule_for(*, site: EHRSite, payer: Payer | None, product_kind: str) -> PayerRule | None:
    """Return the ``PayerRule`` that decides who pays for a ``product_kind`` order at ``site`` whose payer record is
    ``payer`` (None: no payer), or None.

    Active rules for ``site`` come before global ones (``site`` null); within each, ascending ``priority``, then
    the oldest first; the first whose ``match`` fits ``payer`` and whose ``product_kind`` is blank or equal wins
    (``PayerRule.matches``).
    """
    rules = PayerRule.objects.filter(
        Q(site=site) | Q(site__isnull=True), is_active=True, product_kind__in=["", product_kind]
    )
    ordered = sorted(rules, key=lambda r: (r.site_id is None, r.priority, r.created_at))
    return next((rule for rule in ordered if rule.matches(payer)), None)


def site_payers(site: EHRSite) -> list[Payer]:
    """Return the active payers the clinician may pick at ``site``: its own and those of every site, by name (a
    site's record hides a global one of the same name)."""
    rows = Payer.objects.filter(Q(site=site) | Q(site__isnull=True), is_active=True)
    chosen: dict[str, Payer] = {}
    for payer in sorted(rows, key=lambda p: p.site_id is None):
        chosen.setdefault(name_key(payer.name), payer)
    return sorted(chosen.values(), key=lambda p: name_key(p.name))


def payer_for_coverage(*, site: EHRSite, keys: list[str], name: str) -> Payer | None:
    """Return the active payer record the chart's coverage names at ``site``, or None when none is recognised.

    ``keys`` are the Coverage's ``payor`` references (``Organization/org1234``), its payors' identifiers as
    ``system|value`` and their bare values, or an HL7 v2 IN1-3 company id; ``name`` is the chart's payer text
    (FHIR R4 Coverage.payor display or class; IN1-4). A key listed in a record's ``identifiers`` beats a name; a
    name must equal the record's name or one of its ``aliases`` (case and spacing aside; never "contains"). Within
    each, a site's own record beats one for every site. Inactive records never match.
    """
    wanted = {key.strip() for key in keys if key and key.strip()}
    candidates = sorted(site_payers_all(site), key=lambda p: p.site_id is None)
    by_key = [payer for payer in candidates if wanted & set(payer.identifier_list())]
    if by_key:
        return by_key[0]
    text = name_key(name)
    return next((payer for payer in candidates if text and text in payer.names()), None)


def site_payers_all(site: EHRSite) -> list[Payer]:
    """Return every active payer record that applies at ``site`` (its own and those of every site)."""
    return list(Payer.objects.filter(Q(site=site) | Q(site__isnull=True), is_active=True))
