"""The settings page's mapping tables: what the CRM sells, taxes and is paid with on the left, the
connected QuickBooks company's objects by name on the right.

HighLevel's API has no list of taxes or payment methods, so the CRM side is gathered from what the
location recently used: the latest invoices, orders and payments (one page of each, cached briefly),
plus every key already mapped. A key not seen yet (``rate:5``, ``GST+PST``) is typed into a blank row.
The stored settings stay ``{crm key: QuickBooks id}``; the JSON API shows and accepts them as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import structlog

from qbconnect.connections.clients import crm_client
from qbconnect.domain.crm_models import CrmInvoice, CrmLine, CrmOrder, CrmTax, CrmTransaction
from qbconnect.domain.receipt_rules import payment_method_key_candidates
from qbconnect.errors import SyncError
from qbconnect.runtime import Runtime
from qbconnect.services.qbo_lists import Choice, PickLists
from qbconnect.services.short_cache import ShortCache

log = structlog.get_logger(__name__)
T = TypeVar("T")
CACHE_SECONDS = 60.0
RECENT = 100  # one page of each: enough to list what a business sells without paging its history
EXEMPT_KEY = "exempt"
BLANK_ROWS = 2


@dataclass(frozen=True)
class CrmKey:
    """A key the settings map from, with the words the owner knows it by."""

    key: str
    label: str


@dataclass
class CrmCatalogue:
    products: list[CrmKey] = field(default_factory=list)
    taxes: list[CrmKey] = field(default_factory=list)
    payment_methods: list[CrmKey] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class MappingRow:
    key: str
    label: str
    value: str | None
    value_name: str | None
    missing: bool  # mapped to an id the company's active list does not hold: inactive or deleted


@dataclass(frozen=True)
class MappingTable:
    setting: str
    title: str
    left: str
    right: str
    rows: list[MappingRow]
    choices: list[Choice]
    blank_rows: int = BLANK_ROWS


_cache: ShortCache[str, CrmCatalogue] = ShortCache(CACHE_SECONDS)


def clear_cache() -> None:
    _cache.clear()


def _rate(rate: Decimal) -> str:
    return format(rate.normalize(), "f")


def _tax_key(tax: CrmTax) -> CrmKey:
    if tax.name:
        return CrmKey(tax.name, f"{tax.name} ({_rate(tax.rate)}%)")
    return CrmKey(f"rate:{_rate(tax.rate)}", f"Tax at {_rate(tax.rate)}%")


def catalogue_from(
    invoices: Iterable[CrmInvoice], orders: Iterable[CrmOrder], transactions: Iterable[CrmTransaction]
) -> CrmCatalogue:
    """Products, taxes and payment methods named in the given CRM records, first seen first."""
    products: dict[str, CrmKey] = {}
    taxes: dict[str, CrmKey] = {}
    methods: dict[str, CrmKey] = {}
    lines: list[CrmLine] = [line for invoice in invoices for line in invoice.items]
    orders = list(orders)
    lines += [line for order in orders for line in order.items]
    for line in lines:
        if line.product_id and line.product_id not in products:
            products[line.product_id] = CrmKey(line.product_id, line.name or line.product_id)
        for tax in line.taxes:
            found = _tax_key(tax)
            taxes.setdefault(found.key, found)
    for order in orders:
        for summary in order.tax_lines:  # an order's taxSummary: the taxes it was charged
            found = _tax_key(CrmTax(id=summary.id, name=summary.name, rate=summary.rate))
            taxes.setdefault(found.key, found)
    for txn in transactions:
        for key in payment_method_key_candidates(txn):
            methods.setdefault(key, CrmKey(key, key.replace("_", " ").capitalize()))
    return CrmCatalogue(list(products.values()), list(taxes.values()), list(methods.values()))


def _parsed(parse: Callable[[Mapping[str, Any]], T], records: Iterable[Mapping[str, Any]]) -> list[T]:
    """The records that parse; one malformed record must not empty the whole list."""
    found = []
    for record in records:
        try:
            found.append(parse(record))
        except (ValueError, TypeError, KeyError, ArithmeticError):
            continue
    return found


def crm_catalogue(runtime: Runtime, location_id: str) -> CrmCatalogue:
    """What the location recently sold, taxed and was paid with (cached for a minute)."""
    hit = _cache.get(location_id)
    if hit is not None:
        return hit
    client = crm_client(runtime, location_id)
    try:
        invoices, _ = client.list_invoices(limit=RECENT)
        orders, _ = client.list_orders(limit=RECENT)
        transactions, _ = client.list_transactions(limit=RECENT)
        found = catalogue_from(
            _parsed(CrmInvoice.from_api, invoices),
            _parsed(CrmOrder.from_api, orders),
            _parsed(CrmTransaction.from_api, transactions),
        )
    except SyncError as exc:
        log.warning("crm.catalogue_failed", location_id=location_id, error=exc.message)
        return CrmCatalogue(error=f"The CRM's recent sales could not be listed: {exc.message}")
    _cache.put(location_id, found)
    return found


def mapping_rows(current: Mapping[str, str], known: Sequence[CrmKey], choices: Sequence[Choice]) -> list[MappingRow]:
    """One row per CRM key (the ones seen, then any other already mapped); a mapped id the company's list
    does not hold is flagged, unless the list could not be loaded at all (``choices`` empty)."""
    names = {choice.id: choice.name for choice in choices}
    keys: dict[str, str] = {item.key: item.label for item in known}
    for key in current:
        keys.setdefault(key, key)
    rows = []
    for key, label in keys.items():
        value = current.get(key) or None
        missing = value is not None and bool(names) and value not in names
        rows.append(MappingRow(key, label, value, names.get(value) if value else None, missing))
    return rows


def mapping_tables(
    settings_maps: Mapping[str, Mapping[str, str]], crm: CrmCatalogue, qbo: PickLists
) -> list[MappingTable]:
    """The three tables of the settings page, in the order shown."""
    exempt = CrmKey(EXEMPT_KEY, "Untaxed lines and rounding")
    return [
        MappingTable(
            "product_item_map",
            "Products → QuickBooks items",
            "CRM product",
            "QuickBooks item",
            mapping_rows(settings_maps.get("product_item_map", {}), crm.products, qbo.items),
            qbo.items,
        ),
        MappingTable(
            "tax_code_map",
            "CRM taxes → QuickBooks tax codes",
            "CRM tax",
            "QuickBooks tax code",
            mapping_rows(settings_maps.get("tax_code_map", {}), [*crm.taxes, exempt], qbo.tax_codes),
            qbo.tax_codes,
        ),
        MappingTable(
            "payment_method_map",
            "Payment methods → QuickBooks payment methods",
            "Card brand or payment mode",
            "QuickBooks payment method",
            mapping_rows(settings_maps.get("payment_method_map", {}), crm.payment_methods, qbo.payment_methods),
            qbo.payment_methods,
        ),
    ]


def read_mapping_rows(form: Mapping[str, str], setting: str) -> dict[str, str] | None:
    """``{setting}.key.N`` / ``{setting}.value.N`` form fields → the map; None when the form has no rows
    for it (the setting is then left as it is). A row without a QuickBooks choice maps nothing."""
    prefix = f"{setting}.key."
    indexes = [name[len(prefix) :] for name in form if name.startswith(prefix)]
    if not indexes:
        return None
    mapping: dict[str, str] = {}
    for index in indexes:
        key = form.get(f"{prefix}{index}", "").strip()
        value = form.get(f"{setting}.value.{index}", "").strip()
        if key and value:
            mapping[key] = value
    return mapping
