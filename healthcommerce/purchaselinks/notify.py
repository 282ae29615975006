"""Messages to the patient of an order, by email and by text (docs/adr/0010); for purchase links and later notices.

Each function sends one plain-text message rendered from a template and either returns the address it went to
or raises: ``NotSendable`` (permanent: this patient cannot be reached on this channel, with a ``reason`` for the
timeline) or ``EmailFailed``/``SmsFailed`` (temporary: the relay or provider failed; the outbox retries). They
record nothing: the caller writes its own timeline event. Logs name the order reference and an error class,
never an address, a number or a message body.

Every message is in the patient's language: ``patient_language`` (``Order.patient_language``, from FHIR
``Patient.communication`` at pre-fill or the patient's switch on the pages; default ``LANGUAGE_CODE``), applied
here, once, with ``translation.override`` around the rendering of the template and of the subject, so callers
pass templates using ``{% translate %}``/``{% blocktranslate %}`` and a lazy subject (``gettext_lazy``,
``format_lazy``) and never repeat it (ADR 0013).

Texts go through django-sms (``SMS_BACKEND``, ``SMS_FROM``) to ``Order.contact_phone`` normalized to E.164 by
phonenumbers (``SMS_DEFAULT_REGION`` for numbers without a country code), only when the order's EHR site has
``sms_enabled`` and the number looks like a mobile. A lock screen shows a text: its template must hold no product,
diagnosis or patient name. Emails neither, but for the receipt after the date of birth (``email_context``).
"""

import logging
import smtplib
from typing import TYPE_CHECKING, Any

import phonenumbers
import sms
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail import send_mail
from django.template.loader import render_to_string
from django.utils import translation

from healthcommerce.core.language import language_supported
from healthcommerce.orders.models import Order
from healthcommerce.purchaselinks.errors import EmailFailed, NotSendable, SmsFailed
from healthcommerce.purchaselinks.models import PatientLinkSite

if TYPE_CHECKING:
    from django_stubs_ext import StrPromise

logger = logging.getLogger(__name__)

# phonenumbers cannot tell mobiles from landlines in NANP regions (US, CA...): those answer FIXED_LINE_OR_MOBILE.
_TEXTABLE = {phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE}
# HTTP statuses a provider answers for a request that may succeed later; any other 4xx refuses this number for good.
_RETRYABLE_STATUSES = {408, 409, 425, 429}


def patient_language(order: Order) -> str:
    """Return the language to write to ``order``'s patient in: ``Order.patient_language`` when it is one of
    ``settings.LANGUAGES`` (``"es-MX"`` serves as ``"es"``), else ``LANGUAGE_CODE`` (English)."""
    return language_supported(order.patient_language) or settings.LANGUAGE_CODE


def email_context(order: Order, language: str, *, personal: bool = False) -> dict[str, Any]:
    """What a patient email names, in ``language``: ``clinic`` (the EHR site's name), ``support_phone``
    (``PatientLinkSite.patient_support_phone``, may be empty) and ``reference``. With ``personal`` also ``name`` (the
    greeting), ``item`` (the product's name in that language, ``Product.name_for``) and ``quantity``: only for
    the receipt, which follows the patient's date of birth. A link, reminder or shipping email goes out before
    that or to a mailbox others may read, and the item can reveal a condition (a CPAP), so those say "Hello,"."""
    context: dict[str, Any] = {
        "clinic": order.site.name,
        "support_phone": PatientLinkSite.of(order.site).patient_support_phone.strip(),
        "reference": order.reference,
    }
    if personal:
        context |= {
            "name": order.patient_name.strip(),
            "item": order.product.name_for(language) if order.product else "",
            "quantity": order.quantity,
        }
    return context


