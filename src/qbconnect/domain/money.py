"""Money: ``Decimal`` amounts quantised half-up to the currency's minor unit; never float."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import overload

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
HUNDRED = Decimal(100)

# ISO 4217 currencies whose minor unit is not 2 decimal places; every other currency has 2.
_MINOR_UNITS: dict[str, int] = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}


def minor_unit(currency: str) -> int:
    """Decimal places of ``currency`` (2 unless ISO 4217 says otherwise)."""
    return _MINOR_UNITS.get(currency.strip().upper(), 2)


def quantum(currency: str) -> Decimal:
    """The smallest amount of ``currency``: 0.01 for USD, 1 for JPY, 0.001 for KWD."""
    return Decimal(1).scaleb(-minor_unit(currency))


def to_decimal(value: object) -> Decimal:
    """Convert a JSON number, string or Decimal exactly (floats go through ``str``); no rounding.

    Raises ``ValueError`` for booleans, None, empty text, NaN and infinities.
    """
    if isinstance(value, bool) or value is None:
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int | float | str):
        text = str(value).strip()
        try:
            result = Decimal(text)
        except InvalidOperation:
            raise ValueError(f"not an amount: {value!r}") from None
    else:
        raise ValueError(f"not an amount: {value!r}")
    if not result.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    return result


@overload
def parse_amount(value: object, default: Decimal, *, lenient: bool = False) -> Decimal: ...
@overload
def parse_amount(value: object, default: None, *, lenient: bool = False) -> Decimal | None: ...
def parse_amount(value: object, default: Decimal | None, *, lenient: bool = False) -> Decimal | None:
    """The one money parser for amounts that may be missing: a platform's field or a stored figure.

    ``None`` and empty text give ``default``; anything else is :func:`to_decimal` (exact, no
    rounding; floats go through ``str``). An unparsable value (a boolean, text that is no number, NaN, an
    infinity) raises ``ValueError``, or gives ``default`` when ``lenient``.

    It replaces the private parsers the sync used to keep; their differences, kept by the callers' choice
    of ``default`` and ``lenient``: QuickBooks amounts (``TotalAmt``, ``Balance``) use ``Decimal(0)``, strict
    (before, empty text raised ``InvalidOperation`` in one of them and NaN passed through; QuickBooks sends
    neither); stored link figures and review amounts use ``lenient`` (a bad figure counts as zero).
    """
    if value is None or value == "":
        return default
    try:
        return to_decimal(value)
    except ValueError:
        if lenient:
            return default
        raise


def amount(value: object) -> Decimal:
    """A QuickBooks amount (``TotalAmt``, ``Balance``, a line's ``Amount``): missing or empty is zero."""
    return parse_amount(value, Decimal(0))


def round_money(value: Decimal, currency: str = "USD") -> Decimal:
    """Quantise ``value`` half-up to the minor unit of ``currency``."""
    return value.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_money(value: object, currency: str = "USD") -> Decimal:
    """Parse ``value`` (int, str, Decimal, or a float that came from JSON) into money of ``currency``."""
    return round_money(to_decimal(value), currency)


def cents(value: Decimal) -> Decimal:
    """Quantise half-up to 2 decimal places."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def allocate(total: Decimal, weights: Sequence[Decimal], currency: str = "USD") -> list[Decimal]:
    """Split ``total`` over ``weights`` in minor units, largest remainder first (ties: earliest).

    The shares always sum exactly to ``total`` (quantised). Zero or empty weights give zero shares.
    Weights must be non-negative; ``total`` may be negative (shares are then negative too).
    """
    if any(weight < 0 for weight in weights):
        raise ValueError("weights must not be negative")
    unit = quantum(currency)
    amount = round_money(total, currency)
    weight_sum = sum(weights, Decimal(0))
    if not weights or weight_sum == 0 or amount == 0:
        return [round_money(Decimal(0), currency) for _ in weights]
    sign = -1 if amount < 0 else 1
    units = int(abs(amount) / unit)
    exact = [Decimal(units) * weight / weight_sum for weight in weights]
    floors = [int(share) for share in exact]
    left = units - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return [round_money(Decimal(sign * count) * unit, currency) for count in floors]
