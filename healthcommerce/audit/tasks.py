"""The audit app's Celery task: seal the rows written since the last seal (beat, ``seal-audit``, every minute)."""

from celery import shared_task


@shared_task(name="healthcommerce.audit.tasks.seal")
def seal() -> int:
    """Run ``services.audit_seal`` (waiting for the sealer's lock); return how many rows it sealed."""
    from healthcommerce.audit.services import audit_seal

    return audit_seal(wait=True)
