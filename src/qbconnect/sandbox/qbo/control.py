"""A small JSON control API under ``/_sandbox/`` so another process can drive the emulator."""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from .faults import QboFault
from .state import QboSandbox


class CompanyIn(BaseModel):
    realm_id: str | None = None
    name: str = "Sandbox Company US"
    country: str = "US"
    home_currency: str = "USD"
    custom_txn_numbers: bool = False
    multicurrency: bool = False
    customers: int = 0


class FaultIn(BaseModel):
    kind: str
    count: int = 1
    realm_id: str | None = None
    method: str | None = None
    entity: str | None = None
    latency: float = 0.0


class MergeIn(BaseModel):
    from_id: str
    into_id: str


class SettingsIn(BaseModel):
    webhook_url: str | None = None
    webhook_format: str | None = None
    auto_approve: bool | None = None
    throttle_per_minute: int | None = None
    concurrent_per_realm: int | None = None
    batch_per_minute: int | None = None
    throttle_per_second: int | None = None
    latency: float = Field(default=0.0, ge=0)
    latency_jitter: float = Field(default=0.0, ge=0)
    retry_after: int | None = None
    next_realm_id: str | None = None


def build_control_router(sandbox: QboSandbox) -> APIRouter:
    router = APIRouter(prefix="/_sandbox")

    @router.get("/companies")
    def companies() -> list[dict[str, Any]]:
        return [
            {"realm_id": c.realm_id, "name": c.name, "country": c.country, "home_currency": c.home_currency}
            for c in sandbox.companies.values()
        ]

    @router.post("/companies", status_code=201)
    def add_company(body: CompanyIn) -> dict[str, Any]:
        try:
            realm_id = sandbox.add_company(
                body.realm_id,
                name=body.name,
                country=body.country,
                home_currency=body.home_currency,
                custom_txn_numbers=body.custom_txn_numbers,
                multicurrency=body.multicurrency,
            )
        except ValueError as error:
            raise HTTPException(409, str(error)) from None
        if body.customers:
            sandbox.seed_customers(realm_id, body.customers)
        return {"realm_id": realm_id}

    @router.get("/companies/{realm_id}/{entity}")
    def list_entities(realm_id: str, entity: str) -> list[dict[str, Any]]:
        try:
            return sandbox.entities(realm_id, entity)
        except KeyError as error:
            raise HTTPException(404, str(error)) from None

    @router.post("/companies/{realm_id}/{entity}")
    def ui_create(realm_id: str, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        return _ui(lambda: sandbox.ui_create(realm_id, entity, body))

    @router.patch("/companies/{realm_id}/{entity}")
    def ui_update(realm_id: str, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        return _ui(lambda: sandbox.ui_update(realm_id, entity, body))

    @router.post("/companies/{realm_id}/customers/merge")
    def merge(realm_id: str, body: MergeIn) -> dict[str, Any]:
        def action() -> dict[str, Any]:
            sandbox.ui_merge_customers(realm_id, body.from_id, body.into_id)
            return {}

        return _ui(action)

    @router.post("/faults", status_code=201)
    def add_fault(body: FaultIn) -> dict[str, Any]:
        try:
            sandbox.inject_fault(
                body.kind,
                count=body.count,
                realm_id=body.realm_id,
                method=body.method,
                entity=body.entity,
                latency=body.latency,
            )
        except ValueError as error:
            raise HTTPException(400, str(error)) from None
        return {"ok": True}

    @router.delete("/faults")
    def clear_faults() -> dict[str, Any]:
        sandbox.clear_faults()
        return {"ok": True}

    @router.post("/tokens/expire")
    def expire() -> dict[str, Any]:
        sandbox.expire_access_tokens()
        return {"ok": True}

    @router.post("/tokens/revoke-all")
    def revoke_all() -> dict[str, Any]:
        sandbox.revoke_all()
        return {"ok": True}

    @router.get("/webhooks")
    def webhooks() -> dict[str, Any]:
        return {"pending": sandbox.pending_webhooks(), "url": sandbox.webhook_url, "format": sandbox.webhook_format}

    @router.post("/webhooks/flush")
    def flush(drop: bool = False) -> dict[str, Any]:
        return {"sent": sandbox.flush_webhooks(drop=drop)}

    @router.patch("/settings")
    def settings(body: SettingsIn) -> dict[str, Any]:
        with sandbox.lock:
            for key, value in body.model_dump(exclude_unset=True).items():
                if key == "webhook_format" and value not in ("cloudevents", "legacy"):
                    raise HTTPException(400, "webhook_format must be cloudevents or legacy")
                setattr(sandbox, key, value)
        return {"ok": True}

    @router.get("/requests")
    def requests(limit: int = 1000) -> list[dict[str, Any]]:
        with sandbox.lock:
            records = sandbox.request_log[-limit:]
            return [{**dataclasses.asdict(r), "kind": r.kind, "at": r.at.isoformat()} for r in records]

    @router.delete("/requests")
    def clear_requests() -> dict[str, Any]:
        with sandbox.lock:
            sandbox.request_log.clear()
        return {"ok": True}

    return router


def _ui(action: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = action()
    except QboFault as fault:
        raise HTTPException(fault.status, fault.body()) from None
    except KeyError as error:
        raise HTTPException(404, str(error)) from None
    return result
