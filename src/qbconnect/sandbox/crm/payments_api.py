"""``/payments`` (Version 2021-07-28): orders, transactions, subscriptions (list and get)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request

from . import billing
from .apiutil import check_alt_type, page, query_int, require_location, require_query
from .common import jsonable, parse_time
from .errors import HLError, trace_id
from .state import CrmSandbox

PAYMENT_STATUSES = ("paid", "unpaid", "refunded", "partially_paid")


def _window(request: Request) -> tuple[datetime | None, datetime | None]:
    """``startAt``/``endAt``: a day (``2024-02-01``, the whole day included) or an ISO timestamp."""
    bounds: list[datetime | None] = []
    for name in ("startAt", "endAt"):
        raw = request.query_params.get(name)
        if not raw:
            bounds.append(None)
            continue
        try:
            moment = parse_time(raw)
        except ValueError:
            raise HLError(422, [f"{name} must be a valid date"]) from None
        if name == "endAt" and len(raw.strip()) == 10:
            moment += timedelta(days=1) - timedelta(microseconds=1)
        bounds.append(moment)
    return bounds[0], bounds[1]


def _select(
    request: Request,
    records: Iterable[dict[str, Any]],
    location_id: str,
    filters: dict[str, str],
    view: Callable[[dict[str, Any]], dict[str, Any]],
) -> dict[str, Any]:
    start, end = _window(request)
    limit = query_int(request, "limit", 10, minimum=1)
    offset = query_int(request, "offset", 0)
    mode = request.query_params.get("paymentMode")
    wanted = {field: request.query_params[param] for param, field in filters.items() if request.query_params.get(param)}
    found = []
    for record in records:
        if record["altId"] != location_id:
            continue
        if any(str(record.get(field)) != value for field, value in wanted.items()):
            continue
        if mode in ("live", "test") and record["liveMode"] != (mode == "live"):
            continue
        created = parse_time(record["createdAt"])
        if (start and created < start) or (end and created > end):
            continue
        found.append(jsonable(view(record)))
    found.sort(key=lambda r: r["createdAt"], reverse=True)
    return {"data": page(found, offset, limit), "totalCount": len(found), "traceId": trace_id()}


def payments_router(sandbox: CrmSandbox) -> APIRouter:
    router = APIRouter(prefix="/payments")

    @router.get("/orders")
    def list_orders(request: Request) -> dict[str, Any]:
        (alt_id,) = require_query(request, "altId")
        location_id = require_location(request, alt_id)
        status = request.query_params.get("paymentStatus")
        if status is not None and status not in PAYMENT_STATUSES:
            raise HLError(422, [f"paymentStatus must be one of the following values: {', '.join(PAYMENT_STATUSES)}"])
        filters = {
            "status": "status",
            "paymentStatus": "paymentStatus",
            "contactId": "contactId",
            "sourceId": "sourceId",
        }
        with sandbox.lock:
            return _select(request, sandbox.orders.values(), location_id, filters, billing.order_list_view)

    @router.get("/orders/{order_id}")
    def get_order(request: Request, order_id: str) -> dict[str, Any]:
        (alt_id,) = require_query(request, "altId")
        location_id = require_location(request, alt_id)
        with sandbox.lock:
            order = sandbox.orders.get(order_id)
            if order is None or order["altId"] != location_id:
                raise HLError(400, "Order not found")
            body: dict[str, Any] = jsonable(order)
        body["traceId"] = trace_id()
        return body

    @router.get("/transactions")
    def list_transactions(request: Request) -> dict[str, Any]:
        (alt_id,) = require_query(request, "altId", "altType")[:1]
        check_alt_type(request)
        location_id = require_location(request, alt_id)
        filters = {
            "entitySourceType": "entitySourceType",
            "entitySourceSubType": "entitySourceSubType",
            "subscriptionId": "subscriptionId",
            "entityId": "entityId",
            "contactId": "contactId",
        }
        with sandbox.lock:
            return _select(request, sandbox.transactions.values(), location_id, filters, billing.transaction_list_view)

    @router.get("/transactions/{transaction_id}")
    def get_transaction(request: Request, transaction_id: str) -> dict[str, Any]:
        (alt_id,) = require_query(request, "altId", "altType")[:1]
        check_alt_type(request)
        location_id = require_location(request, alt_id)
        with sandbox.lock:
            txn = sandbox.transactions.get(transaction_id)
            if txn is None or txn["altId"] != location_id:
                raise HLError(400, "Transaction not found")
            body: dict[str, Any] = jsonable(billing.transaction_view(txn))
        body["traceId"] = trace_id()
        return body

    @router.get("/subscriptions")
    def list_subscriptions(request: Request) -> dict[str, Any]:
        (alt_id,) = require_query(request, "altId", "altType")[:1]
        check_alt_type(request)
        location_id = require_location(request, alt_id)
        filters = {
            "entityId": "entityId",
            "entitySourceType": "entitySourceType",
            "contactId": "contactId",
            "id": "_id",
        }
        with sandbox.lock:
            return _select(
                request, sandbox.subscriptions.values(), location_id, filters, billing.subscription_list_view
            )

    @router.get("/subscriptions/{subscription_id}")
    def get_subscription(request: Request, subscription_id: str) -> dict[str, Any]:
        (alt_id,) = require_query(request, "altId", "altType")[:1]
        check_alt_type(request)
        location_id = require_location(request, alt_id)
        with sandbox.lock:
            sub = sandbox.subscriptions.get(subscription_id)
            if sub is None or sub["altId"] != location_id:
                raise HLError(400, "Subscription not found")
            body: dict[str, Any] = jsonable(billing.subscription_view(sub))
        body["traceId"] = trace_id()
        return body

    return router