def patient_email_send(
    *, order: Order, subject: "StrPromise", template: str, context: dict[str, Any], personal: bool = False
) -> str:
    """Email ``template`` (a plain-text Django template, rendered with ``email_context(personal=personal)`` plus
    ``context``) to ``order.contact_email`` from ``DEFAULT_FROM_EMAIL`` (a display name and address); return the
    address it went to. The subject (lazy: ``gettext_lazy`` or ``format_lazy``, so it is translated here) and the
    body are rendered in ``patient_language(order)``. ``personal`` (the receipt only, after the patient's date of
    birth) greets the patient by name and names the item; no body is ever logged.

    Raises ``NotSendable("no_contact_email")`` when the order has no address, and ``EmailFailed`` (temporary)
    when the relay refuses or does not answer within ``EMAIL_TIMEOUT`` seconds (``SMTPException``, ``OSError``).
    """
    address = order.contact_email.strip()
    if not address:
        raise NotSendable("no_contact_email")
    language = patient_language(order)
    with translation.override(language):
        body = render_to_string(template, email_context(order, language, personal=personal) | context)
        subject_text = str(subject)
    try:
        send_mail(subject_text, body, settings.DEFAULT_FROM_EMAIL, [address])
    except (smtplib.SMTPException, OSError) as exc:
        logger.error("patient email failed order=%s error=%s", order.reference, type(exc).__name__)
        raise EmailFailed() from exc
    return address


def patient_phone(order: Order) -> str:
    """Return the number to text for ``order``: ``contact_phone`` in E.164 (``+12075550143``).

    Raises ``NotSendable`` with reason ``sms_off`` (``SMS_BACKEND`` is empty), ``site_sms_off`` (the order's
    EHR site has not enabled texts), ``no_contact_phone``, ``phone_unparseable`` (phonenumbers cannot parse it,
    or it is not a valid number, in ``SMS_DEFAULT_REGION`` when it has no +country code) or ``phone_not_mobile``
    (a landline, toll-free, pager... number).
    """
    if not settings.SMS_BACKEND:
        raise NotSendable("sms_off")
    if not PatientLinkSite.of(order.site).sms_enabled:
        raise NotSendable("site_sms_off")
    raw = order.contact_phone.strip()
    if not raw:
        raise NotSendable("no_contact_phone")
    try:
        number = phonenumbers.parse(raw, settings.SMS_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise NotSendable("phone_unparseable") from None
    if not phonenumbers.is_valid_number(number):
        raise NotSendable("phone_unparseable")
    if phonenumbers.number_type(number) not in _TEXTABLE:
        raise NotSendable("phone_not_mobile")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def patient_sms_send(*, order: Order, template: str, context: dict[str, Any]) -> str:
    """Text ``template`` (a plain-text Django template, rendered with ``context`` in ``patient_language(order)``
    and stripped) to the order's patient from ``SMS_FROM`` through ``SMS_BACKEND``; return the E.164 number it
    went to.

    Raises ``NotSendable`` when texts do not apply (the reasons of ``patient_phone``) or the provider refuses the
    number for good (reason ``sms_rejected``: an HTTP 4xx other than 408/409/425/429, e.g. Twilio's 400 for an
    opted-out or invalid number), and ``SmsFailed`` (temporary) for any other error the backend raises or when it
    reports nothing sent. ``ImproperlyConfigured`` from the backend (missing credentials) propagates.
    """
    to = patient_phone(order)
    with translation.override(patient_language(order)):
        body = render_to_string(template, context).strip()
    message = sms.Message(body=body, originator=settings.SMS_FROM, recipients=[to])
    try:
        sent = message.send()
    except ImproperlyConfigured:
        raise
    except Exception as exc:  # any provider library: its errors are classified by the HTTP status they carry
        status = getattr(exc, "status", None)
        error = type(exc).__name__
        if isinstance(status, int) and 400 <= status < 500 and status not in _RETRYABLE_STATUSES:
            logger.warning("patient sms refused order=%s error=%s status=%s", order.reference, error, status)
            raise NotSendable("sms_rejected") from exc
        logger.error("patient sms failed order=%s error=%s status=%s", order.reference, error, status)
        raise SmsFailed() from exc
    if sent < 1:
        logger.error("patient sms failed order=%s error=nothing_sent", order.reference)
        raise SmsFailed()
    return to
