"""One emulated QBO company (realm): its objects, indexes and the create/update/void/delete rules."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from . import faults, rules, seed
from .clock import qbo_time
from .entities import (
    NAME_LISTS,
    READ_ONLY,
    REF_TARGETS,
    SALES_FORMS,
    SINGLETONS,
    TRANSACTIONS,
    UNCHECKED_REFS,
    display_name,
)
from .money import cents, dec, out
from .schema import check_entity, child_types

# read-only outputs QBO ignores on input
_OUTPUT_FIELDS = ("MetaData", "domain", "sparse", "status", "Balance", "HomeBalance", "TotalAmt", "HomeTotalAmt")
_NAME_INDEXED = ("Customer", "Vendor")


@dataclass
class Change:
    """One entity change, the seed of a webhook event."""

    realm_id: str
    entity: str
    entity_id: str
    operation: str  # Create, Update, Delete, Void, Merge
    at: datetime
    deleted_id: str | None = None


@dataclass
class Company:
    realm_id: str
    name: str
    country: str
    home_currency: str
    clock: Callable[[], datetime]
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    tombstones: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    doc_counters: dict[str, int] = field(default_factory=dict)
    names: dict[str, tuple[str, str]] = field(default_factory=dict)
    item_names: dict[str, str] = field(default_factory=dict)
    replays: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)

    # ------------------------------------------------------------------ basics
    @property
    def is_us(self) -> bool:
        return self.country.upper() == "US"

    @property
    def preferences(self) -> dict[str, Any]:
        return self.objects["Preferences"]["1"]

    @property
    def custom_txn_numbers(self) -> bool:
        return bool(self.preferences.get("SalesFormsPrefs", {}).get("CustomTxnNumbers"))

    @property
    def multicurrency(self) -> bool:
        return bool(self.preferences.get("CurrencyPrefs", {}).get("MultiCurrencyEnabled"))

    def now_text(self) -> str:
        return qbo_time(self.clock())

    def table(self, entity: str) -> dict[str, dict[str, Any]]:
        return self.objects.setdefault(entity, {})

    def next_id(self, entity: str) -> str:
        self.counters[entity] = self.counters.get(entity, 0) + 1
        return str(self.counters[entity])

    def insert(self, entity: str, obj: dict[str, Any], *, obj_id: str | None = None) -> dict[str, Any]:
        """Store a new object without rules (seeding)."""
        obj_id = obj_id or self.next_id(entity)
        now = self.now_text()
        stored = {"Id": obj_id, "SyncToken": "0", "domain": "QBO", "sparse": False, **obj}
        stored["MetaData"] = {"CreateTime": now, "LastUpdatedTime": now}
        self.table(entity)[obj_id] = stored
        self._index(entity, stored)
        return stored

    def _index(self, entity: str, obj: dict[str, Any]) -> None:
        if entity in _NAME_INDEXED and obj.get("DisplayName"):
            self.names[str(obj["DisplayName"]).casefold()] = (entity, obj["Id"])
        elif entity == "Item" and obj.get("Name"):
            self.item_names[str(obj.get("FullyQualifiedName") or obj["Name"]).casefold()] = obj["Id"]

    def _unindex(self, entity: str, obj: dict[str, Any]) -> None:
        if entity in _NAME_INDEXED and obj.get("DisplayName"):
            self.names.pop(str(obj["DisplayName"]).casefold(), None)
        elif entity == "Item" and obj.get("Name"):
            self.item_names.pop(str(obj.get("FullyQualifiedName") or obj["Name"]).casefold(), None)

    def find(self, entity: str, obj_id: str) -> dict[str, Any] | None:
        return self.objects.get(entity, {}).get(str(obj_id))

    def find_by_name(self, entity: str, name: str) -> dict[str, Any] | None:
        return next((o for o in self.table(entity).values() if o.get("Name") == name), None)

    def iter(self, entity: str) -> Iterator[dict[str, Any]]:
        return iter(self.table(entity).values())

    def read(self, entity: str, obj_id: str) -> dict[str, Any]:
        obj = self.find(entity, obj_id)
        if obj is None:
            raise faults.object_not_found(
                f"Object Not Found : Something you're trying to use has been made "
                f"inactive. Check the fields with accounts, customers, items, vendors "
                f"or employees. ({entity} Id={obj_id})"
            )
        return copy.deepcopy(obj)

    def sales_rates(self, tax_code_id: str) -> list[tuple[str, Decimal]]:
        code = self.find("TaxCode", tax_code_id)
        if code is None:
            return []
        result = []
        for detail in (code.get("SalesTaxRateList") or {}).get("TaxRateDetail", []):
            rate_id = str(detail["TaxRateRef"]["value"])
            rate = self.find("TaxRate", rate_id)
            if rate is not None:
                result.append((rate_id, dec(rate.get("RateValue"))))
        return result

    def record(self, entity: str, obj_id: str, operation: str, deleted_id: str | None = None) -> None:
        self.changes.append(Change(self.realm_id, entity, obj_id, operation, self.clock(), deleted_id))

    # ------------------------------------------------------------------ references
    def resolve_refs(self, entity: str, body: dict[str, Any]) -> None:
        """Every ``*Ref`` must point at an existing, active object; fills in the ``name``."""
        self._walk_refs(entity, entity_type(entity), body, entity)

    def _walk_refs(self, entity: str, type_name: str, value: dict[str, Any], path: str) -> None:
        kids = child_types(type_name)
        for key, item in value.items():
            if key not in kids or key == "LinkedTxn":
                continue
            ctype, _many = kids[key]
            if ctype == "ReferenceType":
                if key in UNCHECKED_REFS:
                    continue
                self._resolve(entity, key, item, f"{path}.{key}")
            elif isinstance(item, dict) and ctype in _COMPLEX_NAMES:
                self._walk_refs(entity, ctype, item, f"{path}.{key}")
            elif isinstance(item, list) and ctype in _COMPLEX_NAMES:
                for element in item:
                    if isinstance(element, dict):
                        self._walk_refs(entity, ctype, element, f"{path}.{key}")

    def _resolve(self, entity: str, key: str, ref: Any, element: str) -> None:
        if not isinstance(ref, dict) or ref.get("value") in (None, ""):
            raise faults.required_missing(f"{element}.value")
        target = REF_TARGETS.get(key, "")
        if key == "ParentRef":
            target = entity
        ref_id = str(ref["value"])
        obj = self.find(target, ref_id) if target else None
        if obj is None:
            raise faults.invalid_reference(target or key.removesuffix("Ref"), ref_id, element)
        if obj.get("Active") is False:
            raise faults.object_not_found()
        ref["value"] = ref_id
        name = display_name(target, obj)
        if name:
            ref["name"] = name

    # ------------------------------------------------------------------ create / update
    def create(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity in READ_ONLY or entity in SINGLETONS:
            raise faults.unsupported_operation(f"Create for {entity}")
        check_entity(entity, body)
        obj = _strip_outputs(copy.deepcopy(body), entity)
        obj.pop("Id", None)
        obj.pop("SyncToken", None)
        self._prepare(entity, obj, existing=None)
        obj_id = self.next_id(entity)
        now = self.now_text()
        stored = {"Id": obj_id, "SyncToken": "0", "domain": "QBO", "sparse": False, **obj}
        stored["MetaData"] = {"CreateTime": now, "LastUpdatedTime": now}
        self.table(entity)[obj_id] = stored
        self._index(entity, stored)
        self._after_write(entity, stored, previous=None)
        self.record(entity, obj_id, "Create")
        return copy.deepcopy(stored)

    def update(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity in READ_ONLY:
            raise faults.unsupported_operation(f"Update for {entity}")
        check_entity(entity, body)
        if not body.get("Id"):
            raise faults.required_missing("Id")
        if body.get("SyncToken") in (None, ""):
            raise faults.required_missing("SyncToken")
        current = self.find(entity, str(body["Id"]))
        if current is None:
            raise faults.object_not_found()
        if str(body["SyncToken"]) != current["SyncToken"]:
            raise faults.stale_object()
        incoming = _strip_outputs(copy.deepcopy(body), entity)
        for key in ("Id", "SyncToken"):
            incoming.pop(key, None)
        if body.get("sparse") is True or entity in SINGLETONS:
            merged = copy.deepcopy(current)
            for key, value in incoming.items():
                if entity in SINGLETONS and isinstance(value, dict) and isinstance(merged.get(key), dict):
                    merged[key].update(value)
                else:
                    merged[key] = value
        else:
            merged = incoming
            for key in ("DocNumber", "Active", "Type", "AccountType"):
                if key in current and key not in merged:
                    merged[key] = current[key]
        merged = _strip_outputs(merged, entity)
        for key in ("Id", "SyncToken"):
            merged.pop(key, None)
        if current.get("PrivateNote", "").startswith("Voided") and entity in TRANSACTIONS:
            merged.setdefault("PrivateNote", current["PrivateNote"])
        if entity in ("Customer", "Vendor", "Item"):
            self._unindex(entity, current)
        try:
            self._prepare(entity, merged, existing=current)
        finally:
            self._index(entity, current)
        previous = copy.deepcopy(current)
        stored = self._replace(entity, current, merged)
        self._after_write(entity, stored, previous=previous)
        self.record(entity, stored["Id"], "Update")
        return copy.deepcopy(stored)

    def _replace(self, entity: str, current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        self._unindex(entity, current)
        stored = {
            "Id": current["Id"],
            "SyncToken": str(int(current["SyncToken"]) + 1),
            "domain": "QBO",
            "sparse": False,
            **new,
            "MetaData": {"CreateTime": current["MetaData"]["CreateTime"], "LastUpdatedTime": self.now_text()},
        }
        self.table(entity)[current["Id"]] = stored
        self._index(entity, stored)
        return stored

    def touch(self, entity: str, obj: dict[str, Any]) -> None:
        obj["SyncToken"] = str(int(obj["SyncToken"]) + 1)
        obj["MetaData"]["LastUpdatedTime"] = self.now_text()

    # ------------------------------------------------------------------ rules per entity
    def _prepare(self, entity: str, obj: dict[str, Any], existing: dict[str, Any] | None) -> None:
        obj.pop("CustomField", None) if not _has_custom_values(obj) else None
        self._check_currency(entity, obj)
        self.resolve_refs(entity, obj)
        if entity in ("Customer", "Vendor"):
            self._prepare_person(entity, obj)
        elif entity == "Item":
            self._prepare_item(obj)
        elif entity == "Account":
            self._prepare_account(obj, existing)
        elif entity == "PaymentMethod":
            name = rules.check_name(obj.get("Name", ""), "Name")
            clash = self.find_by_name("PaymentMethod", name)
            if clash is not None and (existing is None or clash["Id"] != existing["Id"]):
                raise faults.duplicate_name("Another payment method is already using this name.")
            obj.setdefault("Active", True)
            obj.setdefault("Type", "NON_CREDIT_CARD")
        elif entity in SALES_FORMS:
            self._prepare_sales_form(entity, obj, existing)
        elif entity == "Payment":
            self._prepare_payment(obj, existing)

    def _check_currency(self, entity: str, obj: dict[str, Any]) -> None:
        ref = obj.get("CurrencyRef")
        if ref is None or entity in SINGLETONS:
            return
        code = str(ref.get("value", "")) if isinstance(ref, dict) else ""
        if not self.multicurrency and code != self.home_currency:
            raise faults.business_validation(
                "Multicurrency is not enabled for this company; CurrencyRef must be the home currency "
                f"{self.home_currency}.",
                element="CurrencyRef",
            )
        if len(code) != 3 or not code.isalpha() or not code.isupper():
            raise faults.invalid_reference("Currency", code, "CurrencyRef")

    def _prepare_person(self, entity: str, obj: dict[str, Any]) -> None:
        if not obj.get("DisplayName"):
            parts = [obj.get(k) for k in ("Title", "GivenName", "MiddleName", "FamilyName", "Suffix")]
            words = [str(p) for p in parts if p]
            if not words:
                raise faults.required_missing("DisplayName")
            obj["DisplayName"] = " ".join(words)
        name = rules.check_name(obj["DisplayName"], "DisplayName")
        obj["DisplayName"] = name
        if name.casefold() in self.names:
            raise faults.duplicate_name()
        parent = obj.get("ParentRef")
        obj["FullyQualifiedName"] = f"{parent['name']}:{name}" if parent else name
        obj["Job"] = bool(parent)
        obj.setdefault("PrintOnCheckName", name)
        obj.setdefault("Active", True)
        if entity == "Customer":
            obj.setdefault("BillWithParent", False)
            obj.setdefault("Taxable", False)
            obj["Balance"] = 0
            obj["BalanceWithJobs"] = 0
        obj.setdefault("CurrencyRef", {"value": self.home_currency, "name": seed.currency_name(self.home_currency)})

    def _prepare_item(self, obj: dict[str, Any]) -> None:
        name = rules.check_name(obj.get("Name", ""), "Name")
        item_type = obj.get("Type")
        if not item_type:
            raise faults.required_missing("Type")
        parent = obj.get("ParentRef")
        fq = f"{parent['name']}:{name}" if parent else name
        if fq.casefold() in self.item_names:
            raise faults.duplicate_name(
                "The name supplied already exists. : Another product or service is already using this name. "
                "Please use a different name."
            )
        obj["FullyQualifiedName"] = fq
        obj["SubItem"] = bool(parent)
        if item_type in ("Service", "NonInventory", "Inventory") and "IncomeAccountRef" not in obj:
            raise faults.required_missing("IncomeAccountRef")
        if item_type == "Inventory":
            for key in ("AssetAccountRef", "ExpenseAccountRef", "InvStartDate"):
                if key not in obj:
                    raise faults.required_missing(key)
            if obj.get("TrackQtyOnHand") is not True or "QtyOnHand" not in obj:
                raise faults.business_validation(
                    "Inventory items must track quantity on hand (TrackQtyOnHand, QtyOnHand).", element="QtyOnHand"
                )
        obj.setdefault("Active", True)

    def _prepare_account(self, obj: dict[str, Any], existing: dict[str, Any] | None) -> None:
        name = rules.check_name(obj.get("Name", ""), "Name")
        if not obj.get("AccountType") and not obj.get("AccountSubType"):
            raise faults.required_missing("AccountType")
        clash = self.find_by_name("Account", name)
        if clash is not None and (existing is None or clash["Id"] != existing["Id"]):
            raise faults.duplicate_name("Another account is already using this name.")
        obj["FullyQualifiedName"] = name
        obj.setdefault("Active", True)
        obj.setdefault("Classification", seed.classification(str(obj.get("AccountType", ""))))
        obj.setdefault("CurrentBalance", 0)
        obj.setdefault("CurrentBalanceWithSubAccounts", 0)
        obj.setdefault("CurrencyRef", {"value": self.home_currency, "name": seed.currency_name(self.home_currency)})

    def _doc_number(self, entity: str, obj: dict[str, Any], existing: dict[str, Any] | None) -> None:
        doc = obj.get("DocNumber")
        auto = obj.pop("AutoDocNumber", None)
        if doc is not None:
            doc = str(doc)
            if len(doc) > rules.MAX_DOC_NUMBER:
                raise faults.string_length("DocNumber", rules.MAX_DOC_NUMBER, len(doc))
            obj["DocNumber"] = doc
            if self.custom_txn_numbers:
                for other in self.iter(entity):
                    if other.get("DocNumber") == doc and (existing is None or other["Id"] != existing["Id"]):
                        raise faults.duplicate_doc_number(doc, entity, other["Id"])
        elif existing is None and (not self.custom_txn_numbers or auto is True):
            self.doc_counters[entity] = self.doc_counters.get(entity, 1000) + 1
            obj["DocNumber"] = str(self.doc_counters[entity])

    def _prepare_sales_form(self, entity: str, obj: dict[str, Any], existing: dict[str, Any] | None) -> None:
        if entity in ("Invoice", "CreditMemo") and not obj.get("CustomerRef"):
            raise faults.required_missing("CustomerRef")
        if entity == "RefundReceipt" and not obj.get("DepositToAccountRef"):
            raise faults.required_missing("DepositToAccountRef")
        self._doc_number(entity, obj, existing)
        voided = str(obj.get("PrivateNote", "")).startswith("Voided") and existing is not None
        rules.compute_sales_form(self, entity, obj)
        if voided:
            rules.zero_out(obj)
        obj.setdefault("TxnDate", self.clock().date().isoformat())
        obj.setdefault("CurrencyRef", {"value": self.home_currency, "name": seed.currency_name(self.home_currency)})
        obj.setdefault("PrintStatus", "NotSet")
        obj.setdefault("EmailStatus", "NotSet")
        obj.setdefault("ApplyTaxAfterDiscount", False)
        if entity == "SalesReceipt" and "DepositToAccountRef" not in obj:
            account = self.find_by_name("Account", "Undeposited Funds")
            if account is not None:
                obj["DepositToAccountRef"] = {"value": account["Id"], "name": account["Name"]}
        total = dec(obj["TotalAmt"])
        if entity == "Invoice":
            applied = self.applied_to_invoice(existing["Id"]) if existing else Decimal(0)
            if total < applied:
                raise faults.business_validation(
                    f"The invoice total {total} is less than the payments already applied ({applied}).",
                    element="TotalAmt",
                )
            obj["Balance"] = out(cents(total - applied))
            obj["Deposit"] = 0
            if existing is not None:
                obj["LinkedTxn"] = copy.deepcopy(existing.get("LinkedTxn", []))
            else:
                obj["LinkedTxn"] = []
            if "DueDate" not in obj:
                obj["DueDate"] = obj["TxnDate"]
        elif entity == "CreditMemo":
            obj["RemainingCredit"] = out(total)
            obj["Balance"] = out(total)
        else:
            obj["Balance"] = 0

    # ------------------------------------------------------------------ payments
    def applied_to_invoice(self, invoice_id: str) -> Decimal:
        total = Decimal(0)
        for payment in self.iter("Payment"):
            for line in payment.get("Line", []):
                for linked in line.get("LinkedTxn", []):
                    if linked.get("TxnType") == "Invoice" and str(linked.get("TxnId")) == invoice_id:
                        total += dec(line.get("Amount"))
        return total

    def _prepare_payment(self, obj: dict[str, Any], existing: dict[str, Any] | None) -> None:
        if not obj.get("CustomerRef"):
            raise faults.required_missing("CustomerRef")
        if obj.get("TotalAmt") is None:
            raise faults.required_missing("TotalAmt")
        total = cents(dec(obj["TotalAmt"]))
        if total < 0:
            raise faults.business_validation("TotalAmt cannot be negative.", element="TotalAmt")
        voided = existing is not None and str(obj.get("PrivateNote", "")).startswith("Voided")
        applied = Decimal(0)
        for line in obj.get("Line", []) or []:
            if line.get("Amount") is None:
                raise faults.required_missing("Line.Amount")
            amount = cents(dec(line["Amount"]))
            if amount <= 0 and not voided:
                raise faults.business_validation("Payment line amounts must be positive.", element="Line.Amount")
            links = line.get("LinkedTxn") or []
            if not links:
                raise faults.required_missing("Line.LinkedTxn")
            for linked in links:
                txn_type, txn_id = linked.get("TxnType"), str(linked.get("TxnId", ""))
                if txn_type != "Invoice":
                    raise faults.business_validation(
                        f"Payments can only be linked to invoices in this emulator (got {txn_type}).",
                        element="LinkedTxn.TxnType",
                    )
                invoice = self.find("Invoice", txn_id)
                if invoice is None:
                    raise faults.invalid_reference("Invoice", txn_id, "Line.LinkedTxn.TxnId")
                if invoice["CustomerRef"]["value"] != obj["CustomerRef"]["value"]:
                    raise faults.business_validation(
                        f"Invoice {txn_id} belongs to another customer.", element="LinkedTxn.TxnId"
                    )
                already = self.applied_to_invoice(txn_id)
                if existing is not None:
                    already -= _applied_by(existing, txn_id)
                open_balance = dec(invoice["TotalAmt"]) - already
                if amount > open_balance:
                    raise faults.business_validation(
                        f"The payment amount {amount} is more than the open balance {cents(open_balance)} of "
                        f"invoice {txn_id}.",
                        element="Line.Amount",
                    )
            line["Amount"] = out(amount)
            applied += amount
        if applied > total:
            raise faults.business_validation(
                f"The amount applied to invoices ({applied}) is more than the payment total ({total}).",
                element="TotalAmt",
            )
        obj["TotalAmt"] = out(total)
        obj["UnappliedAmt"] = out(total - applied)
        obj.setdefault("Line", [])
        obj.setdefault("TxnDate", self.clock().date().isoformat())
        obj.setdefault("ProcessPayment", False)
        obj.setdefault("CurrencyRef", {"value": self.home_currency, "name": seed.currency_name(self.home_currency)})
        if "DepositToAccountRef" not in obj:
            account = self.find_by_name("Account", "Undeposited Funds")
            if account is not None:
                obj["DepositToAccountRef"] = {"value": account["Id"], "name": account["Name"]}

    def _after_write(self, entity: str, stored: dict[str, Any], previous: dict[str, Any] | None) -> None:
        """Side effects on other objects: invoice balances and links, customer balances."""
        if entity == "Payment":
            touched = _linked_invoices(stored) | (_linked_invoices(previous) if previous else set())
            for invoice_id in touched:
                self.refresh_invoice(invoice_id)
        if entity == "Customer":
            self.refresh_customer_balance(stored["Id"])
        if entity in ("Invoice", "Payment", "CreditMemo"):
            customers = {stored.get("CustomerRef", {}).get("value")}
            if previous:
                customers.add(previous.get("CustomerRef", {}).get("value"))
            for customer_id in customers - {None}:
                self.refresh_customer_balance(str(customer_id))

    def refresh_invoice(self, invoice_id: str) -> None:
        invoice = self.find("Invoice", invoice_id)
        if invoice is None:
            return
        applied = self.applied_to_invoice(invoice_id)
        links = [
            {"TxnId": p["Id"], "TxnType": "Payment"} for p in self.iter("Payment") if invoice_id in _linked_invoices(p)
        ]
        balance = out(cents(dec(invoice["TotalAmt"]) - applied))
        if invoice.get("Balance") != balance or invoice.get("LinkedTxn") != links:
            invoice["Balance"] = balance
            invoice["LinkedTxn"] = links
            self.touch("Invoice", invoice)
            self.refresh_customer_balance(str(invoice["CustomerRef"]["value"]))

    def refresh_customer_balance(self, customer_id: str) -> None:
        customer = self.find("Customer", customer_id)
        if customer is None:
            return
        balance = sum(
            (dec(i.get("Balance")) for i in self.iter("Invoice") if i["CustomerRef"]["value"] == customer_id),
            Decimal(0),
        )
        unapplied = sum(
            (dec(p.get("UnappliedAmt")) for p in self.iter("Payment") if p["CustomerRef"]["value"] == customer_id),
            Decimal(0),
        )
        credits = sum(
            (
                dec(c.get("RemainingCredit"))
                for c in self.iter("CreditMemo")
                if c.get("CustomerRef", {}).get("value") == customer_id
            ),
            Decimal(0),
        )
        customer["Balance"] = out(cents(balance - unapplied - credits))
        customer["BalanceWithJobs"] = customer["Balance"]

    # ------------------------------------------------------------------ void / delete
    def _check_token(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(body, dict) or not body.get("Id"):
            raise faults.required_missing("Id")
        if body.get("SyncToken") in (None, ""):
            raise faults.required_missing("SyncToken")
        check_entity(entity, body)
        current = self.find(entity, str(body["Id"]))
        if current is None:
            raise faults.object_not_found()
        if str(body["SyncToken"]) != current["SyncToken"]:
            raise faults.stale_object()
        return current

    def void(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity not in ("Invoice", "SalesReceipt", "Payment"):
            raise faults.unsupported_operation(f"Void for {entity}")
        current = self._check_token(entity, body)
        if entity == "Invoice" and self.applied_to_invoice(current["Id"]) > 0:
            raise faults.business_validation(
                "This invoice has payments applied to it. Void or delete the payments first.", element="Id"
            )
        previous = copy.deepcopy(current)
        new = copy.deepcopy(current)
        if entity == "Payment":
            new["Line"] = []
            new["TotalAmt"] = 0
            new["UnappliedAmt"] = 0
            note = new.get("PrivateNote")
            new["PrivateNote"] = "Voided" if not note or note == "Voided" else f"Voided - {note}"
        else:
            rules.zero_out(new)
        for key in ("Id", "SyncToken", "MetaData"):
            new.pop(key, None)
        stored = self._replace(entity, current, new)
        self._after_write(entity, stored, previous=previous)
        self.record(entity, stored["Id"], "Void")
        return copy.deepcopy(stored)

    def delete(self, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        if entity not in TRANSACTIONS:
            raise faults.unsupported_operation(f"Delete for {entity}")
        current = self._check_token(entity, body)
        if entity == "Invoice" and self.applied_to_invoice(current["Id"]) > 0:
            raise faults.business_validation(
                "This invoice has payments applied to it. Void or delete the payments first.", element="Id"
            )
        del self.table(entity)[current["Id"]]
        self.tombstone(entity, current["Id"])
        self._after_write(entity, {"CustomerRef": current.get("CustomerRef", {}), "Line": []}, previous=current)
        self.record(entity, current["Id"], "Delete")
        return {"status": "Deleted", "domain": "QBO", "Id": current["Id"]}

    def tombstone(self, entity: str, obj_id: str) -> None:
        self.tombstones.setdefault(entity, {})[obj_id] = {
            "status": "Deleted",
            "domain": "QBO",
            "Id": obj_id,
            "MetaData": {"LastUpdatedTime": self.now_text()},
        }

    def merge_customers(self, from_id: str, into_id: str) -> None:
        source, target = self.find("Customer", from_id), self.find("Customer", into_id)
        if source is None or target is None or from_id == into_id:
            raise faults.object_not_found()
        for entity in TRANSACTIONS:
            for obj in self.iter(entity):
                ref = obj.get("CustomerRef")
                if ref and ref.get("value") == from_id:
                    obj["CustomerRef"] = {"value": into_id, "name": target["DisplayName"]}
                    self.touch(entity, obj)
        self._unindex("Customer", source)
        del self.table("Customer")[from_id]
        self.tombstone("Customer", from_id)
        self.refresh_customer_balance(into_id)
        self.touch("Customer", target)
        self.record("Customer", into_id, "Merge", deleted_id=from_id)


_COMPLEX_NAMES: set[str] = set()


def _init_complex() -> None:
    from .schema_table import COMPLEX

    _COMPLEX_NAMES.update(COMPLEX)


_init_complex()


def entity_type(entity: str) -> str:
    from .schema_table import ELEMENTS

    return ELEMENTS[entity]


def _strip_outputs(obj: dict[str, Any], entity: str = "") -> dict[str, Any]:
    for key in _OUTPUT_FIELDS:
        if key == "TotalAmt" and entity == "Payment":
            continue
        obj.pop(key, None)
    return obj


def _has_custom_values(obj: dict[str, Any]) -> bool:
    fields = obj.get("CustomField") or []
    kept = [f for f in fields if any(k.endswith("Value") for k in f)]
    if kept:
        obj["CustomField"] = kept
    return bool(kept)


def _linked_invoices(payment: dict[str, Any] | None) -> set[str]:
    found: set[str] = set()
    for line in (payment or {}).get("Line", []):
        for linked in line.get("LinkedTxn", []):
            if linked.get("TxnType") == "Invoice":
                found.add(str(linked.get("TxnId")))
    return found


def _applied_by(payment: dict[str, Any], invoice_id: str) -> Decimal:
    total = Decimal(0)
    for line in payment.get("Line", []):
        if any(str(link.get("TxnId")) == invoice_id for link in line.get("LinkedTxn", [])):
            total += dec(line.get("Amount"))
    return total


def name_lists() -> tuple[str, ...]:
    return NAME_LISTS
