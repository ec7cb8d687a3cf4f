"""The one place that builds platform clients for a location (tokens, rate budget, shared HTTP pool)."""

from __future__ import annotations

from qbconnect.connections.tokens import DbCrmTokenSource, DbQboTokenSource
from qbconnect.crm.client import CrmClient
from qbconnect.qbo.client import QboClient
from qbconnect.runtime import Runtime


def qbo_client(runtime: Runtime, location_id: str, realm_id: str) -> QboClient:
    return QboClient(
        realm_id=realm_id,
        api_base=runtime.settings.qbo_api_base_url,
        tokens=DbQboTokenSource(runtime, location_id),
        http=runtime.http,
        limiter=runtime.limiter,
    )


def crm_client(runtime: Runtime, location_id: str) -> CrmClient:
    return CrmClient(
        location_id=location_id,
        api_base=runtime.settings.crm_api_base,
        tokens=DbCrmTokenSource(runtime, location_id),
        http=runtime.http,
        limiter=runtime.limiter,
    )
