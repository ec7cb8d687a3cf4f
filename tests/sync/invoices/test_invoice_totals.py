"""Property test across both emulators: random CRM invoices (totals computed by the CRM sandbox) mapped
by the invoice sync and created in the QBO sandbox come to the CRM total to the cent; every payload the
sync sends validates against Intuit's XSD."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qbconnect.domain.company import CompanyFacts, TaxMapping
from qbconnect.domain.crm_models import CrmInvoice
from qbconnect.domain.invoice import (
    ROUNDING_ITEM_NAME,
    InvoiceContext,
    build_qbo_invoice,
    build_sparse_invoice_update,
)
from qbconnect.domain.location_settings import load as load_settings
from qbconnect.domain.payment import build_qbo_payment
from qbconnect.domain.qbo_models import QboInvoice
from qbconnect.sandbox.crm import CrmSandbox
from qbconnect.sync import lookup as qbo_lookup
from tests.support.qbo_xsd import validate_qbo_json
from tests.sync.invoices.test_invoice_harness import Harness, harness  # noqa: F401

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


@pytest.fixture(scope="module")
def crm() -> Iterator[CrmSandbox]:
    """One CRM sandbox for the module (building one costs two TLS contexts, ~0.1 s each); every example
    adds a location of its own to it, so no example sees another's contacts or invoices."""
    sandbox = CrmSandbox()
    yield sandbox
    sandbox.close()


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
    crm: CrmSandbox,
    items: list[dict[str, Any]],
    discount: dict[str, Any] | None,
) -> None:
    check_round_trip(harness, crm, items, discount, us=True)


# Non-US: QuickBooks computes VAT itself, per rate over the summed (discount-prorated) lines, and ignores a
# stated TotalTax; the CRM rounds tax per line. The mapping computes QuickBooks' figure and adds a rounding
# line (exempt code) for the difference, so the emulator's total equals the CRM's every time.
small_money_st = st.one_of(money_st, st.decimals(min_value=0, max_value=3, places=2))  # cents tip the rounding
gb_item_st = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["Alpha", "Beta", "Gamma"]),
        "qty": qty_st,
        "amount": small_money_st,
        "tax": st.integers(min_value=-1, max_value=1),
        "inclusive": st.booleans(),
        "productId": st.sampled_from(["p1", "p2", "p3"]),
    }
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(gb_item_st, min_size=1, max_size=6), discount=discount_st)
def test_gb_qbo_sandbox_total_equals_crm_total(
    harness: Harness,  # noqa: F811
    crm: CrmSandbox,
    items: list[dict[str, Any]],
    discount: dict[str, Any] | None,
) -> None:
    check_round_trip(harness, crm, items, discount, us=False)


def test_gb_mixed_inclusive_lines_get_a_rounding_line(harness: Harness, crm: CrmSandbox) -> None:  # noqa: F811
    # 1.35 gross at 20% holds round(1.125 x 20%) = 0.23 VAT, so it is booked at 1.12 net; QuickBooks taxes
    # 1.12 at 20% = 0.22 and would total 1.34: a +0.01 rounding line on the exempt code makes it 1.35
    items = [
        {"name": "Alpha", "qty": 1, "amount": Decimal("0.00"), "tax": 0, "inclusive": False, "productId": "p1"},
        {"name": "Alpha", "qty": 1, "amount": Decimal("1.35"), "tax": 0, "inclusive": True, "productId": "p1"},
    ]
    created = check_round_trip(harness, crm, items, None, us=False)
    [rounding] = rounding_lines(created)
    assert Decimal(str(rounding["Amount"])) == Decimal("0.01")
    assert Decimal(str(created["TxnTaxDetail"]["TotalTax"])) == Decimal("0.22")


def test_gb_several_lines_at_one_rate_get_a_negative_rounding_line(
    harness: Harness,  # noqa: F811
    crm: CrmSandbox,
) -> None:
    # three lines of 0.02 at 20%: the CRM rounds 0.004 VAT per line to 0.00; QuickBooks taxes 0.06 at 20%
    # = 0.01, so a -0.01 rounding line keeps the total at 0.06
    items = [
        {"name": n, "qty": 1, "amount": Decimal("0.02"), "tax": 0, "inclusive": False, "productId": "p1"}
        for n in ("Alpha", "Beta", "Gamma")
    ]
    created = check_round_trip(harness, crm, items, None, us=False)
    [rounding] = rounding_lines(created)
    assert Decimal(str(rounding["Amount"])) == Decimal("-0.01")
    assert rounding["SalesItemLineDetail"]["Qty"] == 1
    assert Decimal(str(rounding["SalesItemLineDetail"]["UnitPrice"])) == Decimal("-0.01")


def rounding_lines(invoice: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        line
        for line in invoice["Line"]
        if line.get("DetailType") == "SalesItemLineDetail"
        and line["SalesItemLineDetail"]["ItemRef"].get("name") == ROUNDING_ITEM_NAME
    ]


def check_round_trip(
    harness: Harness,  # noqa: F811
    crm: CrmSandbox,
    items: list[dict[str, Any]],
    discount: dict[str, Any] | None,
    *,
    us: bool,
) -> dict[str, Any]:
    realm = harness.company() if us else harness.company(country="GB", home_currency="GBP")
    qbo = harness.qbo(realm)
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
    rounding_item_id = None if us else qbo_lookup.rounding_item(harness.ctx(), qbo, load_settings({}))
    payload = build_qbo_invoice(
        inv,
        InvoiceContext(
            customer["Id"],
            [item_id] * len(inv.items),
            company,
            tax_mapping=mapping,
            rounding_item_id=rounding_item_id,
        ),
    )
    assert validate_qbo_json("Invoice", payload) == []
    created = qbo.create("Invoice", payload, request_id=f"prop-{realm}")
    assert Decimal(str(created["TotalAmt"])) == inv.total
    assert Decimal(str(created["Balance"])) == inv.amount_due
    assert (
        build_sparse_invoice_update(QboInvoice.from_api(created), payload) is None
    )  # what we wrote reads back as in step
    extra = rounding_lines(created)
    assert len(extra) <= (0 if us else 1)
    for line in extra:
        assert line["SalesItemLineDetail"]["TaxCodeRef"]["value"] == mapping.exempt_code
        assert 0 < abs(Decimal(str(line["Amount"]))) <= Decimal("0.01") * len(items)
    if inv.total > 0:
        payment = build_qbo_payment(
            customer_id=customer["Id"],
            invoice_id=created["Id"],
            amount=min(inv.total, Decimal("1.00")),
            currency=inv.currency,
            private_note="Payment on Topline OS invoice",
        )
        assert validate_qbo_json("Payment", payment) == []
    return created
