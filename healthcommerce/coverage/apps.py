from django.apps import AppConfig


class CoverageConfig(AppConfig):
    name = "healthcommerce.coverage"
    label = "coverage"
    verbose_name = "Coverage and eligibility"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the per-site eligibility settings (``ehr.sitefeatures``) with their go-live readiness checks
        (``readiness.coverage_readiness``: settings complete, payer ids, a test 270 answered)."""
        from healthcommerce.coverage.models import CoverageSite
        from healthcommerce.coverage.readiness import coverage_readiness
        from healthcommerce.ehr.sitefeatures import site_feature_register

        site_feature_register(
            name="coverage", title="Eligibility (X12 270/271)", model=CoverageSite, checks=coverage_readiness
        )
