"""qbo_lookup: customer, item, payment method and account find-or-create, cached per company."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select

from qbconnect.db.link_model import Link
from qbconnect.domain.crm_models import CrmContactDetails, CrmLine
from qbconnect.domain.location_settings import LocationSettings
from qbconnect.sync import lookup as qbo_lookup
from tests.sync.invoices.test_invoice_harness import LOCATION, Harness, harness  # noqa: F401


def _contact(**kw: object) -> CrmContactDetails:
    values: dict[str, object] = {"id": "c-1", "name": "Jane Doe", "email": "Jane@Example.com"}
    values.update(kw)
    return CrmContactDetails(**values)  # type: ignore[arg-type]


def _line(name: str = "Repair", product_id: str | None = None) -> CrmLine:
    return CrmLine(
        name=name, description=None, product_id=product_id, price_id=None, qty=Decimal(1), unit_price=Decimal(10)
    )


def test_customer_created_once_then_served_from_the_link(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    qbo = harness.qbo(realm)
    ctx = harness.ctx()
    first = qbo_lookup.resolve_customer(ctx, _contact(), qbo)
    calls = qbo.calls
    assert qbo_lookup.resolve_customer(ctx, _contact(), qbo) == first
    assert qbo.calls == calls  # no QuickBooks call once linked
    customers = [c for c in harness.entities(realm, "Customer") if c.get("PrimaryEmailAddr")]
    assert [c["DisplayName"] for c in customers] == ["Jane Doe"]
    link = harness.session.execute(select(Link).where(Link.kind == "customer")).scalar_one()
    assert (link.crm_id, link.qbo_id, link.email) == ("c-1", first, "jane@example.com")


def test_customer_found_by_email_case_insensitively_active_first_oldest_id(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    old_inactive = harness.sandbox.ui_create(
        realm, "Customer", {"DisplayName": "J Old", "PrimaryEmailAddr": {"Address": "jane@example.com"}}
    )
    harness.sandbox.ui_update(realm, "Customer", {"Id": old_inactive["Id"], "SyncToken": "0", "Active": False})
    a = harness.sandbox.ui_create(
        realm, "Customer", {"DisplayName": "J A", "PrimaryEmailAddr": {"Address": "JANE@example.com"}}
    )
    harness.sandbox.ui_create(
        realm, "Customer", {"DisplayName": "J B", "PrimaryEmailAddr": {"Address": "jane@example.com"}}
    )
    found = qbo_lookup.resolve_customer(harness.ctx(), _contact(id="c-2"), harness.qbo(realm))
    assert found == a["Id"]


def test_inactive_only_match_is_reactivated_not_duplicated(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    old = harness.sandbox.ui_create(
        realm, "Customer", {"DisplayName": "Jane", "PrimaryEmailAddr": {"Address": "jane@example.com"}}
    )
    harness.sandbox.ui_update(realm, "Customer", {"Id": old["Id"], "SyncToken": "0", "Active": False})
    found = qbo_lookup.resolve_customer(harness.ctx(), _contact(), harness.qbo(realm))
    assert found == old["Id"]
    assert harness.sandbox.get(realm, "Customer", old["Id"])["Active"] is True


def test_display_name_collision_6240_is_disambiguated_deterministically(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    harness.sandbox.ui_create(
        realm, "Customer", {"DisplayName": "Jane Doe", "PrimaryEmailAddr": {"Address": "x@y.com"}}
    )
    harness.sandbox.ui_create(realm, "Vendor", {"DisplayName": "Jane Doe (jane@example.com)"})
    found = qbo_lookup.resolve_customer(harness.ctx(), _contact(), harness.qbo(realm))
    assert harness.sandbox.get(realm, "Customer", found)["DisplayName"] == "Jane Doe (CRM c-1)"


def test_lost_create_answer_replays_the_stored_requestid(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    harness.sandbox.inject_fault("lost_response", entity="Customer", method="POST")
    found = qbo_lookup.resolve_customer(harness.ctx(), _contact(), harness.qbo(realm))
    assert [c["Id"] for c in harness.entities(realm, "Customer") if c.get("PrimaryEmailAddr")] == [found]
    link = harness.session.execute(select(Link).where(Link.kind == "customer")).scalar_one()
    replays = [r for r in harness.sandbox.request_log if r.operation.endswith(":replay")]
    assert [r.request_id for r in replays] == [link.request_id]


def test_a_crash_after_the_create_finds_the_customer_on_the_next_run(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    harness.sandbox.inject_fault("lost_response", entity="Customer", method="POST", count=4)
    qbo = harness.qbo(realm)
    try:
        qbo_lookup.resolve_customer(harness.ctx(), _contact(), qbo)
        raise AssertionError("expected the create to fail")
    except Exception as exc:
        assert "QuickBooks" in str(exc)
        harness.session.rollback()
    claim = harness.session.execute(select(Link).where(Link.kind == "customer")).scalar_one()
    assert claim.request_id and claim.qbo_id is None  # committed before the call
    found = qbo_lookup.resolve_customer(harness.ctx(), _contact(), qbo)
    assert [c["Id"] for c in harness.entities(realm, "Customer") if c.get("PrimaryEmailAddr")] == [found]


def test_same_email_under_another_contact_reuses_the_customer(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    qbo = harness.qbo(realm)
    first = qbo_lookup.resolve_customer(harness.ctx(), _contact(), qbo)
    calls = qbo.calls
    assert qbo_lookup.resolve_customer(harness.ctx(), _contact(id="c-9", name="J. Doe"), qbo) == first
    assert qbo.calls == calls


def test_items_by_mapping_by_name_or_created_and_cached(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    qbo = harness.qbo(realm)
    ctx = harness.ctx()
    settings = LocationSettings(product_item_map={"p-mapped": "2"})
    assert qbo_lookup.resolve_item(ctx, _line("Anything", "p-mapped"), qbo, settings) == "2"
    hours = next(i for i in harness.entities(realm, "Item") if i["Name"] == "Hours")
    assert qbo_lookup.resolve_item(ctx, _line("hours"), qbo, settings) == hours["Id"]
    new_id = qbo_lookup.resolve_item(ctx, _line("Gutter clean: front", "p-7"), qbo, settings)
    item = harness.sandbox.get(realm, "Item", new_id)
    assert item["Name"] == "Gutter clean front" and item["Type"] == "Service"
    assert item["IncomeAccountRef"]["value"]
    calls = qbo.calls
    assert qbo_lookup.resolve_item(ctx, _line("Gutter clean: front", "p-7"), qbo, settings) == new_id
    assert qbo.calls == calls


def test_rounding_item_created_once_per_company_whatever_the_item_strategy(harness: Harness) -> None:  # noqa: F811
    realm = harness.company(country="GB", home_currency="GBP")
    qbo = harness.qbo(realm)
    settings = LocationSettings(item_strategy="default_item", default_item_id="3", income_account_id="1")
    rounding_id = qbo_lookup.rounding_item(harness.ctx(), qbo, settings)
    item = harness.sandbox.get(realm, "Item", rounding_id)
    assert (item["Name"], item["Type"], item["IncomeAccountRef"]["value"]) == ("Rounding", "Service", "1")
    calls = qbo.calls
    assert qbo_lookup.rounding_item(harness.ctx(), qbo, settings) == rounding_id
    assert qbo.calls == calls
    other = harness.qbo(harness.company(country="GB", home_currency="GBP"))  # another company: its own item
    other_id = qbo_lookup.rounding_item(harness.ctx(), other, settings)
    assert other.calls > 0 and harness.sandbox.get(other.realm_id, "Item", other_id)["Name"] == "Rounding"


def test_default_item_strategy(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    qbo = harness.qbo(realm)
    settings = LocationSettings(item_strategy="default_item", default_item_id="3")
    assert qbo_lookup.resolve_item(harness.ctx(), _line("X"), qbo, settings) == "3"
    services = next(i for i in harness.entities(realm, "Item") if i["Name"] == "Services")
    settings = LocationSettings(item_strategy="default_item")
    assert qbo_lookup.resolve_item(harness.ctx(), _line("X"), qbo, settings) == services["Id"]


def test_payment_method_and_undeposited_funds(harness: Harness) -> None:  # noqa: F811
    realm = harness.company()
    qbo = harness.qbo(realm)
    ctx = harness.ctx()
    visa = next(m for m in harness.entities(realm, "PaymentMethod") if m["Name"] == "Visa")
    assert qbo_lookup.resolve_payment_method(ctx, "visa", "CREDIT_CARD", qbo) == visa["Id"]
    new = qbo_lookup.resolve_payment_method(ctx, "Bank transfer", "NON_CREDIT_CARD", qbo)
    assert harness.sandbox.get(realm, "PaymentMethod", new)["Name"] == "Bank transfer"
    uf = next(a for a in harness.entities(realm, "Account") if a["Name"] == "Undeposited Funds")
    assert qbo_lookup.undeposited_funds_account(ctx, qbo) == uf["Id"]
    calls = qbo.calls
    assert qbo_lookup.undeposited_funds_account(ctx, qbo) == uf["Id"]
    assert qbo.calls == calls


def test_links_of_another_company_are_ignored(harness: Harness) -> None:  # noqa: F811
    first_realm = harness.company()
    first = qbo_lookup.resolve_customer(harness.ctx(), _contact(), harness.qbo(first_realm))
    second_realm = harness.company()
    second = qbo_lookup.resolve_customer(harness.ctx(), _contact(), harness.qbo(second_realm))
    assert harness.sandbox.get(second_realm, "Customer", second)["DisplayName"] == "Jane Doe"
    link = harness.session.execute(select(Link).where(Link.location_id == LOCATION)).scalars().all()
    assert [(row.qbo_id, row.data["realm_id"]) for row in link if row.kind == "customer"] == [(second, second_realm)]
    assert first
