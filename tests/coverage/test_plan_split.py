"""The patient's share from the payer's answer (coverage.quote.plan_split): deductible first, then coinsurance or
copay, capped by the out-of-pocket maximum still open and by the price. Amounts in cents."""

from decimal import Decimal

import pytest

from healthcommerce.catalog.pricing import Kind
from healthcommerce.coverage.quote import plan_split
from healthcommerce.coverage.types import Share


@pytest.mark.parametrize(
    ("share", "subtotal", "expected"),
    [
        # $240 of the deductible left on a $1,000 item, then 20% of the $760 rest: 240 + 152.
        (
            Share(deductible_remaining_cents=24_000, coinsurance_percent=Decimal("20")),
            100_000,
            (Kind.COINSURANCE, 39_200),
        ),
        # deductible met: 20% of the price, half-up to the cent (20% of 12.5 cents... 1,234.5 -> 1,235)
        (Share(deductible_remaining_cents=0, coinsurance_percent=Decimal("20")), 6_173, (Kind.COINSURANCE, 1_235)),
        # the deductible left is more than the price: the patient pays it all (no coinsurance applies)
        (
            Share(deductible_remaining_cents=500_000, coinsurance_percent=Decimal("20")),
            100_000,
            (Kind.SELF_PAY, 100_000),
        ),
        # deductible only, larger than the price and no coinsurance/copay: all of it, self-pay in effect
        (Share(deductible_remaining_cents=500_000), 100_000, (Kind.SELF_PAY, 100_000)),
        # copay after the deductible is met
        (Share(deductible_remaining_cents=0, copay_cents=2_500), 100_000, (Kind.COPAY, 2_500)),
        # a copay larger than the price: at most the price
        (Share(copay_cents=2_500), 1_000, (Kind.COPAY, 1_000)),
        # the out-of-pocket maximum still open caps everything
        (
            Share(
                deductible_remaining_cents=24_000,
                coinsurance_percent=Decimal("20"),
                out_of_pocket_remaining_cents=10_000,
            ),
            100_000,
            (Kind.COINSURANCE, 10_000),
        ),
        # out-of-pocket met: covered
        (Share(coinsurance_percent=Decimal("20"), out_of_pocket_remaining_cents=0), 100_000, (Kind.COVERED, 0)),
        # active with a deductible met and nothing else: covered
        (Share(deductible_remaining_cents=0), 100_000, (Kind.COVERED, 0)),
        # 0% coinsurance: covered
        (Share(coinsurance_percent=Decimal("0")), 100_000, (Kind.COVERED, 0)),
    ],
)
def test_plan_split(share: Share, subtotal: int, expected: tuple[str, int]) -> None:
    assert plan_split(subtotal, share) == expected


def test_a_negative_amount_from_the_payer_counts_as_zero() -> None:
    """A payer's negative 'remaining' (seen in the wild as an adjustment) never lowers the price below the share."""
    share = Share(
        deductible_remaining_cents=-500, coinsurance_percent=Decimal("20"), out_of_pocket_remaining_cents=None
    )
    assert plan_split(10_000, share) == (Kind.COINSURANCE, 2_000)
