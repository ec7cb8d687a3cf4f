"""Mapping tables: CRM keys gathered from recent sales, QuickBooks objects by name, ids flagged when the
company no longer lists them, and the form rows read back into the stored map."""

from __future__ import annotations

from qbconnect.domain.crm_models import CrmInvoice, CrmTransaction
from qbconnect.services.mappings import (
    CrmCatalogue,
    CrmKey,
    catalogue_from,
    mapping_rows,
    mapping_tables,
    read_mapping_rows,
)
from qbconnect.services.qbo_lists import Choice, PickLists


def _invoice(items: list[dict[str, object]]) -> CrmInvoice:
    return CrmInvoice.from_api(
        {"_id": "inv-1", "invoiceNumber": "7", "currency": "USD", "status": "sent", "invoiceItems": items, "total": 0}
    )


def test_catalogue_lists_products_taxes_and_payment_methods_once_each() -> None:
    invoice = _invoice(
        [
            {"name": "Repair", "productId": "p-1", "qty": 1, "amount": 60, "taxes": [{"name": "VAT", "rate": 20}]},
            {"name": "Repair again", "productId": "p-1", "qty": 1, "amount": 60, "taxes": [{"rate": "5"}]},
        ]
    )
    txns = [
        CrmTransaction.from_api(
            {"_id": f"t-{n}", "amount": 10, "currency": "USD", "status": "succeeded", "paymentMethod": method}
        )
        for n, method in enumerate([{"card": {"brand": "Visa", "last4": "4242"}}, {"card": {"brand": "visa"}}, "cash"])
    ]
    found = catalogue_from([invoice], [], txns)
    assert found.products == [CrmKey("p-1", "Repair")]
    assert found.taxes == [CrmKey("VAT", "VAT (20%)"), CrmKey("rate:5", "Tax at 5%")]
    assert [m.key for m in found.payment_methods] == ["visa", "card", "cash"]


def test_rows_show_names_and_flag_an_id_the_company_no_longer_lists() -> None:
    choices = [Choice("3", "Standard"), Choice("5", "Exempt")]
    rows = mapping_rows({"VAT": "3", "Old tax": "99"}, [CrmKey("VAT", "VAT (20%)"), CrmKey("GST", "GST (5%)")], choices)
    by_key = {row.key: row for row in rows}
    assert by_key["VAT"].value_name == "Standard" and not by_key["VAT"].missing
    assert by_key["GST"].value is None and not by_key["GST"].missing
    assert by_key["Old tax"].missing and by_key["Old tax"].label == "Old tax"
    # Lists that could not be loaded flag nothing: absence proves nothing then.
    assert not any(row.missing for row in mapping_rows({"VAT": "99"}, [], []))


def test_tables_offer_the_exempt_row_and_the_matching_pick_list() -> None:
    lists = PickLists(
        items=[Choice("1", "Services")], tax_codes=[Choice("3", "Standard")], payment_methods=[Choice("4", "Visa")]
    )
    tables = {t.setting: t for t in mapping_tables({}, CrmCatalogue(), lists)}
    assert [row.key for row in tables["tax_code_map"].rows] == ["exempt"]
    assert tables["payment_method_map"].choices == [Choice("4", "Visa")]
    assert tables["product_item_map"].choices == [Choice("1", "Services")]


def test_form_rows_become_the_map_and_absent_rows_leave_it_alone() -> None:
    form = {
        "tax_code_map.key.0": "VAT",
        "tax_code_map.value.0": "3",
        "tax_code_map.key.1": "GST",
        "tax_code_map.value.1": "",
        "tax_code_map.key.2": " rate:5 ",
        "tax_code_map.value.2": "7",
    }
    assert read_mapping_rows(form, "tax_code_map") == {"VAT": "3", "rate:5": "7"}
    assert read_mapping_rows(form, "payment_method_map") is None
