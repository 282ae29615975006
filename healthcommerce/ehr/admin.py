import json
import re
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.text import capfirst
from simple_history.admin import SimpleHistoryAdmin

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.core.admin import ServiceOnlyAdmin
from healthcommerce.core.http import url_problem
from healthcommerce.core.roles import PhiMaskedAdmin
from healthcommerce.ehr.models import QUIRKS, AppSigningKey, EHRSite, Launch, SiteSettings, URLListField
from healthcommerce.ehr.sitefeatures import SiteFeature, site_feature_fields, site_features

SECRETS = ("client_secret", "private_key_pem")


class ReadOnlyHistoryAdmin(SimpleHistoryAdmin):
    """django-simple-history's admin: a "History" button listing each change with who made it, when, the reason
    (``import from <file>`` for ``ehr_site import``) and what changed (docs/adr/0019). Read-only: a past version
    can be looked at, never restored (a restore would bypass the form's checks; edit the row or import a file).
    Opening the history is audited like a change page when the admin audits its views (``AuditedAdminMixin``)."""

    def revert_disabled(self, request: HttpRequest, obj: Any = None) -> bool:
        return True

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Show one past version; refuse a POST (a restore)."""
        if request.method == "POST":
            raise PermissionDenied
        response: HttpResponse = super().history_form_view(request, object_id, version_id, extra_context)
        return response

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Show the change history, audited as ``view=history`` (target ``<Model>/<id>``) by audited admins."""
        response: HttpResponse = super().history_view(request, object_id, extra_context)
        audit = getattr(self, "_audit_view", None)
        if response.status_code == 200 and audit is not None:
            audit(request, f"{self.model.__name__}/{object_id}", view="history")
        return response


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never renders a value, not even the one just submitted when the form is shown again."""

    def format_value(self, value: Any) -> None:
        return None


class LinesField(forms.Field):
    """A list of strings edited as one item per line (blank lines and surrounding spaces dropped, repeats kept
    once). ``check`` returns why one item is wrong, or ``None``; a bad line is refused naming its number and text.
    Cleans to ``list[str]``; shows a stored list one item per line."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60, "spellcheck": "false"})
    words = False  # True: a line may hold several items separated by spaces

    def __init__(self, *, check: Callable[[str], str | None], **kwargs: Any) -> None:
        self.check = check
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return "\n".join(str(item) for item in value)
        return value

    def to_python(self, value: Any) -> list[str]:
        if isinstance(value, list):
            return [str(item) for item in value]
        items: list[str] = []
        errors = []
        for number, line in enumerate(str(value or "").splitlines(), start=1):
            for item in line.split() if self.words else [line.strip()] if line.strip() else []:
                if problem := self.check(item):
                    errors.append(forms.ValidationError(f"Line {number}: {problem}.", code="bad_line"))
                elif item not in items:
                    items.append(item)
        if errors:
            raise forms.ValidationError(errors)
        return items

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.to_python(data) != list(initial or [])
        except forms.ValidationError:
            return True


