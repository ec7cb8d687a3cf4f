"""Invoice totals as the CRM computes them (the rule is written down in docs/sandbox.md).

All amounts are ``Decimal`` currency units, rounded half-up to the cent at each named step:
line amount, discount, discount shares, and each tax of each line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
HUNDRED = Decimal(100)


def to_decimal(value: Any) -> Decimal:
    """Convert a JSON number (or string) to Decimal without passing through binary float error."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise TypeError("a boolean is not an amount")
    return Decimal(str(value))


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class LineTax:
    tax_id: str
    name: str
    rate: Decimal
    amount: Decimal
    inclusive: bool


@dataclass(frozen=True)
class LineTotals:
    amount: Decimal  # qty * unit price, to the cent
    discount_share: Decimal
    taxes: list[LineTax] = field(default_factory=list)


@dataclass(frozen=True)
class InvoiceTotals:
    lines: list[LineTotals]
    sub_total: Decimal
    discount: Decimal
    tax: Decimal  # every line tax, inclusive ones too
    exclusive_tax: Decimal
    total: Decimal


def allocate(amount: Decimal, weights: Sequence[Decimal]) -> list[Decimal]:
    """Split ``amount`` over ``weights`` in whole cents, largest remainder first; shares sum to ``amount``."""
    total_weight = sum(weights, Decimal(0))
    if not weights or total_weight == 0 or amount == 0:
        return [Decimal("0.00") for _ in weights]
    total_cents = int((amount / CENT).to_integral_value(rounding=ROUND_HALF_UP))
    exact = [Decimal(total_cents) * w / total_weight for w in weights]
    floors = [int(x) for x in exact]  # weights and amount are non-negative: int() floors
    left = total_cents - sum(floors)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - floors[i]), i))
    for i in order[:left]:
        floors[i] += 1
    return [Decimal(c) * CENT for c in floors]


def compute_invoice_totals(items: Sequence[Mapping[str, Any]], discount: Mapping[str, Any] | None) -> InvoiceTotals:
    amounts = [cents(to_decimal(item["qty"]) * to_decimal(item["amount"])) for item in items]
    sub_total = sum(amounts, Decimal("0.00"))

    shares = [Decimal("0.00") for _ in items]
    discount_total = Decimal("0.00")
    if discount:
        value = to_decimal(discount.get("value", 0))
        products = [str(p) for p in discount.get("validOnProductIds") or []]
        eligible_idx = [i for i, item in enumerate(items) if not products or str(item.get("productId", "")) in products]
        eligible = sum((amounts[i] for i in eligible_idx), Decimal("0.00"))
        if discount.get("type", "percentage") == "percentage":
            discount_total = cents(eligible * value / HUNDRED)
        else:
            discount_total = cents(min(value, eligible))
        for i, share in zip(eligible_idx, allocate(discount_total, [amounts[i] for i in eligible_idx]), strict=True):
            shares[i] = share

    lines: list[LineTotals] = []
    tax_total = Decimal("0.00")
    exclusive_tax = Decimal("0.00")
    for item, amount, share in zip(items, amounts, shares, strict=True):
        taxes = list(item.get("taxes") or [])
        inclusive = bool(item.get("taxInclusive", False))
        base = amount - share
        line_taxes: list[LineTax] = []
        if inclusive:
            rate_sum = sum((to_decimal(t["rate"]) for t in taxes), Decimal(0))
            net = base / (1 + rate_sum / HUNDRED)
        else:
            net = base
        for tax in taxes:
            rate = to_decimal(tax["rate"])
            value = cents(net * rate / HUNDRED)
            line_taxes.append(
                LineTax(
                    tax_id=str(tax.get("_id", "")),
                    name=str(tax.get("name", "")),
                    rate=rate,
                    amount=value,
                    inclusive=inclusive,
                )
            )
            tax_total += value
            if not inclusive:
                exclusive_tax += value
        lines.append(LineTotals(amount=amount, discount_share=share, taxes=line_taxes))

    total = sub_total - discount_total + exclusive_tax
    return InvoiceTotals(
        lines=lines,
        sub_total=sub_total,
        discount=discount_total,
        tax=tax_total,
        exclusive_tax=exclusive_tax,
        total=total,
    )
