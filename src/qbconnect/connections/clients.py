"""The one place that builds platform clients for a location (tokens, rate budget, shared HTTP pool).

``before_call`` runs before every request asks for its access token, i.e. before every platform call:
the job engine passes the hook that ends the job's database transaction (sync/engine/clients.py).

QuickBooks clients also share the company's request slots and pauses (``RateLimiter.gate``), count every
metered read in the read budget (one upsert in a transaction of its own, after ``before_call`` has ended
the job's) and refuse reads marked non-essential once the monthly budget is spent (read_budget.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from qbconnect.connections import read_budget
from qbconnect.connections.tokens import DbCrmTokenSource, DbQboTokenSource
from qbconnect.crm.client import CrmClient
from qbconnect.qbo.client import METERED_READS, QboClient
from qbconnect.qbo.tokens import StaticTokenSource
from qbconnect.ratelimit import Gate
from qbconnect.runtime import Runtime


class _Tokens(Protocol):
    def access_token(self) -> str: ...

    def force_refresh(self, rejected_token: str) -> str: ...


class _HookedTokens:
    """A token source that runs ``before_call`` first (every request asks for its token before it is sent)."""

    def __init__(self, inner: _Tokens, before_call: Callable[[], None]) -> None:
        self._inner = inner
        self._before_call = before_call

    def access_token(self) -> str:
        self._before_call()
        return self._inner.access_token()

    def force_refresh(self, rejected_token: str) -> str:
        self._before_call()
        return self._inner.force_refresh(rejected_token)


def _tokens(inner: _Tokens, before_call: Callable[[], None] | None) -> _Tokens:
    return inner if before_call is None else _HookedTokens(inner, before_call)


def qbo_client(
    runtime: Runtime,
    location_id: str,
    realm_id: str,
    *,
    before_call: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> QboClient:
    return _qbo(runtime, realm_id, _tokens(DbQboTokenSource(runtime, location_id), before_call), sleep)


def connecting_qbo_client(runtime: Runtime, realm_id: str, access_token: str) -> QboClient:
    """The client of the OAuth callback, on the token just received (nothing is stored yet)."""
    return _qbo(runtime, realm_id, StaticTokenSource(access_token), time.sleep)


def _qbo(runtime: Runtime, realm_id: str, tokens: _Tokens, sleep: Callable[[float], None]) -> QboClient:
    def on_request(kind: str) -> None:
        if kind in METERED_READS:
            read_budget.count_read(runtime, realm_id, kind)

    # A stand-in limiter without a gate (tests, benchmarks that lift the limits) means no slots either.
    gate: Gate | None = getattr(runtime.limiter, "gate", None)
    return QboClient(
        realm_id=realm_id,
        api_base=runtime.settings.qbo_api_base_url,
        tokens=tokens,
        http=runtime.http,
        limiter=runtime.limiter,
        sleep=sleep,
        gate=gate,
        on_request=on_request,
        read_guard=read_budget.refuse_when_exhausted(runtime),
    )


def crm_client(
    runtime: Runtime,
    location_id: str,
    *,
    before_call: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> CrmClient:
    return CrmClient(
        location_id=location_id,
        api_base=runtime.settings.crm_api_base,
        tokens=_tokens(DbCrmTokenSource(runtime, location_id), before_call),
        http=runtime.http,
        limiter=runtime.limiter,
        sleep=sleep,
    )
