"""The site record: one health system's EHR site, each stage's settings for it and its own catalog configuration as a
JSON file (docs/adr/0019).

``site_record_export`` turns an ``EHRSite`` (with each registered stage's settings, ``ehr.sitefeatures``, and its
code mappings, orderable rules, payer records and payer rules) into a dict that ``site_record_dumps`` writes
deterministically;
``site_record_import`` validates such a dict against ``site_record_schema()`` (``manage.py ehr_site schema``: the
base ``site-record.base.schema.json`` beside this module plus each stage's settings) and semantically, then
makes the database match it in one transaction, keeping history (django-simple-history) with the importing user and
the reason ``import from <file>``. Secrets are never in the file: each is a reference to an environment variable
named after the site (``secret_env_name``).
"""

import json
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, cast

import jsonschema
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from healthcommerce.audit.services import audit_record
from healthcommerce.catalog.models import CodeMapping, OrderableRule, Payer, PayerRule, PlanType, Product
from healthcommerce.core.errors import HealthcommerceError, NotFound
from healthcommerce.core.http import url_problem
from healthcommerce.ehr.models import AppSigningKey, EHRSite
from healthcommerce.ehr.sitefeatures import (
    site_feature_fields,
    site_feature_secrets,
    site_record_settings_schema,
    site_settings_defaults,
    site_settings_secret,
    site_settings_update,
    site_settings_urls,
    site_settings_values,
)

FORMAT = "healthcommerce-site-record/1"
BASE_SCHEMA_PATH = Path(__file__).with_name("site-record.base.schema.json")
# EHRSite fields copied as they are; the rest are the space-separated scope lists, the date and the secrets. Each
# stage's settings come from the registry (ehr.sitefeatures), optional in a record.
PLAIN_FIELDS = (
    "name",
    "iss",
    "vendor",
    "vendor_version",
    "is_active",
    "client_id",
    "auth_method",
    "key_id",
    "signing_alg",
    "send_jku",
    "quirks",
    "frame_origins",
    "backend_services",
    "backend_client_id",
)
SCOPE_FIELDS = ("scopes", "scopes_granted", "backend_scopes")
# The site's own secrets: record key (its EHRSite field) -> suffix of its environment variable. Each stage's secret
# settings (encrypted fields, ``ehr.sitefeatures.SiteFeature.secrets``) follow the same rule, their suffix the
# setting's name in capitals (``fhir_notify_token`` -> ``FHIR_NOTIFY_TOKEN``): ``secret_suffixes``.
SECRETS = {"client_secret": "CLIENT_SECRET", "private_key_pem": "PRIVATE_KEY"}


class SiteRecordInvalid(HealthcommerceError):
    """The file is not a valid site record; ``errors`` holds one ``"<JSON path>: <problem>"`` line per problem."""

    code = "site_record_invalid"
    message = "The site record is not valid."

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("The site record is not valid:\n" + "\n".join(f"  {line}" for line in errors))


@dataclass
class ImportResult:
    """What ``site_record_import`` did: ``changes`` and ``warnings`` are lines for a person; ``site`` is saved
    unless the import was a dry run."""

    site: EHRSite
    created: bool
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def secret_suffixes() -> dict[str, str]:
    """Return ``{record key: suffix of its environment variable}`` of every secret: the site's own (``SECRETS``)
    and each registered stage's secret settings (the name in capitals)."""
    return SECRETS | {name: name.upper() for name in site_feature_secrets()}


def secret_env_name(site_name: str, secret: str) -> str:
    """Return the environment variable holding ``secret`` (``client_secret``, ``private_key_pem`` or a stage's
    secret setting such as ``fhir_notify_token``) of the site named ``site_name``: ``HC_SITE_<NAME>_CLIENT_SECRET``,
    ``..._PRIVATE_KEY``, ``..._FHIR_NOTIFY_TOKEN``, ``<NAME>`` the name in capitals with each run of other
    characters one underscore ("Example Health (prod)" -> ``EXAMPLE_HEALTH_PROD``). ``KeyError`` for another
    name."""
    slug = re.sub(r"[^A-Z0-9]+", "_", site_name.upper()).strip("_") or "SITE"
    return f"HC_SITE_{slug}_{secret_suffixes()[secret]}"


