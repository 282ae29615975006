"""EHR sites (per-site configuration) and SMART launches (server-side launch state and tokens)."""

from typing import Any

from django.db import models
from simple_history.models import HistoricalRecords

from healthcommerce.core.encryption import EncryptedCharField, EncryptedTextField
from healthcommerce.core.models import BaseModel
from healthcommerce.ehr.scopes import default_scopes

# Fields the app itself refreshes (discovery's cache, what the EHR last granted): a save of only these is an
# observation, not a configuration change, and keeps no history row (docs/adr/0019).
OBSERVED_FIELDS = frozenset({"discovery", "discovered_at", "scopes_granted", "updated_at"})
# The encrypted secrets never get a historical copy (docs/adr/0016, 0019).
SECRET_FIELDS = ["client_secret", "private_key_pem"]


class SiteHistory(HistoricalRecords):
    """django-simple-history's ``HistoricalRecords`` that skips saves touching only ``OBSERVED_FIELDS`` (a
    discovery refresh at launch), unless the save names a user or a change reason (an import, an admin edit)."""

    def post_save(self, instance: Any, created: bool, using: str | None = None, **kwargs: Any) -> None:
        update_fields = kwargs.get("update_fields")
        named = hasattr(instance, "_history_user") or getattr(instance, "_change_reason", None)
        if not created and update_fields and set(update_fields) <= OBSERVED_FIELDS and not named:
            return
        super().post_save(instance, created, using=using, **kwargs)


class Vendor(models.TextChoices):
    """The EHR product behind a site; quirks and readiness checks depend on it."""

    EPIC = "epic", "Epic"
    ORACLE = "oracle", "Oracle Health (Cerner)"
    SANDBOX = "sandbox", "healthcommerce sandbox EHR"
    OTHER = "other", "Other SMART on FHIR server"


# The on/off quirks a site can have (keys of ``EHRSite.quirks``, docs/extending.md "Add a site setting"): the admin
# offers one checkbox each. A key not listed here (from an older import) is kept, edited as JSON.
QUIRKS = {
    "epic_client_id_header": "Epic-Client-ID header on metadata",  # ehr/discovery.py
    "authorize_post": "Authorize by form POST, not redirect",  # ehr/services.py launch_start
}


class EHRSite(BaseModel):
    """One registered EHR (one health system's FHIR server), keyed by its FHIR base URL, ``iss``.

    What the launch needs lives here: the FHIR base, the client id and how the client authenticates (SMART App
    Launch 2.2 "Client Authentication"), the scopes to ask for, quirks, backend services and the cached discovery
    document. Each later stage keeps its own settings for the site in its own one-to-one row (a ``SiteSettings``
    subclass registered in ``ehr.sitefeatures``; docs/extending.md "Add a site setting").
    """

    class AuthMethod(models.TextChoices):
        PUBLIC = "none", "Public client (no secret)"
        CLIENT_SECRET_BASIC = "client_secret_basic", "Confidential symmetric (client_secret_basic)"
        PRIVATE_KEY_JWT = "private_key_jwt", "Confidential asymmetric (private_key_jwt)"

    name = models.CharField(max_length=200)
    iss = models.URLField(
        verbose_name="issuer (iss)",
        max_length=500,
        unique=True,
        help_text="FHIR base URL exactly as the EHR sends it in `iss`.",
    )
    client_id = models.CharField(verbose_name="client ID", max_length=200)
    auth_method = models.CharField(max_length=40, choices=AuthMethod.choices, default=AuthMethod.PUBLIC)
    # Encrypted at rest and write-only in the admin (docs/adr/0016).
    client_secret = EncryptedCharField(max_length=500, blank=True)
    private_key_pem = EncryptedTextField(
        verbose_name="private key (PEM)", blank=True, help_text="PEM private key for private_key_jwt."
    )
    key_id = models.CharField(
        verbose_name="key ID", max_length=200, blank=True, help_text="`kid` of the signing key in our JWKS."
    )
    signing_alg = models.CharField(
        verbose_name="signing algorithm",
        max_length=10,
        default="RS384",
        choices=[("RS384", "RS384"), ("ES384", "ES384")],
    )
    scopes = models.TextField(default=default_scopes)
    quirks = models.JSONField(default=dict, blank=True, help_text='e.g. {"epic_client_id_header": true}')
    frame_origins = models.JSONField(
        default=list,
        blank=True,
        help_text='Origins allowed to frame the app for this site (CSP frame-ancestors), e.g. ["https://epic.example.org"].',
    )
    is_active = models.BooleanField(default=True)
    # The go-live kit (issue 10): what the site is, what it granted, and which optional features it enables.
    vendor = models.CharField(max_length=20, choices=Vendor.choices, default=Vendor.OTHER)
    vendor_version = models.CharField(max_length=100, blank=True, help_text="e.g. Epic February 2026.")
    scopes_granted = models.TextField(
        blank=True, editable=False, help_text="Scopes the EHR granted the last time (launch or readiness check)."
    )
    send_jku = models.BooleanField(
        verbose_name="send JKU",
        default=False,
        help_text="Put our JWKS URL in client assertions' `jku` header (only where the site registered that URL).",
    )
    backend_services = models.BooleanField(
        default=False,
        help_text="SMART Backend Services (client credentials with a signed assertion) are registered for this site.",
    )
    backend_client_id = models.CharField(
        verbose_name="backend client ID",
        max_length=200,
        blank=True,
        help_text="Client id of the backend-services registration; blank: client_id.",
    )
    backend_scopes = models.TextField(
        blank=True, help_text="system/ scopes to ask for, e.g. system/Patient.rs system/Communication.c"
    )
    discovery = models.JSONField(default=dict, blank=True, editable=False)
    discovered_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Who changed what and when, without the secrets (docs/adr/0019); the admin's "History" button shows it.
    history = SiteHistory(excluded_fields=SECRET_FIELDS)

    class Meta:
        verbose_name = "EHR site"
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.iss})"


