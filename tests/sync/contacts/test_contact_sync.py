"""One customer → one contact: the decision (pure) and the CRM calls it spends."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from qbconnect.crm.client import CrmClient, DuplicateContactError
from qbconnect.domain.contact_plan import Action, ContactPlan, plan_contact
from qbconnect.domain.customer import customer_content_hash
from qbconnect.errors import PermanentError, TransientError
from qbconnect.ratelimit import CRM_BUDGET, Budget, RateLimiter
from qbconnect.sync.contacts.importer import IMPORT_BUDGET_SHARE
from qbconnect.sync.contacts.write import ContactIndex, KnownContact, has_tag, import_contact, write_contact
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

    extra = Budget("extra", CRM_BUDGET.windows)
    write(FakeCrm(), plan_contact(customer(), None, without_email="skip"), limiter=Recorder(), budgets=[extra])
    assert drawn == [("extra", "loc1")] * 2


def test_import_leaves_part_of_the_location_budget_to_live_syncs() -> None:
    assert 0.5 <= IMPORT_BUDGET_SHARE < 1.0


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
        write(FakeCrm(), plan_contact(customer(), None, without_email="skip"), limiter=Full(), budgets=[CRM_BUDGET])
    assert caught.value.retry_after == 10.0


# ---- import_contact: one call per contact --------------------------------------------------------------


class ImportCrm(FakeCrm):
    """Also creates (refusing duplicates the way HighLevel does), reads, and finds duplicates."""

    def __init__(self, existing: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(existing)
        self.lose_next_create_answer = False

    def create_contact(self, fields: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("create")
        for contact in self.contacts.values():
            if contact.get("email") == fields.get("email"):
                raise DuplicateContactError("duplicate", contact_id=contact["id"], matching_field="email", detail=None)
        contact = {"id": f"c{len(self.contacts) + 1}", **fields}
        self.contacts[contact["id"]] = contact
        if self.lose_next_create_answer:
            self.lose_next_create_answer = False
            raise TransientError("HighLevel did not answer in time", code="timeout")
        return dict(contact)

    def get_contact(self, contact_id: str) -> dict[str, Any] | None:
        self.calls.append("get")
        found = self.contacts.get(contact_id)
        return dict(found) if found else None

    def find_duplicate_contact(self, *, email: str | None = None, phone: str | None = None) -> dict[str, Any] | None:
        self.calls.append("duplicate")
        return next((dict(c) for c in self.contacts.values() if c.get("email") == email), None)


def index_of(*contacts: dict[str, Any]) -> ContactIndex:
    index = ContactIndex("quickbooks", by_phone=False)
    for contact in contacts:
        index.add(contact)
    return index


def imported(crm: ImportCrm, index: ContactIndex, current: dict[str, Any] | None = None) -> Any:
    plan = plan_contact(current or customer(), None, without_email="skip")
    return import_contact(cast(CrmClient, crm), plan, index)


def jane_as_written() -> dict[str, Any]:
    """Jane's contact as HighLevel holds it after we wrote her (phone in E.164, name derived)."""
    return {
        "id": "c9",
        "firstName": "Jane",
        "lastName": "Doe",
        "name": "Jane Doe",
        "email": "jane@example.com",
        "phone": "+15551234567",
        "source": "a web form",  # not a field we compare
        "tags": ["vip", "QuickBooks"],
    }


def test_a_new_contact_is_one_tagged_create() -> None:
    crm = ImportCrm()
    result = imported(crm, index_of())
    assert (result.created, result.calls, crm.calls) == (True, 1, ["create"])
    assert crm.contacts[result.contact_id]["tags"] == ["quickbooks"]


def test_a_contact_holding_our_fields_and_the_tag_costs_nothing() -> None:
    crm = ImportCrm({"c9": jane_as_written()})
    result = imported(crm, index_of(jane_as_written()))
    assert (result.contact_id, result.created, result.calls, crm.calls) == ("c9", False, 0, [])


def test_a_changed_field_is_one_upsert_and_a_missing_tag_one_tag_call() -> None:
    changed = {**jane_as_written(), "lastName": "Smith", "name": "Jane Smith"}
    crm = ImportCrm({"c9": changed})
    assert imported(crm, index_of(changed)).calls == 1 and crm.calls == ["upsert"]

    untagged = {**jane_as_written(), "tags": ["vip"]}
    crm = ImportCrm({"c9": untagged})
    result = imported(crm, index_of(untagged))
    assert (result.calls, result.tag_added, crm.calls) == (1, True, ["tags"])
    assert crm.contacts["c9"]["tags"] == ["vip", "quickbooks"]


def test_known_contact_compares_only_the_fields_we_send() -> None:
    known = KnownContact.of(jane_as_written(), "quickbooks")
    assert known is not None and known.tagged
    assert not known.differs({"email": "JANE@example.com", "phone": "(555) 123-4567", "source": "QuickBooks"})
    assert not known.differs({"name": "Jane Doe"})
    assert known.differs({"city": "Springfield"})  # HighLevel holds no city: we would add it
    assert known.differs({"phone": "555 123 9999"})


def test_a_contact_created_meanwhile_is_found_through_the_duplicate_answer() -> None:
    """The index was read before someone created Jane: the create is refused with her id, never doubled."""
    crm = ImportCrm({"c9": {**jane_as_written(), "tags": ["vip"]}})
    index = index_of()
    result = imported(crm, index)
    assert (result.contact_id, result.created) == ("c9", False)
    assert crm.calls == ["create", "get", "tags"]  # her fields are ours already; the tag was missing
    assert len(crm.contacts) == 1
    assert index.find(plan_contact(customer(), None, without_email="skip")) is not None  # a twin costs nothing


def test_a_lost_create_answer_is_looked_up_before_creating_again() -> None:
    crm = ImportCrm()
    crm.lose_next_create_answer = True
    result = imported(crm, index_of())
    assert crm.calls == ["create", "duplicate"] and len(crm.contacts) == 1
    assert result.contact_id == "c1" and result.calls == 2

    nothing_landed = ImportCrm()

    def lost(fields: dict[str, Any]) -> dict[str, Any]:
        nothing_landed.calls.append("create")
        nothing_landed.create_contact = ImportCrm.create_contact.__get__(nothing_landed)  # type: ignore[method-assign]
        raise TransientError("connection dropped", code="network")

    nothing_landed.create_contact = lost  # type: ignore[method-assign]
    result = imported(nothing_landed, index_of())
    assert nothing_landed.calls == ["create", "duplicate", "create"] and result.created
    assert len(nothing_landed.contacts) == 1


def test_a_refused_create_is_not_looked_up() -> None:
    class Refusing(ImportCrm):
        def create_contact(self, fields: dict[str, Any]) -> dict[str, Any]:
            raise TransientError("budget full", code="rate_budget")

    crm = Refusing()
    with pytest.raises(TransientError):
        imported(crm, index_of())
    assert crm.calls == []
