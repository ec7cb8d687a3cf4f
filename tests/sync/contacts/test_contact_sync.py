"""One customer → one contact: the decision (pure) and the CRM calls it spends."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from qbconnect.crm.client import CrmClient
from qbconnect.domain.customer import customer_content_hash
from qbconnect.errors import PermanentError, TransientError
from qbconnect.ratelimit import Budget, RateLimiter
from qbconnect.sync.contacts.importer import IMPORT_BUDGET, IMPORT_BUDGETS, IMPORT_SMOOTHING
from qbconnect.sync.contacts.write import Action, ContactPlan, has_tag, plan_contact, write_contact
from qbconnect.sync.links.customers import CustomerLink


def customer(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Id": "58",
        "DisplayName": "Jane Doe",
        "GivenName": "Jane",
        "FamilyName": "Doe",
        "PrimaryEmailAddr": {"Address": "Jane@Example.com"},
        "PrimaryPhone": {"FreeFormNumber": "(555) 123-4567"},
        "Active": True,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def link(qbo_id: str = "58", email: str | None = "jane@example.com", content_hash: str | None = None) -> CustomerLink:
    return CustomerLink(crm_id="c1", qbo_id=qbo_id, email=email, content_hash=content_hash, realm_id="r1")


class FakeCrm:
    """Answers like HighLevel: upsert matches by email, tags are added, never overwritten."""

    location_id = "loc1"

    def __init__(self, existing: dict[str, dict[str, Any]] | None = None) -> None:
        self.contacts: dict[str, dict[str, Any]] = existing or {}
        self.calls: list[str] = []
        self.fail_update = False

    def upsert_contact(self, fields: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        self.calls.append("upsert")
        assert "tags" not in fields
        for contact in self.contacts.values():
            if contact.get("email") == fields.get("email"):
                contact.update(fields)
                return dict(contact), False
        contact = {"id": f"c{len(self.contacts) + 1}", "tags": [], **fields}
        self.contacts[contact["id"]] = contact
        return dict(contact), True

    def update_contact(self, contact_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("update")
        if self.fail_update or contact_id not in self.contacts:
            raise PermanentError("HighLevel could not find the contact")
        self.contacts[contact_id].update(fields)
        return dict(self.contacts[contact_id])

    def add_tags(self, contact_id: str, tags: list[str]) -> list[str]:
        self.calls.append("tags")
        contact = self.contacts[contact_id]
        contact["tags"] = [*contact["tags"], *[t for t in tags if t not in contact["tags"]]]
        return list(contact["tags"])


def write(fake: FakeCrm, plan: ContactPlan, **kwargs: Any) -> Any:
    return write_contact(cast(CrmClient, fake), plan, tag="quickbooks", **kwargs)


# ---- plan_contact ----------------------------------------------------------------------------------


def test_never_synced_customer_is_written_with_its_fields() -> None:
    plan = plan_contact(customer(), None, without_email="skip")
    assert plan.action is Action.WRITE
    assert plan.email == "jane@example.com" and plan.match_key == "email:jane@example.com"
    assert plan.fields["firstName"] == "Jane" and plan.fields["source"] == "QuickBooks"
    assert "tags" not in plan.fields
    assert plan.content_hash == customer_content_hash(customer())
    assert not plan.update_by_id


def test_same_content_hash_is_unchanged_even_when_inactive() -> None:
    current = customer()
    assert plan_contact(current, link(content_hash=customer_content_hash(current)), without_email="skip").action is (
        Action.UNCHANGED
    )
    inactive = customer(Active=False)
    known = link(content_hash=customer_content_hash(inactive))
    assert plan_contact(inactive, known, without_email="skip").action is Action.UNCHANGED
    assert plan_contact(inactive, link(content_hash="old"), without_email="skip").action is Action.INACTIVE


def test_a_changed_field_means_a_write() -> None:
    before = customer()
    after = customer(GivenName="Janet")
    plan = plan_contact(after, link(content_hash=customer_content_hash(before)), without_email="skip")
    assert plan.action is Action.WRITE and plan.linked_contact_id == "c1" and not plan.update_by_id


def test_hash_of_another_realm_or_customer_is_not_trusted() -> None:
    current = customer()
    other_realm = replace(link(content_hash=customer_content_hash(current)), realm_id="r2")
    assert plan_contact(current, other_realm, without_email="skip", realm_id="r1").action is Action.WRITE
    alias = replace(link(qbo_id="12", content_hash="x"), aliases={"58": customer_content_hash(current)})
    assert plan_contact(current, alias, without_email="skip", realm_id="r1").action is Action.UNCHANGED
    assert (
        plan_contact(
            current, link(qbo_id="12", content_hash=customer_content_hash(current)), without_email="skip"
        ).action
        is Action.WRITE
    )


def test_changed_email_updates_the_linked_contact_by_id() -> None:
    plan = plan_contact(
        customer(PrimaryEmailAddr={"Address": "new@example.com"}), link(content_hash="old"), without_email="skip"
    )
    assert plan.update_by_id and plan.linked_contact_id == "c1" and plan.email == "new@example.com"


def test_customers_without_email_follow_the_setting() -> None:
    no_email = customer(PrimaryEmailAddr=None)
    assert plan_contact(no_email, None, without_email="skip").action is Action.SKIP_NO_EMAIL
    by_phone = plan_contact(no_email, None, without_email="phone")
    assert by_phone.action is Action.WRITE and by_phone.match_key == "phone:(555) 123-4567"
    nothing = customer(PrimaryEmailAddr=None, PrimaryPhone=None)
    assert plan_contact(nothing, None, without_email="phone").action is Action.SKIP_NO_CONTACT_INFO


def test_has_tag_ignores_case_and_spaces() -> None:
    assert has_tag({"tags": ["VIP", " QuickBooks "]}, "quickbooks")
    assert not has_tag({"tags": ["vip"]}, "quickbooks")
    assert not has_tag({}, "quickbooks")


# ---- write_contact: calls per contact ----------------------------------------------------------------


def test_new_contact_costs_two_calls() -> None:
    fake = FakeCrm()
    result = write(fake, plan_contact(customer(), None, without_email="skip"))
    assert (result.created, result.tag_added, result.calls) == (True, True, 2)
    assert fake.calls == ["upsert", "tags"]


def test_existing_tagged_contact_costs_one_call_and_keeps_its_tags() -> None:
    fake = FakeCrm({"c9": {"id": "c9", "email": "jane@example.com", "tags": ["vip", "quickbooks"]}})
    result = write(fake, plan_contact(customer(), None, without_email="skip"))
    assert (result.contact_id, result.created, result.calls) == ("c9", False, 1)
    assert fake.contacts["c9"]["tags"] == ["vip", "quickbooks"]


def test_existing_untagged_contact_gets_the_tag_added() -> None:
    fake = FakeCrm({"c9": {"id": "c9", "email": "jane@example.com", "tags": ["vip"]}})
    result = write(fake, plan_contact(customer(), None, without_email="skip"))
    assert (result.tag_added, result.calls) == (True, 2)
    assert fake.contacts["c9"]["tags"] == ["vip", "quickbooks"]


def test_email_change_updates_by_id_and_falls_back_to_upsert() -> None:
    fake = FakeCrm({"c1": {"id": "c1", "email": "jane@example.com", "tags": ["quickbooks"]}})
    plan = plan_contact(
        customer(PrimaryEmailAddr={"Address": "new@example.com"}), link(content_hash="old"), without_email="skip"
    )
    result = write(fake, plan)
    assert (result.contact_id, result.calls, fake.calls) == ("c1", 1, ["update"])
    assert fake.contacts["c1"]["email"] == "new@example.com"

    gone = FakeCrm()
    result = write(gone, plan)
    assert gone.calls == ["update", "upsert", "tags"] and result.created and result.calls == 3


def test_transient_errors_propagate() -> None:
    class Down(FakeCrm):
        def upsert_contact(self, fields: dict[str, Any]) -> tuple[dict[str, Any], bool]:
            raise TransientError("HighLevel is down")

    with pytest.raises(TransientError):
        write(Down(), plan_contact(customer(), None, without_email="skip"))


def test_each_call_draws_from_the_given_budget() -> None:
    drawn: list[tuple[str, str]] = []

    class Recorder(RateLimiter):
        def acquire(self, budget: Budget, key: str, *, timeout: float = 120.0) -> None:
            drawn.append((budget.name, key))

    write(FakeCrm(), plan_contact(customer(), None, without_email="skip"), limiter=Recorder(), budgets=IMPORT_BUDGETS)
    assert drawn == [("crm-import-smooth", "loc1"), ("crm-import", "loc1")] * 2


def test_import_budget_stays_under_the_crm_limit_and_smooth() -> None:
    (ten_seconds,) = IMPORT_BUDGET.windows
    (one_second,) = IMPORT_SMOOTHING.windows
    assert (ten_seconds.amount, ten_seconds.get_expiry()) == (95, 10)  # HighLevel: 100 per 10 s
    assert (one_second.amount, one_second.get_expiry()) == (10, 1)  # no burst of 95 at once


def test_only_write_plans_can_be_written() -> None:
    current = customer()
    plan = plan_contact(current, link(content_hash=customer_content_hash(current)), without_email="skip")
    with pytest.raises(ValueError):
        write(FakeCrm(), plan)


def test_a_budget_that_stays_full_is_a_transient_error() -> None:
    class Full(RateLimiter):
        def acquire(self, budget: Budget, key: str, *, timeout: float = 120.0) -> None:
            raise TimeoutError("full")

    with pytest.raises(TransientError) as caught:
        write(FakeCrm(), plan_contact(customer(), None, without_email="skip"), limiter=Full(), budgets=IMPORT_BUDGETS)
    assert caught.value.retry_after == 10.0
