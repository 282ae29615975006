from django.apps import AppConfig


class CdsHooksConfig(AppConfig):
    """CDS Hooks 2.0 discovery and services (``/cds-services``) for sites that enable them."""

    name = "healthcommerce.cdshooks"
    label = "cdshooks"
    verbose_name = "CDS Hooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the per-site CDS Hooks settings and their readiness checks (``ehr.sitefeatures``)."""
        from healthcommerce.cdshooks.models import CdsHooksSite
        from healthcommerce.cdshooks.readiness import cds_readiness
        from healthcommerce.ehr.sitefeatures import site_feature_register

        site_feature_register(name="cdshooks", title="CDS Hooks", model=CdsHooksSite, checks=cds_readiness)