class JSONObjectField(forms.JSONField):
    """A JSON object (``{}``) shown pretty-printed; anything else is refused with the parser's line and column."""

    widget = forms.Textarea(attrs={"rows": 3, "cols": 60, "spellcheck": "false"})
    default_error_messages = {"invalid": 'Not valid JSON: %(value)s. Write an object, e.g. {"name": true}.'}

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return str(value)
        return json.dumps(value if value is not None else {}, indent=2, sort_keys=True, ensure_ascii=False)

    def to_python(self, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return {}
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise forms.ValidationError(
                    f"Not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
                    'Write an object, e.g. {"name": true}.',
                    code="invalid",
                ) from exc
        else:
            parsed = value
        if not isinstance(parsed, dict):
            raise forms.ValidationError('Write a JSON object, e.g. {"name": true}, not a list or a value.')
        return parsed


class ScopesField(LinesField):
    """SMART scopes (stored space-separated in a text column) edited one per line; a line holding several scopes
    separated by spaces is split. Cleans to the space-separated string the model stores."""

    def prepare_value(self, value: Any) -> Any:
        return "\n".join(value.split()) if isinstance(value, str) else super().prepare_value(value)

    words = True

    def clean(self, value: Any) -> str:
        return " ".join(super().clean(value))

    def has_changed(self, initial: Any, data: Any) -> bool:
        try:
            return self.clean(data) != " ".join(str(initial or "").split())
        except forms.ValidationError:
            return True


_SCOPE = re.compile(r"^[A-Za-z0-9_.:/*?=&|\-]+$")


def _scope_line(value: str) -> str | None:
    """Why ``value`` is not one SMART scope (``launch``, ``patient/Patient.rs``, ``system/Communication.c``)."""
    return None if _SCOPE.match(value) else f"{value!r} is not a scope (letters, digits and _ . : / * ? = & | -)"


def _url_line(value: str) -> str | None:
    return url_problem(value)


def _origin_line(value: str) -> str | None:
    return url_problem(value, origin=True)


class EHRSiteForm(forms.ModelForm):
    """The site form without its secrets: each has an empty "replace" field and a "remove" box instead, so a
    stored secret is never sent to a browser (issue 9 "Secrets are write-only in the admin")."""

    new_client_secret = forms.CharField(
        required=False,
        strip=True,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label="Replace client secret",
        help_text="Leave empty to keep the stored secret.",
    )
    remove_client_secret = forms.BooleanField(required=False, label="Remove the client secret")
    new_private_key_pem = forms.CharField(
        required=False,
        strip=True,
        widget=WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off"}),
        label="Replace private key",
        help_text="A PEM private key for private_key_jwt. Leave empty to keep the stored key.",
    )
    remove_private_key_pem = forms.BooleanField(required=False, label="Remove the private key")
    frame_origins = LinesField(
        check=_origin_line,
        label="Frame origins",
        help_text="One origin per line (https://host[:port], no path): the EHR pages allowed to frame the app "
        "(CSP frame-ancestors).",
    )
    scopes = ScopesField(
        check=_scope_line,
        required=True,
        label="Scopes",
        widget=forms.Textarea(attrs={"rows": 6, "cols": 40, "spellcheck": "false"}),
        help_text="One SMART scope per line, asked for at launch.",
    )
    backend_scopes = ScopesField(
        check=_scope_line,
        label="Backend scopes",
        widget=forms.Textarea(attrs={"rows": 3, "cols": 40, "spellcheck": "false"}),
        help_text="One system/ scope per line for backend services, e.g. system/Patient.rs.",
    )
    quirks = forms.MultipleChoiceField(
        required=False,
        choices=list(QUIRKS.items()),
        widget=forms.CheckboxSelectMultiple,
        label="Quirks",
        help_text='How this EHR differs from the standard (docs/extending.md "Add a site setting").',
    )
    other_quirks = JSONObjectField(
        label="Other quirks (JSON)",
        help_text="Quirk keys this version does not know (from an imported record), kept as they are. Usually {}.",
    )
    iss = forms.URLField(
        max_length=500,
        assume_scheme="https",
        label=capfirst(EHRSite._meta.get_field("iss").verbose_name),
        help_text=EHRSite._meta.get_field("iss").help_text,
        widget=forms.URLInput(attrs={"class": "vURLField"}),
    )

    class Meta:
        model = EHRSite
        # An allowlist: a secret column added later stays off the form until someone decides how to show it.
        fields = [
            "name",
            "iss",
            "client_id",
            "auth_method",
            "key_id",
            "signing_alg",
            "scopes",
            "quirks",
            "other_quirks",
            "frame_origins",
            "is_active",
            # the go-live kit (issue 10): vendor, our key's jku, backend services
            "vendor",
            "vendor_version",
            "send_jku",
            "backend_services",
            "backend_client_id",
            "backend_scopes",
        ]
        # Each stage's own settings are not here: they are the inlines below, one per registered feature.

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stored = self.instance.quirks if isinstance(self.instance.quirks, dict) else {}
        self.initial["quirks"] = [key for key in QUIRKS if stored.get(key) is True]
        self.initial["other_quirks"] = {key: value for key, value in stored.items() if key not in QUIRKS}

    def clean(self) -> dict[str, Any]:
        """Put the quirks back together: each ticked known quirk ``true``, the other keys as written."""
        cleaned: dict[str, Any] = super().clean() or {}
        other = cleaned.get("other_quirks") or {}
        clash = sorted(set(other) & set(QUIRKS))
        if clash:
            self.add_error("other_quirks", f"{', '.join(clash)}: use the checkbox above, not JSON.")
        cleaned["quirks"] = {**other, **{key: True for key in cleaned.get("quirks") or []}}
        return cleaned

    def clean_new_private_key_pem(self) -> str:
        pem = self.cleaned_data["new_private_key_pem"]
        if pem:
            try:
                load_pem_private_key(pem.encode(), password=None)
            except (ValueError, TypeError) as exc:
                raise forms.ValidationError("This is not an unencrypted PEM private key.") from exc
        return pem

    def save(self, commit: bool = True) -> Any:
        for name in SECRETS:
            if self.cleaned_data.get(f"new_{name}"):
                setattr(self.instance, name, self.cleaned_data[f"new_{name}"])
            elif self.cleaned_data.get(f"remove_{name}"):
                setattr(self.instance, name, "")
        return super().save(commit=commit)


class _SettingsFormSet(forms.BaseInlineFormSet):
    """A feature's one row: a new site already has it (``sitefeatures.site_settings_create`` runs when the site is
    saved), so the form of the add page updates that row instead of inserting a second one."""

    def save_new(self, form: forms.ModelForm, commit: bool = True) -> Any:
        row = form.save(commit=False)
        row.site = self.instance
        existing = type(row).objects.filter(site=self.instance).first()
        if existing is not None:
            row.pk, row.created_at = existing.pk, existing.created_at
            row._state.adding = False
        if commit:
            row.save()
        return row


class SiteFeatureInline(admin.StackedInline):
    """One registered stage's settings on the EHR site's page (``ehr.sitefeatures``): a section titled with the
    feature, the model's fields with their labels and help texts, URL lists one per line. Who may view or change
    the site may view or change its settings; a row is never deleted on its own."""

    formset = _SettingsFormSet
    extra = 1
    min_num = 0
    max_num = 1
    can_delete = False
    feature: SiteFeature

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if isinstance(db_field, URLListField):
            return LinesField(
                check=_url_line,
                label=capfirst(db_field.verbose_name),
                help_text=f"One URL per line. {db_field.help_text}",
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_extra(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> int:
        return 0 if obj is not None and self.model.objects.filter(site=obj).exists() else 1

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("ehr.view_ehrsite") or request.user.has_perm("ehr.change_ehrsite")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("ehr.change_ehrsite")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm("ehr.change_ehrsite") or request.user.has_perm("ehr.add_ehrsite")

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class SettingsSecretsForm(forms.ModelForm):
    """A feature's form whose secret settings (``SiteFeature.secrets``) are write-only, as the site's own secrets are
    (``EHRSiteForm``): each has an empty "Replace" field and a "Remove" box, so a stored secret never reaches a
    browser. ``feature_inline`` adds the two fields per secret (``secret_form_fields``)."""

    feature: SiteFeature

    def save(self, commit: bool = True) -> Any:
        row = super().save(commit=False)
        for field in self.feature.secrets:
            new = self.cleaned_data.get(f"new_{field.name}")
            if self.cleaned_data.get(f"remove_{field.name}"):
                setattr(row, field.name, "")
            elif new:
                setattr(row, field.name, new)
        if commit:
            row.save()
        return row


def secret_form_fields(feature: SiteFeature) -> dict[str, forms.Field]:
    """Return ``{"new_<name>": ..., "remove_<name>": ...}`` for each secret setting of ``feature``."""
    found: dict[str, forms.Field] = {}
    for field in feature.secrets:
        label = str(field.verbose_name)
        found[f"new_{field.name}"] = forms.CharField(
            required=False,
            strip=True,
            max_length=field.max_length,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            label=f"Replace {label}",
            help_text=f"{field.help_text} Leave empty to keep the stored value (never shown).",
        )
        found[f"remove_{field.name}"] = forms.BooleanField(required=False, label=f"Remove the {label}")
    return found


def feature_inline(feature: SiteFeature) -> type[SiteFeatureInline]:
    """Return the inline of ``feature``: its model, its settings (``SiteFeature.field_names``), a write-only
    replace field and a remove box per secret setting (``SettingsSecretsForm``), and its title."""
    model: type[SiteSettings] = feature.model
    extra = secret_form_fields(feature)
    form = type(f"{model.__name__}Form", (SettingsSecretsForm,), {"feature": feature, **extra})
    attrs = {
        "model": model,
        "feature": feature,
        "form": form,
        "fields": feature.field_names + list(extra),
        "verbose_name": feature.title,
        "verbose_name_plural": feature.title,
    }
    return type(f"{model.__name__}Inline", (SiteFeatureInline,), attrs)


def _setting_column(feature: SiteFeature, field: models.Field) -> Callable[[EHRSite], str]:
    """A list column showing a stage's choice setting of each site, headed with the field's label."""

    def column(site: EHRSite) -> str:
        return str(dict(field.flatchoices).get(getattr(feature.model.of(site), field.name), ""))

    column.short_description = capfirst(field.verbose_name)  # type: ignore[attr-defined]
    column.__name__ = f"{feature.name}_{field.name}"
    return column


@admin.register(EHRSite)
class EHRSiteAdmin(AuditedAdminMixin, PhiMaskedAdmin, ReadOnlyHistoryAdmin):
    """Per-site configuration. The client secret and private key are write-only: the change page says only whether
    each is set, never its value, to admin and support alike (no masking needed: ``phi_fields`` is empty). Looking
    and changing are audited; "History" lists every change, who and when, without the secrets."""

    form = EHRSiteForm
    # Which site, which EHR, on or off; client, auth method and discovery are on the site's page (fits 1280 px).
    # Each stage's settings follow: a choice in the list, an on/off in the filters (``get_list_display``).
    list_display = ["name", "vendor", "iss", "is_active"]
    list_filter = ["vendor", "auth_method", "is_active", "backend_services"]
    search_fields = ["name", "iss", "client_id"]
    readonly_fields = [
        "client_secret_status",
        "private_key_status",
        "scopes_granted",
        "discovery_json",
        "discovered_at",
        "created_at",
        "updated_at",
    ]

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[type[SiteFeatureInline]]:  # type: ignore[override]
        """One section per registered stage's settings, in the registry's order (built per request: stages
        register in their ``ready()``, after this module is imported)."""
        return [feature_inline(feature) for feature in site_features()]

    def get_list_display(self, request: HttpRequest) -> list[Any]:
        """The site's columns, then each stage's choice settings (the orders stage's write-back) that its settings
        model lists (``SiteSettings.LIST_COLUMNS``)."""
        shown = [
            _setting_column(f, field)
            for f, field in site_feature_fields().values()
            if field.choices and (f.model.LIST_COLUMNS is None or field.name in f.model.LIST_COLUMNS)
        ]
        return [*super().get_list_display(request), *shown]

    def get_list_filter(self, request: HttpRequest) -> list[Any]:
        """The site's filters, then each stage's on/off settings (``cdshookssite__cds_hooks_enabled``)."""
        switches = [
            f"{f.model._meta.model_name}__{name}"
            for name, (f, field) in site_feature_fields().items()
            if isinstance(field, models.BooleanField)
        ]
        return [*super().get_list_filter(request), *switches]

    def get_fields(self, request: HttpRequest, obj: EHRSite | None = None) -> list[str]:  # type: ignore[override]
        fields = [str(f) for f in super().get_fields(request, obj) if f not in SECRETS]
        order = ["client_secret_status", "new_client_secret", "remove_client_secret"]
        order += ["private_key_status", "new_private_key_pem", "remove_private_key_pem"]
        rest = [f for f in fields if f not in order and f != "other_quirks"]
        if "quirks" in rest and "other_quirks" in fields:
            rest.insert(rest.index("quirks") + 1, "other_quirks")
        at = rest.index("auth_method") + 1 if "auth_method" in rest else len(rest)
        return [*rest[:at], *order, *rest[at:]]

    @admin.display(description="Discovery document")
    def discovery_json(self, obj: EHRSite) -> str:
        """The cached SMART configuration, pretty-printed in a scrolling box."""
        if not obj.discovery:
            return "-"
        text = json.dumps(obj.discovery, indent=2, sort_keys=True, ensure_ascii=False)
        return format_html('<pre class="hc-json">{}</pre>', text)

    @admin.display(description="Client secret")
    def client_secret_status(self, obj: EHRSite) -> str:
        return "set" if obj.client_secret else "not set"

    @admin.display(description="Private key")
    def private_key_status(self, obj: EHRSite) -> str:
        return "set" if obj.private_key_pem else "not set"


@admin.register(AppSigningKey)
class AppSigningKeyAdmin(ServiceOnlyAdmin):
    """Our signing keys, read-only: kid, algorithm, site, environment and life cycle. The private key is never
    shown; keys are made, activated and removed with ``manage.py ehr_keys`` (docs/adr/0020), which audits each."""

    list_display = ["kid", "alg", "site", "environment", "status", "created_at", "activated_at", "retired_at"]
    list_filter = ["status", "alg", "environment"]
    exclude = ("private_jwk",)
    fields = ("kid", "alg", "site", "environment", "status", "public_jwk", "created_at", "activated_at", "retired_at")


@admin.register(Launch)
class LaunchAdmin(AuditedAdminMixin, PhiMaskedAdmin, admin.ModelAdmin):
    """Launches for troubleshooting; tokens, state and PKCE values are never shown. A launch names its user and
    patient context, so looking is audited as a PHI view."""

    audit_phi = True

    phi_fields = ("encounter_id",)  # hidden from support (core/roles.py)

    list_display = ["id", "site", "status", "error_code", "created_at", "prefill_seconds"]
    list_filter = ["status", "site"]
    _shown = (
        "site",
        "status",
        "error_code",
        "scope_granted",
        "fhir_user",
        "encounter_id",
        "prefill_outcomes",
        "prefill_seconds",
        "created_at",
        "expires_at",
    )
    fields = _shown
    readonly_fields = _shown

    def has_add_permission(self, request: object) -> bool:
        return False
