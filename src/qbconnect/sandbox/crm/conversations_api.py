"""``/conversations`` (Version 2021-04-15): send an SMS or Email to a contact; export sent messages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from . import validation
from .apiutil import NO_ACCESS, grant_of, json_body, query_int, require_location, require_query
from .common import iso_ms, object_id, short_id
from .errors import HLError, trace_id
from .state import CrmSandbox

SUPPORTED = {"SMS": (2, "TYPE_SMS"), "Email": (3, "TYPE_EMAIL")}


def _dnd_blocks(contact: dict[str, Any], channel: str) -> bool:
    if contact.get("dnd"):
        return True
    setting = (contact.get("dndSettings") or {}).get(channel) or {}
    return setting.get("status") in ("active", "permanent")


def conversations_router(sandbox: CrmSandbox) -> APIRouter:
    router = APIRouter(prefix="/conversations")
    conversation_ids: dict[str, str] = {}

    @router.post("/messages")
    async def send_message(request: Request) -> dict[str, Any]:
        body = await json_body(request)
        problems = validation.check_body(body, validation.SEND_MESSAGE)
        if problems:
            raise HLError(422, problems)
        channel = body["type"]
        if channel not in SUPPORTED:
            raise HLError(400, f"Message type {channel} is not available for this location")
        grant = grant_of(request)
        with sandbox.lock:
            try:
                contact = sandbox.contact(body["contactId"])
            except KeyError:
                raise HLError(400, "Contact not found") from None
            if grant.location_id != contact["locationId"]:
                raise HLError(403, NO_ACCESS)
            if _dnd_blocks(contact, channel):
                raise HLError(400, f"Cannot send message as DND is active for {channel}.")
            text = body.get("message")
            html = body.get("html")
            if channel == "SMS":
                if not contact.get("phone"):
                    raise HLError(400, "Contact does not have a phone number")
                if not text:
                    raise HLError(400, "message should not be empty for SMS")
            else:
                if not (body.get("emailTo") or contact.get("email")):
                    raise HLError(400, "Contact does not have an email address")
                if not (text or html):
                    raise HLError(400, "Either message or html is required for Email")
            conversation_id = conversation_ids.setdefault(contact["id"], short_id())
            number, message_type = SUPPORTED[channel]
            record: dict[str, Any] = {
                "id": short_id(),
                "type": number,
                "messageType": message_type,
                "locationId": contact["locationId"],
                "contactId": contact["id"],
                "conversationId": conversation_id,
                "dateAdded": iso_ms(sandbox.now()),
                "body": html if channel == "Email" and html else (text or ""),
                "direction": "outbound",
                "status": "sent",
                "contentType": "text/html" if channel == "Email" and html else "text/plain",
                "source": "api",
            }
            if channel == "Email":
                record["subject"] = body.get("subject") or ""
                record["to"] = body.get("emailTo") or contact.get("email")
                record["emailMessageId"] = object_id()
            else:
                record["to"] = contact.get("phone")
            sandbox.message_records.append(record)
        response: dict[str, Any] = {
            "conversationId": conversation_id,
            "messageId": record["id"],
            "msg": "Message queued successfully.",
            "status": "pending",
            "traceId": trace_id(),
        }
        if channel == "Email":
            response["emailMessageId"] = record["emailMessageId"]
        return response

    @router.get("/messages/export")
    def export_messages(request: Request) -> dict[str, Any]:
        (location_id,) = require_query(request, "locationId")
        require_location(request, location_id)
        limit = query_int(request, "limit", 100, minimum=10)
        if limit > 500:
            raise HLError(422, ["limit must not be greater than 500"])
        channel = request.query_params.get("channel")
        try:
            start = int(request.query_params.get("cursor") or 0)
        except ValueError:
            raise HLError(400, "Invalid cursor") from None
        records = [
            m for m in sandbox.messages(location_id) if not channel or m["messageType"] == f"TYPE_{channel.upper()}"
        ]
        chunk = records[start : start + limit]
        next_cursor = str(start + limit) if start + limit < len(records) else None
        body: dict[str, Any] = {"messages": chunk, "total": len(records), "traceId": trace_id()}
        if next_cursor:
            body["nextCursor"] = next_cursor
        return body

    return router
