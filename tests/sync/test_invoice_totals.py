"""Property test across both emulators: random CRM invoices (totals computed by the CRM sandbox) mapped
by the invoice sync and created in the QBO sandbox come to the CRM total to the cent; every payload the
sync sends validates against Intuit's XSD."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbconnect.domain.company import CompanyFacts, TaxMapping
from qbconnect.domain.crm_models import CrmInvoice
from qbconnect.domain.invoice import InvoiceContext, build_qbo_invoice, build_sparse_invoice_update
from qbconnect.domain.payment import build_qbo_payment
from qbconnect.sandbox.crm import CrmSandbox
from tests.support.qbo_xsd import validate_qbo_json
from tests.sync.test_invoice_harness import Harness, harness  # noqa: F401

US_TAXES = [{"name": "Sales tax", "rate": "8.25"}, {"name": "City tax", "rate": "1.5"}]
GB_TAXES = [{"name": "VAT", "rate": 20}, {"name": "Reduced", "rate": 5}]

money_st = st.decimals(min_value=0, max_value=1500, places=2)
qty_st = st.sampled_from([1, 1, 2, 3, 7, Decimal("0.5"), Decimal("1.25")])
item_st = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["Alpha", "Beta", "Gamma"]),
        "qty": qty_st,
        "amount": money_st,
        "tax": st.integers(min_value=-1, max_value=1),  # -1 none, else an index into the taxes
        "inclusive": st.booleans(),
        "productId": st.sampled_from(["p1", "p2", "p3"]),
    }
)
discount_st = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "type": st.just("percentage"),
            "value": st.decimals(min_value=0, max_value=100, places=2),
            "validOnProductIds": st.one_of(st.just([]), st.just(["p1"])),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("fixed"), "value": money_st, "validOnProductIds": st.one_of(st.just([]), st.just(["p2"]))}
    ),
)


def crm_items(items: list[dict[str, Any]], taxes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for item in items:
        entry = {k: item[k] for k in ("name", "qty", "amount", "productId")}
        if item["tax"] >= 0:
            entry["taxes"] = [taxes[item["tax"]]]
            entry["taxInclusive"] = item["inclusive"]
        result.append(entry)
    return result


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(item_st, min_size=1, max_size=4), discount=discount_st)
def test_us_qbo_sandbox_total_equals_crm_total(
    harness: Harness,  # noqa: F811
    items: list[dict[str, Any]],
    discount: dict[str, Any] | None,
) -> None:
    check_round_trip(harness, items, discount, us=True)


# Non-US: QuickBooks computes VAT per rate over the summed lines, while the CRM rounds tax per line, and the
# emulator (like QuickBooks) does not take the stated TotalTax for non-US companies. Single-line invoices
# without tax-inclusive prices agree; the general case is the known gap below.
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(item=item_st.filter(lambda i: not i["inclusive"]), discount=discount_st)
def test_gb_single_line_qbo_sandbox_total_equals_crm_total(
    harness: Harness,  # noqa: F811
    item: dict[str, Any],
    discount: dict[str, Any] | None,
) -> None:
    check_round_trip(harness, [item], discount, us=False)


@pytest.mark.xfail(
    strict=True,
    reason="known gap: a non-US invoice mixing a tax-inclusive line with others can miss by a cent "
    "(per-line CRM rounding vs per-rate QuickBooks rounding); the exactness check fails such a run",
)
def test_gb_mixed_inclusive_lines_round_trip(harness: Harness) -> None:  # noqa: F811
    items = [
        {"name": "Alpha", "qty": 1, "amount": Decimal("0.00"), "tax": 0, "inclusive": False, "productId": "p1"},
        {"name": "Alpha", "qty": 1, "amount": Decimal("1.35"), "tax": 0, "inclusive": True, "productId": "p1"},
    ]
    check_round_trip(harness, items, None, us=False)


def check_round_trip(
    harness: Harness,  # noqa: F811
    items: list[dict[str, Any]],
    discount: dict[str, Any] | None,
    *,
    us: bool,
) -> None:
    realm = harness.company() if us else harness.company(country="GB", home_currency="GBP")
    qbo = harness.qbo(realm)
    crm = CrmSandbox()
    location = crm.add_location()
    contact = crm.create_contact(location, firstName="Ann", lastName="Lee", email="ann@example.com")
    raw = crm.create_invoice(
        location,
        contact_id=contact["id"],
        items=crm_items(items, US_TAXES if us else GB_TAXES),
        discount=discount,
        currency="USD" if us else "GBP",
    )
    inv = CrmInvoice.from_api(raw)
    customer = harness.sandbox.ui_create(realm, "Customer", {"DisplayName": "Ann Lee"})
    item_id = next(i["Id"] for i in harness.entities(realm, "Item") if i["Name"] == "Hours")
    codes = {c["Name"]: c["Id"] for c in harness.entities(realm, "TaxCode")}
    mapping = (
        TaxMapping()
        if us
        else TaxMapping(codes={"VAT": codes["20.0% S"], "Reduced": codes["5.0% R"]}, exempt_code=codes["Exempt"])
    )
    company = CompanyFacts(is_us=True) if us else CompanyFacts(is_us=False, home_currency="GBP")
    payload = build_qbo_invoice(
        inv, InvoiceContext(customer["Id"], [item_id] * len(inv.items), company, tax_mapping=mapping)
    )
    assert validate_qbo_json("Invoice", payload) == []
    created = qbo.create("Invoice", payload, request_id=f"prop-{realm}")
    assert Decimal(str(created["TotalAmt"])) == inv.total
    assert Decimal(str(created["Balance"])) == inv.amount_due
    assert build_sparse_invoice_update(created, payload) is None  # what we wrote reads back as in step
    if inv.total > 0:
        payment = build_qbo_payment(
            customer_id=customer["Id"],
            invoice_id=created["Id"],
            amount=min(inv.total, Decimal("1.00")),
            currency=inv.currency,
            private_note="Payment on Topline OS invoice",
        )
        assert validate_qbo_json("Payment", payment) == []
