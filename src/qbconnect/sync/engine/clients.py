"""The platform clients of one job, built through the one factory (connections/clients.py) with the engine's
transaction boundary: before every platform call the job's open database transaction is committed.

Why: the clients read their tokens in a session of their own, and on SQLite every transaction holds the
write lock (``BEGIN IMMEDIATE``); a job that kept its transaction open across a call would make that read —
and every webhook arriving meanwhile — wait for it. So no transaction is ever open while a platform answers,
and everything a handler recorded before a call (a requestid before the create that uses it, the link after
the previous write) is durable before the platform sees the next request.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from qbconnect.connections import clients
from qbconnect.crm.client import CrmClient
from qbconnect.qbo.client import QboClient

if TYPE_CHECKING:
    from qbconnect.sync.engine.context import JobContext


def _pause(seconds: float) -> None:
    time.sleep(seconds)


# How the platform clients wait between their own retries (tests and benchmarks replace it).
qbo_sleep: Callable[[float], None] = _pause


def _before(ctx: JobContext, platform: str) -> Callable[[], None]:
    def before_call() -> None:
        ctx.count_call(platform)
        ctx.end_transaction()

    return before_call


def job_qbo_client(ctx: JobContext, realm_id: str) -> QboClient:
    return clients.qbo_client(
        ctx.runtime,
        ctx.location_id,
        realm_id,
        before_call=_before(ctx, "QuickBooks"),
        sleep=lambda seconds: qbo_sleep(seconds),
    )


def job_crm_client(ctx: JobContext) -> CrmClient:
    return clients.crm_client(
        ctx.runtime,
        ctx.location_id,
        before_call=_before(ctx, "CRM"),
        sleep=lambda seconds: qbo_sleep(seconds),
    )
