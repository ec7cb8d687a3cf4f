"""``/invoices`` (Version 2021-07-28): list and get, with the filters the spec documents."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Request

from .apiutil import check_alt_type, page, query_int, require_location, require_query
from .common import jsonable
from .errors import HLError, trace_id
from .state import CrmSandbox


def _day(request: Request, name: str) -> date | None:
    raw = request.query_params.get(name)
    if not raw:
        return None
    try:
        return date.fromisoformat(raw[:10])
    except ValueError:
        raise HLError(422, [f"{name} must be a valid date in YYYY-MM-DD format"]) from None


def invoices_router(sandbox: CrmSandbox) -> APIRouter:
    router = APIRouter()

    def list_invoices(request: Request) -> dict[str, Any]:
        (alt_id,) = require_query(request, "altId")
        check_alt_type(request)
        location_id = require_location(request, alt_id)
        limit = query_int(request, "limit", minimum=1)
        offset = query_int(request, "offset")
        status = request.query_params.get("status")
        contact_id = request.query_params.get("contactId")
        payment_mode = request.query_params.get("paymentMode")
        if payment_mode is not None and payment_mode not in ("default", "live", "test"):
            raise HLError(422, ["paymentMode must be one of the following values: default, live, test"])
        start, end = _day(request, "startAt"), _day(request, "endAt")
        sort_field = request.query_params.get("sortField")
        if sort_field is not None and sort_field != "issueDate":
            raise HLError(422, ["sortField must be one of the following values: issueDate"])
        sort_order = request.query_params.get("sortOrder", "descend")
        if sort_order not in ("ascend", "descend"):
            raise HLError(422, ["sortOrder must be one of the following values: ascend, descend"])
        search = (request.query_params.get("search") or "").strip().lower()
        with sandbox.lock:
            found = []
            for invoice in sandbox.invoices.values():
                if invoice["altId"] != location_id:
                    continue
                if status and invoice["status"] != status:
                    continue
                if contact_id and invoice["contactDetails"]["id"] != contact_id:
                    continue
                if payment_mode == "live" and not invoice["liveMode"]:
                    continue
                if payment_mode == "test" and invoice["liveMode"]:
                    continue
                issued = date.fromisoformat(invoice["issueDate"])
                if (start and issued < start) or (end and issued > end):
                    continue
                if search and not _matches(invoice, search):
                    continue
                found.append(jsonable(invoice))
        key = "issueDate" if sort_field else "createdAt"
        found.sort(key=lambda inv: (inv[key], inv["createdAt"]), reverse=sort_order == "descend")
        return {"invoices": page(found, offset, limit), "total": len(found), "traceId": trace_id()}

    router.add_api_route("/invoices/", list_invoices, methods=["GET"])
    router.add_api_route("/invoices", list_invoices, methods=["GET"], include_in_schema=False)

    @router.get("/invoices/{invoice_id}")
    def get_invoice(request: Request, invoice_id: str) -> dict[str, Any]:
        (alt_id,) = require_query(request, "altId")
        check_alt_type(request)
        location_id = require_location(request, alt_id)
        with sandbox.lock:
            invoice = sandbox.invoices.get(invoice_id)
            if invoice is None or invoice["altId"] != location_id:
                raise HLError(400, "Invoice not found")
            body: dict[str, Any] = jsonable(invoice)
        body["traceId"] = trace_id()
        return body

    return router


def _matches(invoice: dict[str, Any], needle: str) -> bool:
    details = invoice["contactDetails"]
    fields = (
        invoice["_id"],
        invoice["name"],
        invoice["invoiceNumber"],
        details.get("name"),
        details.get("email"),
        details.get("phoneNo"),
    )
    return any(needle in str(value or "").lower() for value in fields)