def _stored_secret(site: EHRSite, name: str) -> str:
    """Return the stored value of secret ``name`` of ``site`` (the site's field, or a stage's setting)."""
    return str(getattr(site, name) or "") if name in SECRETS else site_settings_secret(site, name)


def site_by_name(*, name: str) -> EHRSite:
    """Return the one site whose name (or ``iss``) is ``name``. Raises ``NotFound`` when none or several are."""
    sites = list(EHRSite.objects.filter(name=name)) or list(EHRSite.objects.filter(iss=name.rstrip("/")))
    if len(sites) != 1:
        found = "No EHR site" if not sites else f"{len(sites)} EHR sites"
        raise NotFound(f"{found} named {name!r}; give the exact name or the iss (ehr_site list).")
    return sites[0]


# --- export ---------------------------------------------------------------------------------------------------


def _utc(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def _percent(value: Decimal | None) -> str | None:
    return None if value is None else str(Decimal(value).quantize(Decimal("0.01")))


def _payer(payer: Payer) -> dict[str, Any]:
    return {
        "name": payer.name,
        "payer_id": payer.payer_id,
        "plan_type": payer.plan_type,
        "identifiers": payer.identifier_list(),
        "aliases": payer.alias_list(),
        "supplier_in_network": payer.supplier_in_network,
        "is_active": payer.is_active,
    }


def _payer_rule(rule: PayerRule) -> dict[str, Any]:
    return {
        "priority": rule.priority,
        "match": rule.match,
        "payer": rule.payer.name if rule.payer is not None else "",
        "plan_type": rule.plan_type,
        "pattern": rule.pattern,
        "product_kind": rule.product_kind,
        "kind": rule.kind,
        "copay_cents": rule.copay_cents,
        "coinsurance_percent": _percent(rule.coinsurance_percent),
        "patient_message": rule.patient_message,
        "is_active": rule.is_active,
    }


def _catalog(site: EHRSite) -> dict[str, Any]:
    mappings = CodeMapping.objects.filter(site=site).select_related("product")
    rules = OrderableRule.objects.filter(site=site)
    payer_rules = sorted(
        PayerRule.objects.filter(site=site).select_related("payer"), key=lambda r: (r.priority, r.created_at, str(r.pk))
    )
    return {
        "code_mappings": sorted(
            (
                {"system": m.system, "code": m.code, "product": m.product.sku, "default_quantity": m.default_quantity}
                for m in mappings
            ),
            key=lambda m: (m["system"], m["code"]),
        ),
        "orderable_rules": sorted(
            (
                {
                    "resource_type": r.resource_type,
                    "system": r.system,
                    "code_prefix": r.code_prefix,
                    "orderable": r.orderable,
                    "reason": r.reason,
                }
                for r in rules
            ),
            key=lambda r: (r["resource_type"], r["system"], r["code_prefix"]),
        ),
        "payers": [_payer(payer) for payer in Payer.objects.filter(site=site).order_by("name")],
        "payer_rules": [_payer_rule(rule) for rule in payer_rules],
    }


def site_record_export(*, site: EHRSite) -> dict[str, Any]:
    """Return the site record of ``site`` (the shape of ``site_record_schema()``, format ``FORMAT``), every
    registered stage's settings included.

    Secrets appear only as ``{"secret_ref": "env:<secret_env_name>"}`` when stored (else null); our signing keys
    only by kid, alg, environment and status. Lists the app builds are sorted (mappings, rules, keys, payers by
    name); payer rules are in the order they are tried and name their payer by name; lists the site holds (scopes,
    origins, issuers) keep their order.
    """
    record: dict[str, Any] = {"format": FORMAT} | {name: getattr(site, name) for name in PLAIN_FIELDS}
    record |= site_settings_values(site)
    record |= {name: getattr(site, name).split() for name in SCOPE_FIELDS}
    record |= {"discovery": site.discovery, "discovered_at": _utc(site.discovered_at)}
    for name in secret_suffixes():
        record[name] = {"secret_ref": f"env:{secret_env_name(site.name, name)}"} if _stored_secret(site, name) else None
    keys = AppSigningKey.objects.filter(site=site)
    record["signing_keys"] = sorted(
        ({"kid": k.kid, "alg": k.alg, "environment": k.environment, "status": k.status} for k in keys),
        key=lambda k: (k["environment"], k["alg"], k["kid"]),
    )
    return record | _catalog(site)


def site_record_dumps(record: dict[str, Any]) -> str:
    """Return ``record`` as the file's text: sorted keys, two-space indent, UTF-8 characters kept, final newline."""
    return json.dumps(record, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# --- validation -----------------------------------------------------------------------------------------------


def site_record_schema() -> dict[str, Any]:
    """Return the site record's JSON Schema (draft 2020-12): the base (the EHR site's own keys and the catalog's,
    ``site-record.base.schema.json``) with one optional property per registered stage setting, derived from its
    model field (``ehr.sitefeatures.site_record_settings_schema``). ``manage.py ehr_site schema`` prints it."""
    schema: dict[str, Any] = json.loads(BASE_SCHEMA_PATH.read_text())
    schema["properties"] |= site_record_settings_schema()
    for name, (feature, setting) in site_feature_secrets().items():
        about = f"{feature.title}: {setting.verbose_name}. Same rules as `client_secret`. Optional: null when left out."
        schema["properties"][name] = {"description": about, "$ref": "#/$defs/secret"}
    suffixes = "|".join(sorted(set(secret_suffixes().values())))
    reference = schema["$defs"]["secret"]["oneOf"][1]["properties"]["secret_ref"]
    reference["pattern"] = f"^env:HC_SITE_[A-Z0-9_]+_({suffixes})$"
    return schema


@cache
def _validator(settings_names: tuple[str, ...]) -> jsonschema.Draft202012Validator:
    """The validator of ``site_record_schema()``, kept per set of registered settings."""
    schema = site_record_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _schema_errors(record: object) -> list[str]:
    validator = _validator(tuple(site_feature_fields()))
    errors = sorted(validator.iter_errors(record), key=lambda e: (e.json_path, e.message))
    return [f"{e.json_path}: {e.message}" for e in errors]


def _check_urls(record: dict[str, Any]) -> list[str]:
    errors = []
    problem = url_problem(record["iss"])
    if problem:
        errors.append(f"$.iss: {problem}")
    elif record["iss"].endswith("/"):
        errors.append("$.iss: drop the trailing slash (the EHR sends iss without it)")
    lists = [("frame_origins", True, False)] + [(key, False, fetched) for key, fetched in site_settings_urls().items()]
    for key, origin, fetched in lists:
        for i, value in enumerate(record.get(key, [])):
            if problem := url_problem(value, origin=origin, fetched=fetched):
                errors.append(f"$.{key}[{i}]: {problem}")
    return errors


def _duplicates(items: list[dict[str, Any]], key_fields: tuple[str, ...], where: str) -> list[str]:
    """Name each item of ``items`` whose ``key_fields`` repeat an earlier item's (``where``: its JSON path)."""
    errors: list[str] = []
    seen: dict[tuple[str, ...], int] = {}
    for i, item in enumerate(items):
        key = tuple(item[name] for name in key_fields)
        if key in seen:
            errors.append(f"{where}[{i}]: duplicate of {where}[{seen[key]}] ({'|'.join(key)})")
        seen.setdefault(key, i)
    return errors


def _check_catalog(record: dict[str, Any]) -> list[str]:
    mappings = record["code_mappings"]
    skus = set(Product.objects.filter(sku__in=[m["product"] for m in mappings]).values_list("sku", flat=True))
    errors = [
        f"$.code_mappings[{i}].product: no product with SKU {m['product']!r}"
        for i, m in enumerate(mappings)
        if m["product"] not in skus
    ]
    errors += _duplicates(mappings, ("system", "code"), "$.code_mappings")
    errors += _duplicates(record["orderable_rules"], ("resource_type", "system", "code_prefix"), "$.orderable_rules")
    errors += _duplicates(record["payers"], ("name",), "$.payers")
    known = {item["name"] for item in record["payers"]}
    known |= set(Payer.objects.filter(site=None).values_list("name", flat=True))
    for i, item in enumerate(record["payer_rules"]):
        if item["match"] == PayerRule.Match.PAYER and item["payer"] and item["payer"] not in known:
            errors.append(f"$.payer_rules[{i}].payer: no payer named {item['payer']!r} in $.payers nor for every site")
        try:
            stand_in = Payer(name=item["payer"]) if item["payer"] else None  # resolved by name at import
            _payer_rule_model(item, stand_in).clean()
        except ValidationError as exc:
            for name, messages in exc.message_dict.items():
                errors.extend(f"$.payer_rules[{i}].{name}: {message}" for message in messages)
    return errors


def _check_record(record: dict[str, Any]) -> list[str]:
    errors = _check_urls(record) + _check_catalog(record)
    if record.get("discovered_at"):
        try:
            datetime.fromisoformat(record["discovered_at"])
        except ValueError:
            errors.append("$.discovered_at: not a date-time")
    for name in secret_suffixes():
        ref = record.get(name)
        expected = f"env:{secret_env_name(record['name'], name)}"
        if ref is not None and ref["secret_ref"] != expected:
            errors.append(f"$.{name}.secret_ref: for the site named {record['name']!r} it is {expected!r}")
    return errors


def _plan_type_of(pattern: str) -> str:
    """Guess a converted text rule's plan type from its words (as catalog migration 0011 does)."""
    text = pattern.casefold()
    if "advantage" in text or "part c" in text:
        return PlanType.MEDICARE_ADVANTAGE
    return next((word for word in ("medicaid", "medicare", "tricare") if word in text), PlanType.OTHER)


def _upgrade_rule(item: dict[str, Any], payers: list[dict[str, Any]], i: int, notes: list[str]) -> dict[str, Any]:
    """Return payer rule ``item`` in today's shape: ``payer`` and ``plan_type`` present; a ``contains`` rule made
    a rule for a payer record (appended to ``payers`` when new); an active ``regex`` rule made inactive."""
    item = {"payer": "", "plan_type": ""} | item
    if item["match"] == "contains":
        pattern = item["pattern"].strip()
        name = " ".join(pattern.split()).title()[:200]
        if pattern and not any(payer["name"] == name for payer in payers):
            payers.append({"name": name, "payer_id": "", "plan_type": _plan_type_of(pattern), "identifiers": [],
                           "aliases": [pattern], "supplier_in_network": True, "is_active": True})  # fmt: skip
        item |= {"match": "payer", "payer": name} if pattern else {"match": "any_payer"}
        notes.append(
            f"$.payer_rules[{i}]: contains {pattern!r} became a rule for the payer {name!r} (alias {pattern!r})"
        )
    elif item["match"] == "regex" and item["is_active"]:
        item["is_active"] = False
        notes.append(
            f"$.payer_rules[{i}]: the regular expression {item['pattern']!r} cannot match payer records: imported"
            " inactive; re-point it to a payer or a plan type"
        )
    return item


def site_record_upgrade(record: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Return a schema-valid ``record`` in today's shape, and a line per change made: a file from before payer
    records (issue 21) gets ``payers`` (empty) and each rule ``payer``/``plan_type``; its ``contains`` rules become
    payer records and rules for them, its active ``regex`` rules inactive (``_upgrade_rule``). A record in today's
    shape comes back equal, with no lines."""
    notes: list[str] = []
    payers = [dict(item) for item in record.get("payers", [])]
    rules = [_upgrade_rule(item, payers, i, notes) for i, item in enumerate(record["payer_rules"])]
    return record | {"payers": sorted(payers, key=lambda p: p["name"]), "payer_rules": rules}, notes


def site_record_validate(record: object, notes: list[str] | None = None) -> dict[str, Any]:
    """Return ``record`` in today's shape (``site_record_upgrade``) when it is a valid site record; its upgrade's
    lines are appended to ``notes``. Raises ``SiteRecordInvalid`` naming the JSON path of each problem: the schema
    first (``site_record_schema()``, draft 2020-12), then what the schema cannot say (URLs https outside localhost,
    known product SKUs, no duplicate mapping, rule or payer, payer rules complete and naming a known payer, secret
    references named after the site)."""
    errors = _schema_errors(record)
    if errors:
        raise SiteRecordInvalid(errors)
    valid, upgraded = site_record_upgrade(cast(dict[str, Any], record))  # the schema says it is an object
    if notes is not None:
        notes.extend(upgraded)
    errors = _check_record(valid)
    if errors:
        raise SiteRecordInvalid(errors)
    return valid


# --- import ---------------------------------------------------------------------------------------------------


def _payer_rule_model(item: dict[str, Any], payer: Payer | None) -> PayerRule:
    """Return an unsaved ``PayerRule`` of ``item`` (today's shape) for ``payer`` (its ``payer`` resolved)."""
    percent = item["coinsurance_percent"]
    values = item | {"coinsurance_percent": None if percent is None else Decimal(percent), "payer": payer}
    return PayerRule(**values)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _change_text(name: str, old: Any, new: Any) -> str:
    """Say how field ``name`` changes from ``old`` to ``new``: scopes added and removed, else both values."""
    if name == "discovery":
        return "changed"
    if name in SCOPE_FIELDS:
        before, after = old.split(), new.split()
        added = [f"+{scope}" for scope in after if scope not in before]
        removed = [f"-{scope}" for scope in before if scope not in after]
        return " ".join(added + removed) or "reordered"
    return f"{_short(old)} -> {_short(new)}"


def _payer_text(item: dict[str, Any]) -> str:
    """One payer rule in a line: ``priority 5: payer 'Harbor' (device) -> copay 1500 cents``."""
    match = item["match"]
    what = {"no_payer": "no payer", "any_payer": "any payer", "payer": f"payer {item['payer']!r}"}.get(match)
    what = what or (
        f"plan type {item['plan_type']}" if match == "plan_type" else f"retired {match} {item['pattern']!r}"
    )
    kind = item["kind"]
    if kind == "copay":
        kind += f" {item['copay_cents']} cents"
    elif kind == "coinsurance":
        kind += f" {item['coinsurance_percent']}%"
    scope = f" ({item['product_kind']})" if item["product_kind"] else ""
    active = "" if item["is_active"] else " [inactive]"
    return f"priority {item['priority']}: {what}{scope} -> {kind}{active}"


def _site_values(record: dict[str, Any]) -> dict[str, Any]:
    values = {name: record[name] for name in PLAIN_FIELDS}
    values |= {name: " ".join(record[name]) for name in SCOPE_FIELDS}
    if "discovery" in record:  # left out of a hand-written file: keep what the site discovered (or discover later)
        values["discovery"] = record["discovery"]
    if "discovered_at" in record:
        at = record["discovered_at"]
        values["discovered_at"] = datetime.fromisoformat(at) if at else None
    return values


def _secret_value(record: dict[str, Any], site: EHRSite, name: str, result: ImportResult) -> str | None:
    """Return the new value of secret ``name`` (None: keep the stored one), reading the referenced variable; a
    record without the key (a stage's secret added after the file was written) removes it, as null does."""
    if record.get(name) is None:
        return ""
    variable = record[name]["secret_ref"].removeprefix("env:")
    value = os.environ.get(variable, "").strip()
    if name == "private_key_pem" and value:
        try:
            load_pem_private_key(value.encode(), password=None)
        except (ValueError, TypeError) as exc:
            raise SiteRecordInvalid([f"$.{name}: {variable} does not hold an unencrypted PEM private key"]) from exc
    if value:
        return value
    if not _stored_secret(site, name):
        result.warnings.append(f"{name}: {variable} is not set and nothing is stored")
    return None


def _require_secret(site: EHRSite, result: ImportResult) -> None:
    """Raise ``SiteRecordInvalid`` when the site is ``client_secret_basic`` without a secret (only its variable
    can give one). A ``private_key_jwt`` site without any key (stored, its own next or active ``AppSigningKey``, or
    a shared active one) is a warning naming the two ways to give it one: its key is made for the site, which
    must exist first (``ehr_keys new --site``)."""
    if site.auth_method == EHRSite.AuthMethod.CLIENT_SECRET_BASIC and not site.client_secret:
        variable = secret_env_name(site.name, "client_secret")
        raise SiteRecordInvalid([f"$.client_secret: client_secret_basic needs a client secret: set {variable}"])
    if site.auth_method == EHRSite.AuthMethod.PRIVATE_KEY_JWT and not site.private_key_pem:
        ours = AppSigningKey.objects.filter(environment=settings.APP_ENVIRONMENT)
        shared = ours.filter(site__isnull=True, status=AppSigningKey.Status.ACTIVE).exists()
        own = not site._state.adding and ours.filter(site=site, status__in=["next", "active"]).exists()
        if not shared and not own:
            variable = secret_env_name(site.name, "private_key_pem")
            result.warnings.append(
                f"private_key_pem: private_key_jwt has no key to sign with yet: make one with `manage.py ehr_keys new"
                f" --site '{site.name}' --alg {site.signing_alg}` (then `ehr_keys activate KID`), or set {variable}"
                " and import again; launches fail until then"
            )


def _settings_changes(record: dict[str, Any], site: EHRSite, result: ImportResult) -> dict[str, Any]:
    """Return each stage's settings as the record gives them (a setting it leaves out: the default, so a file from
    before the setting existed imports), noting each change from what ``site`` has; each stage's secret from its
    referenced variable when that is set (``_secret_value``: not listed when the stored one is kept)."""
    stored = site_settings_values(site)
    values = {name: record.get(name, default) for name, default in site_settings_defaults().items()}
    for name, value in values.items():
        if stored[name] != value:
            result.changes.append(f"{name}: {_short(stored[name])} -> {_short(value)}")
    for name in site_feature_secrets():
        new = _secret_value(record, site, name, result)
        if new is not None and new != _stored_secret(site, name):
            variable = secret_env_name(record["name"], name)
            result.changes.append(f"{name}: {'set from ' + variable if new else 'removed'}")
            values[name] = new
    return values


def _apply_site(record: dict[str, Any], site: EHRSite, result: ImportResult) -> list[str]:
    """Set the record's values on ``site`` (not saved); return the changed field names and note each change."""
    changed = []
    for name, value in _site_values(record).items():
        old = getattr(site, name)
        if old != value:
            changed.append(name)
            result.changes.append(f"{name}: {_change_text(name, old, value)}")
            setattr(site, name, value)
    for name in SECRETS:
        new = _secret_value(record, site, name, result)
        if new is not None and new != getattr(site, name):
            changed.append(name)
            variable = secret_env_name(record["name"], name)
            result.changes.append(f"{name}: {'set from ' + variable if new else 'removed'}")
            setattr(site, name, new)
    return changed


def _mark(obj: Any, user: Any, reason: str) -> Any:
    """Name who and why on ``obj`` for its history row (django-simple-history reads these attributes)."""
    if user is not None:
        obj._history_user = user
    obj._change_reason = reason
    return obj


def _sync_mappings(record: dict[str, Any], site: EHRSite, user: Any, reason: str, result: ImportResult) -> None:
    existing = {(m.system, m.code): m for m in CodeMapping.objects.filter(site=site).select_related("product")}
    products = {p.sku: p for p in Product.objects.filter(sku__in=[m["product"] for m in record["code_mappings"]])}
    for item in record["code_mappings"]:
        key, product = (item["system"], item["code"]), products[item["product"]]
        text = f"{key[0]}|{key[1]} -> {item['product']} x{item['default_quantity']}"
        mapping = existing.pop(key, None)
        if mapping is None:
            quantity = item["default_quantity"]
            new = CodeMapping(site=site, system=key[0], code=key[1], product=product, default_quantity=quantity)
            _mark(new, user, reason).save()
            result.changes.append(f"code_mappings: + {text}")
        elif (mapping.product_id, mapping.default_quantity) != (product.pk, item["default_quantity"]):
            was = f"{mapping.product.sku} x{mapping.default_quantity}"
            mapping.product, mapping.default_quantity = product, item["default_quantity"]
            _mark(mapping, user, reason).save(update_fields=["product", "default_quantity", "updated_at"])
            result.changes.append(f"code_mappings: ~ {text} (was {was})")
    for (system, code), mapping in sorted(existing.items()):
        _mark(mapping, user, reason).delete()
        result.changes.append(f"code_mappings: - {system}|{code} -> {mapping.product.sku}")


def _sync_orderable_rules(record: dict[str, Any], site: EHRSite, user: Any, reason: str, result: ImportResult) -> None:
    existing = {(r.resource_type, r.system, r.code_prefix): r for r in OrderableRule.objects.filter(site=site)}
    for item in record["orderable_rules"]:
        key = (item["resource_type"], item["system"], item["code_prefix"])
        verdict = "orderable" if item["orderable"] else f"not orderable ({item['reason']})"
        text = f"{key[0] or 'Any'} {key[1] or '*'}|{key[2]}* {verdict}"
        rule = existing.pop(key, None)
        if rule is None:
            _mark(OrderableRule(site=site, **item), user, reason).save()
            result.changes.append(f"orderable_rules: + {text}")
        elif (rule.orderable, rule.reason) != (item["orderable"], item["reason"]):
            rule.orderable, rule.reason = item["orderable"], item["reason"]
            _mark(rule, user, reason).save(update_fields=["orderable", "reason", "updated_at"])
            result.changes.append(f"orderable_rules: ~ {text}")
    for rule in sorted(existing.values(), key=str):
        _mark(rule, user, reason).delete()
        result.changes.append(f"orderable_rules: - {rule}")


PAYER_FIELDS = ("payer_id", "plan_type", "identifiers", "aliases", "supplier_in_network", "is_active")


def _payer_values(item: dict[str, Any]) -> dict[str, Any]:
    """A ``payers`` item as ``Payer`` field values (lists one per line)."""
    values = {name: item[name] for name in PAYER_FIELDS}
    return values | {"identifiers": "\n".join(item["identifiers"]), "aliases": "\n".join(item["aliases"])}


def _sync_payers(record: dict[str, Any], site: EHRSite, user: Any, reason: str, result: ImportResult) -> list[Payer]:
    """Create or update the site's payers to the file's (by name); return those the file does not list, for
    ``_payers_remove`` once the rules no longer name them."""
    existing = {payer.name: payer for payer in Payer.objects.filter(site=site)}
    for item in record["payers"]:
        values = _payer_values(item)
        payer = existing.pop(item["name"], None)
        if payer is None:
            _mark(Payer(site=site, name=item["name"], **values), user, reason).save()
            result.changes.append(f"payers: + {item['name']} ({item['plan_type']})")
            continue
        changed = [name for name, value in values.items() if getattr(payer, name) != value]
        for name in changed:
            setattr(payer, name, values[name])
        if changed:
            _mark(payer, user, reason).save(update_fields=[*changed, "updated_at"])
            result.changes.append(f"payers: ~ {item['name']} ({', '.join(changed)})")
    return sorted(existing.values(), key=lambda p: p.name)


def _payers_remove(payers: list[Payer], user: Any, reason: str, result: ImportResult) -> None:
    """Delete each payer the file no longer lists; one that orders (or another site's rules) refer to is
    deactivated instead (``Order.payer`` is PROTECT: the record that priced an order stays)."""
    for payer in payers:
        if payer.orders.exists() or payer.rules.exists():
            if payer.is_active:
                payer.is_active = False
                _mark(payer, user, reason).save(update_fields=["is_active", "updated_at"])
                result.changes.append(f"payers: ~ {payer.name} deactivated (orders refer to it)")
            continue
        _mark(payer, user, reason).delete()
        result.changes.append(f"payers: - {payer.name}")


def _rule_payer(site: EHRSite, name: str) -> Payer | None:
    """The payer a rule names: the site's own record of that name, else the one for every site."""
    if not name:
        return None
    found = Payer.objects.filter(site=site, name=name).first() or Payer.objects.filter(site=None, name=name).first()
    if found is None:  # the check refused this before (site_record_validate)
        raise SiteRecordInvalid([f"$.payer_rules: no payer named {name!r}"])
    return found


def _sync_payer_rules(record: dict[str, Any], site: EHRSite, user: Any, reason: str, result: ImportResult) -> None:
    """Keep rows equal to an item, delete the rest, create the missing; then make the order among equal
    priorities (decided by ``created_at``) the file's."""
    rows_now = PayerRule.objects.filter(site=site).select_related("payer")
    existing = sorted(rows_now, key=lambda r: (r.priority, r.created_at, str(r.pk)))
    wanted = sorted(record["payer_rules"], key=lambda item: item["priority"])
    rows: list[PayerRule] = []
    for item in wanted:
        rule = next((r for r in existing if _payer_rule(r) == item), None)
        if rule is not None:
            existing.remove(rule)
        else:
            rule = _mark(_payer_rule_model(item, _rule_payer(site, item["payer"])), user, reason)
            rule.site = site
            rule.save()
            result.changes.append(f"payer_rules: + {_payer_text(item)}")
        rows.append(rule)
    for rule in existing:
        _mark(rule, user, reason).delete()
        result.changes.append(f"payer_rules: - {_payer_text(_payer_rule(rule))}")
    if [r.pk for r in sorted(rows, key=lambda r: (r.priority, r.created_at, str(r.pk)))] != [r.pk for r in rows]:
        start = timezone.now()
        for i, rule in enumerate(rows):  # the order among equals, not a change of any rule: no history row
            PayerRule.objects.filter(pk=rule.pk).update(created_at=start + timedelta(microseconds=i))
        result.changes.append("payer_rules: reordered among equal priorities as in the file")


def _warn_missing_keys(record: dict[str, Any], site: EHRSite, result: ImportResult) -> None:
    have = set(AppSigningKey.objects.filter(site=site).values_list("kid", flat=True))
    for i, key in enumerate(record["signing_keys"]):
        if key["kid"] not in have:
            result.warnings.append(
                f"$.signing_keys[{i}]: no key {key['kid']!r} here for this site (ehr_keys makes keys)"
            )


def site_record_import(*, record: object, source: str, user: Any = None, dry_run: bool = False) -> ImportResult:
    """Make the database hold the site record ``record`` (parsed JSON), in one transaction; return what changed.

    The site is found by ``iss`` (created when none has it). Its fields, each stage's settings (a setting the record
    leaves out gets its default), its secrets (from the referenced
    environment variables when set, else the stored ones kept; a null reference removes the stored secret) and its
    code mappings, orderable rules, payers and payer rules are made the file's (a file from before payer records is
    upgraded first, each change a warning: ``site_record_upgrade``). Our signing keys are not touched (a kid the
    database lacks is a warning). Each change writes a history row with ``user`` and the reason
    ``import from <source>``, and the import one ``site.import`` audit row. ``dry_run`` rolls everything back.

    Raises ``SiteRecordInvalid`` (the JSON path of each problem) before anything is written, or when
    ``client_secret_basic`` has a secret neither in the environment nor in the database (a ``private_key_jwt`` site
    without any key is a warning: ``ehr_keys new --site`` can make its key only once it exists).
    """
    upgraded: list[str] = []
    valid = site_record_validate(record, upgraded)
    reason = f"import from {source}"[:100]
    with transaction.atomic():
        site = EHRSite.objects.select_for_update().filter(iss=valid["iss"]).first()
        created = site is None
        site = site or EHRSite()
        result = ImportResult(site=site, created=created, warnings=upgraded)
        changed = _apply_site(valid, site, result)
        stage_settings = _settings_changes(valid, site, result)
        _require_secret(site, result)
        if created:
            _mark(site, user, reason).save()
        elif changed:
            _mark(site, user, reason).save(update_fields=[*changed, "updated_at"])
        site_settings_update(site, stage_settings, user=user, reason=reason)
        _sync_mappings(valid, site, user, reason, result)
        _sync_orderable_rules(valid, site, user, reason, result)
        unlisted = _sync_payers(valid, site, user, reason, result)
        _sync_payer_rules(valid, site, user, reason, result)
        _payers_remove(unlisted, user, reason, result)
        _warn_missing_keys(valid, site, result)
        actor = f"admin:{user.get_username()}" if user is not None else "command:ehr_site"
        detail = {"source": source[:200], "changes": len(result.changes), "created": created, "dry_run": dry_run}
        audit_record(actor=actor, action="site.import", target=f"EHRSite/{site.pk}", site=site.iss, detail=detail)
        if dry_run:
            transaction.set_rollback(True)
    return result