class URLListField(models.JSONField):
    """A list of http(s) URLs stored as JSON (``[]`` by default). The site record checks each item with
    ``core.http.url_problem`` (``fetched``: the app fetches it, so it must be reachable from here), and the admin
    edits it one URL per line."""

    def __init__(self, *args: Any, fetched: bool = False, **kwargs: Any) -> None:
        self.fetched = fetched
        kwargs.setdefault("default", list)
        kwargs.setdefault("blank", True)
        super().__init__(*args, **kwargs)

    def deconstruct(self) -> Any:
        name, path, args, kwargs = super().deconstruct()
        if self.fetched:
            kwargs["fetched"] = True
        return name, path, args, kwargs


class SettingsHistory(HistoricalRecords):
    """django-simple-history's ``HistoricalRecords`` for stage settings: an encrypted setting (a secret, e.g. a
    bearer token the site sends us; ``sitefeatures.setting_is_secret``) never gets a historical copy, as the site's
    own secrets do not (``SECRET_FIELDS``, docs/adr/0016, 0019)."""

    def fields_included(self, model: Any) -> list[models.Field]:
        return [f for f in super().fields_included(model) if not isinstance(f, EncryptedCharField | EncryptedTextField)]


class SiteSettings(BaseModel):
    """A stage's own settings for one EHR site: one row per site, registered with ``ehr.sitefeatures``
    (``site_feature_register``) in the stage's ``AppConfig.ready()``.

    Every other concrete, editable field of a subclass is a setting: the site record, its JSON Schema, the site's
    admin page and ``ehr_site add``'s flags are derived from it (docs/extending.md "Add a site setting"). Each field
    needs a default, so a missing row reads as the defaults. Changes keep history like ``EHRSite`` (ADR 0019).
    """

    site = models.OneToOneField(EHRSite, on_delete=models.CASCADE, related_name="%(class)s")
    history = SettingsHistory(inherit=True)
    # The choice settings shown as columns of the admin's site list (None: every one); a stage with several sites'
    # worth of detail lists none and leaves its on/off settings to the list's filters.
    LIST_COLUMNS: tuple[str, ...] | None = None

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self._meta.verbose_name} of {self.site.name}"

    @classmethod
    def of(cls, site: EHRSite) -> Any:
        """Return this stage's row for ``site``, created with the defaults when missing (callers never see
        ``DoesNotExist``); for an unsaved ``site``, an unsaved row with the defaults."""
        if site.pk is None:
            return cls(site=site)
        try:
            return getattr(site, cls._meta.model_name or "")
        except cls.DoesNotExist:  # type: ignore[attr-defined]
            row, _ = cls._default_manager.get_or_create(site=site)
            return row


