"""The platform clients of one sync job (invoices, receipts), built so that no database transaction
stays open while a platform answers.

The clients read their tokens in a session of their own, and on SQLite every transaction holds the
write lock (``BEGIN IMMEDIATE``): a job that kept its transaction open across a call would make that read
— and every webhook arriving meanwhile — wait for it. So the token sources given to these clients commit
the job's session (``ctx.checkpoint()``) before each request asks for its token, i.e. before each call.
Nothing half-done is ever pending at that point: the handler saves its link after each write.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from qbconnect.connections.tokens import DbCrmTokenSource, DbQboTokenSource
from qbconnect.crm.client import CrmClient
from qbconnect.qbo.client import QboClient
from qbconnect.sync.engine.context import JobContext


class _Tokens(Protocol):
    def access_token(self) -> str: ...

    def force_refresh(self, rejected_token: str) -> str: ...


def _pause(seconds: float) -> None:
    time.sleep(seconds)


# How the QuickBooks client waits between its own retries (tests and benchmarks replace it).
qbo_sleep: Callable[[float], None] = _pause


class CheckpointingTokens:
    """A token source that first ends the job's open transaction (see the module doc)."""

    def __init__(self, ctx: JobContext, inner: _Tokens) -> None:
        self._ctx = ctx
        self._inner = inner

    def access_token(self) -> str:
        self._ctx.checkpoint()
        return self._inner.access_token()

    def force_refresh(self, rejected_token: str) -> str:
        self._ctx.checkpoint()
        return self._inner.force_refresh(rejected_token)


def job_qbo_client(ctx: JobContext, realm_id: str) -> QboClient:
    runtime = ctx.runtime
    return QboClient(
        realm_id=realm_id,
        api_base=runtime.settings.qbo_api_base_url,
        tokens=CheckpointingTokens(ctx, DbQboTokenSource(runtime, ctx.location_id)),
        http=runtime.http,
        limiter=runtime.limiter,
        sleep=lambda seconds: qbo_sleep(seconds),
    )


def job_crm_client(ctx: JobContext) -> CrmClient:
    runtime = ctx.runtime
    return CrmClient(
        location_id=ctx.location_id,
        api_base=runtime.settings.crm_api_base,
        tokens=CheckpointingTokens(ctx, DbCrmTokenSource(runtime, ctx.location_id)),
        http=runtime.http,
        limiter=runtime.limiter,
        sleep=lambda seconds: qbo_sleep(seconds),
    )
