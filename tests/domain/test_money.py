from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qbconnect.domain.jsonutil import dumps, loads
from qbconnect.domain.money import allocate, cents, minor_unit, to_decimal, to_money


def test_to_money_accepts_json_numbers_without_float_error() -> None:
    assert to_money(0.1 + 0.2) == Decimal("0.30")
    assert to_money(150.1) == Decimal("150.10")
    assert to_money("12.345") == Decimal("12.35")  # half up
    assert to_money("-12.345") == Decimal("-12.35")
    assert to_money(7) == Decimal("7.00")
    assert to_money(Decimal("2.005")) == Decimal("2.01")


def test_minor_units() -> None:
    assert minor_unit("USD") == 2
    assert minor_unit("jpy") == 0
    assert minor_unit("KWD") == 3
    assert to_money("1234.5", "JPY") == Decimal("1235")
    assert to_money("1.2345", "KWD") == Decimal("1.235")


@pytest.mark.parametrize("bad", [None, True, "", "abc", "NaN", "Infinity", [1], object()])
def test_to_decimal_rejects_non_amounts(bad: object) -> None:
    with pytest.raises(ValueError):
        to_decimal(bad)


def test_cents() -> None:
    assert cents(Decimal("0.125")) == Decimal("0.13")


def test_allocate_largest_remainder() -> None:
    assert allocate(Decimal("10.00"), [Decimal(1), Decimal(1), Decimal(1)]) == [
        Decimal("3.34"),
        Decimal("3.33"),
        Decimal("3.33"),
    ]
    assert allocate(Decimal("1"), [Decimal(0), Decimal(0)]) == [Decimal("0.00"), Decimal("0.00")]
    assert allocate(Decimal("-1.00"), [Decimal(1), Decimal(2)]) == [Decimal("-0.33"), Decimal("-0.67")]
    assert allocate(Decimal("5"), [Decimal(1), Decimal(2)], "JPY") == [Decimal(2), Decimal(3)]
    with pytest.raises(ValueError):
        allocate(Decimal(1), [Decimal(-1)])


@settings(max_examples=200)
@given(
    st.decimals(min_value=0, max_value=100000, places=2),
    st.lists(st.decimals(min_value=0, max_value=1000, places=2), min_size=1, max_size=8),
)
def test_allocate_sums_exactly(total: Decimal, weights: list[Decimal]) -> None:
    shares = allocate(total, weights)
    if sum(weights) == 0:
        assert all(s == 0 for s in shares)
    else:
        assert sum(shares) == total
        assert all(s >= 0 for s in shares)


def test_dumps_writes_decimals_exactly() -> None:
    payload = {"Amount": Decimal("10.50"), "Qty": 3, "Name": 'Ü "x"', "ok": True, "none": None, "l": [Decimal("0.1")]}
    raw = dumps(payload)
    assert raw == '{"Amount":10.50,"Qty":3,"Name":"Ü \\"x\\"","ok":true,"none":null,"l":[0.1]}'.encode()
    assert loads(raw)["Amount"] == Decimal("10.50")
    assert isinstance(loads(raw)["Qty"], int)


def test_dumps_refuses_floats_and_non_finite() -> None:
    with pytest.raises(TypeError):
        dumps({"x": 1.5})
    with pytest.raises(ValueError):
        dumps(Decimal("NaN"))
    with pytest.raises(TypeError):
        dumps({1: "x"})
