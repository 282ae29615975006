"""What the patient pays, with the payer's own answer where there is one (ADR 0026).

``coverage_quote`` starts from the site's rules (``catalog.pricing.price_quote``) and, when an eligibility answer
for the member is at hand, replaces the split with the one the payer gave: the deductible still to meet, then
the coinsurance or copay for the service type, capped at the out-of-pocket maximum still open. The quote says
which it is (``Quote.basis``): ``confirmed`` (from the payer's answer), ``active`` (the payer says the coverage is
active but gave no amounts: the rules' split), ``inactive`` (the payer says it is not active: the patient is
offered self-pay), ``unconfirmed`` (no answer yet, or the payer could not answer, or it did not recognise the
member: the rules' estimate, "not yet confirmed with your plan"). One computation for the clinician's form and
the patient's pages. Money is integer cents.
"""

import dataclasses

from django.utils import formats
from django.utils.translation import gettext as _

from healthcommerce.catalog.models import Payer, Product
from healthcommerce.catalog.pricing import Kind, Quote, money_format, price_quote, share_cents
from healthcommerce.coverage import types
from healthcommerce.coverage.models import EligibilityCheck
from healthcommerce.ehr.models import EHRSite

BASIS_CONFIRMED = "confirmed"
BASIS_ACTIVE = "active"
BASIS_INACTIVE = "inactive"
BASIS_UNCONFIRMED = "unconfirmed"


def _checked_on(check: EligibilityCheck) -> str:
    return formats.date_format(check.created_at, "DATE_FORMAT", use_l10n=True)


def plan_split(subtotal_cents: int, share: types.Share) -> tuple[str, int]:
    """Return the kind (``Kind`` value) and the patient's cents of ``subtotal_cents`` under the payer's ``share``:
    what is left of the deductible first, then the coinsurance (half-up to the cent) or, without one, the copay on
    the rest, at most the out-of-pocket maximum still open and at most the subtotal."""
    deductible = min(subtotal_cents, max(share.deductible_remaining_cents or 0, 0))
    rest = subtotal_cents - deductible
    kind = Kind.COVERED
    after = 0
    if share.coinsurance_percent is not None:
        kind, after = Kind.COINSURANCE, share_cents(rest, share.coinsurance_percent)
    elif share.copay_cents is not None:
        kind, after = Kind.COPAY, min(share.copay_cents, rest)
    patient = deductible + after
    if share.out_of_pocket_remaining_cents is not None:
        patient = min(patient, max(share.out_of_pocket_remaining_cents, 0))
    patient = min(patient, subtotal_cents)
    if deductible and not after:
        kind = Kind.SELF_PAY if patient == subtotal_cents else kind
    return (Kind.COVERED if patient == 0 else kind), patient


def _confirmed_reason(share: types.Share, currency: str) -> str:
    parts = []
    if share.deductible_remaining_cents:
        parts.append(
            _("%(amount)s of your deductible is still to be met.")
            % {"amount": money_format(share.deductible_remaining_cents, currency)}
        )
    if share.coinsurance_percent is not None:
        percent = format(share.coinsurance_percent.normalize(), "f")
        parts.append(_("You pay %(percent)s%% of the rest.") % {"percent": percent})
    elif share.copay_cents is not None:
        parts.append(_("Your copay is %(amount)s.") % {"amount": money_format(share.copay_cents, currency)})
    if not parts:
        parts.append(_("Your plan covers this item."))
    return " ".join(parts)


def coverage_quote(
    *,
    site: EHRSite,
    product: Product,
    quantity: int,
    payer: Payer | None,
    coverage_status: str,
    check: EligibilityCheck | None,
) -> Quote:
    """Return the quote for ``quantity`` of ``product`` at ``site`` for ``payer``: the payer's answer in ``check``
    where it has one (see the module), else the site's rules marked as an estimate. ``Quote.basis`` and
    ``Quote.basis_note`` say which, in the active language."""
    quote = price_quote(site=site, product=product, quantity=quantity, payer=payer, coverage_status=coverage_status)
    answer = check.parsed() if check is not None else None
    plan = (answer.plan_name if answer else "") or (payer.name if payer else "")
    if check is None or answer is None or payer is None or coverage_status == "self_pay":
        return dataclasses.replace(quote, basis=BASIS_UNCONFIRMED, basis_note=_unconfirmed(payer))
    if answer.outcome == types.INACTIVE:
        subtotal = quote.subtotal_cents
        return dataclasses.replace(
            quote,
            kind=Kind.SELF_PAY,
            patient_pays_cents=subtotal,
            payer_pays_cents=0,
            rule_id=None,
            reason=_(
                "Your plan %(plan)s told us on %(date)s that this coverage is not active, so it will not pay for "
                "this item. You can pay the full price yourself, or contact your clinic if your coverage has changed."
            )
            % {"plan": plan, "date": _checked_on(check)},
            basis=BASIS_INACTIVE,
            basis_note=_("Coverage not active (checked with your plan on %(date)s).") % {"date": _checked_on(check)},
        )
    if answer.outcome != types.ACTIVE:
        return dataclasses.replace(quote, basis=BASIS_UNCONFIRMED, basis_note=_unconfirmed(payer))
    share = answer.share(in_network=payer.supplier_in_network)
    checked = _("Confirmed with your plan %(plan)s on %(date)s.") % {"plan": plan, "date": _checked_on(check)}
    if share is None or share == types.Share():
        return dataclasses.replace(
            quote,
            basis=BASIS_ACTIVE,
            basis_note=_("Your plan %(plan)s confirmed your coverage is active on %(date)s; the amount is an estimate.")
            % {"plan": plan, "date": _checked_on(check)},
        )
    kind, patient = plan_split(quote.subtotal_cents, share)
    return dataclasses.replace(
        quote,
        kind=kind,
        kind_label=share_label(share, quote.currency),
        patient_pays_cents=patient,
        payer_pays_cents=quote.subtotal_cents - patient,
        rule_id=None,
        reason=_confirmed_reason(share, quote.currency),
        basis=BASIS_CONFIRMED,
        basis_note=checked,
    )


def share_label(share: types.Share, currency: str) -> str:
    """The clinician's one-line summary of a payer's ``share`` ("The payer's answer: deductible $240.00 left, then
    20% coinsurance, out-of-pocket $1,500.00 left"), in English like the clinician's pages."""
    parts = []
    if share.deductible_remaining_cents is not None:
        parts.append(f"deductible {money_format(share.deductible_remaining_cents, currency)} left")
    if share.coinsurance_percent is not None:
        parts.append(f"{format(share.coinsurance_percent.normalize(), 'f')}% coinsurance")
    elif share.copay_cents is not None:
        parts.append(f"{money_format(share.copay_cents, currency)} copay")
    if share.out_of_pocket_remaining_cents is not None:
        parts.append(f"out-of-pocket {money_format(share.out_of_pocket_remaining_cents, currency)} left")
    return "The payer's answer: " + (", then ".join(parts[:2]) + "".join(f", {p}" for p in parts[2:]) or "covered")


def _unconfirmed(payer: Payer | None) -> str:
    if payer is None:
        return _("No insurance is used for this order.")
    return _("Estimate: not yet confirmed with your plan.")
