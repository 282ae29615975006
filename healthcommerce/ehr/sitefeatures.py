"""Per-site features: each stage's own settings for an EHR site, registered in its ``AppConfig.ready()`` (issue 19,
docs/extending.md "Add a site setting", docs/style.md 16).

A stage keeps its settings in a ``SiteSettings`` subclass (one row per site) and registers it here with a readable
title and, optionally, its readiness checks and the backend-services scopes its settings need. Everything that lists
per-site settings is derived from the registry and the model's fields: the site record file and its JSON Schema
(``golive.siterecord``), the EHR site's admin page (one section per feature), ``ehr_site add``'s flags and the
readiness check (``golive.readiness``). The registry imports no stage, the way the outbox's subscribers do
(``outbox/subscribers.py``).
"""

import argparse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models

from healthcommerce.core.encryption import EncryptedCharField, EncryptedTextField
from healthcommerce.ehr.models import EHRSite, SiteSettings, URLListField

PASS, WARN, FAIL = "pass", "warn", "fail"
# What to do about a failed FHIR read, by error code (readiness checks of every stage).
FIX_READ = {
    "unauthorized": "The EHR refused the backend token: check the backend client registration and our JWKS URL.",
    "forbidden": "Ask the EHR team to grant the backend client the scope for this read (see the scopes check).",
    "not_found": "Check the test patient id (it must exist in this environment).",
    "server_error": "The EHR answered with an error: retry, then raise it with the EHR team.",
    "timeout": "The EHR did not answer in time: check the network path and retry.",
    "unreachable": "The FHIR base could not be reached: check DNS, firewall and the iss.",
    "malformed": "The EHR sent something that is not the FHIR resource asked for: raise it with the EHR team.",
}
# Fields every SiteSettings row has that are not settings.
_NOT_SETTINGS = frozenset({"id", "site", "created_at", "updated_at"})


