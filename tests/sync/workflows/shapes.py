"""The contract between a trigger's published sample payload and the bodies the app sends."""

from __future__ import annotations

import re
from typing import Any

AMOUNT = re.compile(r"^-?\d+\.\d{2}$")
AMOUNT_KEYS = frozenset({"total", "balance", "amount", "unapplied", "openBalance", "overdue"})


def shape(value: Any) -> Any:
    """Keys and value types, recursively (list items by the shape of their first element)."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def amounts_are_strings_with_two_decimals(value: Any) -> list[str]:
    """The amount fields that are not strings with two decimals (empty when all are)."""
    bad: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            scalar = not isinstance(item, dict | list)
            if key in AMOUNT_KEYS and scalar and not (isinstance(item, str) and AMOUNT.match(item)):
                bad.append(f"{key}={item!r}")
            bad.extend(amounts_are_strings_with_two_decimals(item))
    elif isinstance(value, list):
        for item in value:
            bad.extend(amounts_are_strings_with_two_decimals(item))
    return bad
