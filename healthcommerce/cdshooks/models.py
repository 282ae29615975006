"""CDS Hooks' own settings for an EHR site (docs/adr/0021, registered in ``apps.py``)."""

from django.db import models

from healthcommerce.ehr.models import SiteSettings, URLListField


class CdsHooksSite(SiteSettings):
    """Whether the app answers a site's CDS Hooks calls, and the allowlists the calls' JWTs are checked against
    (CDS Hooks 2.0 "Trusting CDS Clients": the service SHOULD allowlist ``iss`` and ``jku``)."""

    cds_hooks_enabled = models.BooleanField(
        verbose_name="CDS Hooks enabled", default=False, help_text="Answer this site's CDS Hooks calls."
    )
    cds_issuers = URLListField(
        verbose_name="CDS Hooks issuers",
        help_text="Allowed `iss` of the EHR's CDS Hooks JWTs (usually the FHIR base).",
    )
    cds_jku_allowlist = URLListField(
        verbose_name="CDS Hooks JKU allowlist",
        fetched=True,
        help_text="Allowed `jku` (JWKS URLs, https) of the EHR's CDS Hooks JWTs.",
    )

    class Meta:
        verbose_name = "CDS Hooks settings"
        verbose_name_plural = "CDS Hooks settings"
