"""Accounting API v3 routes under ``/v3/company/{realmId}/``."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Request, Response

from . import faults, query
from .clock import parse_time, qbo_time
from .company import Company
from .entities import ALL, BY_PATH, CDC_UNSUPPORTED, SINGLETONS
from .faults import QboFault
from .schema import to_xml
from .state import QboSandbox

MAX_BATCH = 30
MAX_REQUEST_ID = 50
CDC_WINDOW = timedelta(days=30)
CDC_MAX = 1000


def wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "").lower()


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(type(value).__name__)


def render(
    request: Request, payload: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    payload = {**payload, "time": payload.get("time") or qbo_time(_now(request), millis=True)}
    if wants_json(request):
        body = json.dumps(payload, default=_json_default)
        return Response(body, status_code=status, media_type="application/json", headers=headers)
    return Response(to_xml(payload), status_code=status, media_type="application/xml", headers=headers)


def _now(request: Request) -> Any:
    sandbox: QboSandbox = request.app.state.qbo_sandbox
    return sandbox.now()


def fault_response(request: Request, fault: QboFault) -> Response:
    return render(request, fault.body(), fault.status, headers=fault.extra_headers or None)


def throttle_response(sandbox: QboSandbox | None = None) -> Response:
    headers = None
    if sandbox is not None and sandbox.retry_after is not None:
        headers = {"Retry-After": str(sandbox.retry_after)}
    return Response(faults.throttle_xml(), status_code=429, media_type="application/xml", headers=headers)


def _note(request: Request, realm_id: str, entity: str | None, operation: str) -> None:
    request.state.qbo = {
        "realm_id": realm_id,
        "entity": entity,
        "operation": operation,
        "request_id": request.query_params.get("requestid"),
    }


def _call(
    sandbox: QboSandbox,
    request: Request,
    realm_id: str,
    entity: str | None,
    operation: str,
    handler: Callable[[Company], dict[str, Any]],
    *,
    write: bool,
) -> Response:
    """The pipeline every API request goes through: auth, throttle, faults, replay, handler."""
    _note(request, realm_id, entity, operation)
    if realm_id not in sandbox.companies:
        return fault_response(request, faults.authorization_failed(f"Unknown company {realm_id}"))
    try:
        sandbox.authenticate(realm_id, request.headers.get("authorization"))
    except QboFault as fault:
        return fault_response(request, fault)
    if sandbox.admit(realm_id, batch=operation == "batch") is not None:
        return throttle_response(sandbox)
    try:
        serve = sandbox.serve_time()
        if serve > 0:
            time.sleep(serve)
        return _admitted(sandbox, request, realm_id, entity, operation, handler, write=write)
    finally:
        sandbox.leave(realm_id)


def _admitted(
    sandbox: QboSandbox,
    request: Request,
    realm_id: str,
    entity: str | None,
    operation: str,
    handler: Callable[[Company], dict[str, Any]],
    *,
    write: bool,
) -> Response:
    minor = request.query_params.get("minorversion")
    if minor is not None and not minor.isdigit():
        return fault_response(request, faults.QboFault(400, "2010", "Invalid minorversion", f"minorversion={minor}"))
    rule = sandbox.take_fault(realm_id, request.method, entity)
    lost = False
    if rule is not None:
        if rule.kind in ("latency", "timeout") and rule.latency > 0:
            time.sleep(rule.latency)
        if rule.kind == "429":
            return throttle_response(sandbox)
        if rule.kind in ("500", "503"):
            return fault_response(request, faults.system_fault(int(rule.kind)))
        if rule.kind == "timeout":
            return fault_response(request, faults.system_fault(504, "Gateway timeout"))
        if rule.kind == "401":
            return fault_response(request, faults.authentication_failed("Token expired"))
        lost = rule.kind == "lost_response"
    request_id = request.query_params.get("requestid") if write else None
    company = sandbox.company(realm_id)
    with sandbox.lock:
        if request_id is not None:
            if len(request_id) > MAX_REQUEST_ID:
                return fault_response(request, faults.string_length("requestid", MAX_REQUEST_ID, len(request_id)))
            replay = company.replays.get(request_id)
            if replay is not None:
                request.state.qbo["operation"] = operation + ":replay"
                status, payload = replay
                return _lost() if lost else render(request, copy.deepcopy(payload), status)
        try:
            payload = handler(company)
        except QboFault as fault:
            company.changes.clear()
            return fault_response(request, fault)
        payload["time"] = qbo_time(sandbox.now(), millis=True)
        if request_id is not None:
            company.replays[request_id] = (200, copy.deepcopy(payload))
        sandbox.collect_changes(company)
    if lost:
        return _lost()
    return render(request, payload)


def _lost() -> Response:
    # the connection drops after the write: the client sees a bare 500 and never the answer
    return Response("upstream connection reset", status_code=500, media_type="text/plain")


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        raise faults.unsupported_property("failed to parse json object; the request body is not valid JSON") from None


def _entity_or_fault(name: str) -> str:
    entity = BY_PATH.get(name.lower())
    if entity is None:
        raise faults.unsupported_operation(f"{name}")
    return entity


def _write(
    company: Company, entity: str, operation: str | None, include: str | None, body: Any
) -> tuple[str, dict[str, Any]]:
    if not isinstance(body, dict):
        raise faults.unsupported_property("failed to parse json object; the request body must be an object")
    body = _plain(body)
    if operation == "delete":
        return "delete", company.delete(entity, body)
    if operation == "void":
        if entity != "Invoice":
            raise faults.unsupported_operation(f"void for {entity} (use operation=update&include=void)")
        return "void", company.void(entity, body)
    if operation not in (None, "create", "update"):
        raise faults.unsupported_operation(str(operation))
    if include == "void":
        if operation != "update" or entity not in ("Payment", "SalesReceipt"):
            raise faults.unsupported_operation(f"include=void for {entity}")
        return "void", company.void(entity, body)
    if include is not None:
        raise faults.unsupported_operation(f"include={include}")
    if operation == "update" or body.get("Id") or entity in SINGLETONS:
        return "update", company.update(entity, body)
    return "create", company.create(entity, body)


def _plain(value: Any) -> Any:
    """JSON parsed with Decimal -> plain numbers (int when integral, float otherwise) for storage."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and "." not in str(value) else float(value)
    return value


