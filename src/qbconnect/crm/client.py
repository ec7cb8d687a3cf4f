"""The one HighLevel (LeadConnector API v2) client: auth, versions, rate limit, retries, error mapping.

Written against HighLevel's published OpenAPI specs (``openapi/v2/apps/*.json``) and auth docs, so it
runs unchanged against ``https://services.leadconnectorhq.com``. It returns the platform's JSON objects
as plain dicts; the domain layer turns them into business objects.

Rules it keeps:
- every request carries ``Authorization: Bearer``, ``Accept: application/json`` and the ``Version``
  header of its API family (:data:`API_VERSIONS`);
- invoices and payments are addressed with ``altId=<location>&altType=location``; contacts with
  ``locationId``;
- one draw from the location's shared budget per request (``qbconnect.ratelimit``); every answer's
  ``X-RateLimit-*`` headers are kept in :attr:`CrmClient.last_rate_limit` and handed to the budget, which
  follows HighLevel's own count (:meth:`RateLimiter.observe`); a 429 is a pacing fault: logged
  (``crm.pacing_fault``), the whole location's budget held for the wait, then retried;
- 5xx and timeouts are retried with backoff and jitter, except for creates that could be duplicated
  (``POST /contacts/`` and ``POST /conversations/messages``): those raise :class:`TransientError` and
  the job engine decides;
- a 401 refreshes the token once and retries; a second 401 is an :class:`AuthError`;
- tokens are never logged; HighLevel's ``traceId`` is.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

import httpx
import structlog

from qbconnect.errors import AuthError, ConflictError, PermanentError, TransientError
from qbconnect.ratelimit import CRM_BUDGET, BudgetExhaustedError, RateLimiter

log = structlog.get_logger(__name__)

DEFAULT_API_BASE = "https://services.leadconnectorhq.com"

# The ``Version`` header each API family requires (the ``enum`` of its ``Version`` parameter in the spec).
VERSION_2021_07_28 = "2021-07-28"
VERSION_2021_04_15 = "2021-04-15"
API_VERSIONS: Mapping[str, str] = {
    "contacts": VERSION_2021_07_28,
    "invoices": VERSION_2021_07_28,
    "payments": VERSION_2021_07_28,
    "locations": VERSION_2021_07_28,
    "conversations": VERSION_2021_04_15,
    # A Marketplace trigger's targetUrl (``/workflows-marketplace/triggers/execute/…``); HighLevel's docs
    # name no Version for it [inferred: the long-standing one].
    "workflows-marketplace": VERSION_2021_07_28,
}

ALT_TYPE_LOCATION = "location"

# UpdateContactDto (PUT /contacts/:id) lacks these create/upsert-only properties; sending them risks a 422.
CREATE_ONLY_CONTACT_FIELDS = frozenset({"companyName", "locationId", "gender", "createNewIfDuplicateAllowed"})

MESSAGE_CHANNELS: Mapping[str, str] = {"email": "Email", "sms": "SMS"}

BASE_RATE_LIMIT_WAIT = 10.0  # seconds: HighLevel's burst window is 100 requests per 10 s
MAX_BACKOFF = 30.0
DAILY_LIMIT_RETRY_AFTER = 3600.0
SEARCH_PAGE_LIMIT = 500  # POST /contacts/search: at most 500 per page


class CrmTokenSource(Protocol):
    """Hands out the location's current access token and renews it when HighLevel rejects it."""

    def access_token(self) -> str: ...

    def force_refresh(self, rejected_token: str) -> str: ...


@dataclass(frozen=True)
class RateLimitState:
    """HighLevel's ``X-RateLimit-*`` response headers (``docs/Authorization.md``)."""

    limit_daily: int | None
    daily_remaining: int | None
    interval_ms: int | None
    max: int | None
    remaining: int | None

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> RateLimitState | None:
        names = {
            "limit_daily": "x-ratelimit-limit-daily",
            "daily_remaining": "x-ratelimit-daily-remaining",
            "interval_ms": "x-ratelimit-interval-milliseconds",
            "max": "x-ratelimit-max",
            "remaining": "x-ratelimit-remaining",
        }
        values = {field: _int_header(headers, header) for field, header in names.items()}
        if all(v is None for v in values.values()):
            return None
        return cls(**values)


