"""Pre-flight checks of the connected company and location: what each setting of QuickBooks means for the sync.

Most answers come from what connecting stored (``qbo_connections.preferences``, country, home currency) and
from the location's settings; QuickBooks is asked only for what is not stored (whether an Undeposited Funds
account exists), and that answer is kept for an hour in ``Location.state`` (QuickBooks reads are metered).
That read is non-essential: near the monthly read budget the answer is kept longer (the sweep slowdown of
``connections/read_budget.py``), and once the budget is spent QuickBooks is not asked at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from qbconnect.clock import as_utc, utcnow
from qbconnect.connections.clients import qbo_client
from qbconnect.connections.read_budget import (
    BudgetState,
    exhausted_message,
    read_budget_state,
    read_counts,
    sweep_interval_multiplier,
)
from qbconnect.connections.state import connection_of
from qbconnect.db.models import Activity, Location
from qbconnect.domain import location_settings
from qbconnect.errors import SyncError
from qbconnect.qbo.client import ReadBudgetExhausted
from qbconnect.runtime import Runtime

CACHE_FOR = timedelta(hours=1)
CACHE_KEY = "preflight"
UNDEPOSITED_QUERY = "SELECT * FROM Account WHERE AccountSubType = 'UndepositedFunds' MAXRESULTS 1"


@dataclass(frozen=True)
class Check:
    id: str
    status: str  # ok|warning|problem
    title: str
    meaning: str
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "title": self.title, "meaning": self.meaning, "fix": self.fix}


def run_checks(runtime: Runtime, location_id: str, *, now: datetime | None = None) -> list[Check] | None:
    """The checklist; None when the location is unknown. Not connected: one problem saying so."""
    now = now or utcnow()
    with runtime.sessions() as session:
        location = session.get(Location, location_id)
        if location is None:
            return None
        connection = connection_of(session, location_id)
        if connection is None or connection.active_realm_id is None:
            return [
                Check(
                    "connection",
                    "problem",
                    "QuickBooks is not connected",
                    "Nothing is synced until a QuickBooks company is connected.",
                    "Press Connect to QuickBooks.",
                )
            ]
        prefs: dict[str, Any] = dict(connection.preferences or {})
        country = (connection.country or "US").upper()
        home = (connection.home_currency or "USD").upper()
        realm_id = connection.realm_id
        settings = location_settings.load(location.settings)
        currencies = {
            str(c).upper()
            for c in session.execute(
                select(Activity.currency)
                .where(Activity.location_id == location_id, Activity.currency.is_not(None))
                .distinct()
            ).scalars()
        }
        crm_currency = (location.state or {}).get("currency")
        if isinstance(crm_currency, str) and crm_currency:
            currencies.add(crm_currency.upper())
        cached = dict((location.state or {}).get(CACHE_KEY) or {})
        budget = read_budget_state(session, runtime.settings, now=now)
    is_us = country in ("US", "USA")
    checks = [
        _custom_numbers(prefs),
        *([_automated_sales_tax(prefs)] if is_us else []),
        _currency(prefs, home, currencies),
        _closing_date(prefs),
        _undeposited(runtime, location_id, realm_id, settings.deposit_account_id, cached, now, budget),
        *([] if is_us else [_tax_codes(settings.tax_code_map)]),
    ]
    return checks


def _custom_numbers(prefs: dict[str, Any]) -> Check:
    on = bool((prefs.get("SalesFormsPrefs") or {}).get("CustomTxnNumbers"))
    if on:
        return Check(
            "custom_txn_numbers",
            "ok",
            "Invoice numbers carry over",
            "QuickBooks uses custom transaction numbers, so a QuickBooks invoice gets the CRM invoice's number.",
        )
    return Check(
        "custom_txn_numbers",
        "warning",
        "QuickBooks numbers invoices itself",
        "Custom transaction numbers are off in QuickBooks, so QuickBooks gives each invoice its own next number; "
        "it will differ from the CRM invoice number.",
        "To keep the CRM's numbers, turn on Custom transaction numbers in QuickBooks (Settings > Account and "
        "settings > Sales > Sales form content).",
    )


def _automated_sales_tax(prefs: dict[str, Any]) -> Check:
    tax = prefs.get("TaxPrefs") or {}
    if tax.get("PartnerTaxEnabled"):
        return Check(
            "automated_sales_tax",
            "warning",
            "QuickBooks calculates sales tax itself",
            "This US company uses automated sales tax: QuickBooks works out the tax from the customer's address, "
            "which can differ from the tax the CRM charged.",
            "Check the first synced invoices' tax in QuickBooks; if they differ, set the CRM's tax rates to match.",
        )
    return Check(
        "automated_sales_tax",
        "ok",
        "Sales tax is taken from the CRM",
        "Automated sales tax is off, so the tax the CRM charged is what QuickBooks records.",
    )


def _currency(prefs: dict[str, Any], home: str, currencies: set[str]) -> Check:
    multi = bool((prefs.get("CurrencyPrefs") or {}).get("MultiCurrencyEnabled"))
    foreign = sorted(c for c in currencies if c != home)
    if not foreign:
        return Check(
            "currency",
            "ok",
            f"Currencies match ({home})",
            f"The QuickBooks home currency is {home}"
            + (", the same as the CRM's sales." if currencies else "; the CRM's sales so far are in it too."),
        )
    if multi:
        return Check(
            "currency",
            "ok",
            f"Multicurrency is on (home {home})",
            f"CRM sales in {', '.join(foreign)} are booked in their own currency; QuickBooks converts them.",
        )
    return Check(
        "currency",
        "problem",
        f"CRM sales in {', '.join(foreign)}, QuickBooks only in {home}",
        "QuickBooks refuses sales in a currency other than its home currency while multicurrency is off.",
        "Turn on Multicurrency in QuickBooks (Settings > Account and settings > Advanced > Currency); it cannot "
        "be turned off again.",
    )


def _closing_date(prefs: dict[str, Any]) -> Check:
    closed = (prefs.get("AccountingInfoPrefs") or {}).get("BookCloseDate")
    if closed:
        return Check(
            "closing_date",
            "warning",
            f"The books are closed up to {closed}",
            f"QuickBooks refuses transactions dated on or before {closed}; CRM sales from then will fail.",
            "Move the closing date in QuickBooks (Settings > Account and settings > Advanced > Accounting) if "
            "older sales must be booked.",
        )
    return Check("closing_date", "ok", "No closing date", "QuickBooks accepts transactions of any date.")


def _undeposited(
    runtime: Runtime,
    location_id: str,
    realm_id: str,
    deposit_account_id: str | None,
    cached: dict[str, Any],
    now: datetime,
    budget: BudgetState = BudgetState.NORMAL,
) -> Check:
    if deposit_account_id:
        return Check(
            "undeposited_funds",
            "ok",
            "Payments go to the deposit account you chose",
            f"Payments and sales receipts are deposited to QuickBooks account {deposit_account_id}.",
        )
    slowdown = sweep_interval_multiplier(budget)
    present = _cached_undeposited(cached, realm_id, now, None if math.isinf(slowdown) else CACHE_FOR * slowdown)
    if present is None and budget is BudgetState.EXHAUSTED:
        with runtime.sessions() as session:
            return _not_checked(exhausted_message(read_counts(session, runtime.settings, now=now), now=now))
    if present is None:
        try:
            with qbo_client(runtime, location_id, realm_id) as client:
                present = bool(client.query(UNDEPOSITED_QUERY, essential=False))
        except ReadBudgetExhausted as exc:
            return _not_checked(exc.message)
        except SyncError as exc:
            return Check(
                "undeposited_funds",
                "warning",
                "Could not check the Undeposited Funds account",
                f"QuickBooks did not answer: {exc.message}",
                "Open the checks again later.",
            )
        with runtime.sessions.begin() as session:
            location = session.get(Location, location_id)
            if location is not None:
                state = dict(location.state or {})
                state[CACHE_KEY] = {"realm_id": realm_id, "at": now.isoformat(), "undeposited": present}
                location.state = state
    if present:
        return Check(
            "undeposited_funds",
            "ok",
            "Undeposited Funds is there",
            "Payments wait in Undeposited Funds until you group them into a bank deposit in QuickBooks.",
        )
    return Check(
        "undeposited_funds",
        "problem",
        "No Undeposited Funds account",
        "Payments and sales receipts have nowhere to go by default, so QuickBooks will refuse them.",
        "Choose a Deposit account in the settings below (a bank or clearing account).",
    )


def _not_checked(message: str) -> Check:
    return Check(
        "undeposited_funds",
        "warning",
        "Undeposited Funds not checked: QuickBooks read budget used up",
        message,
        "Choose a Deposit account in the settings below, or open the checks again next month.",
    )


def _cached_undeposited(
    cached: dict[str, Any], realm_id: str, now: datetime, max_age: timedelta | None = CACHE_FOR
) -> bool | None:
    """The stored answer while younger than ``max_age`` (None: any age, when reads are spent)."""
    if cached.get("realm_id") != realm_id or "undeposited" not in cached:
        return None
    try:
        at = as_utc(datetime.fromisoformat(str(cached["at"])))
    except (KeyError, ValueError):
        return None
    if at is None or (max_age is not None and now - at > max_age):
        return None
    return bool(cached["undeposited"])


def _tax_codes(tax_code_map: dict[str, str]) -> Check:
    if tax_code_map:
        return Check(
            "tax_codes",
            "ok",
            "CRM taxes are mapped to QuickBooks tax codes",
            f"{len(tax_code_map)} CRM tax{'es' if len(tax_code_map) != 1 else ''} mapped; every line is booked with "
            "a QuickBooks tax code.",
        )
    return Check(
        "tax_codes",
        "problem",
        "CRM taxes are not mapped",
        "Outside the US, QuickBooks needs a tax code on every line; without a mapping, taxed CRM sales fail.",
        "Map each CRM tax (and `exempt` for untaxed lines) under “CRM taxes → QuickBooks tax codes” in the settings.",
    )