def run_query(company: Company, text: str) -> dict[str, Any]:
    parsed = query.parse(text)
    page, total = query.run(parsed, list(company.iter(parsed.entity)))
    if parsed.count:
        return {"QueryResponse": {"totalCount": total}}
    if not page:
        return {"QueryResponse": {}}
    return {
        "QueryResponse": {
            parsed.entity: copy.deepcopy(page),
            "startPosition": parsed.start,
            "maxResults": len(page),
        }
    }


def run_cdc(sandbox: QboSandbox, company: Company, entities: str | None, changed_since: str | None) -> dict[str, Any]:
    if not entities:
        raise faults.required_missing("entities")
    if not changed_since:
        raise faults.required_missing("changedSince")
    try:
        since = parse_time(changed_since.replace(" ", "+"))
    except ValueError:
        raise faults.QboFault(400, "4001", "Invalid query", f"changedSince is not a date: {changed_since}") from None
    if sandbox.now() - since > CDC_WINDOW:
        raise faults.QboFault(
            400, "4001", "Invalid query", "changedSince must be within the last 30 days (CDC look-back limit)"
        )
    since = since.replace(microsecond=0)
    responses = []
    for name in entities.split(","):
        entity = BY_PATH.get(name.strip().lower())
        if entity is None or entity in CDC_UNSUPPORTED:
            raise faults.QboFault(400, "4001", "Invalid query", f"CDC is not supported for entity {name.strip()}")
        found = [
            copy.deepcopy(o) for o in company.iter(entity) if parse_time(o["MetaData"]["LastUpdatedTime"]) >= since
        ]
        found += [
            copy.deepcopy(t)
            for t in company.tombstones.get(entity, {}).values()
            if parse_time(t["MetaData"]["LastUpdatedTime"]) >= since
        ]
        found = found[:CDC_MAX]
        if found:
            responses.append({entity: found, "startPosition": 1, "maxResults": len(found)})
        else:
            responses.append({})
    return {"CDCResponse": [{"QueryResponse": responses}]}


