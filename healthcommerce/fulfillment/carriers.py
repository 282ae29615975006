"""Parcel carriers: their names and public tracking pages, so a tracking number becomes a link.

``CARRIERS`` is the one table: the admin's "Mark shipped" choice, the name stored on the order
(``Order.carrier``) and the tracking URL derived when a backend gives a number but no URL. Patterns are each
carrier's public tracking page (checked 2026-12): UPS ``ups.com/track?tracknum=``, USPS
``tools.usps.com/go/TrackConfirmAction?tLabels=``, FedEx ``fedex.com/fedextrack/?trknbr=``, DHL
``dhl.com/.../tracking.html?tracking-id=``.
"""

import logging
from dataclasses import dataclass
from urllib.parse import quote

from healthcommerce.core.links import https_url

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Carrier:
    """A carrier: ``code`` (the admin's choice), ``name`` (shown to people) and its tracking URL ``{number}``."""

    code: str
    name: str
    tracking_url: str


CARRIERS = (
    Carrier("ups", "UPS", "https://www.ups.com/track?tracknum={number}"),
    Carrier("usps", "USPS", "https://tools.usps.com/go/TrackConfirmAction?tLabels={number}"),
    Carrier("fedex", "FedEx", "https://www.fedex.com/fedextrack/?trknbr={number}"),
    Carrier(
        "dhl", "DHL", "https://www.dhl.com/us-en/home/tracking/tracking-express.html?submit=1&tracking-id={number}"
    ),
)
OTHER = "other"
# The admin's select: the carriers above, then "Other" (a name typed in; no URL is derived for it).
CARRIER_CHOICES = [(c.code, c.name) for c in CARRIERS] + [(OTHER, "Other")]


def carrier_find(name: str) -> Carrier | None:
    """Return the carrier whose code or name is ``name`` (case-insensitive: ``"ups"``, ``"UPS"``), or None."""
    key = name.strip().lower()
    return next((c for c in CARRIERS if key in (c.code, c.name.lower())), None)


def carrier_name(name: str) -> str:
    """Return the display name for ``name`` (``"fedex"`` -> ``"FedEx"``); any other name as given, stripped."""
    found = carrier_find(name)
    return found.name if found else name.strip()[:100]


def carrier_tracking_url(carrier: str, number: str) -> str:
    """Return the carrier's public https tracking URL for ``number``, or ``""`` for an unknown carrier or no
    number. The number is percent-encoded (it comes from a person or a backend)."""
    found = carrier_find(carrier)
    number = number.strip()
    if found is None or not number:
        return ""
    return found.tracking_url.format(number=quote(number, safe=""))


def tracking_url_checked(*, url: str, carrier: str, number: str, context: str) -> str:
    """Return the tracking URL to store: ``url`` when it is https (``core.links.https_url``); when it is not,
    log a WARNING naming ``context`` (an order reference and a source, never the URL) and drop it. With no usable
    URL, derive one from the carrier and number (``carrier_tracking_url``), or ``""``."""
    checked = https_url(url)
    if url.strip() and not checked:
        logger.warning("tracking url dropped: not https %s", context)
    return checked or carrier_tracking_url(carrier, number)
