"""A handler for the sync-log tests: each run takes the next planned outcome of its entity."""

from __future__ import annotations

import json
from decimal import Decimal

from qbconnect.errors import SyncError
from qbconnect.qbo.faults import parse_fault
from qbconnect.sync.engine.context import JobContext, Result
from qbconnect.sync.engine.registry import register

KIND = "sl_invoice"
PLAN: dict[str, list[str]] = {}


def qbo_fault(code: str, message: str, detail: str, element: str = "", tid: str = "tid-1") -> SyncError:
    body = {"Fault": {"Error": [{"Message": message, "Detail": detail, "code": code, "element": element}]}}
    return parse_fault(400, json.dumps(body).encode(), "application/json", tid)


FAULTS = {
    "bad_payment_method": lambda: qbo_fault(
        "2500",
        "Invalid Reference Id",
        "Invalid Reference Id : PaymentMethod assigned to this transaction does not exist (Id=999).",
        "PaymentMethodRef",
    ),
    "closed": lambda: qbo_fault("6210", "Account Period Closed", "The account period has closed."),
}


@register(KIND, direction="crm_to_qbo", title="Invoice")
def sl_invoice(ctx: JobContext) -> Result:
    plan = PLAN.setdefault(ctx.entity_id, [])
    step = plan.pop(0) if plan else "ok"
    if step in FAULTS:
        raise FAULTS[step]()
    return Result(
        summary=f"Invoice #{ctx.entity_id} synced",
        crm_id=ctx.entity_id,
        qbo_id="19",
        label=f"Invoice #{ctx.entity_id}",
        number=ctx.entity_id,
        customer="Kira Garcia",
        customer_email="kira@example.com",
        amount=Decimal("885.00"),
        currency="USD",
        qbo_type="Invoice",
    )