def run_batch(company: Company, body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("BatchItemRequest"), list):
        raise faults.required_missing("BatchItemRequest")
    items = body["BatchItemRequest"]
    if len(items) > MAX_BATCH:
        raise faults.business_validation(f"A batch request can contain at most {MAX_BATCH} items.")
    results = []
    for item in items:
        bid = str(item.get("bId", "")) if isinstance(item, dict) else ""
        result: dict[str, Any] = {"bId": bid}
        try:
            if not isinstance(item, dict) or not bid:
                raise faults.required_missing("bId")
            if "Query" in item:
                result.update(run_query(company, str(item["Query"])))
            else:
                names = [k for k in item if k in ALL]
                if len(names) != 1:
                    raise faults.required_missing("entity")
                entity = names[0]
                operation = item.get("operation", "create")
                options = item.get("optionsData")
                if options == "void":
                    if entity == "Invoice":
                        _op, obj = _write(company, entity, "void", None, item[entity])
                    else:
                        _op, obj = _write(company, entity, "update", "void", item[entity])
                else:
                    _op, obj = _write(company, entity, operation, None, item[entity])
                result[entity] = obj
        except QboFault as fault:
            result["Fault"] = fault.fault()
        results.append(result)
    return {"BatchItemResponse": results}


def build_router(sandbox: QboSandbox) -> APIRouter:
    router = APIRouter(prefix="/v3/company/{realm_id}")

    @router.get("/query")
    def query_get(request: Request, realm_id: str, query: str = "") -> Response:
        return _call(
            sandbox, request, realm_id, _query_entity(query), "query", lambda c: run_query(c, query), write=False
        )

    @router.post("/query")
    async def query_post(request: Request, realm_id: str) -> Response:
        text = (await request.body()).decode("utf-8", "replace")
        if not text.strip():
            text = request.query_params.get("query", "")
        return await _threaded(
            lambda: _call(
                sandbox, request, realm_id, _query_entity(text), "query", lambda c: run_query(c, text), write=False
            )
        )

    @router.get("/cdc")
    def cdc(request: Request, realm_id: str, entities: str | None = None, changedSince: str | None = None) -> Response:  # noqa: N803
        return _call(
            sandbox, request, realm_id, None, "cdc", lambda c: run_cdc(sandbox, c, entities, changedSince), write=False
        )

    @router.post("/batch")
    async def batch(request: Request, realm_id: str) -> Response:
        raw = await request.body()

        def handler(company: Company) -> dict[str, Any]:
            return run_batch(company, _body(raw))

        return await _threaded(lambda: _call(sandbox, request, realm_id, None, "batch", handler, write=True))

    @router.get("/preferences")
    def preferences(request: Request, realm_id: str) -> Response:
        return _call(
            sandbox,
            request,
            realm_id,
            "Preferences",
            "read",
            lambda c: {"Preferences": c.read("Preferences", "1")},
            write=False,
        )

    @router.get("/{entity_name}/{entity_id}")
    def read(request: Request, realm_id: str, entity_name: str, entity_id: str) -> Response:
        entity = BY_PATH.get(entity_name.lower())

        def handler(company: Company) -> dict[str, Any]:
            if entity is None:
                raise faults.unsupported_operation(f"read for {entity_name}")
            obj_id = "1" if entity == "CompanyInfo" and entity_id == realm_id else entity_id
            return {entity: company.read(entity, obj_id)}

        return _call(sandbox, request, realm_id, entity, "read", handler, write=False)

    @router.post("/{entity_name}")
    async def write(request: Request, realm_id: str, entity_name: str) -> Response:
        raw = await request.body()
        entity = BY_PATH.get(entity_name.lower())
        operation = request.query_params.get("operation")
        include = request.query_params.get("include")
        label = operation or "write"
        if include:
            label += f"+{include}"

        def handler(company: Company) -> dict[str, Any]:
            if entity is None:
                raise faults.unsupported_operation(f"write for {entity_name}")
            content_type = request.headers.get("content-type", "")
            if "json" not in content_type.lower():
                raise faults.unsupported_property(
                    "the emulator accepts JSON request bodies only (Content-Type: application/json)"
                )
            op, obj = _write(company, entity, operation, include, _body(raw))
            request.state.qbo["operation"] = op
            return {entity: obj}

        return await _threaded(lambda: _call(sandbox, request, realm_id, entity, label, handler, write=True))

    return router


async def _threaded(fn: Callable[[], Response]) -> Response:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn)


def _query_entity(text: str) -> str | None:
    words = text.split()
    for index, word in enumerate(words[:-1]):
        if word.lower() == "from":
            return BY_PATH.get(words[index + 1].lower())
    return None
