from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "healthcommerce.orders"
    label = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Tell the audit export which rows belong to a patient (``selectors.patient_audit_scope``)."""
        from healthcommerce.audit.selectors import patient_resolver_add
        from healthcommerce.orders.selectors import patient_audit_scope

        patient_resolver_add(patient_audit_scope)
