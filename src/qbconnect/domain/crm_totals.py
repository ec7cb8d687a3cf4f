"""The CRM's own invoice arithmetic, line by line (docs/invoices.md, "The QuickBooks invoice").

Used by the mapping to split tax-inclusive lines and to know each line's discount share; the QBO
payload is then built so that QuickBooks arrives at the same total to the cent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from qbconnect.domain.crm_models import CrmDiscount, CrmLine, CrmTax
from qbconnect.domain.money import HUNDRED, allocate, round_money


@dataclass(frozen=True)
class LineBreakdown:
    line: CrmLine
    amount: Decimal  # qty x unit price, rounded
    discount_share: Decimal
    taxes: tuple[tuple[CrmTax, Decimal], ...]
    inclusive: bool  # the line's price includes its taxes (and it has some)

    @property
    def tax(self) -> Decimal:
        return sum((amount for _, amount in self.taxes), Decimal(0))


@dataclass(frozen=True)
class InvoiceBreakdown:
    lines: tuple[LineBreakdown, ...]
    subtotal: Decimal
    discount: Decimal
    tax: Decimal  # every line tax, inclusive ones too
    exclusive_tax: Decimal
    inclusive_tax: Decimal
    total: Decimal


def discount_eligible(line: CrmLine, discount: CrmDiscount) -> bool:
    return not discount.valid_on_product_ids or (line.product_id or "") in discount.valid_on_product_ids


def crm_breakdown(items: Sequence[CrmLine], discount: CrmDiscount | None, currency: str = "USD") -> InvoiceBreakdown:
    amounts = [round_money(line.qty * line.unit_price, currency) for line in items]
    zero = round_money(Decimal(0), currency)
    subtotal = sum(amounts, zero)
    shares = [zero for _ in items]
    discount_total = zero
    if discount is not None:
        eligible_idx = [i for i, line in enumerate(items) if discount_eligible(line, discount)]
        eligible = sum((amounts[i] for i in eligible_idx), zero)
        if discount.is_percentage:
            discount_total = round_money(eligible * discount.value / HUNDRED, currency)
        else:
            discount_total = round_money(min(discount.value, eligible), currency)
        split = allocate(discount_total, [max(amounts[i], Decimal(0)) for i in eligible_idx], currency)
        for i, share in zip(eligible_idx, split, strict=True):
            shares[i] = share

    lines: list[LineBreakdown] = []
    exclusive = zero
    inclusive_total = zero
    for line, amount, share in zip(items, amounts, shares, strict=True):
        inclusive = line.tax_inclusive and bool(line.taxes)
        base = amount - share
        net = base / (1 + sum((t.rate for t in line.taxes), Decimal(0)) / HUNDRED) if inclusive else base
        taxes = tuple((tax, round_money(net * tax.rate / HUNDRED, currency)) for tax in line.taxes)
        line_tax = sum((value for _, value in taxes), zero)
        if inclusive:
            inclusive_total += line_tax
        else:
            exclusive += line_tax
        lines.append(LineBreakdown(line, amount, share, taxes, inclusive))
    return InvoiceBreakdown(
        lines=tuple(lines),
        subtotal=subtotal,
        discount=discount_total,
        tax=exclusive + inclusive_total,
        exclusive_tax=exclusive,
        inclusive_tax=inclusive_total,
        total=subtotal - discount_total + exclusive,
    )
