"""QuickBooks lists for the settings form's pick lists (items, accounts, tax codes, payment methods), cached
briefly. QuickBooks answers only active objects to these queries, so a mapped id missing from a list is an
object made inactive or deleted since."""

from __future__ import annotations

from dataclasses import dataclass, field

import structlog

from qbconnect.connections.clients import qbo_client
from qbconnect.errors import SyncError
from qbconnect.runtime import Runtime
from qbconnect.services.short_cache import ShortCache

log = structlog.get_logger(__name__)
CACHE_SECONDS = 60.0

QUERIES = {
    "items": "SELECT * FROM Item MAXRESULTS 1000",
    "income_accounts": "SELECT * FROM Account WHERE AccountType = 'Income' MAXRESULTS 1000",
    "deposit_accounts": "SELECT * FROM Account WHERE AccountType IN ('Bank', 'Other Current Asset') MAXRESULTS 1000",
    "tax_codes": "SELECT * FROM TaxCode MAXRESULTS 1000",
    "payment_methods": "SELECT * FROM PaymentMethod MAXRESULTS 1000",
}


@dataclass(frozen=True)
class Choice:
    id: str
    name: str


@dataclass
class PickLists:
    items: list[Choice] = field(default_factory=list)
    income_accounts: list[Choice] = field(default_factory=list)
    deposit_accounts: list[Choice] = field(default_factory=list)
    tax_codes: list[Choice] = field(default_factory=list)
    payment_methods: list[Choice] = field(default_factory=list)
    error: str | None = None


_cache: ShortCache[tuple[str, str], PickLists] = ShortCache(CACHE_SECONDS)


def clear_cache() -> None:
    _cache.clear()


def pick_lists(runtime: Runtime, location_id: str, realm_id: str) -> PickLists:
    key = (location_id, realm_id)
    hit = _cache.get(key)
    if hit is not None:
        return hit
    lists = PickLists()
    client = qbo_client(runtime, location_id, realm_id)
    try:
        for name, statement in QUERIES.items():
            rows = client.query(statement)
            choices = [
                Choice(str(row.get("Id")), str(row.get("FullyQualifiedName") or row.get("Name") or row.get("Id")))
                for row in rows
                if row.get("Id") is not None
            ]
            setattr(lists, name, sorted(choices, key=lambda c: c.name.lower()))
    except SyncError as exc:
        log.warning("qbo.pick_lists_failed", location_id=location_id, realm_id=realm_id, error=exc.message)
        return PickLists(error=f"QuickBooks lists could not be loaded: {exc.message}")
    _cache.put(key, lists)
    return lists
