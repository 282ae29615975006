"""Append-only audit events: who, what, when, where, outcome (HIPAA 45 CFR 164.312(b)); ADR 0015."""

from django.db import models

from healthcommerce.core.models import BaseModel

GENESIS_HASH = "0" * 64


class AuditEvent(BaseModel):
    """One audited action. Rows are only ever inserted, then sealed into a hash chain (``audit.services.audit_seal``);
    on PostgreSQL a trigger refuses every UPDATE and DELETE except the seal itself (migration 0003).

    Who: ``actor`` is the fhirUser, ``admin:<username>``, ``patient-link:<id>`` or ``system:<stage>``; ``site`` the
    EHR site's ``iss`` when the action belongs to one. What: ``action`` a dotted verb such as ``fhir.read`` or
    ``order.sign``; ``target`` a FHIR-style reference ``<Type>/<id>`` (never PHI values). When: ``created_at``.
    Where: ``ip`` (the client address from ``core.clientip``, or a ``/24`` network for aggregated refusals),
    ``user_agent``, ``launch_id``; ``where`` is the older free-form place (client address, site, channel, ``admin``).
    Outcome: ``success`` or an error code. ``detail`` holds ids, codes, counts and field names only.

    Seal: ``seq`` (1, 2, ... in sealing order), ``prev_hash`` (the ``hash`` of ``seq - 1``, ``GENESIS_HASH`` for 1)
    and ``hash`` (SHA-256 hex of the canonical row, ``audit.services.audit_canonical``); all three null until sealed.
    """

    actor = models.CharField(max_length=300)
    action = models.CharField(max_length=80, db_index=True)
    target = models.CharField(max_length=300, blank=True)
    where = models.CharField(max_length=300, blank=True)
    outcome = models.CharField(max_length=80, default="success")
    detail = models.JSONField(default=dict, blank=True)
    site = models.CharField(max_length=300, blank=True, default="")
    ip = models.CharField(verbose_name="IP address", max_length=64, blank=True, default="")
    user_agent = models.CharField(max_length=300, blank=True, default="")
    launch_id = models.CharField(verbose_name="launch ID", max_length=64, blank=True, default="")
    seq = models.BigIntegerField(verbose_name="sequence number", null=True, blank=True, unique=True)
    # NULL, not "", means "not sealed yet": the PostgreSQL trigger lets only such a row be sealed.
    prev_hash = models.CharField(verbose_name="previous hash", max_length=64, null=True, blank=True)  # noqa: DJ001
    hash = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["created_at"]),
            models.Index(fields=["created_at"], name="audit_unsealed_idx", condition=models.Q(hash__isnull=True)),
        ]

    def __str__(self) -> str:
        """The row in one line, a patient's FHIR id hidden (``str`` reaches page titles, checkboxes and logs)."""
        from healthcommerce.core.roles import mask_reference

        target = mask_reference(self.target)
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.actor} {self.action} {target} {self.outcome}"
