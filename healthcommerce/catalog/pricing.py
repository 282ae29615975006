"""What the patient pays for an item, and why: the catalog price and the site's payer rules (``catalog.PayerRule``)
for the order's payer record (``catalog.Payer``).

One computation for both stages that show it: the clinician's order form (``orders.views``, before signing) and
the patient's purchase pages (``purchaselinks.pricing.patient_quote``). Pure: reads the product and the rules,
writes nothing, calls nothing outside. Money is integer cents (the minor unit of the product's ISO 4217 currency);
a coinsurance share is rounded half-up to the cent (12.5 cents -> 13 cents), and the payer pays the rest, so
``patient_pays_cents + payer_pays_cents`` is always ``subtotal_cents``. The ``reason`` is a sentence for the
patient (translated with Django i18n); it may name the order's payer, so a ``Quote`` is shown only to the
verified patient and the signing clinician, and never logged.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from django.utils.formats import number_format
from django.utils.translation import gettext as _

from healthcommerce.catalog.models import Payer, PayerRule, Product
from healthcommerce.catalog.selectors import payer_rule_for
from healthcommerce.ehr.models import EHRSite

Kind = PayerRule.Kind
_SYMBOLS = {"USD": "$"}


@dataclass(frozen=True)
class Quote:
    """The price of an order and who pays it. Amounts are integer cents of ``currency`` (ISO 4217, upper case).

    ``kind`` is a ``PayerRule.Kind`` value (``covered``, ``copay``, ``coinsurance``, ``self_pay``); ``reason``
    explains ``patient_pays_cents`` to the patient; ``rule_id`` is the deciding ``PayerRule`` (None: no rule
    matched, or the coverage was not recognised: self-pay). ``basis`` says where the split comes from: ``rules``
    (the site's payer rules, this module), or, set by ``coverage.quote.coverage_quote``, ``confirmed`` (the payer's
    eligibility answer), ``active`` (the payer confirmed the coverage, the rules' amounts), ``inactive`` (the payer
    says the coverage is not active) or ``unconfirmed`` (the rules' estimate, not yet confirmed with the plan);
    ``basis_note`` is the sentence that tells the patient which; ``kind_label`` (optional) says for the clinician
    what decided the split when no rule did.
    """

    unit_price_cents: int
    quantity: int
    subtotal_cents: int
    patient_pays_cents: int
    payer_pays_cents: int
    currency: str
    kind: str
    reason: str
    rule_id: UUID | None = None
    basis: str = "rules"
    basis_note: str = ""
    kind_label: str = ""

    @property
    def needs_payment(self) -> bool:
        """Whether the patient has anything to pay (a PaymentIntent is needed)."""
        return self.patient_pays_cents > 0

    # The amounts as people read them (``money_format``, in the language active when a template renders them):
    # the clinician's form and the patient's review page show the same figures from here.
    @property
    def unit_price_display(self) -> str:
        return money_format(self.unit_price_cents, self.currency)

    @property
    def subtotal_display(self) -> str:
        return money_format(self.subtotal_cents, self.currency)

    @property
    def payer_pays_display(self) -> str:
        return money_format(self.payer_pays_cents, self.currency)

    @property
    def patient_pays_display(self) -> str:
        return money_format(self.patient_pays_cents, self.currency)

    @property
    def kind_display(self) -> str:
        """What decided the split, for the clinician: ``kind_label`` when set (a payer's answer: "Deductible $240.00
        left, then 20% coinsurance"), else the payer rule kind's label ("Coinsurance: a percentage of the price")."""
        return self.kind_label or str(PayerRule.Kind(self.kind).label)


def money_format(cents: int, currency: str) -> str:
    """Return ``cents`` of ``currency`` for a sentence in the active language: ``$1,025.00`` for USD,
    ``25.00 EUR`` otherwise; separators from the language's formats (``core/formats``: US conventions in English
    and in Spanish, as CLDR ``es-US``)."""
    amount = number_format(Decimal(cents) / 100, decimal_pos=2, use_l10n=True, force_grouping=True)
    symbol = _SYMBOLS.get(currency.upper())
    return f"{symbol}{amount}" if symbol else f"{amount} {currency.upper()}"


def share_cents(subtotal_cents: int, percent: Decimal) -> int:
    """Return ``percent`` (0-100) of ``subtotal_cents``, rounded half-up to the cent."""
    share = Decimal(subtotal_cents) * Decimal(percent) / Decimal(100)
    return int(share.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _split(rule: PayerRule | None, subtotal: int) -> tuple[str, int]:
    """Return the kind and the patient's share of ``subtotal`` cents under ``rule`` (None: self-pay)."""
    if rule is None or rule.kind == Kind.SELF_PAY:
        return Kind.SELF_PAY, subtotal
    if rule.kind == Kind.COVERED:
        return Kind.COVERED, 0
    if rule.kind == Kind.COPAY:
        return Kind.COPAY, min(rule.copay_cents or 0, subtotal)
    return Kind.COINSURANCE, min(share_cents(subtotal, rule.coinsurance_percent or Decimal(0)), subtotal)


NOT_RECOGNISED = "not_recognised"  # Order.coverage_status: the chart's coverage matched no payer record


def _reason(rule: PayerRule | None, kind: str, payer: str, patient_pays: int, currency: str) -> str:
    """The sentence the patient reads next to the amount (the rule's own message when it has one)."""
    if rule is not None and rule.patient_message:
        return rule.patient_message
    amount = money_format(patient_pays, currency)
    if kind == Kind.COVERED:
        return _("Your plan %(payer)s covers this item.") % {"payer": payer}
    if kind == Kind.COPAY:
        return _("Copay set by your plan: %(amount)s.") % {"amount": amount}
    if kind == Kind.COINSURANCE:
        percent = format(Decimal((rule.coinsurance_percent if rule else 0) or 0).normalize(), "f")
        return _("Your share under your plan is %(percent)s%% of the price: %(amount)s.") % {
            "percent": percent,
            "amount": amount,
        }
    if not payer:
        return _("No insurance on file: you pay the full price.")
    return _("Your plan %(payer)s does not pay for this item here: you pay the full price.") % {"payer": payer}


def price_quote(*, site: EHRSite, product: Product, quantity: int, payer: Payer | None, coverage_status: str) -> Quote:
    """Return what the patient and the payer pay for ``quantity`` of ``product`` at ``site`` for an order whose
    payer record is ``payer`` (None: none) and whose ``coverage_status`` is ``Order.coverage_status``: the
    product's price times the quantity, split by the payer rule for the site, payer and product kind
    (``catalog.selectors.payer_rule_for``; no rule: self-pay).

    ``not_recognised`` (the chart has coverage that matched no payer record) applies no rule: the full price is
    shown with a reason saying the coverage could not be matched to a plan and the clinic will confirm, never a
    plain "you pay the full price".
    """
    subtotal = product.unit_price_cents * quantity
    if payer is None and coverage_status == NOT_RECOGNISED:
        rule = None
        kind, patient_pays = str(Kind.SELF_PAY), subtotal
        reason = _(
            "We could not match your insurance to a plan we know, so the full price is shown for now. "
            "Your clinic will confirm your coverage and what you pay."
        )
    else:
        rule = payer_rule_for(site=site, payer=payer, product_kind=product.kind)
        kind, patient_pays = _split(rule, subtotal)
        reason = _reason(rule, kind, payer.name if payer else "", patient_pays, product.currency)
    return Quote(
        unit_price_cents=product.unit_price_cents,
        quantity=quantity,
        subtotal_cents=subtotal,
        patient_pays_cents=patient_pays,
        payer_pays_cents=subtotal - patient_pays,
        currency=product.currency.upper(),
        kind=kind,
        reason=reason,
        rule_id=rule.pk if rule else None,
    )
