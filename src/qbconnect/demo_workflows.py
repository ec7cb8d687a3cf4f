"""For ``qbconnect demo``: a CRM workflow starting on an overdue QuickBooks invoice, in the emulators.

``show_overdue_workflow`` plays it start to finish: a workflow in the CRM emulator subscribes to the app's
"QuickBooks invoice overdue" trigger (through the app's Subscription URL), a QuickBooks customer gets an
invoice due eight days ago, the change query the customer's webhook rings stores the invoice's balance, the
overdue pass (which reads no QuickBooks data) records the 7-day stage, and the trigger's job posts it to
the workflow's target URL. It returns what the target URL received. demo.py can call it once the demo
location is connected (it is not wired into ``qbconnect demo`` yet: demo.py is being changed elsewhere).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from qbconnect.clock import utcnow
from qbconnect.sandbox.stack import Stack
from qbconnect.sync.engine import jobs
from qbconnect.sync.engine.routing import ALL, QBO_CDC
from qbconnect.sync.workflows.catalogue import INVOICE_OVERDUE
from qbconnect.sync.workflows.handler import overdue_pass


def show_overdue_workflow(stack: Stack, location_id: str, realm_id: str, *, timeout: float = 30.0) -> dict[str, Any]:
    """Start a workflow on the overdue trigger and fire it on a new overdue invoice; returns the body sent."""
    trigger_id = stack.crm.workflows.start_workflow(location_id, INVOICE_OVERDUE, workflow_id="demo-chase-overdue")
    customer = stack.qbo.ui_create(
        realm_id,
        "Customer",
        {"GivenName": "Olive", "FamilyName": "Late", "PrimaryEmailAddr": {"Address": "olive.late@example.com"}},
    )
    item = next(i for i in stack.qbo.entities(realm_id, "Item") if i.get("Type") != "Category")
    today = utcnow().date()
    stack.qbo.ui_create(
        realm_id,
        "Invoice",
        {
            "CustomerRef": {"value": customer["Id"]},
            "TxnDate": (today - timedelta(days=38)).isoformat(),
            "DueDate": (today - timedelta(days=8)).isoformat(),
            "Line": [
                {
                    "Amount": "245.00",
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": item["Id"]}},
                }
            ],
        },
    )
    with stack.runtime.sessions.begin() as session:  # the change query the customer's webhook would ring
        jobs.enqueue(session, location_id, QBO_CDC, ALL, "demo: a QuickBooks invoice is overdue")
    _settle(stack, timeout)
    with stack.runtime.sessions.begin() as session:  # the periodic overdue pass, run now
        overdue_pass(session, location_id, today=today, environment=stack.settings.qbo_environment)
    deadline = time.monotonic() + timeout
    while True:
        _settle(stack, timeout)
        received = stack.crm.workflows.received(trigger_id=trigger_id)
        if received:
            return received[-1].payload
        if time.monotonic() > deadline:
            raise TimeoutError("the overdue trigger did not reach the workflow in time")
        time.sleep(0.2)


def _settle(stack: Stack, timeout: float) -> None:
    """Run the pending jobs here when the stack has no worker of its own; else give its worker a moment."""
    if stack.queue is None:
        stack.drain(timeout=timeout)
    else:
        time.sleep(0.5)
