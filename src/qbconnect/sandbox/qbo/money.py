"""Decimal money helpers (JSON numbers are converted through ``str`` so no float error leaks in)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")


def dec(value: Any) -> Decimal:
    if value is None or value == "":
        return Decimal(0)
    if isinstance(value, Decimal):
        return value
    return Decimal(str(value))


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def out(value: Decimal) -> float | int:
    """A JSON number as QBO writes it (``100.0``, ``37.5``)."""
    return float(value)
