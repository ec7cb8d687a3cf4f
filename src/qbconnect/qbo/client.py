"""Thin typed client for the QuickBooks Online Accounting API v3 (one company = one realm).

The client owns everything about talking to QuickBooks: URLs, ``minorversion``, ``requestid`` on writes,
the bearer token (refresh once after a 401), the per-company rate budget, retries with backoff for
throttling, server errors and network failures, and turning error answers into :mod:`faults`.
It returns Intuit's JSON objects as dicts; JSON decimals come back as :class:`decimal.Decimal`.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import structlog

from qbconnect.domain import jsonutil
from qbconnect.errors import ErrorCategory, PermanentError, TransientError
from qbconnect.qbo.faults import AuthenticationFailed, QboFault, Throttled, fault_in_body, parse_fault
from qbconnect.qbo.tokens import TokenSource
from qbconnect.ratelimit import QBO_BUDGET, RateLimiter

log = structlog.get_logger(__name__)

MINOR_VERSION = 75
MAX_REQUEST_ID_LENGTH = 50
MAX_PAGE_SIZE = 1000

# Payment-like transactions are voided with a sparse update that includes "void"; Invoice has its own
# operation (Intuit API reference; python-quickbooks VoidMixin does the same).
_VOID_BY_OPERATION = {"invoice"}
_VOID_BY_UPDATE = {"payment", "salesreceipt", "refundreceipt", "billpayment"}

_ENTITY_NAME = re.compile(r"^[A-Za-z]+$")
_QUERY_METADATA = {"startposition", "maxresults", "totalcount"}


def escape_query_value(value: str) -> str:
    """Escape a value for a single-quoted query literal (Intuit: backslash before ``'``)."""
    return value.replace("'", "\\'")


class QboClient:
    def __init__(
        self,
        *,
        realm_id: str,
        api_base: str,
        tokens: TokenSource,
        http: httpx.Client | None = None,
        limiter: RateLimiter | None = None,
        minorversion: int = MINOR_VERSION,
        max_retries: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        throttle_wait: float = 60.0,
        retry_wait: float = 1.0,
    ) -> None:
        self.realm_id = realm_id
        self._company_url = f"{api_base.rstrip('/')}/v3/company/{quote(realm_id, safe='')}"
        self._tokens = tokens
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(timeout=httpx.Timeout(30.0, read=120.0))
        self._limiter = limiter
        self._minorversion = minorversion
        self._max_retries = max_retries
        self._sleep = sleep
        self._throttle_wait = throttle_wait
        self._retry_wait = retry_wait
        self.calls = 0

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> QboClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reads -------------------------------------------------------------------------------

    def read(self, entity: str, entity_id: str) -> dict[str, Any]:
        path = f"{_entity_path(entity)}/{quote(entity_id, safe='')}"
        payload = self._send("GET", path, entity=entity)
        return _entity_in(payload, entity)

    def query(self, statement: str) -> list[dict[str, Any]]:
        """Run a query; the matching objects (empty list when none)."""
        response = self._query_response(statement)
        for key, value in response.items():
            if key.lower() not in _QUERY_METADATA and isinstance(value, list):
                return value
        return []

    def query_pages(
        self, select: str, *, page_size: int = MAX_PAGE_SIZE, start: int = 1
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Yield ``(start position, page)`` for ``select`` ordered by Id until a page comes back short."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")
        if start < 1:
            raise ValueError("start positions are 1-based")
        position = start
        while True:
            page = self.query(f"{select} ORDERBY Id STARTPOSITION {position} MAXRESULTS {page_size}")
            yield position, page
            if len(page) < page_size:
                return
            position += page_size

    def count(self, statement: str) -> int:
        """Run a ``SELECT COUNT(*) FROM …`` statement."""
        response = self._query_response(statement)
        for key, value in response.items():
            if key.lower() == "totalcount":
                return int(value)
        return 0

    def cdc(self, entities: Sequence[str], changed_since: datetime) -> tuple[dict[str, list[dict[str, Any]]], datetime]:
        """Objects changed since ``changed_since`` grouped by entity, and the server's ``time``.

        Deleted objects keep ``"status": "Deleted"``. Intuit looks back at most 30 days and returns at
        most 1000 objects per answer: callers split the window when an answer is that large.
        """
        if not entities:
            raise ValueError("cdc needs at least one entity")
        if changed_since.tzinfo is None:
            raise ValueError("changed_since must be timezone-aware")
        for entity in entities:
            _entity_path(entity)
        since = changed_since.astimezone(UTC).isoformat(timespec="seconds")
        payload = self._send("GET", "cdc", params={"entities": ",".join(entities), "changedSince": since}, entity="cdc")
        names = {entity.lower(): entity for entity in entities}
        changed: dict[str, list[dict[str, Any]]] = {entity: [] for entity in entities}
        for block in _list(payload.get("CDCResponse")):
            for response in _list(block.get("QueryResponse") if isinstance(block, dict) else None):
                if not isinstance(response, dict):
                    continue
                for key, value in response.items():
                    if key.lower() in _QUERY_METADATA or not isinstance(value, list):
                        continue
                    changed.setdefault(names.get(key.lower()) or key, []).extend(value)
        server_time = payload.get("time")
        if not isinstance(server_time, str):
            raise PermanentError("QuickBooks answered the change query without a server time")
        try:
            parsed = datetime.fromisoformat(server_time)
        except ValueError as exc:
            raise PermanentError(f"QuickBooks answered the change query with a bad time {server_time!r}") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return changed, parsed.astimezone(UTC)

    def company_info(self) -> dict[str, Any]:
        payload = self._send("GET", f"companyinfo/{quote(self.realm_id, safe='')}", entity="CompanyInfo")
        return _entity_in(payload, "CompanyInfo")

    def preferences(self) -> dict[str, Any]:
        return _entity_in(self._send("GET", "preferences", entity="Preferences"), "Preferences")

    # ---- writes (each carries the caller's requestid, so a retry replays instead of repeating) --

    def create(self, entity: str, body: dict[str, Any], *, request_id: str) -> dict[str, Any]:
        payload = self._send("POST", _entity_path(entity), body=body, request_id=request_id, entity=entity)
        return _entity_in(payload, entity)

    def update(self, entity: str, body: dict[str, Any], *, request_id: str, sparse: bool = True) -> dict[str, Any]:
        """Update an object; ``body`` has ``Id`` and the current ``SyncToken``.

        ``sparse`` changes only the fields sent; a full update clears every writable field left out.
        """
        if not body.get("Id") or body.get("SyncToken") in (None, ""):
            raise ValueError("an update needs the object's Id and current SyncToken")
        sent = {key: value for key, value in body.items() if key != "sparse"}
        if sparse:
            sent["sparse"] = True
        payload = self._send("POST", _entity_path(entity), body=sent, request_id=request_id, entity=entity)
        return _entity_in(payload, entity)

    def void(self, entity: str, entity_id: str, sync_token: str, *, request_id: str) -> dict[str, Any]:
        path = _entity_path(entity)
        body: dict[str, Any] = {"Id": entity_id, "SyncToken": sync_token}
        if path in _VOID_BY_OPERATION:
            params = {"operation": "void"}
        elif path in _VOID_BY_UPDATE:
            params = {"operation": "update", "include": "void"}
            body["sparse"] = True
        else:
            raise ValueError(f"QuickBooks cannot void a {entity}")
        payload = self._send("POST", path, params=params, body=body, request_id=request_id, entity=entity)
        return _entity_in(payload, entity)

    def delete(self, entity: str, entity_id: str, sync_token: str, *, request_id: str) -> dict[str, Any]:
        payload = self._send(
            "POST",
            _entity_path(entity),
            params={"operation": "delete"},
            body={"Id": entity_id, "SyncToken": sync_token},
            request_id=request_id,
            entity=entity,
        )
        return _entity_in(payload, entity)

    # ---- transport -----------------------------------------------------------------------------

    def _query_response(self, statement: str) -> dict[str, Any]:
        payload = self._send("GET", "query", params={"query": statement}, entity="query")
        response = payload.get("QueryResponse")
        return response if isinstance(response, dict) else {}

    def _send(
        self,
        method: str,
        path: str,
        *,
        entity: str,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> dict[str, Any]:
        query = {"minorversion": str(self._minorversion), **(params or {})}
        if method != "GET":
            if not request_id or len(request_id) > MAX_REQUEST_ID_LENGTH:
                raise ValueError(f"every write needs a requestid of 1 to {MAX_REQUEST_ID_LENGTH} characters")
            query["requestid"] = request_id
        headers = {"Accept": "application/json"}
        content: bytes | None = None
        if body is not None:
            content = jsonutil.dumps(body)
            headers["Content-Type"] = "application/json"
        url = f"{self._company_url}/{path}"
        bound = log.bind(realm_id=self.realm_id, entity=entity, request_id=request_id)

        retries = 0
        refreshed = False
        token: str | None = None
        while True:
            if token is None:
                token = self._tokens.access_token()
            if self._limiter is not None:
                self._limiter.acquire(QBO_BUDGET, self.realm_id)
            self.calls += 1
            try:
                response = self._http.request(
                    method, url, params=query, content=content, headers={**headers, "Authorization": f"Bearer {token}"}
                )
            except httpx.TransportError as exc:
                if retries < self._max_retries:
                    wait = self._backoff(self._retry_wait, retries)
                    bound.warning("qbo.retry", reason=type(exc).__name__, attempt=retries + 1, wait=wait)
                    self._sleep(wait)
                    retries += 1
                    token = None
                    continue
                bound.warning("qbo.unreachable", reason=type(exc).__name__, attempts=retries + 1)
                raise TransientError(
                    f"Could not reach QuickBooks ({type(exc).__name__}) after {retries + 1} tries; "
                    "it will be retried later",
                    code="network",
                ) from exc

            intuit_tid = response.headers.get("intuit_tid")
            payload = _json_body(response) if response.is_success else None
            if payload is not None and not fault_in_body(payload):
                bound.debug("qbo.ok", method=method, path=path, status=response.status_code, intuit_tid=intuit_tid)
                return payload
            if response.is_success and payload is None:
                raise TransientError(
                    "QuickBooks sent an unreadable answer; it will be retried later", code="bad_response"
                )

            fault = parse_fault(
                response.status_code, response.content, response.headers.get("content-type", ""), intuit_tid
            )
            if isinstance(fault, AuthenticationFailed) and not refreshed:
                bound.info("qbo.token_refused", intuit_tid=intuit_tid)
                refreshed = True
                token = self._tokens.force_refresh(token)
                continue
            if fault.category is ErrorCategory.TRANSIENT and retries < self._max_retries:
                wait = self._wait_for(fault, response, retries)
                bound.warning(
                    "qbo.retry",
                    reason=type(fault).__name__,
                    status=response.status_code,
                    code=fault.code,
                    intuit_tid=intuit_tid,
                    attempt=retries + 1,
                    wait=wait,
                )
                self._sleep(wait)
                retries += 1
                token = None
                continue
            _log_fault(bound, fault)
            raise fault

    def _wait_for(self, fault: QboFault, response: httpx.Response, retries: int) -> float:
        if isinstance(fault, Throttled):
            wait = self._backoff(self._throttle_wait, retries)
            if self._limiter is not None:
                self._limiter.penalize(QBO_BUDGET, self.realm_id, wait)
        else:
            wait = self._backoff(self._retry_wait, retries)
        retry_after = response.headers.get("retry-after", "")
        if retry_after.isdigit():
            wait = max(wait, float(retry_after))
        return wait

    @staticmethod
    def _backoff(base: float, retries: int) -> float:
        wait: float = base * (2**retries)
        return wait + random.uniform(0, wait * 0.25)


def _log_fault(bound: Any, fault: QboFault) -> None:
    bound.warning(
        "qbo.fault",
        fault=type(fault).__name__,
        status=fault.status,
        code=fault.code,
        category=str(fault.category),
        intuit_tid=fault.intuit_tid,
    )


def _entity_path(entity: str) -> str:
    if not _ENTITY_NAME.match(entity):
        raise ValueError(f"not a QuickBooks entity name: {entity!r}")
    return entity.lower()


def _entity_in(payload: dict[str, Any], entity: str) -> dict[str, Any]:
    wanted = entity.lower()
    for key, value in payload.items():
        if key.lower() == wanted and isinstance(value, dict):
            return value
    raise PermanentError(f"QuickBooks answered without the {entity} it was asked for")


def _json_body(response: httpx.Response) -> dict[str, Any] | None:
    try:
        payload = json.loads(response.content, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
