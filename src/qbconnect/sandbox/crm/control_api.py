"""``/_sandbox/*``: a JSON control API so scripts, the demo and ``qbconnect sandbox crm`` can act as CRM users."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from . import contacts as rules
from .apiutil import json_body
from .common import jsonable
from .state import CrmSandbox


def _money(value: Any) -> Decimal:
    return Decimal(str(value))


def control_router(sandbox: CrmSandbox) -> APIRouter:
    router = APIRouter(prefix="/_sandbox")

    async def body_of(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    @router.get("/keys")
    def keys() -> dict[str, Any]:
        return {
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "webhook_public_key": sandbox.webhook_public_key,
            "webhook_public_key_pem": sandbox.webhook_public_key_pem,
            "legacy_rsa_public_key_pem": sandbox.legacy_rsa_public_key_pem,
        }

    @router.put("/config")
    async def config(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        if "webhook_url" in body:
            sandbox.webhook_url = body["webhook_url"]
        if "next_location_id" in body:
            sandbox.next_location_id = body["next_location_id"]
        if "auto_approve" in body:
            sandbox.auto_approve = bool(body["auto_approve"])
        if "sign_legacy_rsa" in body:
            sandbox.sign_legacy_rsa = bool(body["sign_legacy_rsa"])
        return {
            "webhook_url": sandbox.webhook_url,
            "next_location_id": sandbox.next_location_id,
            "auto_approve": sandbox.auto_approve,
            "sign_legacy_rsa": sandbox.sign_legacy_rsa,
        }

    @router.post("/locations", status_code=201)
    async def add_location(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        location_id = sandbox.add_location(
            body.get("location_id"),
            name=body.get("name", "Demo Location"),
            company_id=body.get("company_id", "agency-1"),
            country=body.get("country", "US"),
            allow_duplicate_contact=bool(body.get("allow_duplicate_contact", False)),
        )
        return {"id": location_id}

    @router.get("/locations")
    def list_locations() -> list[dict[str, Any]]:
        with sandbox.lock:
            return [
                {"id": loc.id, "name": loc.name, "company_id": loc.company_id} for loc in sandbox.locations.values()
            ]

    @router.post("/locations/{location_id}/contacts", status_code=201)
    async def create_contact(request: Request, location_id: str) -> dict[str, Any]:
        return sandbox.create_contact(location_id, **(await body_of(request)))

    @router.get("/locations/{location_id}/contacts")
    def list_contacts(location_id: str) -> list[dict[str, Any]]:
        return sandbox.contacts(location_id)

    @router.post("/contacts/{contact_id}/dnd")
    async def dnd(request: Request, contact_id: str) -> dict[str, Any]:
        body = await body_of(request)
        sandbox.set_dnd(contact_id, body.get("channel", "all"), bool(body.get("on", True)))
        with sandbox.lock:
            return rules.render(sandbox.contact(contact_id))

    @router.post("/locations/{location_id}/invoices", status_code=201)
    async def create_invoice(request: Request, location_id: str) -> Any:
        body = await body_of(request)
        return jsonable(
            sandbox.create_invoice(
                location_id,
                contact_id=body["contact_id"],
                items=body["items"],
                discount=body.get("discount"),
                currency=body.get("currency", "USD"),
                invoice_number=body.get("invoice_number"),
                issue_date=body.get("issue_date"),
                due_date=body.get("due_date"),
                live_mode=bool(body.get("live_mode", True)),
            )
        )

    @router.post("/invoices/{invoice_id}/send")
    def send_invoice(invoice_id: str) -> Any:
        return jsonable(sandbox.send_invoice(invoice_id))

    @router.patch("/invoices/{invoice_id}")
    async def update_invoice(request: Request, invoice_id: str) -> Any:
        return jsonable(sandbox.update_invoice(invoice_id, **(await body_of(request))))

    @router.post("/invoices/{invoice_id}/payments")
    async def pay_invoice(request: Request, invoice_id: str) -> Any:
        body = await body_of(request)
        return jsonable(
            sandbox.record_invoice_payment(invoice_id, _money(body["amount"]), mode=body.get("mode", "card"))
        )

    @router.post("/invoices/{invoice_id}/void")
    def void_invoice(invoice_id: str) -> Any:
        return jsonable(sandbox.void_invoice(invoice_id))

    @router.delete("/invoices/{invoice_id}")
    def delete_invoice(invoice_id: str) -> dict[str, Any]:
        sandbox.delete_invoice(invoice_id)
        return {"deleted": True}

    @router.post("/locations/{location_id}/orders", status_code=201)
    async def create_order(request: Request, location_id: str) -> Any:
        body = await body_of(request)
        return jsonable(
            sandbox.create_order(
                location_id,
                contact_id=body["contact_id"],
                source_type=body["source_type"],
                source_sub_type=body.get("source_sub_type"),
                items=body["items"],
                discount=_money(body.get("discount", 0)),
                tax=_money(body.get("tax", 0)),
                shipping=_money(body.get("shipping", 0)),
                currency=body.get("currency", "USD"),
                live_mode=bool(body.get("live_mode", True)),
                card_brand=body.get("card_brand", "visa"),
                subscription=bool(body.get("subscription", False)),
            )
        )

    @router.post("/subscriptions/{subscription_id}/renew")
    def renew(subscription_id: str) -> Any:
        return jsonable(sandbox.renew_subscription(subscription_id))

    @router.post("/transactions/{transaction_id}/refund")
    async def refund(request: Request, transaction_id: str) -> Any:
        body = await body_of(request)
        return jsonable(sandbox.refund_transaction(transaction_id, _money(body["amount"])))

    @router.get("/locations/{location_id}/messages")
    def messages(location_id: str) -> list[dict[str, Any]]:
        return sandbox.messages(location_id)

    @router.get("/webhooks")
    def webhooks() -> dict[str, Any]:
        return {"pending": sandbox.pending_webhooks(), "events": sandbox.pending_webhook_events()}

    @router.post("/webhooks/flush")
    def flush(drop: bool = False, times: int = 1) -> dict[str, Any]:
        return {"handled": sandbox.flush_webhooks(drop=drop, times=times)}

    @router.get("/requests")
    def requests(location: str | None = None) -> list[dict[str, Any]]:
        with sandbox.lock:
            records = [r for r in sandbox.request_log if location is None or r.location == location]
            return [
                {"method": r.method, "path": r.path, "location": r.location, "status": r.status, "at": r.at.isoformat()}
                for r in records
            ]

    @router.post("/clock/advance")
    async def advance(request: Request) -> dict[str, Any]:
        body = await body_of(request)
        sandbox.advance_clock(float(body.get("seconds", 0)))
        return {"now": sandbox.now().isoformat()}

    return router


def control_errors(exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, KeyError) else 400
    message = exc.args[0] if exc.args else str(exc)
    return JSONResponse({"error": str(message)}, status_code=status)
