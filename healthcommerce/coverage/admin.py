"""Admin for eligibility: the checks made, read-only, without what was sent or what came back (those are PHI and
kept encrypted for audit; the outcome, the AAA reason and the payer are enough to act on)."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from healthcommerce.audit.admin import AuditedAdminMixin
from healthcommerce.core.admin import ServiceOnlyAdmin
from healthcommerce.coverage.models import EligibilityCheck
from healthcommerce.coverage.x12 import reason_text


@admin.register(EligibilityCheck)
class EligibilityCheckAdmin(AuditedAdminMixin, ServiceOnlyAdmin):
    """Eligibility checks as stored: when, for which order and payer, through which clearinghouse, the outcome and,
    for a rejection, the AAA reason in words. Rows are written by the checks only."""

    list_display = [
        "created_at",
        "subject",
        "clearinghouse_payer_id",
        "outcome",
        "reason",
        "error",
        "trigger",
        "clearinghouse",
    ]
    list_filter = ["outcome", "trigger", "site"]
    search_fields = ["subject", "clearinghouse_payer_id"]
    exclude = ["request", "response", "answer", "member_digest"]
    ordering = ["-created_at"]

    @admin.display(description="reason")
    def reason(self, check: EligibilityCheck) -> str:
        """The AAA reject reason code with its words (``72: Invalid/Missing Subscriber/Insured ID``), or ""."""
        return f"{check.reason_code}: {reason_text(check.reason_code)}" if check.reason_code else ""

    def get_queryset(self, request: HttpRequest) -> QuerySet[EligibilityCheck]:
        """The checks with their site, never loading the encrypted exchange."""
        return super().get_queryset(request).select_related("site").defer("request", "response", "answer")
