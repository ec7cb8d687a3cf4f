"""QuickBooks in the CRM's workflows, end to end: the CRM emulator subscribes workflows to the app's triggers
through the app's Subscription URL, QuickBooks changes fire them at the target URLs, and the balance action
answers from what the product already knows."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from qbconnect.clock import utcnow
from qbconnect.db.models import Activity, WorkflowDelivery, WorkflowSubscription
from qbconnect.sandbox.crm.workflows import WorkflowCallError
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.routing import ALL, QBO_CDC
from qbconnect.sync.engine.runner import JobRunner
from qbconnect.sync.workflows.catalogue import (
    CUSTOMER_CREATED,
    INVOICE_OVERDUE,
    INVOICE_PAID,
    PAYMENT_RECEIVED,
    TRIGGERS,
)
from qbconnect.sync.workflows.handler import overdue_pass
from tests.support.stack_fixtures import Connected, connected, stack  # noqa: F401
from tests.sync.workflows.shapes import shape


def customer(c: Connected, given: str, email: str) -> str:
    body = {"GivenName": given, "FamilyName": "Tester", "PrimaryEmailAddr": {"Address": email}}
    return str(c.stack.qbo.ui_create(c.realm_id, "Customer", body)["Id"])


def invoice(c: Connected, customer_id: str, amount: str, *, due: date, txn: date | None = None) -> str:
    item = next(i for i in c.stack.qbo.entities(c.realm_id, "Item") if i["Name"] == "Hours")
    body = {
        "CustomerRef": {"value": customer_id},
        "TxnDate": (txn or due - timedelta(days=30)).isoformat(),
        "DueDate": due.isoformat(),
        "Line": [
            {
                "Amount": amount,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
            }
        ],
    }
    return str(c.stack.qbo.ui_create(c.realm_id, "Invoice", body)["Id"])


def pay(c: Connected, customer_id: str, invoice_id: str, amount: str) -> str:
    body = {
        "CustomerRef": {"value": customer_id},
        "TotalAmt": amount,
        "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
    }
    return str(c.stack.qbo.ui_create(c.realm_id, "Payment", body)["Id"])


def void(c: Connected, invoice_id: str) -> None:
    """Void the invoice in QuickBooks (as a user would)."""
    with c.stack.qbo.lock:
        company = c.stack.qbo.company(c.realm_id)
        token = company.read("Invoice", invoice_id)["SyncToken"]
        company.void("Invoice", {"Id": invoice_id, "SyncToken": token})


def run(c: Connected) -> None:
    while c.stack.deliver_webhooks():
        pass
    c.stack.drain()


def redeliver_payment_webhooks(c: Connected, *, times: int) -> None:
    posts = [w for w in c.stack.qbo.delivered_webhooks if b"Payment" in w.body]
    assert posts
    for _ in range(times):
        answer = httpx.post(
            posts[-1].url,
            content=posts[-1].body,
            headers={"content-type": "application/json", "intuit-signature": posts[-1].signature},
        )
        assert answer.status_code == 200
        c.stack.drain()


def change_check(c: Connected) -> None:
    """One QuickBooks change query now (as a webhook or the safety sweep would ask for)."""
    with c.stack.runtime.sessions.begin() as session:
        jobs.enqueue(session, c.location_id, QBO_CDC, ALL, "test change check")
    c.stack.drain()


def received(c: Connected, trigger_id: str) -> list[dict[str, Any]]:
    return [e.payload for e in c.stack.crm.workflows.received(trigger_id=trigger_id)]


def subscriptions(c: Connected) -> list[WorkflowSubscription]:
    with c.stack.runtime.sessions() as session:
        return list(session.execute(select(WorkflowSubscription).order_by(WorkflowSubscription.id)).scalars())


def overdue(c: Connected, today: date) -> None:
    with c.stack.runtime.sessions.begin() as session:
        overdue_pass(session, c.location_id, today=today, environment="sandbox")
    c.stack.drain()


# ---------------------------------------------------------------------------------------------- subscriptions


def test_workflows_subscribe_and_unsubscribe(connected: Connected) -> None:  # noqa: F811
    c = connected
    flows = c.stack.crm.workflows
    trigger_id = flows.start_workflow(c.location_id, INVOICE_PAID, workflow_id="wf-thanks")
    (row,) = subscriptions(c)
    assert (row.trigger_key, row.trigger_id, row.workflow_id, row.active) == (
        INVOICE_PAID,
        trigger_id,
        "wf-thanks",
        True,
    )
    assert row.target_url == flows.uses[trigger_id].target_url

    flows.update_workflow(trigger_id, [{"field": "invoice.currency", "operator": "==", "value": "USD"}])
    flows.start_workflow(c.location_id, INVOICE_PAID)  # a second workflow with the same trigger
    assert [s.active for s in subscriptions(c)] == [True, True]
    assert subscriptions(c)[0].filters[0]["value"] == "USD"

    flows.stop_workflow(trigger_id)
    flows.stop_workflow(trigger_id)  # HighLevel repeating itself changes nothing
    assert [s.active for s in subscriptions(c)] == [False, True]


def test_subscription_calls_without_the_shared_secret_are_refused(connected: Connected) -> None:  # noqa: F811
    c = connected
    body = c.stack.crm.workflows._subscription_body(_use(c), "CREATED")
    url = f"{c.stack.service_url}/workflows/crm/subscription"
    assert httpx.post(url, json=body).status_code == 401
    assert httpx.post(url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert subscriptions(c) == []
    elsewhere = {**body, "triggerData": {**body["triggerData"], "targetUrl": "https://attacker.example/x"}}
    secret = c.stack.crm.custom_page.shared_secret
    answer = httpx.post(url, json=elsewhere, headers={"Authorization": f"Bearer {secret}"})
    assert answer.status_code == 422
    assert subscriptions(c) == []


def _use(c: Connected) -> Any:
    from qbconnect.sandbox.crm.workflows import TriggerUse

    return TriggerUse(
        id="t1",
        key=INVOICE_PAID,
        location_id=c.location_id,
        workflow_id="wf",
        company_id="agency-1",
        target_url=f"{c.stack.crm_url}/workflows-marketplace/triggers/execute/app/t1",
    )


def test_a_location_without_the_app_cannot_subscribe(connected: Connected) -> None:  # noqa: F811
    c = connected
    other = c.stack.crm.add_location(name="Not installed")
    with pytest.raises(WorkflowCallError) as refused:
        c.stack.crm.workflows.start_workflow(other, INVOICE_PAID)
    assert refused.value.status == 403
    assert subscriptions(c) == []


# ---------------------------------------------------------------------------------------------- triggers


def test_paid_invoice_and_payment_fire_once_each_under_redelivery(connected: Connected) -> None:  # noqa: F811
    c = connected
    flows = c.stack.crm.workflows
    paid = flows.start_workflow(c.location_id, INVOICE_PAID)
    payments = flows.start_workflow(c.location_id, PAYMENT_RECEIVED)
    ann = customer(c, "Ann", "ann@example.com")
    invoice_id = invoice(c, ann, "120.00", due=utcnow().date() + timedelta(days=10))
    run(c)
    assert received(c, paid) == []  # an open invoice is not paid
    payment_id = pay(c, ann, invoice_id, "120.00")
    run(c)
    redeliver_payment_webhooks(c, times=3)  # Intuit delivering the same notification again
    c.stack.qbo.ui_update(c.realm_id, "Payment", {"Id": payment_id, "PrivateNote": "edited"})  # an Update
    run(c)
    change_check(c)  # an overlapping change query reports the same objects again

    (body,) = received(c, paid)
    assert shape(body) == shape(TRIGGERS[INVOICE_PAID].sample)  # the published sample's shape
    assert body["event"]["type"] == INVOICE_PAID
    assert body["invoice"]["id"] == invoice_id and body["invoice"]["balance"] == "0.00"
    assert body["invoice"]["total"] == "120.00"
    assert body["customer"]["id"] == ann and body["customer"]["email"] == "ann@example.com"
    assert body["contact"]["id"] and body["contactId"] == body["contact"]["id"]
    assert c.stack.crm.contact(body["contactId"])["email"] == "ann@example.com"
    (money_in,) = received(c, payments)
    assert shape(money_in) == shape(TRIGGERS[PAYMENT_RECEIVED].sample)
    assert money_in["payment"]["id"] == payment_id and money_in["payment"]["amount"] == "120.00"
    assert money_in["payment"]["invoiceIds"] == [invoice_id]
    assert money_in["event"]["id"] != body["event"]["id"]
    with c.stack.runtime.sessions() as session:
        rows = session.execute(select(Activity).where(Activity.kind == "workflow_trigger")).scalars().all()
    assert sorted(row.status for row in rows) == ["done", "done"]
    assert {row.label for row in rows} == {"QuickBooks invoice paid", "QuickBooks payment received"}


def test_a_workflow_that_stopped_gets_nothing(connected: Connected) -> None:  # noqa: F811
    c = connected
    flows = c.stack.crm.workflows
    stopped = flows.start_workflow(c.location_id, PAYMENT_RECEIVED)
    flows.stop_workflow(stopped)
    ann = customer(c, "Ann", "ann@example.com")
    pay(c, ann, invoice(c, ann, "50.00", due=utcnow().date()), "50.00")
    run(c)
    assert received(c, stopped) == []


def test_customer_created_carries_the_new_contact(connected: Connected) -> None:  # noqa: F811
    c = connected
    trigger = c.stack.crm.workflows.start_workflow(c.location_id, CUSTOMER_CREATED)
    bo = customer(c, "Bo", "bo@example.com")
    run(c)
    (body,) = received(c, trigger)
    assert shape(body) == shape(TRIGGERS[CUSTOMER_CREATED].sample)
    assert body["customer"]["id"] == bo and body["customer"]["name"] == "Bo Tester"
    assert body["customer"]["createdAt"].endswith("Z")
    assert c.stack.crm.contact(body["contactId"])["email"] == "bo@example.com"


# ---------------------------------------------------------------------------------------------- overdue


def test_overdue_stages_fire_once_each_never_for_paid_or_voided(connected: Connected) -> None:  # noqa: F811
    c = connected
    trigger = c.stack.crm.workflows.start_workflow(c.location_id, INVOICE_OVERDUE)
    today = utcnow().date()
    ann = customer(c, "Ann", "ann@example.com")
    late = invoice(c, ann, "300.00", due=today - timedelta(days=2))
    paid = invoice(c, ann, "80.00", due=today - timedelta(days=2))
    voided = invoice(c, ann, "90.00", due=today - timedelta(days=2))
    pay(c, ann, paid, "80.00")
    void(c, voided)
    run(c)
    change_check(c)

    overdue(c, today)
    overdue(c, today)  # the pass runs often: each stage once
    assert [(b["invoice"]["id"], b["overdue"]["stage"]) for b in received(c, trigger)] == [(late, "1")]
    overdue(c, today + timedelta(days=5))  # day 7
    overdue(c, today + timedelta(days=27))  # day 29: nothing new
    overdue(c, today + timedelta(days=28))  # day 30
    stages = [(b["invoice"]["id"], b["overdue"]["stage"], b["overdue"]["daysOverdue"]) for b in received(c, trigger)]
    assert stages == [(late, "1", 2), (late, "7", 7), (late, "30", 30)]
    first = received(c, trigger)[0]
    assert shape(first) == shape(TRIGGERS[INVOICE_OVERDUE].sample)
    assert first["overdue"]["amount"] == "300.00" and first["invoice"]["balance"] == "300.00"
    assert first["invoice"]["url"].endswith(f"txnId={late}")


def test_an_invoice_first_seen_long_overdue_fires_its_latest_stage_only(connected: Connected) -> None:  # noqa: F811
    c = connected
    trigger = c.stack.crm.workflows.start_workflow(c.location_id, INVOICE_OVERDUE)
    today = utcnow().date()
    ann = customer(c, "Ann", "ann@example.com")
    invoice(c, ann, "40.00", due=today - timedelta(days=10))
    run(c)
    change_check(c)
    overdue(c, today)
    overdue(c, today + timedelta(days=1))
    assert [b["overdue"]["stage"] for b in received(c, trigger)] == ["7"]


def test_an_overdue_invoice_paid_before_its_trigger_went_out_is_skipped(connected: Connected) -> None:  # noqa: F811
    c = connected
    trigger = c.stack.crm.workflows.start_workflow(c.location_id, INVOICE_OVERDUE)
    today = utcnow().date()
    ann = customer(c, "Ann", "ann@example.com")
    late = invoice(c, ann, "40.00", due=today - timedelta(days=3))
    run(c)
    change_check(c)
    with c.stack.runtime.sessions.begin() as session:
        overdue_pass(session, c.location_id, today=today, environment="sandbox")  # recorded, not yet sent
    pay(c, ann, late, "40.00")
    with c.stack.runtime.sessions.begin() as session:  # the payment's change query runs first
        check = jobs.enqueue(session, c.location_id, QBO_CDC, ALL, "QuickBooks Payment Create webhook")
    assert JobRunner(c.stack.runtime).run(check) == "done"
    run(c)
    assert received(c, trigger) == []
    with c.stack.runtime.sessions() as session:
        (delivery,) = session.execute(select(WorkflowDelivery)).scalars().all()
    assert delivery.state == "skipped"


# ---------------------------------------------------------------------------------------------- the action


def test_balance_action_answers_from_local_state_with_zero_quickbooks_reads(connected: Connected) -> None:  # noqa: F811
    c = connected
    trigger = c.stack.crm.workflows.start_workflow(c.location_id, CUSTOMER_CREATED)
    today = utcnow().date()
    ann = customer(c, "Ann", "ann@example.com")
    invoice(c, ann, "300.00", due=today - timedelta(days=3))
    invoice(c, ann, "120.50", due=today + timedelta(days=10))
    settled = invoice(c, ann, "99.00", due=today - timedelta(days=1))
    pay(c, ann, settled, "99.00")
    run(c)
    change_check(c)
    contact_id = received(c, trigger)[0]["contactId"]

    before = len(c.stack.qbo.request_log)
    answer = c.stack.crm.workflows.run_action(c.location_id, contact_id)
    for _ in range(5):  # a busy workflow: still no QuickBooks call
        c.stack.crm.workflows.run_action(c.location_id, contact_id)
    assert len(c.stack.qbo.request_log) == before
    assert answer["found"] is True and answer["customerIds"] == [ann]
    assert (answer["openBalance"], answer["overdue"]) == ("420.50", "300.00")
    assert (answer["openInvoices"], answer["overdueInvoices"]) == (2, 1)
    assert answer["oldestDueDate"] == (today - timedelta(days=3)).isoformat()
    assert answer["currency"] == "USD"


def test_balance_action_for_an_unknown_contact_answers_zero(connected: Connected) -> None:  # noqa: F811
    c = connected
    answer = c.stack.crm.workflows.run_action(c.location_id, "no-such-contact")
    assert (answer["found"], answer["openBalance"], answer["openInvoices"]) == (False, "0.00", 0)


def test_balance_action_refuses_calls_without_the_shared_secret(connected: Connected) -> None:  # noqa: F811
    c = connected
    body = {"data": {}, "extras": {"locationId": c.location_id, "contactId": "x"}, "meta": {"key": "k"}}
    answer = httpx.post(f"{c.stack.service_url}/workflows/crm/actions/balance", json=body)
    assert answer.status_code == 401


def test_the_demo_shows_a_workflow_firing_on_an_overdue_invoice(connected: Connected) -> None:  # noqa: F811
    from qbconnect.demo_workflows import show_overdue_workflow

    c = connected
    body = show_overdue_workflow(c.stack, c.location_id, c.realm_id)
    assert body["event"]["type"] == INVOICE_OVERDUE
    assert (body["overdue"]["stage"], body["overdue"]["daysOverdue"], body["overdue"]["amount"]) == ("7", 8, "245.00")
    assert body["customer"]["name"] == "Olive Late" and body["contactId"]


def test_the_settings_page_lists_the_triggers_and_the_action(connected: Connected) -> None:  # noqa: F811
    import html

    from qbconnect.sync.workflows.catalogue import BALANCE

    c = connected
    page = httpx.get(
        f"{c.stack.service_url}/settings/integrations",
        params={"location_id": c.location_id},
        headers={"Authorization": f"Bearer {c.stack.settings.secret('admin_token')}"},
    )
    assert page.status_code == 200
    section = page.text.split('id="workflows"', 1)[1].split("</section>", 1)[0]
    for spec in (*TRIGGERS.values(), BALANCE):
        assert html.escape(spec.name) in section and html.escape(spec.how_to) in section


# ---------------------------------------------------------------------------------------------- balance fields


def test_balance_fields_are_written_only_when_a_value_changes(connected: Connected) -> None:  # noqa: F811
    from qbconnect.db.models import Location

    c = connected
    with c.stack.runtime.sessions.begin() as session:
        location = session.get(Location, c.location_id)
        assert location is not None
        location.settings = {**(location.settings or {}), "workflow_balance_fields": True}
    today = utcnow().date()
    ann = customer(c, "Ann", "ann@example.com")
    run(c)  # the customer's contact
    late = invoice(c, ann, "300.00", due=today - timedelta(days=3))
    invoice(c, ann, "20.00", due=today + timedelta(days=3))
    change_check(c)

    def contact_writes() -> list[Any]:
        return [r for r in c.stack.crm.request_log if r.method == "PUT" and r.path.startswith("/contacts/")]

    contact = c.stack.crm.find_by_email(c.location_id, "ann@example.com")
    assert contact is not None
    fields = {f["name"]: f["id"] for f in c.stack.crm.workflows.custom_fields[c.location_id]}
    assert set(fields) == {"QuickBooks open balance", "QuickBooks overdue"}
    values = {f["id"]: f["value"] for f in c.stack.crm.contact(contact["id"])["customFields"]}
    assert values[fields["QuickBooks open balance"]] == "320.00"
    assert values[fields["QuickBooks overdue"]] == "300.00"
    writes = len(contact_writes())

    change_check(c)  # nothing changed in QuickBooks: no CRM call
    with c.stack.runtime.sessions.begin() as session:
        from qbconnect.sync.workflows.fields import refresh_location

        assert refresh_location(session, c.location_id) == 0
    assert len(contact_writes()) == writes

    pay(c, ann, late, "300.00")
    run(c)
    values = {f["id"]: f["value"] for f in c.stack.crm.contact(contact["id"])["customFields"]}
    assert (values[fields["QuickBooks open balance"]], values[fields["QuickBooks overdue"]]) == ("20.00", "0.00")
    assert len(contact_writes()) == writes + 1
    assert len(c.stack.crm.workflows.custom_fields[c.location_id]) == 2  # created once