class AppSigningKey(BaseModel):
    """One of our signing key pairs, published at ``/.well-known/jwks.json`` (SMART App Launch 2.2 "Client
    Authentication: Asymmetric": the app publishes a JWKS URL so keys rotate without re-registration).

    Keys are per site (``site`` null: shared by every site) and per ``environment`` (``settings.APP_ENVIRONMENT``,
    so non-production and production never share a key). Life cycle, driven by ``manage.py ehr_keys``:
    ``next`` (published, not yet used, so EHRs that cache our JWKS, Epic up to 29 hours, see it before it
    signs), ``active`` (signs assertions; one per site, environment and algorithm), ``retired`` (still
    published until ``retire_after``), ``removed`` (no longer published).
    """

    class Status(models.TextChoices):
        NEXT = "next", "Published, not yet signing"
        ACTIVE = "active", "Signing"
        RETIRED = "retired", "Published, no longer signing"
        REMOVED = "removed", "Not published"

    site = models.ForeignKey(EHRSite, null=True, blank=True, on_delete=models.CASCADE, related_name="signing_keys")
    environment = models.CharField(max_length=40)
    kid = models.CharField(verbose_name="key ID (kid)", max_length=100, unique=True)
    alg = models.CharField(verbose_name="algorithm", max_length=10, choices=[("RS384", "RS384"), ("ES384", "ES384")])
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.NEXT)
    private_jwk = EncryptedTextField(
        verbose_name="private JWK", help_text="The private key as a JWK (JSON); encrypted at rest."
    )
    public_jwk = models.JSONField(
        verbose_name="public JWK",
    )
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["environment", "site__name", "alg", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "environment", "alg"],
                condition=models.Q(status="active"),
                name="one_active_key_per_site_env_alg",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kid} ({self.alg}, {self.status})"


class Launch(BaseModel):
    """One SMART EHR launch, from ``/smart/launch`` to the clinician's order pages.

    The ``id`` (UUID) is carried in the clinician's URLs so several launches in one browser do not mix;
    ``state`` and the PKCE verifier are server-side and single use (SMART App Launch 2.2 "App Protection").
    Tokens never leave the server.
    """

    class Status(models.TextChoices):
        AUTHORIZING = "authorizing"
        ACTIVE = "active"
        FAILED = "failed"

    site = models.ForeignKey(EHRSite, on_delete=models.CASCADE, related_name="launches")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.AUTHORIZING)
    browser_key = models.CharField(max_length=64, help_text="SHA-256 of the browser binding kept in the session.")
    state = models.CharField(max_length=100, unique=True)
    state_used_at = models.DateTimeField(null=True, blank=True)
    code_verifier = models.CharField(max_length=128)
    nonce = models.CharField(max_length=100)
    launch_token = models.TextField()
    expires_at = models.DateTimeField()
    error_code = models.CharField(max_length=80, blank=True)
    # Filled by the callback (SMART App Launch 2.2 "Launch context arrives with your access_token").
    # Encrypted at rest; the access token is kept for its lifetime (so "Re-read from the EHR" works while it lives)
    # and cleared once it has expired or the launch has (``ehr.services.launch_tokens_clear``).
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(
        blank=True, help_text="Single-use when the EHR rotates it; never leaves the server."
    )
    token_expires_at = models.DateTimeField(null=True, blank=True)
    # A refresh in progress holds this lease (``ehr.tokens``): callers wait for it instead of holding a database
    # lock across the token request.
    token_refreshing_until = models.DateTimeField(null=True, blank=True)
    scope_granted = models.TextField(blank=True)
    patient_id = models.CharField(verbose_name="patient ID", max_length=200, blank=True)
    encounter_id = models.CharField(verbose_name="encounter ID", max_length=200, blank=True)
    fhir_user = models.CharField(verbose_name="FHIR user", max_length=500, blank=True)
    fhir_context = models.JSONField(verbose_name="FHIR context", default=list, blank=True)
    app_context = models.TextField(
        blank=True, help_text="`appContext` from the token response (CDS Hooks SMART link: the draft order)."
    )
    need_patient_banner = models.BooleanField(default=True)
    # The patient's display name as pre-fill read it (the banner shows it whether or not the launch has a draft).
    # PHI: encrypted at rest; the launch purge deletes the row with it.
    patient_name = EncryptedCharField(max_length=300, blank=True)
    smart_style_url = models.URLField(verbose_name="SMART style URL", max_length=500, blank=True)
    # Pre-fill ran once for this launch: when, how long (seconds) and each read's outcome (label -> code).
    prefilled_at = models.DateTimeField(null=True, blank=True)
    prefill_seconds = models.FloatField(null=True, blank=True)
    prefill_outcomes = models.JSONField(default=dict, blank=True)
    # What pre-fill could not use: warnings naming each dropped element, and requests listed apart
    # ({"reference", "display", "code", "reason"}) because no product fulfils them or they are not pending.
    prefill_warnings = models.JSONField(default=list, blank=True)
    prefill_set_aside = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name_plural = "launches"
        indexes = [models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"Launch {self.id} at {self.site.name} ({self.status})"
