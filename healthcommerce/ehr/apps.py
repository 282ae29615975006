from django.apps import AppConfig


class EhrConfig(AppConfig):
    name = "healthcommerce.ehr"
    verbose_name = "EHR"
    label = "ehr"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Give each new EHR site every registered stage's settings row (``sitefeatures.site_settings_create``)."""
        from django.db.models.signals import post_save

        from healthcommerce.ehr.models import EHRSite
        from healthcommerce.ehr.sitefeatures import site_settings_create

        post_save.connect(site_settings_create, sender=EHRSite, dispatch_uid="ehr.site_settings_create")