class DuplicateContactError(ConflictError):
    """HighLevel refused a create because the location already holds the contact (its duplicate answer:
    400 with ``meta.contactId``); ``contact_id`` is that contact."""

    def __init__(self, message: str, *, contact_id: str, matching_field: str | None, detail: str | None) -> None:
        super().__init__(message, code="duplicate_contact", detail=detail)
        self.contact_id = contact_id
        self.matching_field = matching_field


class CrmClient:
    """Synchronous client for one CRM location.

    ``budget_share`` (< 1 for bulk work such as the contact import) is the part of the location's request
    budget this client may fill, so live syncs always find room.
    """

    def __init__(
        self,
        *,
        location_id: str,
        api_base: str,
        tokens: CrmTokenSource,
        http: httpx.Client | None = None,
        limiter: RateLimiter | None = None,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.location_id = location_id
        self.api_base = api_base.rstrip("/")
        self._tokens = tokens
        self._http = http if http is not None else httpx.Client(timeout=httpx.Timeout(30.0, connect=10.0))
        self._limiter = limiter
        self._max_retries = max_retries
        self._sleep = sleep
        self.calls = 0
        self.last_rate_limit: RateLimitState | None = None
        self.budget_share = 1.0

    # ---- contacts (Version 2021-07-28) -------------------------------------------------------------

    def get_contact(self, contact_id: str) -> dict[str, Any] | None:
        body = self._get_or_none("contacts", f"/contacts/{_seg(contact_id)}", entity="contact")
        return None if body is None else _dict(body.get("contact"))

    def find_duplicate_contact(self, *, email: str | None = None, phone: str | None = None) -> dict[str, Any] | None:
        """The location's existing contact with this email (first priority) or phone, if any."""
        if not email and not phone:
            raise ValueError("find_duplicate_contact needs an email or a phone")
        params: dict[str, str] = {"locationId": self.location_id}
        if email:
            params["email"] = email
        if phone:
            params["number"] = phone
        body = self._call("GET", "/contacts/search/duplicate", family="contacts", params=params)
        contact = body.get("contact")
        return _dict(contact) if isinstance(contact, dict) and contact else None

    def upsert_contact(self, fields: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST /contacts/upsert: returns (contact, is_new). Sends only the caller's fields + locationId."""
        payload = {**fields, "locationId": self.location_id}
        body = self._call("POST", "/contacts/upsert", family="contacts", json=payload)
        return _dict(body.get("contact")), bool(body.get("new"))

    def create_contact(self, fields: dict[str, Any]) -> dict[str, Any]:
        """POST /contacts/ (``tags`` in the body are the new contact's tags). Not retried after a timeout or
        5xx: a retry could create a duplicate. Raises :class:`DuplicateContactError` when the location does
        not allow duplicates and already holds a contact with this email or phone."""
        payload = {**fields, "locationId": self.location_id}
        body = self._call("POST", "/contacts/", family="contacts", json=payload, may_duplicate=True)
        return _dict(body.get("contact"))

    def search_contacts(
        self, *, page_limit: int = SEARCH_PAGE_LIMIT, search_after: Sequence[Any] | None = None, page: int = 1
    ) -> list[dict[str, Any]]:
        """POST /contacts/search, oldest first: one page of the location's contacts. Pages past the first are
        asked by ``searchAfter`` (the cursor each returned contact carries; page numbers reach only 10,000
        contacts) or, when HighLevel gave no cursor, by ``page``."""
        payload: dict[str, Any] = {
            "locationId": self.location_id,
            "pageLimit": page_limit,
            "sort": [{"field": "dateAdded", "direction": "asc"}],
        }
        if search_after is not None:
            payload["searchAfter"] = list(search_after)
        else:
            payload["page"] = page
        body = self._call("POST", "/contacts/search", family="contacts", json=payload)
        return _dict_list(body.get("contacts"))

    def iter_contact_pages(self, *, page_limit: int = SEARCH_PAGE_LIMIT) -> Iterator[list[dict[str, Any]]]:
        """Every contact of the location, a page (one request) at a time, oldest first."""
        cursor: Sequence[Any] | None = None
        page = 1
        while True:
            contacts = self.search_contacts(page_limit=page_limit, search_after=cursor, page=page)
            yield contacts
            if len(contacts) < page_limit:
                return
            last = contacts[-1].get("searchAfter")
            cursor = last if isinstance(last, list) and last else None
            page += 1

    def update_contact(self, contact_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """PUT /contacts/:id with the fields UpdateContactDto accepts (companyName and friends dropped)."""
        dropped = sorted(k for k in fields if k in CREATE_ONLY_CONTACT_FIELDS)
        if dropped:
            log.debug("crm.update_contact.dropped_fields", fields=dropped)
        payload = {k: v for k, v in fields.items() if k not in CREATE_ONLY_CONTACT_FIELDS}
        body = self._call("PUT", f"/contacts/{_seg(contact_id)}", family="contacts", json=payload)
        return _dict(body.get("contact"))

    def add_tags(self, contact_id: str, tags: Sequence[str]) -> list[str]:
        """POST /contacts/:id/tags (adds; unlike ``tags`` on upsert/update it never overwrites)."""
        body = self._call("POST", f"/contacts/{_seg(contact_id)}/tags", family="contacts", json={"tags": list(tags)})
        result = body.get("tags")
        return [str(t) for t in result] if isinstance(result, list) else list(tags)

    # ---- invoices (Version 2021-07-28, altId/altType) ---------------------------------------------

    def get_invoice(self, invoice_id: str) -> dict[str, Any] | None:
        return self._get_or_none("invoices", f"/invoices/{_seg(invoice_id)}", params=self._alt(), entity="invoice")

    def list_invoices(
        self,
        *,
        offset: int = 0,
        limit: int = 100,
        status: str | None = None,
        start_at: date | None = None,
        end_at: date | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        params = self._alt()
        params["limit"] = str(limit)
        params["offset"] = str(offset)
        if status is not None:
            params["status"] = status
        if start_at is not None:
            params["startAt"] = _date_param(start_at)
        if end_at is not None:
            params["endAt"] = _date_param(end_at)
        body = self._call("GET", "/invoices/", family="invoices", params=params)
        return _dict_list(body.get("invoices")), _int(body.get("total"))

    def iter_invoices(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return _paginate(self.list_invoices, filters)

    # ---- payments: orders, transactions, subscriptions (Version 2021-07-28) ------------------------

    def get_order(self, order_id: str) -> dict[str, Any] | None:
        return self._get_or_none("payments", f"/payments/orders/{_seg(order_id)}", params=self._alt(), entity="order")

    def list_orders(
        self,
        *,
        offset: int = 0,
        limit: int = 100,
        status: str | None = None,
        payment_status: str | None = None,
        start_at: date | None = None,
        end_at: date | None = None,
        contact_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        params = self._alt()
        params["limit"] = str(limit)
        params["offset"] = str(offset)
        _put(params, "status", status)
        _put(params, "paymentStatus", payment_status)
        _put(params, "contactId", contact_id)
        if start_at is not None:
            params["startAt"] = _date_param(start_at)
        if end_at is not None:
            params["endAt"] = _date_param(end_at)
        body = self._call("GET", "/payments/orders", family="payments", params=params)
        return _dict_list(body.get("data")), _int(body.get("totalCount"))

    def iter_orders(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return _paginate(self.list_orders, filters)

    def get_transaction(self, transaction_id: str) -> dict[str, Any] | None:
        return self._get_or_none(
            "payments",
            f"/payments/transactions/{_seg(transaction_id)}",
            params=self._alt(),
            entity="transaction",
        )

    def list_transactions(
        self,
        *,
        start_at: datetime | date | None = None,
        end_at: datetime | date | None = None,
        offset: int = 0,
        limit: int = 100,
        subscription_id: str | None = None,
        entity_id: str | None = None,
        contact_id: str | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        params = self._alt()
        params["limit"] = str(limit)
        params["offset"] = str(offset)
        if start_at is not None:
            params["startAt"] = _date_param(start_at)
        if end_at is not None:
            params["endAt"] = _date_param(end_at)
        _put(params, "subscriptionId", subscription_id)
        _put(params, "entityId", entity_id)
        _put(params, "contactId", contact_id)
        body = self._call("GET", "/payments/transactions", family="payments", params=params)
        return _dict_list(body.get("data")), _int(body.get("totalCount"))

    def iter_transactions(self, **filters: Any) -> Iterator[dict[str, Any]]:
        return _paginate(self.list_transactions, filters)

    def get_subscription(self, subscription_id: str) -> dict[str, Any] | None:
        return self._get_or_none(
            "payments",
            f"/payments/subscriptions/{_seg(subscription_id)}",
            params=self._alt(),
            entity="subscription",
        )

    # ---- conversations (Version 2021-04-15) -------------------------------------------------------

    def send_message(
        self,
        *,
        contact_id: str,
        channel: str,
        message: str,
        subject: str | None = None,
        html: str | None = None,
    ) -> dict[str, Any]:
        """POST /conversations/messages as ``Email`` or ``SMS``. Never retried once it may have been sent."""
        kind = MESSAGE_CHANNELS.get(channel.lower())
        if kind is None:
            raise ValueError(f"unsupported message channel {channel!r} (use Email or SMS)")
        payload: dict[str, Any] = {"type": kind, "contactId": contact_id, "message": message}
        if kind == "Email":
            if subject is not None:
                payload["subject"] = subject
            if html is not None:
                payload["html"] = html
        return self._call("POST", "/conversations/messages", family="conversations", json=payload, may_duplicate=True)

    # ---- workflows (Marketplace triggers) and custom fields ----------------------------------------

    def fire_workflow_trigger(self, target_url: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """POST the trigger's data to a workflow's ``targetUrl`` (as HighLevel's Subscription URL gave it).

        Only a URL on this client's API base is called (a subscription body names the URL; the location's
        token must never go elsewhere). Never retried once it may have reached HighLevel."""
        prefix = f"{self.api_base}/workflows-marketplace/"
        if not target_url.startswith(prefix) or ".." in target_url or any(c in target_url for c in "#\\ \r\n"):
            raise ValueError("the trigger's target URL is not on HighLevel's API")
        path = target_url[len(self.api_base) :]
        return self._call("POST", path, family="workflows-marketplace", json=dict(payload), may_duplicate=True)

    def contact_custom_fields(self) -> list[dict[str, Any]]:
        """GET /locations/:locationId/customFields?model=contact: the location's contact custom fields."""
        body = self._call(
            "GET", f"/locations/{_seg(self.location_id)}/customFields", family="locations", params={"model": "contact"}
        )
        return _dict_list(body.get("customFields"))

    def create_contact_custom_field(self, name: str, data_type: str) -> dict[str, Any]:
        """POST /locations/:locationId/customFields (model ``contact``). Not retried once it may have applied."""
        body = self._call(
            "POST",
            f"/locations/{_seg(self.location_id)}/customFields",
            family="locations",
            json={"name": name, "dataType": data_type, "model": "contact"},
            may_duplicate=True,
        )
        return _dict(body.get("customField"))

    # ---- plumbing ---------------------------------------------------------------------------------

    def _alt(self) -> dict[str, str]:
        return {"altId": self.location_id, "altType": ALT_TYPE_LOCATION}

    def _get_or_none(
        self, family: str, path: str, *, entity: str, params: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """GET that answers ``None`` when HighLevel says the object does not exist."""
        return self._request(
            "GET", path, family=family, params=params, json=None, may_duplicate=False, not_found_entity=entity
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        family: str,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        may_duplicate: bool = False,
    ) -> dict[str, Any]:
        result = self._request(
            method,
            path,
            family=family,
            params=params,
            json=json,
            may_duplicate=may_duplicate,
            not_found_entity=None,
        )
        return result if result is not None else {}

    def _request(
        self,
        method: str,
        path: str,
        *,
        family: str,
        params: Mapping[str, str] | None,
        json: Any,
        may_duplicate: bool,
        not_found_entity: str | None,
    ) -> dict[str, Any] | None:
        url = f"{self.api_base}{path}"
        token = self._tokens.access_token()
        refreshed = False
        attempt = 0
        while True:
            if self._limiter is not None:
                try:
                    if self.budget_share < 1.0:
                        self._limiter.acquire(CRM_BUDGET, self.location_id, share=self.budget_share)
                    else:
                        self._limiter.acquire(CRM_BUDGET, self.location_id)
                except TimeoutError as exc:
                    wait = exc.wait if isinstance(exc, BudgetExhaustedError) else 0.0
                    raise TransientError(
                        "HighLevel's request budget for this location stayed full; will try again.",
                        code="rate_budget",
                        retry_after=max(BASE_RATE_LIMIT_WAIT, wait),
                    ) from exc
            headers = {
                "Authorization": f"Bearer {token}",
                "Version": API_VERSIONS[family],
                "Accept": "application/json",
            }
            self.calls += 1
            try:
                response = self._http.request(method, url, params=params, json=json, headers=headers)
            except httpx.TransportError as exc:
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
                log.warning(
                    "crm.request.failed",
                    method=method,
                    path=path,
                    error=type(exc).__name__,
                    attempt=attempt,
                    may_have_been_applied=sent and may_duplicate,
                )
                if (sent and may_duplicate) or attempt >= self._max_retries:
                    timed_out = isinstance(exc, httpx.TimeoutException)
                    raise TransientError(
                        f"HighLevel did not answer {method} {path} in time; will try again."
                        if timed_out
                        else f"Could not reach HighLevel for {method} {path}; will try again.",
                        code="timeout" if timed_out else "network",
                        detail=type(exc).__name__,
                    ) from exc
                self._sleep(self._backoff(attempt))
                attempt += 1
                continue

            state = RateLimitState.from_headers(response.headers)
            if state is not None:
                self.last_rate_limit = state
                if self._limiter is not None and state.max and state.interval_ms:
                    self._limiter.observe(
                        CRM_BUDGET,
                        self.location_id,
                        limit=state.max,
                        interval=state.interval_ms / 1000.0,
                        remaining=state.remaining if response.status_code != 429 else 0,
                    )
            status = response.status_code
            body = _json_body(response)
            trace_id = _trace_id(response, body)
            log.debug("crm.request", method=method, path=path, status=status, trace_id=trace_id, attempt=attempt)

            if status < 300:
                return body if isinstance(body, dict) else {}

            reason = _reason(body)
            if status == 401:
                if refreshed:
                    log.warning("crm.auth.rejected", path=path, trace_id=trace_id)
                    raise AuthError(
                        "HighLevel rejected the connection's token even after renewing it. "
                        "Reconnect the HighLevel app.",
                        code="http_401",
                        detail=_detail(reason, trace_id),
                    )
                log.info("crm.auth.refresh", path=path, trace_id=trace_id)
                token = self._tokens.force_refresh(token)
                refreshed = True
                continue

            if status == 429:
                wait, daily_exhausted = self._rate_limit_wait(response, state)
                # Our pacing should never let HighLevel refuse a request: each 429 is a fault to look into.
                log.warning(
                    "crm.pacing_fault",
                    location_id=self.location_id,
                    method=method,
                    path=path,
                    wait=wait,
                    daily_exhausted=daily_exhausted,
                    remaining=state.remaining if state else None,
                    max=state.max if state else None,
                    interval_ms=state.interval_ms if state else None,
                    attempt=attempt,
                    trace_id=trace_id,
                )
                if self._limiter is not None:
                    self._limiter.penalize(CRM_BUDGET, self.location_id, wait)
                if daily_exhausted or attempt >= self._max_retries:
                    raise TransientError(
                        "HighLevel's request limit for this location is used up; will try again later.",
                        code="http_429",
                        retry_after=DAILY_LIMIT_RETRY_AFTER if daily_exhausted else wait,
                        detail=_detail(reason, trace_id),
                    )
                self._sleep(wait)
                attempt += 1
                continue

            if status >= 500:
                log.warning("crm.server_error", method=method, path=path, status=status, trace_id=trace_id)
                if may_duplicate or attempt >= self._max_retries:
                    raise TransientError(
                        f"HighLevel had a problem answering {method} {path} (HTTP {status}); will try again.",
                        code=f"http_{status}",
                        detail=_detail(reason, trace_id),
                    )
                self._sleep(self._backoff(attempt))
                attempt += 1
                continue

            if not_found_entity is not None and _is_not_found(status, reason, not_found_entity):
                return None
            duplicate = _duplicate_of(status, body) if (method, path) == ("POST", "/contacts/") else None
            if duplicate is not None:
                contact_id, matching = duplicate
                raise DuplicateContactError(
                    f"HighLevel already holds this contact ({matching or 'duplicate'}): {reason or 'duplicate'}",
                    contact_id=contact_id,
                    matching_field=matching,
                    detail=_detail(reason, trace_id),
                )
            raise _client_error(status, method, path, reason, trace_id)

    def _rate_limit_wait(self, response: httpx.Response, state: RateLimitState | None) -> tuple[float, bool]:
        if state is not None and state.daily_remaining is not None and state.daily_remaining <= 0:
            return DAILY_LIMIT_RETRY_AFTER, True
        retry_after = response.headers.get("retry-after")
        if retry_after is not None:
            try:
                return max(0.0, float(retry_after)), False
            except ValueError:
                pass
        if state is not None and state.interval_ms is not None and state.interval_ms > 0:
            return state.interval_ms / 1000.0, False
        return BASE_RATE_LIMIT_WAIT, False

    @staticmethod
    def _backoff(attempt: int) -> float:
        base: float = min(MAX_BACKOFF, 0.5 * (2**attempt))
        return base + random.uniform(0, base / 2)


def _paginate(
    fetch: Callable[..., tuple[list[dict[str, Any]], int]], filters: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    filters = dict(filters)
    offset = int(filters.pop("offset", 0))
    while True:
        items, total = fetch(offset=offset, **filters)
        yield from items
        offset += len(items)
        # a missing/zero total (0) cannot end a listing that still returns items: page until empty
        if not items or 0 < total <= offset:
            return


def _client_error(status: int, method: str, path: str, reason: str, trace_id: str | None) -> Exception:
    detail = _detail(reason, trace_id)
    said = reason or "no reason given"
    if status == 403:
        return AuthError(
            f"HighLevel refused access to {path} ({said}). Reconnect the HighLevel app with the "
            "permissions it asks for.",
            code="http_403",
            detail=detail,
        )
    if status == 409:
        return ConflictError(f"HighLevel reported a conflict: {said}", code="http_409", detail=detail)
    if status == 404:
        return PermanentError(f"HighLevel could not find {path}: {said}", code="http_404", detail=detail)
    return PermanentError(f"HighLevel refused {method} {path}: {said}", code=f"http_{status}", detail=detail)


_NOT_FOUND = re.compile(r"not found|unable to find|does not exist|doesn't exist", re.IGNORECASE)


def _is_not_found(status: int, reason: str, entity: str) -> bool:
    """404, or the 400 the payments and invoices specs document for a missing object
    ("Order not found", "Unable to find an invoice with the given invoice id")."""
    if status == 404:
        return True
    return status == 400 and bool(_NOT_FOUND.search(reason)) and entity in reason.lower()


def _duplicate_of(status: int, body: Any) -> tuple[str, str | None] | None:
    """HighLevel's duplicate answer: 400 with ``meta.contactId`` (and ``meta.matchingField``)."""
    if status != 400 or not isinstance(body, dict):
        return None
    meta = body.get("meta")
    if not isinstance(meta, dict):
        return None
    contact_id = meta.get("contactId")
    if not isinstance(contact_id, str) or not contact_id:
        return None
    matching = meta.get("matchingField")
    return contact_id, matching if isinstance(matching, str) else None


def _json_body(response: httpx.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return {}


def _reason(body: Any) -> str:
    """HighLevel's error message: a string (400/401) or a list of strings (422)."""
    if not isinstance(body, dict):
        return ""
    message = body.get("message")
    if isinstance(message, list):
        return "; ".join(str(m) for m in message)
    if isinstance(message, str) and message:
        return message
    error = body.get("error")
    return error if isinstance(error, str) else ""


def _trace_id(response: httpx.Response, body: Any) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("traceId"), str):
        return str(body["traceId"])
    header: str | None = response.headers.get("traceid") or response.headers.get("x-trace-id")
    return header


def _detail(reason: str, trace_id: str | None) -> str | None:
    parts = [p for p in (reason, f"traceId={trace_id}" if trace_id else "") if p]
    return " | ".join(parts) or None


def _int_header(headers: httpx.Headers, name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def _date_param(value: date) -> str:
    """Dates as YYYY-MM-DD (the specs' examples); datetimes as ISO 8601 UTC with milliseconds."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("datetimes sent to HighLevel must be timezone-aware")
        return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return value.isoformat()


def _put(params: dict[str, str], name: str, value: str | None) -> None:
    if value is not None:
        params[name] = value


def _seg(value: str) -> str:
    """A path segment; ids are opaque, so refuse anything that would change the path."""
    if not value or "/" in value or "?" in value or "#" in value or value in (".", ".."):
        raise ValueError(f"not a valid HighLevel id: {value!r}")
    return value


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dict_list(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
