"""``/contacts`` (Version 2021-07-28): get, create, update, upsert, duplicate search, search, tags."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from . import contacts as rules
from . import validation
from .apiutil import NO_ACCESS, grant_of, json_body, require_location, require_query
from .errors import HLError, trace_id
from .state import CrmSandbox

SEARCH_OPERATORS = ("eq", "not_eq", "contains", "exists", "not_exists")
MAX_PAGE_LIMIT = 500
MAX_PAGED_RESULTS = 10_000  # page/pageLimit pagination reaches this many; searchAfter goes further


def _sort_descending(sort: Any, problems: list[str]) -> bool:
    """``sort: [{field: "dateAdded", direction: "asc"|"desc"}]``; newest first when absent."""
    if sort is None:
        return True
    if not isinstance(sort, list) or not all(isinstance(s, dict) for s in sort):
        problems.append("sort must be an array of objects")
        return True
    for item in sort[:1]:
        if item.get("field") != "dateAdded":
            problems.append("sort.field: only dateAdded is supported by this emulator")
        if item.get("direction", "desc") not in ("asc", "desc"):
            problems.append("sort.direction must be one of the following values: asc, desc")
        return bool(item.get("direction", "desc") == "desc")
    return True


def _validate(body: Any, fields: dict[str, validation.Field]) -> dict[str, Any]:
    problems = validation.check_body(body, fields)
    if not problems:
        problems = validation.check_dnd_settings(body.get("dndSettings"))
    if problems:
        raise HLError(422, problems)
    result: dict[str, Any] = body
    return result


def _duplicate_error(contact: dict[str, Any], matched: str) -> HLError:
    return HLError(
        400,
        "This location does not allow duplicated contacts.",
        meta={"contactName": contact.get("name") or "", "contactId": contact["id"], "matchingField": matched},
    )


def contacts_router(sandbox: CrmSandbox) -> APIRouter:
    router = APIRouter()

    def owned_contact(request: Request, contact_id: str) -> dict[str, Any]:
        try:
            contact = sandbox.contact(contact_id)
        except KeyError:
            raise HLError(400, "Contact not found") from None
        grant = grant_of(request)
        if grant.location_id != contact["locationId"] and contact["locationId"] not in grant.approved_locations:
            raise HLError(403, NO_ACCESS)
        return contact

    @router.get("/contacts/search/duplicate")
    def duplicate(request: Request) -> dict[str, Any]:
        (location_id,) = require_query(request, "locationId")
        require_location(request, location_id)
        email = request.query_params.get("email")
        number = request.query_params.get("number")
        if not email and not number:
            raise HLError(400, "Either email or number is required")
        with sandbox.lock:
            found, _ = sandbox.find_duplicate(location_id, email, number)
            return {"contact": rules.render(found) if found else None, "traceId": trace_id()}

    @router.post("/contacts/search")
    async def search(request: Request) -> dict[str, Any]:
        """Search Contacts: ``page``/``pageLimit`` (up to 10,000 contacts in all) or the ``searchAfter`` cursor
        each returned contact carries (beyond 10,000); ``sort`` by ``dateAdded`` (default newest first)."""
        body = await json_body(request)
        if not isinstance(body, dict):
            raise HLError(422, ["body must be an object"])
        location_id = body.get("locationId")
        if not isinstance(location_id, str):
            raise HLError(422, ["locationId should not be empty", "locationId must be a string"])
        require_location(request, location_id)
        search_after = body.get("searchAfter")
        page_number = body.get("page", 1)
        page_limit = body.get("pageLimit", 20)
        problems = []
        if search_after is not None:
            if "page" in body:
                problems.append("page must not be sent with searchAfter")
            if not isinstance(search_after, list) or len(search_after) != 2:
                problems.append("searchAfter must be the array a previous search returned")
        if not isinstance(page_number, int) or page_number < 1:
            problems.append("page must not be less than 1")
        if not isinstance(page_limit, int) or not 1 <= page_limit <= MAX_PAGE_LIMIT:
            problems.append(f"pageLimit must be between 1 and {MAX_PAGE_LIMIT}")
        elif isinstance(page_number, int) and search_after is None and page_number * page_limit > MAX_PAGED_RESULTS:
            problems.append(f"page and pageLimit reach only {MAX_PAGED_RESULTS} contacts; use searchAfter")
        filters = body.get("filters") or []
        if not isinstance(filters, list) or not all(isinstance(f, dict) for f in filters):
            problems.append("filters must be an array of objects")
            filters = []
        for item in filters:
            if item.get("operator", "eq") not in SEARCH_OPERATORS:
                problems.append(f"filters.operator must be one of the following values: {', '.join(SEARCH_OPERATORS)}")
        query = body.get("query")
        if query is not None and not isinstance(query, str):
            problems.append("query must be a string")
        descending = _sort_descending(body.get("sort"), problems)
        if problems:
            raise HLError(422, problems)
        with sandbox.lock:
            found = [
                (rules.sort_key(c), c)
                for c in sandbox.contact_records.values()
                if c["locationId"] == location_id and rules.matches_search(c, query, filters)
            ]
            found.sort(key=lambda pair: pair[0], reverse=descending)
            total = len(found)
            if search_after is not None:
                after = (int(search_after[0]), str(search_after[1]))
                found = [p for p in found if (p[0] < after if descending else p[0] > after)]
                chosen = found[:page_limit]
            else:
                start = (page_number - 1) * page_limit
                chosen = found[start : start + page_limit]
            page = [{**rules.render(c), "searchAfter": [key[0], key[1]]} for key, c in chosen]
        return {"contacts": page, "total": total, "traceId": trace_id()}

    @router.post("/contacts/upsert")
    async def upsert(request: Request) -> dict[str, Any]:
        body = _validate(await json_body(request), validation.UPSERT_CONTACT)
        location_id = require_location(request, body["locationId"])
        fields = {k: v for k, v in body.items() if k not in ("locationId", "createNewIfDuplicateAllowed")}
        with sandbox.lock:
            location = sandbox.location(location_id)
            existing = None
            matched = None
            if not (body.get("createNewIfDuplicateAllowed") and location.allow_duplicate_contact):
                existing, matched = sandbox.find_duplicate(location_id, body.get("email"), body.get("phone"))
            if existing is None:
                contact = sandbox.new_contact(location_id, fields)
                sandbox.emit("ContactCreate", rules.webhook_payload("ContactCreate", contact))
                return {"new": True, "contact": rules.render(contact), "traceId": trace_id()}
            ignore: list[str] = []
            # Both keys match different contacts: update the first in priority order, ignore the second field.
            for key in location.duplicate_priority:
                if key == matched:
                    continue
                other = (
                    sandbox.find_by_email(location_id, body.get("email"))
                    if key == "email"
                    else sandbox.find_by_phone(location_id, body.get("phone"))
                )
                if other is not None and other is not existing:
                    ignore.append(key)
            tags_before = list(existing.get("tags") or [])
            sandbox.apply_contact_fields(existing, fields, ignore=ignore)
            sandbox.touch_contact(existing)
            sandbox.emit("ContactUpdate", rules.webhook_payload("ContactUpdate", existing))
            if existing.get("tags") != tags_before:
                sandbox.emit("ContactTagUpdate", rules.webhook_payload("ContactTagUpdate", existing))
            return {"new": False, "contact": rules.render(existing), "traceId": trace_id()}

    async def create(request: Request) -> JSONResponse:
        body = _validate(await json_body(request), validation.CREATE_CONTACT)
        location_id = require_location(request, body["locationId"])
        fields = {k: v for k, v in body.items() if k != "locationId"}
        with sandbox.lock:
            location = sandbox.location(location_id)
            if not location.allow_duplicate_contact:
                existing, matched = sandbox.find_duplicate(location_id, body.get("email"), body.get("phone"))
                if existing is not None and matched is not None:
                    raise _duplicate_error(existing, matched)
            contact = sandbox.new_contact(location_id, fields)
            sandbox.emit("ContactCreate", rules.webhook_payload("ContactCreate", contact))
            rendered = rules.render(contact)
            rendered.setdefault("deleted", False)
            return JSONResponse({"contact": rendered, "traceId": trace_id()}, status_code=201)

    router.add_api_route("/contacts/", create, methods=["POST"])
    router.add_api_route("/contacts", create, methods=["POST"], include_in_schema=False)

    @router.get("/contacts/{contact_id}")
    def get_contact(request: Request, contact_id: str) -> dict[str, Any]:
        with sandbox.lock:
            return {"contact": rules.render(owned_contact(request, contact_id)), "traceId": trace_id()}

    @router.put("/contacts/{contact_id}")
    async def update(request: Request, contact_id: str) -> dict[str, Any]:
        body = _validate(await json_body(request), validation.UPDATE_CONTACT)
        with sandbox.lock:
            contact = owned_contact(request, contact_id)
            location = sandbox.location(contact["locationId"])
            if not location.allow_duplicate_contact:
                email_owner = sandbox.find_by_email(contact["locationId"], body.get("email"))
                if email_owner is not None and email_owner is not contact:
                    raise _duplicate_error(email_owner, "email")
                phone_owner = sandbox.find_by_phone(contact["locationId"], body.get("phone"))
                if phone_owner is not None and phone_owner is not contact:
                    raise _duplicate_error(phone_owner, "phone")
            tags_before = list(contact.get("tags") or [])
            sandbox.apply_contact_fields(contact, body)
            sandbox.touch_contact(contact)
            sandbox.emit("ContactUpdate", rules.webhook_payload("ContactUpdate", contact))
            if contact.get("tags") != tags_before:
                sandbox.emit("ContactTagUpdate", rules.webhook_payload("ContactTagUpdate", contact))
            return {"succeded": True, "contact": rules.render(contact), "traceId": trace_id()}

    @router.post("/contacts/{contact_id}/tags", status_code=201)
    async def add_tags(request: Request, contact_id: str) -> dict[str, Any]:
        body = _validate(await json_body(request), validation.TAGS)
        with sandbox.lock:
            contact = owned_contact(request, contact_id)
            contact["tags"] = rules.unique_tags([*contact.get("tags", []), *body["tags"]])
            sandbox.touch_contact(contact)
            sandbox.emit("ContactTagUpdate", rules.webhook_payload("ContactTagUpdate", contact))
            return {"tags": list(contact["tags"]), "traceId": trace_id()}

    @router.delete("/contacts/{contact_id}/tags")
    async def remove_tags(request: Request, contact_id: str) -> dict[str, Any]:
        body = _validate(await json_body(request), validation.TAGS)
        with sandbox.lock:
            contact = owned_contact(request, contact_id)
            removing = set(rules.unique_tags(body["tags"]))
            contact["tags"] = [t for t in contact.get("tags", []) if t not in removing]
            sandbox.touch_contact(contact)
            sandbox.emit("ContactTagUpdate", rules.webhook_payload("ContactTagUpdate", contact))
            return {"tags": list(contact["tags"]), "traceId": trace_id()}

    return router
