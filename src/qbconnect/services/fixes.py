"""Plain fixes: each known refusal of QuickBooks or the CRM as a sentence, what to do, and the setting or link
that fixes it.

Codes from Intuit's "Handling common errors" page: 610 Object Not Found, 2020 Required Param Missing,
2500 Invalid Reference Id, 5010 Stale Object, 6000 business validation, 6140 Duplicate Doc Num,
6190 Invalid Company Status (subscription), 6210 Account Period Closed, 6240 Duplicate Name Exists,
6540 Deposited Transaction cannot be changed, 120/3100 authorization, 3200 authentication. Business
validation (6000) covers several causes; the detail text tells them apart. An unknown fault shows
QuickBooks' own message, its code and the ``intuit_tid`` to quote to Intuit support.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# What the settings page calls each mapping; the anchor is the form field's id on the page.
SETTING_WORDS = {
    "product_item_map": "Products → QuickBooks items",
    "tax_code_map": "CRM taxes → QuickBooks tax codes",
    "payment_method_map": "Payment methods → QuickBooks payment methods",
    "income_account_id": "Income account",
    "deposit_account_id": "Deposit account",
    "default_item_id": "Default item",
    "shipping_item_id": "Shipping item",
    "discount_account_id": "Discount account",
}


@dataclass(frozen=True)
class Fix:
    key: str  # stable id of the cause, e.g. "invalid_reference"
    sentence: str  # what happened, in plain words
    fix: str  # what to do
    setting: str | None = None  # the settings field that fixes it (retried by itself when it changes)
    action: str | None = None  # "reconnect" | "settings" | "quickbooks" | "crm"

    @property
    def setting_words(self) -> str | None:
        return SETTING_WORDS.get(self.setting) if self.setting else None

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "sentence": self.sentence,
            "fix": self.fix,
            "setting": self.setting,
            "setting_words": self.setting_words,
            "action": self.action,
        }


# Which mapping a reference points at, from the fault's element or detail text.
_REFERENCE_SETTINGS = (
    (re.compile(r"PaymentMethod", re.I), "payment_method_map", "payment method"),
    (re.compile(r"TaxCode|TaxRate", re.I), "tax_code_map", "tax code"),
    (re.compile(r"DepositToAccount", re.I), "deposit_account_id", "deposit account"),
    (re.compile(r"IncomeAccount", re.I), "income_account_id", "income account"),
    (re.compile(r"Account", re.I), "income_account_id", "account"),
    (re.compile(r"Item", re.I), "product_item_map", "item"),
)


def _reference(text: str) -> tuple[str, str]:
    for pattern, setting, words in _REFERENCE_SETTINGS:
        if pattern.search(text):
            return setting, words
    return "product_item_map", "item, account, tax code or payment method"


def _ref_id(text: str) -> str:
    found = re.search(r"Id\s*=\s*([\w-]+)", text)
    return f" (id {found.group(1)})" if found else ""


def fix_for(
    *,
    code: str | None,
    category: str | None,
    message: str | None,
    kind: str | None = None,
    intuit_tid: str | None = None,
) -> Fix | None:
    """The plain fix of a failure, or None when the row did not fail."""
    if not code and not category and not message:
        return None
    text = message or ""
    low = text.lower()
    code = (code or "").strip()
    if category == "auth" or code in ("3200", "120", "3100", "http_401", "http_403"):
        if code.startswith("http_") or "highlevel" in low:
            return Fix(
                "crm_authorization",
                "The CRM refused this app's access to the location.",
                "Reinstall or reconnect the app for this location in the CRM, with the permissions it asks for.",
                action="crm",
            )
        return Fix(
            "authorization_lost",
            "QuickBooks no longer accepts this app's authorization (the connection was revoked, expired, or the "
            "person who connected it lost admin rights).",
            "Press Reconnect QuickBooks at the top of the page. Everything that failed for this reason runs again "
            "by itself once reconnected.",
            action="reconnect",
        )
    if code == "2500" or "invalid reference" in low:
        setting, words = _reference(text)
        return Fix(
            "invalid_reference",
            f"A {words} this sync uses{_ref_id(text)} does not exist in QuickBooks or was made inactive.",
            f"Pick an existing {words} under “{SETTING_WORDS.get(setting, setting)}” in the settings below and "
            "save; the rows that failed for this run again by themselves.",
            setting=setting,
            action="settings",
        )
    if code == "6210" or "period closed" in low or "closing date" in low or "books are closed" in low:
        return Fix(
            "closed_books",
            "The date of this transaction is on or before the company's closing date in QuickBooks.",
            "In QuickBooks open Settings > Account and settings > Advanced > Accounting and move the closing "
            "date earlier (or allow changes with a password), then press Retry.",
            action="quickbooks",
        )
    if code == "6540" or "deposited" in low:
        return Fix(
            "deposited",
            "QuickBooks will not change this transaction because it is already part of a bank deposit.",
            "In QuickBooks remove it from the deposit it appears on (edit the deposit), then press Retry.",
            action="quickbooks",
        )
    if code == "6140" or "duplicate document number" in low or "duplicate doc" in low:
        return Fix(
            "duplicate_doc_number",
            "Another QuickBooks transaction already uses this document number.",
            "Rename or delete the other transaction in QuickBooks, or turn off “Warn if duplicate invoice number "
            "is used” in QuickBooks' sales settings, then press Retry.",
            action="quickbooks",
        )
    if code == "6240" or "duplicate name" in low or "name supplied already exists" in low:
        return Fix(
            "duplicate_name",
            "A QuickBooks customer, vendor or employee already has this name (names are shared across the three).",
            "Rename the other record in QuickBooks (or the contact in the CRM), then press Retry.",
            action="quickbooks",
        )
    if "currency" in low and ("not enabled" in low or "multicurrency" in low or "multi-currency" in low):
        return Fix(
            "currency_not_enabled",
            "This sale is in a currency the QuickBooks company does not use (multicurrency is off).",
            "Turn on Multicurrency in QuickBooks (Settings > Account and settings > Advanced > Currency), "
            "then press Retry.",
            action="quickbooks",
        )
    if "income account" in low and "item" in low:
        return Fix(
            "item_without_income_account",
            "The QuickBooks item used for this sale has no income account.",
            "Give the item an income account in QuickBooks, or map the product to another item under "
            f"“{SETTING_WORDS['product_item_map']}”, then save.",
            setting="product_item_map",
            action="settings",
        )
    if "account type" in low or ("account" in low and "not valid" in low):
        return Fix(
            "wrong_account_type",
            "An account chosen in the settings is of a type QuickBooks does not accept here.",
            "Choose a Bank or Other Current Asset account as deposit account (and an Income account for income) "
            "in the settings, then save.",
            setting="deposit_account_id",
            action="settings",
        )
    if code == "610" or "object not found" in low:
        if re.search(r"deleted", low):
            return Fix(
                "deleted_in_quickbooks",
                "The QuickBooks record this row points at was deleted in QuickBooks.",
                "Press Retry to create it again in QuickBooks.",
                action="quickbooks",
            )
        return Fix(
            "object_inactive",
            "Something this sync uses (a customer, item, account or tax code) was deleted or made inactive in "
            "QuickBooks.",
            "Make it active again in QuickBooks, or choose another one in the settings, then press Retry.",
            setting="product_item_map",
            action="settings",
        )
    if "tax" in low and ("no quickbooks tax code" in low or "map it" in low):
        return Fix(
            "tax_not_mapped",
            "A CRM tax has no QuickBooks tax code.",
            f"Map it under “{SETTING_WORDS['tax_code_map']}” in the settings and save.",
            setting="tax_code_map",
            action="settings",
        )
    if "payment method" in low and "map" in low:
        return Fix(
            "payment_method_not_mapped",
            "A CRM payment method has no QuickBooks payment method.",
            f"Map it under “{SETTING_WORDS['payment_method_map']}” in the settings and save.",
            setting="payment_method_map",
            action="settings",
        )
    if code == "6190" or "subscription" in low:
        return Fix(
            "company_status",
            "QuickBooks refuses new data: the company's trial or subscription ended, or there is a billing problem.",
            "Renew the QuickBooks subscription, then press Retry.",
            action="quickbooks",
        )
    if code.startswith("http_4") or "highlevel" in low:
        return Fix(
            "crm_refused",
            f"The CRM refused the request: {text}".rstrip(),
            "Check the record in the CRM (it may have been deleted or changed); press Retry once it is right.",
            action="crm",
        )
    if category == "transient":
        return Fix(
            "platform_busy",
            "The other side was busy or unreachable and the sync gave up after several tries.",
            "Press Retry; nothing needs to change.",
        )
    said = text or "QuickBooks gave no reason"
    reference = ", ".join(
        p for p in (f"code {code}" if code else "", f"intuit_tid {intuit_tid}" if intuit_tid else "") if p
    )
    return Fix(
        "unknown",
        said,
        "Check the record against QuickBooks' message, then press Retry."
        + (f" If it keeps failing, give Intuit support: {reference}." if reference else ""),
    )
