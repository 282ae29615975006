"""Append-only audit events: who, what, when, where, outcome (HIPAA 45 CFR 164.312(b))."""

from django.db import models

from healthcommerce.core.models import BaseModel


class AuditEvent(BaseModel):
    """One audited action. Rows are only ever inserted; the admin shows them read-only.

    ``actor`` is the fhirUser, admin username or ``patient-link:<id>``; ``action`` a dotted verb such as
    ``fhir.read`` or ``order.sign``; ``target`` a FHIR-style reference or model id (never PHI values);
    ``where`` the EHR site or client address; ``outcome`` ``success`` or an error code.
    """

    actor = models.CharField(max_length=300)
    action = models.CharField(max_length=80, db_index=True)
    target = models.CharField(max_length=300, blank=True)
    where = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=80, default="success")
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["created_at"])]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {self.target} {self.outcome}"
