"""A clinician's relaunch without the EHR round trip: a pre-filled, active launch for an order's site and patient,
owned by a test client's session (as ``ehr.services.launch_complete`` leaves it)."""

import secrets
from datetime import timedelta

from django.test import Client
from django.utils import timezone

from healthcommerce.ehr.models import Launch
from healthcommerce.ehr.services import SESSION_LAUNCHES
from healthcommerce.orders.models import Order


def relaunch_owned(client: Client, order: Order, *, fhir_user: str = "Practitioner/pra1234") -> Launch:
    """Return a new active, pre-filled ``Launch`` of ``order``'s patient at its site, signed in as ``fhir_user``,
    listed in ``client``'s session so its pages (``/o/<launch>/``) open for that client."""
    launch = Launch.objects.create(
        site=order.site,
        status=Launch.Status.ACTIVE,
        browser_key="k",
        state=secrets.token_hex(8),
        code_verifier="v",
        nonce="n",
        launch_token="l",
        expires_at=timezone.now() + timedelta(hours=1),
        patient_id=order.patient_fhir_id,
        fhir_user=fhir_user,
        prefilled_at=timezone.now(),
    )
    session = client.session
    session[SESSION_LAUNCHES] = [str(launch.pk)]
    session.save()
    return launch
