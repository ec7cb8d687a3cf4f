"""Plain fixes: each known refusal maps to a sentence, a fix and (where one exists) the setting that fixes it."""

from __future__ import annotations

import json

import pytest

from qbconnect.qbo.faults import parse_fault
from qbconnect.services.fixes import fix_for


def _qbo(code: str, message: str, detail: str, element: str = "", status: int = 400) -> tuple[str | None, str, str]:
    body = {"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code, "element": element}]}}
    fault = parse_fault(status, json.dumps(body).encode(), "application/json", "tid-9")
    return fault.code, fault.category.value, fault.message


CASES = [
    (
        _qbo(
            "2500",
            "Invalid Reference Id",
            "Invalid Reference Id : PaymentMethod assigned to this transaction does not exist (Id=999).",
            "PaymentMethodRef",
        ),
        "invalid_reference",
        "payment_method_map",
    ),
    (
        _qbo(
            "2500",
            "Invalid Reference Id",
            "Invalid Reference Id : TaxCode assigned to this transaction does not exist (Id=7).",
            "TaxCodeRef",
        ),
        "invalid_reference",
        "tax_code_map",
    ),
    (
        _qbo(
            "2500",
            "Invalid Reference Id",
            "Invalid Reference Id : Item assigned to this transaction does not exist (Id=44).",
            "ItemRef",
        ),
        "invalid_reference",
        "product_item_map",
    ),
    (
        _qbo(
            "2500",
            "Invalid Reference Id",
            "Invalid Reference Id : Account assigned to this transaction does not exist (Id=3).",
            "DepositToAccountRef",
        ),
        "invalid_reference",
        "deposit_account_id",
    ),
    (
        _qbo("6210", "Account Period Closed", "The account period has closed and the books cannot be updated."),
        "closed_books",
        None,
    ),
    (
        _qbo("6540", "Deposited Transaction cannot be changed", "This transaction has been deposited."),
        "deposited",
        None,
    ),
    (
        _qbo("6140", "Duplicate Document Number Error", "You must specify a different number."),
        "duplicate_doc_number",
        None,
    ),
    (_qbo("6240", "Duplicate Name Exists Error", "The name supplied already exists."), "duplicate_name", None),
    (
        _qbo("610", "Object Not Found", "Object Not Found : Another user has deleted this transaction."),
        "deleted_in_quickbooks",
        None,
    ),
    (
        _qbo(
            "6000",
            "A business validation error has occurred",
            "Business Validation Error: Multicurrency is not enabled for EUR.",
        ),
        "currency_not_enabled",
        None,
    ),
    (
        _qbo(
            "6000",
            "A business validation error has occurred",
            "Business Validation Error: The item has no income account.",
        ),
        "item_without_income_account",
        "product_item_map",
    ),
    (
        _qbo(
            "6000",
            "A business validation error has occurred",
            "Business Validation Error: Deposit account type is not valid.",
        ),
        "wrong_account_type",
        "deposit_account_id",
    ),
    (_qbo("3200", "AuthenticationFailed", "Token revoked", status=401), "authorization_lost", None),
    (("http_422", "permanent", "HighLevel refused POST /invoices/: contact missing"), "crm_refused", None),
    (("http_403", "auth", "HighLevel refused access to /contacts/ (forbidden)."), "crm_authorization", None),
]


@pytest.mark.parametrize(("answer", "key", "setting"), CASES)
def test_known_faults_have_a_plain_fix(answer: tuple[str | None, str, str], key: str, setting: str | None) -> None:
    code, category, message = answer
    fix = fix_for(code=code, category=category, message=message, intuit_tid="tid-9")
    assert fix is not None and fix.key == key
    assert fix.setting == setting
    assert fix.sentence and fix.fix and "QuickBooks says" not in fix.sentence


def test_reconnect_is_the_fix_when_authorization_is_lost() -> None:
    code, category, message = _qbo("3200", "AuthenticationFailed", "Token revoked", status=401)
    fix = fix_for(code=code, category=category, message=message)
    assert fix is not None and fix.action == "reconnect" and "Reconnect" in fix.fix


def test_unknown_faults_keep_quickbooks_message_code_and_tid() -> None:
    code, category, message = _qbo("6999", "Something odd", "A thing nobody has seen")
    fix = fix_for(code=code, category=category, message=message, intuit_tid="tid-9")
    assert fix is not None and fix.key == "unknown"
    assert "A thing nobody has seen" in fix.sentence
    assert "6999" in fix.fix and "tid-9" in fix.fix


def test_no_fix_for_a_row_that_did_not_fail() -> None:
    assert fix_for(code=None, category=None, message=None) is None
