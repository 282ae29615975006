from django.apps import AppConfig


class OrdersConfig(AppConfig):
    name = "healthcommerce.orders"
    label = "orders"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Tell the audit export which rows belong to a patient (``selectors.patient_audit_scope``); subscribe the
        write-back to ``order.writeback`` (ADR 0022), the eligibility check to ``order.eligibility`` (ADR 0026),
        the HL7 v2 status back to ``order.submitted``, ``order.status_changed`` and ``order.cancelled``
        (``hl7status``) and notify-then-pull to
        ``intake.fhir_notification`` (``notified``); add the scopes pre-fill's reads need to a new site's default
        (``ehr.scopes``, from ``fields.SOURCES``); check the order's field table against the model (``checks``);
        register the per-site orders settings (``ehr.sitefeatures``); handle HL7 v2 order messages (ORM^O01,
        OML^O21: ``orders.hl7``, registered with ``intake.registry``)."""
        from django.core import checks

        from healthcommerce.audit.selectors import patient_resolver_add
        from healthcommerce.ehr.scopes import scope_register
        from healthcommerce.ehr.sitefeatures import site_feature_register
        from healthcommerce.intake.events import TOPIC_FHIR_NOTIFICATION
        from healthcommerce.intake.registry import intake_handler_register
        from healthcommerce.orders.checks import order_fields_check
        from healthcommerce.orders.events import TOPIC_HL7_ORDER, TOPIC_ORDER_ELIGIBILITY, TOPIC_ORDER_WRITEBACK
        from healthcommerce.orders.fields import scopes
        from healthcommerce.orders.hl7 import MESSAGE_TYPES, order_hl7_handle
        from healthcommerce.orders.hl7status import STATUS_SUBSCRIBERS
        from healthcommerce.orders.models import OrderSite
        from healthcommerce.orders.readiness import order_patient_readiness
        from healthcommerce.orders.selectors import patient_audit_scope
        from healthcommerce.outbox.subscribers import subscribe

        patient_resolver_add(patient_audit_scope)
        subscribe(
            name="orders.writeback",
            topic=TOPIC_ORDER_WRITEBACK,
            handler="healthcommerce.orders.writeback.writeback_deliver",
            on_dead="healthcommerce.orders.writeback.writeback_dead",
        )
        for name, topic in STATUS_SUBSCRIBERS.items():  # status back to the EHR over HL7 v2 (orders.hl7status)
            subscribe(
                name=name,
                topic=topic,
                handler="healthcommerce.orders.hl7status.hl7_status_send",
                on_dead="healthcommerce.orders.hl7status.hl7_status_dead",
                wants="healthcommerce.orders.hl7status.hl7_status_subjects",
            )
        subscribe(  # an accepted HL7 v2 NW order group becomes its order on a worker (orders.hl7)
            name="orders.hl7_order",
            topic=TOPIC_HL7_ORDER,
            handler="healthcommerce.orders.hl7.order_hl7_create",
        )
        subscribe(  # the coverage of a signed order checked with its payer (orders.eligibility, ADR 0026)
            name="orders.eligibility",
            topic=TOPIC_ORDER_ELIGIBILITY,
            handler="healthcommerce.orders.eligibility.eligibility_deliver",
            on_dead="healthcommerce.orders.eligibility.eligibility_dead",
        )
        subscribe(
            name="orders.fhir_notification",
            topic=TOPIC_FHIR_NOTIFICATION,
            handler="healthcommerce.orders.notified.notified_order_create",
        )
        for scope in scopes():
            scope_register(scope)
        checks.register(order_fields_check, checks.Tags.models)
        site_feature_register(
            name="orders",
            title="Orders",
            model=OrderSite,
            backend_needs=lambda site: OrderSite.of(site).backend_needs(),
            patient_checks=order_patient_readiness,
        )
        for message_type in MESSAGE_TYPES:
            intake_handler_register(message_type, order_hl7_handle)
