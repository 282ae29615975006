"""Errors raised by purchase-link services; their messages are shown to patients and carry no PHI.

Messages are English, marked with ``gettext_noop`` so they are in the catalog; the patient pages translate them
when they show them (``views.patient_page``), and logs keep the English."""

from typing import TYPE_CHECKING

from django.utils.translation import gettext_noop

from healthcommerce.core.errors import HealthcommerceError

if TYPE_CHECKING:
    from healthcommerce.purchaselinks.models import PurchaseLink

UNAVAILABLE_MESSAGE = gettext_noop("This link has expired or is no longer valid. Please contact your clinic.")


class LinkUnavailable(HealthcommerceError):
    """The link is unknown, tampered, expired, revoked, locked or already used: all answer the same.

    ``reason`` (``unknown``, ``expired``, ``revoked``, ``locked``, ``completed``, ``order_<status>``...)
    is for the audit row only, never for the patient (docs/style.md 5: same error for missing and forbidden);
    ``link`` is the link when the token was known, for the audit row's actor.
    """

    code = "link_unavailable"
    status = 404
    message = UNAVAILABLE_MESSAGE

    def __init__(self, reason: str, *, link: "PurchaseLink | None" = None) -> None:
        super().__init__()
        self.reason = reason
        self.link = link


class TooManyAttempts(HealthcommerceError):
    """Too many wrong dates of birth from one client address within the hour."""

    code = "too_many_attempts"
    status = 429
    message = gettext_noop("Too many attempts from your network. Please try again in an hour or contact your clinic.")


class NotSendable(HealthcommerceError):
    """This patient cannot be reached on this channel; sending again will not help (permanent).

    ``reason`` (also the ``code``) says why, for the order's timeline: ``no_contact_email``, ``sms_off`` (no
    ``SMS_BACKEND``), ``site_sms_off`` (the order's EHR site has not enabled texts), ``no_contact_phone``,
    ``phone_unparseable``, ``phone_not_mobile``, ``sms_rejected`` (the provider refused the number).
    """

    status = 422
    message = "The patient cannot be reached on this channel."

    def __init__(self, reason: str) -> None:
        super().__init__(code=reason)
        self.reason = reason


class NotificationFailed(HealthcommerceError):
    """The email relay or SMS provider failed or did not answer; the same message may go through later."""

    code = "notification_error"
    status = 502
    temporary = True
    message = "The message to the patient could not be sent."


class EmailFailed(NotificationFailed):
    """The mail relay refused or did not answer (temporary)."""

    code = "email_error"
    message = "The email to the patient could not be sent."


class SmsFailed(NotificationFailed):
    """The SMS provider failed or did not answer (temporary)."""

    code = "sms_error"
    message = "The text message to the patient could not be sent."
