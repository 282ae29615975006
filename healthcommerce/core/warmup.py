"""Do once per web process, at its start, what the first request would otherwise pay for (issue 22): the URL
resolver's patterns and reverse map, and the clinician and patient pages' compiled templates (Django's cached
template loader keeps them for the process). A site's first launch after a deploy or a worker restart then costs
nearer what any launch costs.

Called by gunicorn's ``post_worker_init`` (``healthcommerce/gunicorn_conf.py``), after Django is set up.
"""

import logging
import time

from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.urls import get_resolver

logger = logging.getLogger(__name__)

# The pages a clinician's launch and a patient's link render, and the error page every refusal renders.
TEMPLATES = (
    "orders/form.html",
    "orders/launch.html",
    "orders/detail.html",
    "ehr/authorize_post.html",
    "error.html",
    "purchaselinks/verify.html",
    "purchaselinks/address.html",
    "purchaselinks/confirm.html",
    "purchaselinks/pay.html",
    "purchaselinks/done.html",
    "purchaselinks/track.html",
)


def warm() -> float:
    """Populate the URL resolver and compile ``TEMPLATES``; return the seconds it took. A template that is missing
    is skipped with a warning: warming never stops a worker from starting."""
    started = time.monotonic()
    get_resolver().reverse_dict  # noqa: B018 - reading it imports every urls module and builds the reverse map
    for name in TEMPLATES:
        try:
            get_template(name)
        except TemplateDoesNotExist:
            logger.warning("warm-up: no template %s", name)
    return time.monotonic() - started
