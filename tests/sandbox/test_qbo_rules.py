"""Business rules of the QBO emulator: SyncToken, names, references, totals, payments, void, DocNumber."""

from __future__ import annotations

from typing import Any

import pytest

from qbconnect.sandbox.qbo import QboSandbox

from .qbo_fixtures import Qbo, connect, qbo_fixture  # noqa: F401


def _line(amount: Any, qty: Any = None, price: Any = None, item: str = "1", tax: str | None = None) -> dict[str, Any]:
    detail: dict[str, Any] = {"ItemRef": {"value": item}}
    if qty is not None:
        detail["Qty"] = qty
    if price is not None:
        detail["UnitPrice"] = price
    if tax is not None:
        detail["TaxCodeRef"] = {"value": tax}
    return {"Amount": amount, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": detail}


def test_create_read_sparse_and_full_update_with_synctoken(qbo: Qbo) -> None:
    created = qbo.customer("Jane Doe", "jane@example.com")
    assert created["SyncToken"] == "0" and created["Active"] is True
    assert created["MetaData"]["CreateTime"] == created["MetaData"]["LastUpdatedTime"]
    sparse = qbo.ok("Customer", {"Id": created["Id"], "SyncToken": "0", "sparse": True, "Notes": "vip"})
    assert sparse["SyncToken"] == "1" and sparse["PrimaryEmailAddr"]["Address"] == "jane@example.com"
    full = qbo.ok("Customer", {"Id": created["Id"], "SyncToken": "1", "DisplayName": "Jane Doe"})
    assert full["SyncToken"] == "2" and "PrimaryEmailAddr" not in full and "Notes" not in full
    assert qbo.read("customer", created["Id"]).json()["Customer"]["SyncToken"] == "2"


def test_stale_synctoken_is_5010(qbo: Qbo) -> None:
    created = qbo.customer()
    qbo.ok("Customer", {"Id": created["Id"], "SyncToken": "0", "sparse": True, "Notes": "a"})
    error = qbo.fault(qbo.post("customer", {"Id": created["Id"], "SyncToken": "0", "sparse": True, "Notes": "b"}))
    assert error["code"] == "5010" and error["Message"] == "Stale Object Error"


def test_duplicate_display_name_is_6240_case_insensitive_and_across_vendors(qbo: Qbo) -> None:
    qbo.customer("Acme Ltd")
    error = qbo.fault(qbo.post("customer", {"DisplayName": "ACME LTD"}))
    assert error["code"] == "6240" and error["Message"] == "Duplicate Name Exists Error"
    assert qbo.fault(qbo.post("vendor", {"DisplayName": "Acme Ltd"}))["code"] == "6240"
    other = qbo.customer("Other")
    renamed = qbo.post("customer", {"Id": other["Id"], "SyncToken": "0", "sparse": True, "DisplayName": "acme ltd"})
    assert qbo.fault(renamed)["code"] == "6240"


def test_names_cannot_contain_colon_and_item_names_are_unique(qbo: Qbo) -> None:
    assert qbo.fault(qbo.post("customer", {"DisplayName": "A:B"}))["code"] == "6000"
    item = {"Name": "Consulting", "Type": "Service", "IncomeAccountRef": {"value": "1"}}
    assert qbo.ok("Item", item)["FullyQualifiedName"] == "Consulting"
    assert qbo.fault(qbo.post("item", item))["code"] == "6240"
    assert qbo.fault(qbo.post("item", {"Name": "X", "Type": "Service"}))["code"] == "2020"


def test_unknown_property_and_bad_values_are_2010(qbo: Qbo) -> None:
    assert qbo.fault(qbo.post("customer", {"DisplayName": "X", "Bogus": 1}))["code"] == "2010"
    bad_amount = {"CustomerRef": {"value": "1"}, "Line": [_line("abc")]}
    assert qbo.fault(qbo.post("invoice", bad_amount))["code"] == "2010"
    bad_enum = {"CustomerRef": {"value": "1"}, "Line": [{**_line(1), "DetailType": "SALES_ITEM_LINE_DETAIL"}]}
    assert qbo.fault(qbo.post("invoice", bad_enum))["code"] == "2010"


def test_references_must_exist_and_be_active(qbo: Qbo) -> None:
    missing = qbo.fault(qbo.post("invoice", {"CustomerRef": {"value": "999"}, "Line": [_line(10)]}))
    assert missing["code"] == "2500"
    customer = qbo.customer()
    assert (
        qbo.fault(qbo.post("invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [_line(10, item="99")]}))[
            "code"
        ]
        == "2500"
    )
    qbo.ok("Customer", {"Id": customer["Id"], "SyncToken": "0", "sparse": True, "Active": False})
    inactive = qbo.fault(qbo.post("invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [_line(10)]}))
    assert inactive["code"] == "610"
    assert qbo.fault(qbo.post("invoice", {"Line": [_line(10)]}))["code"] == "2020"


def test_line_amount_must_equal_qty_times_unit_price(qbo: Qbo) -> None:
    customer = qbo.customer()
    error = qbo.fault(qbo.post("invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [_line(10, 3, 3.33)]}))
    assert error["code"] == "6070"
    ok = qbo.ok("Invoice", {"CustomerRef": {"value": customer["Id"]}, "Line": [_line(9.99, 3, 3.33)]})
    assert ok["TotalAmt"] == 9.99


def test_totals_with_percent_discount_and_us_tax_override(qbo: Qbo) -> None:
    customer = qbo.customer()
    invoice = qbo.ok(
        "Invoice",
        {
            "CustomerRef": {"value": customer["Id"]},
            "Line": [
                _line(100, 1, 100, tax="TAX"),
                _line(33.33, 1, 33.33),
                {
                    "DetailType": "DiscountLineDetail",
                    "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 8.5},
                },
            ],
            "TxnTaxDetail": {"TotalTax": 7.25},
        },
    )
    # subtotal 133.33; discount round(133.33 * 8.5%) = 11.33; + tax 7.25
    discount = next(line for line in invoice["Line"] if line["DetailType"] == "DiscountLineDetail")
    subtotal = next(line for line in invoice["Line"] if line["DetailType"] == "SubTotalLineDetail")
    assert discount["Amount"] == 11.33 and subtotal["Amount"] == 133.33
    assert invoice["TotalAmt"] == 129.25 and invoice["Balance"] == 129.25
    assert invoice["TxnTaxDetail"]["TotalTax"] == 7.25
    flat = qbo.ok(
        "SalesReceipt",
        {
            "CustomerRef": {"value": customer["Id"]},
            "Line": [
                _line(50),
                {"Amount": 5, "DetailType": "DiscountLineDetail", "DiscountLineDetail": {"PercentBased": False}},
            ],
        },
    )
    assert flat["TotalAmt"] == 45 and flat["Balance"] == 0
    assert flat["DepositToAccountRef"]["name"] == "Undeposited Funds"


def _uk() -> Qbo:
    sandbox = QboSandbox()
    sandbox.add_company(name="UK Ltd", country="GB", home_currency="GBP")
    return connect(sandbox)


def _codes(qbo: Qbo) -> dict[str, str]:
    return {c["Name"]: c["Id"] for c in qbo.query("select * from TaxCode").json()["QueryResponse"]["TaxCode"]}


def test_non_us_tax_excluded_computed_from_rates_after_discount() -> None:
    uk = _uk()
    codes = _codes(uk)
    customer = uk.customer()
    body = {
        "CustomerRef": {"value": customer["Id"]},
        "GlobalTaxCalculation": "TaxExcluded",
        "ApplyTaxAfterDiscount": True,
        "Line": [
            _line(100, tax=codes["20.0% S"]),
            _line(50, tax=codes["5.0% R"]),
            {"DetailType": "DiscountLineDetail", "DiscountLineDetail": {"PercentBased": True, "DiscountPercent": 10}},
        ],
    }
    invoice = uk.ok("Invoice", body)
    # discount 15 prorated: bases 90 and 45 -> tax 18.00 + 2.25
    assert invoice["TxnTaxDetail"]["TotalTax"] == 20.25
    assert invoice["TotalAmt"] == 155.25
    before = uk.ok("Invoice", {**body, "ApplyTaxAfterDiscount": False})
    assert before["TxnTaxDetail"]["TotalTax"] == 22.5 and before["TotalAmt"] == 157.5
    inclusive = uk.ok(
        "Invoice",
        {
            **body,
            "GlobalTaxCalculation": "TaxInclusive",
            "ApplyTaxAfterDiscount": False,
            "Line": [_line(120, tax=codes["20.0% S"])],
        },
    )
    assert inclusive["TotalAmt"] == 120 and inclusive["TxnTaxDetail"]["TotalTax"] == 20
    assert uk.fault(uk.post("invoice", {**body, "GlobalTaxCalculation": None}))["code"] in ("2020", "2010")
    no_code = {**body, "Line": [_line(10)]}
    assert uk.fault(uk.post("invoice", no_code))["code"] == "6000"


def test_doc_number_auto_assigned_length_and_duplicates() -> None:
    sandbox = QboSandbox()
    auto = connect(sandbox, sandbox.add_company())
    c = auto.customer()
    first = auto.invoice(c["Id"], (1, 10))
    second = auto.invoice(c["Id"], (1, 10))
    assert int(second["DocNumber"]) == int(first["DocNumber"]) + 1
    long = auto.post("invoice", {"CustomerRef": {"value": c["Id"]}, "Line": [_line(1)], "DocNumber": "X" * 22})
    assert auto.fault(long)["code"] == "2050"
    custom = connect(sandbox, sandbox.add_company(custom_txn_numbers=True))
    c2 = custom.customer()
    assert "DocNumber" not in custom.invoice(c2["Id"], (1, 10))
    custom.invoice(c2["Id"], (1, 10), DocNumber="INV-1")
    error = custom.fault(
        custom.post("invoice", {"CustomerRef": {"value": c2["Id"]}, "Line": [_line(1)], "DocNumber": "INV-1"})
    )
    assert error["code"] == "6140"


def test_currency_ref_needs_multicurrency() -> None:
    sandbox = QboSandbox()
    single = connect(sandbox, sandbox.add_company())
    body = {"DisplayName": "Euro Client", "CurrencyRef": {"value": "EUR"}}
    assert single.fault(single.post("customer", body))["code"] == "6000"
    multi = connect(sandbox, sandbox.add_company(multicurrency=True))
    assert multi.ok("Customer", body)["CurrencyRef"]["value"] == "EUR"


def test_payments_reduce_balance_and_cannot_exceed_it(qbo: Qbo) -> None:
    customer = qbo.customer()
    invoice = qbo.invoice(customer["Id"], (2, 50))
    link = [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]
    payment = qbo.ok(
        "Payment",
        {"CustomerRef": {"value": customer["Id"]}, "TotalAmt": 40, "Line": [{"Amount": 40, "LinkedTxn": link}]},
    )
    assert payment["UnappliedAmt"] == 0 and payment["DepositToAccountRef"]["name"] == "Undeposited Funds"
    after = qbo.read("invoice", invoice["Id"]).json()["Invoice"]
    assert after["Balance"] == 60 and after["LinkedTxn"] == [{"TxnId": payment["Id"], "TxnType": "Payment"}]
    assert qbo.sandbox.get(qbo.realm, "Customer", customer["Id"])["Balance"] == 60
    over = qbo.post(
        "payment",
        {"CustomerRef": {"value": customer["Id"]}, "TotalAmt": 61, "Line": [{"Amount": 61, "LinkedTxn": link}]},
    )
    assert qbo.fault(over)["code"] == "6000"
    qbo.ok(
        "Payment",
        {"CustomerRef": {"value": customer["Id"]}, "TotalAmt": 60, "Line": [{"Amount": 60, "LinkedTxn": link}]},
    )
    assert qbo.read("invoice", invoice["Id"]).json()["Invoice"]["Balance"] == 0
    # voiding the first payment reopens its amount
    qbo.ok(
        "Payment",
        {"Id": payment["Id"], "SyncToken": payment["SyncToken"], "sparse": True},
        operation="update",
        include="void",
    )
    assert qbo.read("invoice", invoice["Id"]).json()["Invoice"]["Balance"] == 40


def test_void_invoice_and_sales_receipt_zero_amounts(qbo: Qbo) -> None:
    customer = qbo.customer()
    invoice = qbo.invoice(customer["Id"], (3, 10))
    voided = qbo.ok("Invoice", {"Id": invoice["Id"], "SyncToken": invoice["SyncToken"]}, operation="void")
    assert voided["TotalAmt"] == 0 and voided["Balance"] == 0 and "Voided" in voided["PrivateNote"]
    assert all(line["Amount"] == 0 for line in voided["Line"])
    receipt = qbo.ok("SalesReceipt", {"CustomerRef": {"value": customer["Id"]}, "Line": [_line(20, 2, 10)]})
    wrong = qbo.post("salesreceipt", {"Id": receipt["Id"], "SyncToken": "0"}, operation="void")
    assert qbo.fault(wrong)["code"] == "500"
    voided_sr = qbo.ok(
        "SalesReceipt", {"Id": receipt["Id"], "SyncToken": "0", "sparse": True}, operation="update", include="void"
    )
    assert voided_sr["TotalAmt"] == 0 and voided_sr["PrivateNote"] == "Voided"


def test_delete_and_invoices_with_payments(qbo: Qbo) -> None:
    customer = qbo.customer()
    invoice = qbo.invoice(customer["Id"], (1, 10))
    qbo.ok(
        "Payment",
        {
            "CustomerRef": {"value": customer["Id"]},
            "TotalAmt": 5,
            "Line": [{"Amount": 5, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
        },
    )
    current = qbo.read("invoice", invoice["Id"]).json()["Invoice"]
    blocked = qbo.post("invoice", {"Id": invoice["Id"], "SyncToken": current["SyncToken"]}, operation="delete")
    assert qbo.fault(blocked)["code"] == "6000"
    other = qbo.invoice(customer["Id"], (1, 10))
    deleted = qbo.ok("Invoice", {"Id": other["Id"], "SyncToken": "0"}, operation="delete")
    assert deleted == {"status": "Deleted", "domain": "QBO", "Id": other["Id"]}
    assert qbo.fault(qbo.read("invoice", other["Id"]))["code"] == "610"
    assert (
        qbo.fault(qbo.post("customer", {"Id": customer["Id"], "SyncToken": "0"}, operation="delete"))["code"] == "500"
    )


def test_full_update_cannot_drop_total_below_payments(qbo: Qbo) -> None:
    customer = qbo.customer()
    invoice = qbo.invoice(customer["Id"], (1, 100))
    qbo.ok(
        "Payment",
        {
            "CustomerRef": {"value": customer["Id"]},
            "TotalAmt": 80,
            "Line": [{"Amount": 80, "LinkedTxn": [{"TxnId": invoice["Id"], "TxnType": "Invoice"}]}],
        },
    )
    current = qbo.read("invoice", invoice["Id"]).json()["Invoice"]
    body = {
        "Id": current["Id"],
        "SyncToken": current["SyncToken"],
        "CustomerRef": {"value": customer["Id"]},
        "Line": [_line(50, 1, 50)],
    }
    assert qbo.fault(qbo.post("invoice", body))["code"] == "6000"
    body["Line"] = [_line(120, 1, 120)]
    updated = qbo.ok("Invoice", body)
    assert updated["TotalAmt"] == 120 and updated["Balance"] == 40


@pytest.mark.parametrize("entity", ["TaxCode", "TaxRate"])
def test_tax_lists_are_read_only(entity: str) -> None:
    sandbox = QboSandbox()
    uk = connect(sandbox, sandbox.add_company(country="GB", home_currency="GBP"))
    assert uk.fault(uk.post(entity.lower(), {"Name": "New"}))["code"] == "500"
    rows = uk.query(f"select * from {entity}").json()["QueryResponse"][entity]
    assert {r["Name"] for r in rows} >= {"20.0% S", "5.0% R", "Exempt"}


def test_preferences_and_company_info(qbo: Qbo) -> None:
    prefs = qbo.client.get(qbo.url("preferences"), headers=qbo.headers()).json()["Preferences"]
    assert prefs["SalesFormsPrefs"]["CustomTxnNumbers"] is False
    updated = qbo.ok(
        "Preferences", {"Id": "1", "SyncToken": prefs["SyncToken"], "SalesFormsPrefs": {"CustomTxnNumbers": True}}
    )
    assert updated["SalesFormsPrefs"]["CustomTxnNumbers"] is True and updated["SalesFormsPrefs"]["AllowDiscount"]
    customer = qbo.customer()
    assert "DocNumber" not in qbo.invoice(customer["Id"], (1, 1))
    info = qbo.client.get(qbo.url(f"companyinfo/{qbo.realm}"), headers=qbo.headers()).json()["CompanyInfo"]
    assert info["CompanyName"] == "Sandbox Company US" and info["Country"] == "US"


def test_ui_actions_and_merge(qbo: Qbo) -> None:
    a = qbo.sandbox.ui_create(qbo.realm, "Customer", {"DisplayName": "Dup A"})
    b = qbo.customer("Dup B")
    invoice = qbo.invoice(a["Id"], (1, 10))
    qbo.sandbox.ui_update(qbo.realm, "Customer", {"Id": b["Id"], "Notes": "from UI"})
    assert qbo.sandbox.get(qbo.realm, "customer", b["Id"])["SyncToken"] == "1"
    qbo.sandbox.ui_merge_customers(qbo.realm, a["Id"], b["Id"])
    assert qbo.read("invoice", invoice["Id"]).json()["Invoice"]["CustomerRef"]["value"] == b["Id"]
    assert all(c["Id"] != a["Id"] for c in qbo.sandbox.entities(qbo.realm, "Customer"))
