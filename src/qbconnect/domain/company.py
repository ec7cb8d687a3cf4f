"""What the mapping must know about the QBO company, and how CRM taxes map to its tax codes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from qbconnect.domain.crm_models import CrmTax
from qbconnect.domain.errors import MappingError
from qbconnect.domain.money import to_decimal


@dataclass(frozen=True)
class CompanyFacts:
    """From QBO Preferences/CompanyInfo, read once per connection."""

    is_us: bool  # US companies: TAX/NON line codes and an explicit TotalTax (Automated Sales Tax)
    custom_txn_numbers: bool = False  # SalesFormsPrefs.CustomTxnNumbers: we may set DocNumber
    multicurrency: bool = False  # CurrencyPrefs.MultiCurrencyEnabled
    home_currency: str = "USD"

    def check_currency(self, currency: str, what: str) -> None:
        """Raise ``MappingError`` when ``currency`` cannot be booked in this company."""
        if currency.upper() != self.home_currency.upper() and not self.multicurrency:
            raise MappingError(
                f"The {what} is in {currency.upper()} but the QuickBooks company books only "
                f"{self.home_currency.upper()}. Turn on multicurrency in QuickBooks to sync it."
            )


def _rate_text(rate: object) -> str:
    value = to_decimal(rate).normalize()
    return format(value, "f")


def tax_keys(tax: CrmTax) -> list[str]:
    """Keys under which a CRM tax may be mapped, most specific first: its id, its name, ``rate:8.25``."""
    keys = []
    if tax.id:
        keys.append(tax.id)
    if tax.name:
        keys.append(tax.name)
    keys.append(f"rate:{_rate_text(tax.rate)}")
    return keys


def describe_taxes(taxes: Sequence[CrmTax]) -> str:
    return " + ".join(f'"{t.name or "tax"}" ({_rate_text(t.rate)}%)' for t in taxes)


@dataclass(frozen=True)
class TaxMapping:
    """CRM tax → QBO TaxCode Id, for non-US companies (settings).

    ``codes`` keys: a CRM tax id, name or ``rate:<percent>`` (see :func:`tax_keys`); a line with several
    taxes is looked up under the keys of all its taxes joined with ``+`` (e.g. ``GST+PST``), then, when
    every tax maps to the same code, that code. ``exempt_code`` is used for lines without tax.
    """

    codes: Mapping[str, str] = field(default_factory=dict)
    exempt_code: str | None = None

    def code_for(self, taxes: Sequence[CrmTax]) -> str:
        if not taxes:
            if self.exempt_code:
                return self.exempt_code
            raise MappingError(
                "A line has no tax, and no QuickBooks tax code for untaxed lines is chosen. Choose one in the settings."
            )
        if len(taxes) == 1:
            for key in tax_keys(taxes[0]):
                if key in self.codes:
                    return self.codes[key]
        else:
            for index in range(3):
                parts = [tax_keys(t)[min(index, len(tax_keys(t)) - 1)] for t in taxes]
                joined = "+".join(parts)
                if joined in self.codes:
                    return self.codes[joined]
            single = {self._single(t) for t in taxes}
            if len(single) == 1 and None not in single:
                code = single.pop()
                if code is not None:
                    return code
        raise MappingError(
            f"No QuickBooks tax code is mapped for the CRM tax {describe_taxes(taxes)}. Map it in the settings."
        )

    def _single(self, tax: CrmTax) -> str | None:
        for key in tax_keys(tax):
            if key in self.codes:
                return self.codes[key]
        return None
