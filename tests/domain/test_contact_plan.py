"""The contact plan is pure: a customer and what its link knows decide write, unchanged, inactive or skip."""

from __future__ import annotations

from dataclasses import dataclass

from qbconnect.domain.contact_plan import Action, customer_label, plan_contact
from qbconnect.domain.customer import customer_content_hash

CUSTOMER = {"Id": "58", "DisplayName": "Kira Garcia", "PrimaryEmailAddr": {"Address": "kira@example.com"}}


@dataclass(frozen=True)
class Known:
    crm_id: str
    qbo_id: str | None
    email: str | None
    stored_hash: str | None

    def hash_for(self, qbo_id: str, realm_id: str | None) -> str | None:
        return self.stored_hash if qbo_id == self.qbo_id else None


def test_a_new_customer_is_written_and_an_unchanged_one_left_alone() -> None:
    assert plan_contact(CUSTOMER, None, without_email="skip").action is Action.WRITE
    same = Known("c-1", "58", "kira@example.com", customer_content_hash(CUSTOMER))
    assert plan_contact(CUSTOMER, same, without_email="skip").action is Action.UNCHANGED


def test_a_changed_email_updates_the_linked_contact_by_id() -> None:
    old = Known("c-1", "58", "kira.old@example.com", "stale")
    plan = plan_contact(CUSTOMER, old, without_email="skip")
    assert (plan.action, plan.linked_contact_id, plan.update_by_id) == (Action.WRITE, "c-1", True)


def test_inactive_and_contactless_customers_are_not_written() -> None:
    assert plan_contact({**CUSTOMER, "Active": False}, None, without_email="skip").action is Action.INACTIVE
    bare = {"Id": "59", "DisplayName": "No Email"}
    assert plan_contact(bare, None, without_email="skip").action is Action.SKIP_NO_EMAIL
    assert plan_contact(bare, None, without_email="phone").action is Action.SKIP_NO_CONTACT_INFO
    assert customer_label(bare) == "No Email" and customer_label({"Id": "7"}) == "customer 7"
