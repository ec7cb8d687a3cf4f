"""Invoice totals follow the CRM rule to the cent (docs/sandbox.md)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from qbconnect.sandbox.crm.totals import allocate, compute_invoice_totals

D = Decimal


def test_no_discount_no_tax() -> None:
    totals = compute_invoice_totals([{"qty": 3, "amount": "19.99"}], None)
    assert (totals.sub_total, totals.discount, totals.tax, totals.total) == (D("59.97"), 0, 0, D("59.97"))


def test_percentage_discount_then_tax_on_discounted_amount() -> None:
    items = [{"qty": 2, "amount": 10.5, "taxes": [{"name": "T", "rate": 8.25}]}]
    totals = compute_invoice_totals(items, {"type": "percentage", "value": 10})
    assert totals.sub_total == D("21.00")
    assert totals.discount == D("2.10")
    assert totals.tax == D("1.56")  # (21 - 2.10) * 8.25% = 1.55925
    assert totals.total == D("20.46")


def test_fixed_discount_is_capped_and_allocated_by_amount() -> None:
    items = [{"qty": 1, "amount": 100, "taxes": [{"name": "A", "rate": 10}]}, {"qty": 1, "amount": 50}]
    totals = compute_invoice_totals(items, {"type": "fixed", "value": 30})
    assert [line.discount_share for line in totals.lines] == [D("20.00"), D("10.00")]
    assert totals.tax == D("8.00")
    assert totals.total == D("128.00")
    capped = compute_invoice_totals([{"qty": 1, "amount": 5}], {"type": "fixed", "value": 30})
    assert capped.discount == D("5.00") and capped.total == D("0.00")


def test_discount_limited_to_products() -> None:
    items = [
        {"qty": 1, "amount": 100, "productId": "p1", "taxes": [{"name": "A", "rate": 5}]},
        {"qty": 1, "amount": 100, "productId": "p2", "taxes": [{"name": "A", "rate": 5}]},
    ]
    totals = compute_invoice_totals(items, {"type": "percentage", "value": 50, "validOnProductIds": ["p2"]})
    assert totals.discount == D("50.00")
    assert [line.discount_share for line in totals.lines] == [D("0.00"), D("50.00")]
    assert totals.tax == D("7.50")
    assert totals.total == D("157.50")


def test_several_taxes_on_one_line_round_each() -> None:
    items = [{"qty": 3, "amount": "33.33", "taxes": [{"name": "State", "rate": 6.25}, {"name": "City", "rate": 2}]}]
    totals = compute_invoice_totals(items, None)
    assert [t.amount for t in totals.lines[0].taxes] == [D("6.25"), D("2.00")]  # 99.99 * 6.25% = 6.249375
    assert totals.total == D("108.24")


def test_tax_inclusive_line_is_not_added_again() -> None:
    items = [
        {"qty": 1, "amount": 110, "taxInclusive": True, "taxes": [{"name": "GST", "rate": 10}]},
        {"qty": 1, "amount": 100, "taxes": [{"name": "GST", "rate": 10}]},
    ]
    totals = compute_invoice_totals(items, None)
    assert totals.tax == D("20.00")  # 10 included + 10 added
    assert totals.exclusive_tax == D("10.00")
    assert totals.total == D("220.00")


def test_inclusive_with_two_rates_splits_net() -> None:
    items = [
        {"qty": 1, "amount": 115, "taxInclusive": True, "taxes": [{"name": "A", "rate": 10}, {"name": "B", "rate": 5}]}
    ]
    totals = compute_invoice_totals(items, None)
    assert [t.amount for t in totals.lines[0].taxes] == [D("10.00"), D("5.00")]
    assert totals.total == D("115.00")


@given(
    st.decimals(min_value=0, max_value=10_000, places=2),
    st.lists(st.decimals(min_value=0, max_value=1000, places=2), min_size=1, max_size=8),
)
def test_allocation_sums_exactly(amount: Decimal, weights: list[Decimal]) -> None:
    shares = allocate(amount, weights)
    if sum(weights) == 0:
        assert all(s == 0 for s in shares)
    else:
        assert sum(shares) == amount
        assert all(s >= 0 for s in shares)
