from django.apps import AppConfig


class IntakeConfig(AppConfig):
    name = "healthcommerce.intake"
    label = "intake"
    verbose_name = "Intake (HL7 v2 and FHIR notifications)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the per-site intake settings (``ehr.sitefeatures``) and the deploy check (``checks``)."""
        from healthcommerce.ehr.sitefeatures import site_feature_register
        from healthcommerce.intake import checks  # noqa: F401  (registers the HL7 TLS deploy check)
        from healthcommerce.intake.models import IntakeSite

        site_feature_register(name="intake", title="Intake (HL7 v2, FHIR notifications)", model=IntakeSite)
