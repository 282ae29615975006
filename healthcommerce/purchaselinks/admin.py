"""Admin for purchase links: no token (only its hash exists, and it is not shown); revoke or re-issue."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.core.admin import ServiceOnlyAdmin, admin_actor
from healthcommerce.core.errors import HealthcommerceError
from healthcommerce.core.roles import PhiMaskedAdmin
from healthcommerce.purchaselinks.models import Payment, PurchaseLink, StripeEvent
from healthcommerce.purchaselinks.payments import payment_refund
from healthcommerce.purchaselinks.services import EMAIL, SMS, purchase_link_reissue, purchase_link_revoke


def _actor(request: HttpRequest) -> str:
    return f"admin:{request.user.get_username()}"


@admin.register(PurchaseLink)
class PurchaseLinkAdmin(AuditedAdminMixin, PhiMaskedAdmin, ServiceOnlyAdmin):
    """Links are created by fulfillment; admins see their state and may revoke or replace them (audited views)."""

    audit_phi = True

    phi_fields = ("sent_to", "sms_sent_to")  # the patient's email and number: hidden from support (core/roles.py)

    list_display = [
        "order_reference",
        "purpose",
        "expires_at",
        "failed_attempts",
        "locked",
        "completed",
        "revoked",
        "sent_at",
        "sms_sent_at",
    ]
    list_filter = [
        "purpose",
        ("completed_at", admin.EmptyFieldListFilter),
        ("revoked_at", admin.EmptyFieldListFilter),
        ("locked_at", admin.EmptyFieldListFilter),
    ]
    search_fields = ["order__reference"]
    list_select_related = ["order"]
    ordering = ["-created_at"]
    actions = ["revoke", "reissue"]
    fields = readonly_fields = (
        "order_reference",
        "purpose",
        "expires_at",
        "failed_attempts",
        "locked_at",
        "verified_at",
        "completed_at",
        "revoked_at",
        "sent_at",
        "sms_sent_at",
        "created_at",
    )

    @admin.display(description="Order", ordering="order__reference")
    def order_reference(self, obj: PurchaseLink) -> str:
        return obj.order.reference

    @admin.display(boolean=True, description="Locked")
    def locked(self, obj: PurchaseLink) -> bool:
        return obj.locked_at is not None

    @admin.display(boolean=True, description="Completed")
    def completed(self, obj: PurchaseLink) -> bool:
        return obj.completed_at is not None

    @admin.display(boolean=True, description="Revoked")
    def revoked(self, obj: PurchaseLink) -> bool:
        return obj.revoked_at is not None

    @admin.action(description="Revoke", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[PurchaseLink]) -> None:
        for link in queryset.select_related("order"):
            purchase_link_revoke(link=link, actor=_actor(request))
        self.message_user(request, f"{queryset.count()} link(s) revoked.")

    @admin.action(description="Revoke and send a new link", permissions=["change"])
    def reissue(self, request: HttpRequest, queryset: QuerySet[PurchaseLink]) -> None:
        orders = {link.order_id: link.order for link in queryset.select_related("order", "order__site")}
        sent = [purchase_link_reissue(order=order, actor=_actor(request)) for order in orders.values()]
        emailed, texted = sum(EMAIL in s for s in sent), sum(SMS in s for s in sent)
        self.message_user(
            request,
            f"{len(orders)} new link(s) issued, {emailed} emailed, {texted} texted (see each order's timeline).",
        )


@admin.register(Payment)
class PaymentAdmin(AuditedAdminMixin, ServiceOnlyAdmin):
    """Payments as Stripe reports them (webhooks); a paid order that was cancelled is refunded from here."""

    audit_phi = True

    list_display = ["order_reference", "status", "amount_cents", "currency", "last_error_code", "created_at"]
    list_filter = ["status"]
    search_fields = ["order__reference", "stripe_payment_intent_id"]
    list_select_related = ["order"]
    ordering = ["-created_at"]
    actions = ["refund"]

    @admin.display(description="Order", ordering="order__reference")
    def order_reference(self, obj: Payment) -> str:
        return obj.order.reference

    @admin.action(description="Refund in full (paid, cancelled orders only)", permissions=["change"])
    def refund(self, request: HttpRequest, queryset: QuerySet[Payment]) -> None:
        refunded, refused = 0, []
        for payment in queryset.select_related("order"):
            try:
                payment_refund(payment=payment, actor=admin_actor(request))
                refunded += 1
            except HealthcommerceError as exc:
                refused.append(f"{payment.order.reference}: {exc.message} ({exc.code})")
        if refunded:
            self.message_user(request, f"{refunded} payment(s) refunded (or refund pending at Stripe).")
        for line in refused:
            self.message_user(request, line, level=messages.ERROR)


@admin.register(StripeEvent)
class StripeEventAdmin(AuditedAdminMixin, ServiceOnlyAdmin):
    """Stripe webhook events received, with what each did (ids, types and outcomes only)."""

    list_display = ["event_id", "type", "outcome", "created_at"]
    list_filter = ["type", "outcome"]
    search_fields = ["event_id"]
    ordering = ["-created_at"]