@dataclass(frozen=True)
class Check:
    """One item of the readiness report: ``name`` (e.g. ``"discovery"``), ``status`` (``pass``, ``warn``,
    ``fail``), ``detail`` (what was found, no PHI) and ``fix`` (what to do; empty on a pass)."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class PatientReads:
    """What the readiness check gives a stage to read the nominated test patient: ``reader`` (a FHIR reader with
    backend-services tokens: ``read(model, id)`` and ``search(model, params)``, ``ehr.fhir.FHIRReader``),
    ``patient_id`` and ``record(target, outcome)``, which writes the ``readiness.read`` audit row of one read."""

    reader: Any
    patient_id: str
    record: Callable[[str, str], None]


@dataclass(frozen=True)
class SiteFeature:
    """A stage's per-site feature: ``name`` (the app label, ``"cdshooks"``), ``title`` (the admin section, ``"CDS
    Hooks"``), ``model`` (its ``SiteSettings`` subclass), ``checks`` (optional: a callable taking the site and
    yielding readiness ``Check`` items, run by ``golive.readiness``) and ``backend_needs`` (optional: a callable
    taking the site and returning ``{what needs it: space-separated system/ scopes}`` for backend services) and
    ``patient_checks`` (optional: a callable taking the site and ``PatientReads``, yielding the checks of what the
    stage reads of a test patient; run only when one is nominated and a backend token was granted)."""

    name: str
    title: str
    model: type[SiteSettings]
    checks: Callable[[EHRSite], Iterable[Check]] | None = None
    backend_needs: Callable[[EHRSite], dict[str, str]] | None = None
    patient_checks: Callable[[EHRSite, PatientReads], Iterable[Check]] | None = None

    def _settings(self) -> list[models.Field]:
        return [
            f
            for f in self.model._meta.get_fields()
            if isinstance(f, models.Field) and f.concrete and f.editable and f.name not in _NOT_SETTINGS
        ]

    @property
    def fields(self) -> list[models.Field]:
        """Return the settings: the model's concrete, editable fields other than the key, site, timestamps and
        secrets (``secrets``), in declaration order."""
        return [f for f in self._settings() if not setting_is_secret(f)]

    @property
    def secrets(self) -> list[models.Field]:
        """Return the secret settings: the encrypted ones (``setting_is_secret``), in declaration order. They are
        never in the site record, its flags or the admin's section as values: the record holds a reference to an
        environment variable instead (``golive.siterecord``, like the site's ``client_secret``)."""
        return [f for f in self._settings() if setting_is_secret(f)]

    @property
    def field_names(self) -> list[str]:
        """Return the names of ``fields`` (each is also its key in the site record and its ``ehr_site`` flag)."""
        return [f.name for f in self.fields]


def setting_is_secret(field: models.Field) -> bool:
    """Return whether a stage's setting is a secret: an encrypted field (``core.encryption``), e.g. a bearer token
    the site sends us."""
    return isinstance(field, EncryptedCharField | EncryptedTextField)


_FEATURES: dict[str, SiteFeature] = {}


def site_feature_register(
    *,
    name: str,
    title: str,
    model: type[SiteSettings],
    checks: Callable[[EHRSite], Iterable[Check]] | None = None,
    backend_needs: Callable[[EHRSite], dict[str, str]] | None = None,
    patient_checks: Callable[[EHRSite, PatientReads], Iterable[Check]] | None = None,
) -> None:
    """Register a stage's per-site feature (call it in the stage's ``AppConfig.ready()``). Registering the same
    feature again is a no-op. Raises ``ImproperlyConfigured`` for another definition under a used name, a field
    without a default, or a field name already used by ``EHRSite`` or another feature (the site record is flat)."""
    feature = SiteFeature(
        name=name,
        title=title,
        model=model,
        checks=checks,
        backend_needs=backend_needs,
        patient_checks=patient_checks,
    )
    known = _FEATURES.get(name)
    if known is not None:
        if known != feature:
            raise ImproperlyConfigured(f"Site feature {name!r} is already registered differently.")
        return
    taken = {f.name for f in EHRSite._meta.get_fields()} | set(site_feature_fields()) | set(site_feature_secrets())
    for field in feature.fields + feature.secrets:
        if field.name in taken:
            raise ImproperlyConfigured(f"Site feature {name!r}: the setting {field.name!r} is already used.")
        if not field.has_default() and not field.null:
            raise ImproperlyConfigured(f"Site feature {name!r}: give the setting {field.name!r} a default.")
    _FEATURES[name] = feature


def site_feature_unregister(name: str) -> None:
    """Forget the feature ``name`` (for tests that register a feature of their own)."""
    _FEATURES.pop(name, None)


def site_features() -> list[SiteFeature]:
    """Return the registered features, by name."""
    return [_FEATURES[name] for name in sorted(_FEATURES)]


def site_feature_fields() -> dict[str, tuple[SiteFeature, models.Field]]:
    """Return ``{setting name: (its feature, its model field)}`` over every registered feature."""
    return {field.name: (feature, field) for feature in site_features() for field in feature.fields}


def site_feature_secrets() -> dict[str, tuple[SiteFeature, models.Field]]:
    """Return ``{secret setting name: (its feature, its model field)}`` over every registered feature."""
    return {field.name: (feature, field) for feature in site_features() for field in feature.secrets}


def site_settings_create(sender: Any, instance: EHRSite, created: bool, raw: bool = False, **kwargs: Any) -> None:
    """``post_save`` receiver of ``EHRSite``: give a new site each feature's row with the defaults."""
    if created and not raw:
        for feature in site_features():
            feature.model._default_manager.get_or_create(site=instance)


# --- values ---------------------------------------------------------------------------------------------------


def site_settings_values(site: EHRSite) -> dict[str, Any]:
    """Return ``{setting name: value}`` of every registered feature for ``site`` (defaults where it has no row)."""
    values: dict[str, Any] = {}
    for feature in site_features():
        row = feature.model.of(site)
        values |= {name: getattr(row, name) for name in feature.field_names}
    return values


def site_settings_secret(site: EHRSite, name: str) -> str:
    """Return the value of the secret setting ``name`` for ``site`` ("" when not set); ``KeyError`` for a name
    that is no registered secret."""
    feature, _ = site_feature_secrets()[name]
    return str(getattr(feature.model.of(site), name) or "")


def site_settings_update(site: EHRSite, values: dict[str, Any], *, user: Any = None, reason: str = "") -> list[str]:
    """Set the given settings (``{name: value}``, secrets too; unknown names raise ``KeyError``) on the saved
    ``site``'s rows and save each row that changed with ``update_fields``; ``user`` and ``reason`` name the history
    row (docs/adr/0019). Returns the names of the settings that changed. Idempotent."""
    fields = site_feature_fields() | site_feature_secrets()
    changed: dict[SiteFeature, list[str]] = {}
    rows: dict[str, SiteSettings] = {}
    for name, value in values.items():
        feature, _ = fields[name]
        row = rows.setdefault(feature.name, feature.model.of(site))
        if getattr(row, name) != value:
            setattr(row, name, value)
            changed.setdefault(feature, []).append(name)
    for feature, names in changed.items():
        row = rows[feature.name]
        if user is not None:
            row._history_user = user  # type: ignore[attr-defined]
        if reason:
            row._change_reason = reason  # type: ignore[attr-defined]
        row.save(update_fields=[*names, "updated_at"])
    return [name for names in changed.values() for name in names]


# --- the site record's JSON Schema ----------------------------------------------------------------------------


def _field_type(field: models.Field) -> dict[str, Any]:
    """The JSON Schema of one setting's value, by its model field's type."""
    if isinstance(field, URLListField):
        return {"type": "array", "uniqueItems": True, "items": {"type": "string", "minLength": 8, "maxLength": 500}}
    if field.choices:
        return {"enum": [value for value, _ in field.flatchoices]}
    if isinstance(field, models.BooleanField):
        return {"type": "boolean"}
    if isinstance(field, models.IntegerField):
        return {"type": "integer"}
    if isinstance(field, models.CharField | models.TextField):
        return {"type": "string"} | ({"maxLength": field.max_length} if field.max_length else {})
    if isinstance(field, models.JSONField):
        return {"type": "array"} if field.get_default() == [] else {"type": "object"}
    raise ImproperlyConfigured(f"The site record has no JSON type for {field.name!r} ({type(field).__name__}).")


def site_feature_schema(field: models.Field, feature: SiteFeature) -> dict[str, Any]:
    """Return the JSON Schema of setting ``field`` of ``feature``: its type, and a description from its feature's
    title, its label and its help text. Optional in a record (a file from before the setting reads as the
    default)."""
    label = str(field.verbose_name)
    about = f"{feature.title}: {label[:1].upper()}{label[1:]}."
    if field.help_text:
        about += f" {field.help_text}"
    return {"description": f"{about} Optional: the default when left out."} | _field_type(field)


def site_record_settings_schema() -> dict[str, dict[str, Any]]:
    """Return ``{setting name: its JSON Schema}`` for every registered feature (``properties`` of the record)."""
    return {name: site_feature_schema(field, feature) for name, (feature, field) in site_feature_fields().items()}


def site_settings_defaults() -> dict[str, Any]:
    """Return ``{setting name: default}``: what a record without the setting means."""
    return {name: field.get_default() for name, (_, field) in site_feature_fields().items()}


def site_settings_urls() -> dict[str, bool]:
    """Return ``{setting name: fetched}`` for the URL-list settings (``URLListField``), checked by the record."""
    return {
        name: field.fetched for name, (_, field) in site_feature_fields().items() if isinstance(field, URLListField)
    }


# --- ehr_site add's flags -------------------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def site_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per setting to ``ehr_site add``: ``--name``/``--no-name`` for a boolean, ``--name VALUE`` (with
    the choices) for a text, ``--name URL [URL ...]`` for a URL list. A flag left out keeps the stored value (a new
    site gets the default)."""
    for feature in site_features():
        group = parser.add_argument_group(feature.title)
        for field in feature.fields:
            about = f"{field.verbose_name}: {field.help_text}".replace("%", "%%")
            if isinstance(field, models.BooleanField):
                group.add_argument(_flag(field.name), action=argparse.BooleanOptionalAction, default=None, help=about)
            elif isinstance(field, URLListField):
                group.add_argument(_flag(field.name), nargs="*", metavar="URL", default=None, help=about)
            else:
                choices = [value for value, _ in field.flatchoices] if field.choices else None
                group.add_argument(_flag(field.name), choices=choices, default=None, help=about)


def site_settings_options(options: dict[str, Any]) -> dict[str, Any]:
    """Return ``{setting name: value}`` for the settings flags given to ``ehr_site add`` (left out: not listed)."""
    return {name: options[name] for name in site_feature_fields() if options.get(name) is not None}


# --- readiness ------------------------------------------------------------------------------------------------


def site_feature_checks(site: EHRSite) -> Iterator[Check]:
    """Yield the readiness checks of every registered feature for ``site``, feature by feature."""
    for feature in site_features():
        if feature.checks is not None:
            yield from feature.checks(site)


def site_backend_needs(site: EHRSite) -> dict[str, str]:
    """Return ``{what needs it: system/ scopes}`` over every feature that uses backend services at ``site``."""
    needs: dict[str, str] = {}
    for feature in site_features():
        if feature.backend_needs is not None:
            needs |= feature.backend_needs(site)
    return needs


def site_patient_checks(site: EHRSite, reads: PatientReads) -> Iterator[Check]:
    """Yield every feature's checks of the nominated test patient (``SiteFeature.patient_checks``)."""
    for feature in site_features():
        if feature.patient_checks is not None:
            yield from feature.patient_checks(site, reads)
