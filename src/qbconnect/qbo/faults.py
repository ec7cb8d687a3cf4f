"""QuickBooks Online faults: parse Intuit's error bodies (JSON or XML) into categorised exceptions.

Intuit answers errors with ``{"Fault": {"Error": [{"Message", "Detail", "code", "element"}], "type"}}``
and, for throttling, sometimes with an XML ``<IntuitResponse><Fault><Error code="3001">`` body even when
JSON was asked for. Every fault becomes a :class:`QboFault` subclass whose category tells the job engine
what to do next and whose message is written for the person reading the sync log.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from qbconnect.errors import (
    AuthError,
    ConflictError,
    ErrorCategory,
    PermanentError,
    SyncError,
    TransientError,
)

THROTTLE_WAIT_SECONDS = 60.0  # Intuit: "wait 60 seconds before retrying" after a 429

CODE_THROTTLED = "3001"
CODE_AUTHENTICATION_FAILED = "3200"
CODE_FORBIDDEN = "3100"
CODE_STALE_OBJECT = "5010"
CODE_DUPLICATE_NAME = "6240"
CODE_DUPLICATE_DOC_NUMBER = "6140"
CODE_NOT_FOUND = "610"


@dataclass(frozen=True)
class FaultError:
    """One ``Error`` item of an Intuit ``Fault``."""

    code: str
    message: str
    detail: str
    element: str


class QboFault(SyncError):
    """A QuickBooks error answer: HTTP status, every ``Error`` item and Intuit's ``intuit_tid``."""

    category = ErrorCategory.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        status: int,
        errors: list[FaultError],
        intuit_tid: str | None,
        fault_type: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        first = errors[0] if errors else None
        super().__init__(
            message,
            code=first.code if first and first.code else None,
            retry_after=retry_after,
            detail=first.detail if first and first.detail else None,
        )
        self.status = status
        self.errors = errors
        self.intuit_tid = intuit_tid
        self.fault_type = fault_type


class StaleObject(QboFault, ConflictError):
    """5010: the SyncToken sent is no longer current; re-read and re-apply."""

    category = ErrorCategory.CONFLICT


class DuplicateName(QboFault, ConflictError):
    """6240: DisplayName/Name already used by another customer, vendor, employee or item."""

    category = ErrorCategory.CONFLICT


class DuplicateDocNumber(QboFault, PermanentError):
    """6140: the document number is already used (company warns on duplicate numbers)."""

    category = ErrorCategory.PERMANENT


class NotFound(QboFault, PermanentError):
    """610: the object (or an object it refers to) does not exist or is inactive."""

    category = ErrorCategory.PERMANENT


class Throttled(QboFault, TransientError):
    """429 / 3001: the company's request budget is exhausted; wait a minute."""

    category = ErrorCategory.TRANSIENT


class AuthenticationFailed(QboFault, AuthError):
    """401 / 3200: the access token was refused."""

    category = ErrorCategory.AUTH


class Forbidden(QboFault, AuthError):
    """403 / 3100: the connection is not allowed to do this (subscription or permission)."""

    category = ErrorCategory.AUTH


class Validation(QboFault, PermanentError):
    """Any other 4xx: QuickBooks rejected the request's content."""

    category = ErrorCategory.PERMANENT


class ServerError(QboFault, TransientError):
    """5xx: QuickBooks failed; retry later."""

    category = ErrorCategory.TRANSIENT


def parse_fault(status: int, body: bytes, content_type: str, intuit_tid: str | None) -> QboFault:
    """Turn an error answer into the matching :class:`QboFault` subclass (never raises)."""
    fault_type, errors = _read_errors(body, content_type)
    codes = {error.code for error in errors}

    cls: type[QboFault]
    if status == 429 or CODE_THROTTLED in codes:
        cls = Throttled
    elif status == 401 or CODE_AUTHENTICATION_FAILED in codes:
        cls = AuthenticationFailed
    elif status == 403 or CODE_FORBIDDEN in codes:
        cls = Forbidden
    elif CODE_STALE_OBJECT in codes:
        cls = StaleObject
    elif CODE_DUPLICATE_NAME in codes:
        cls = DuplicateName
    elif CODE_DUPLICATE_DOC_NUMBER in codes:
        cls = DuplicateDocNumber
    elif CODE_NOT_FOUND in codes:
        cls = NotFound
    elif status >= 500:
        cls = ServerError
    else:
        cls = Validation

    return cls(
        _message(cls, status, errors),
        status=status,
        errors=errors,
        intuit_tid=intuit_tid,
        fault_type=fault_type,
        retry_after=THROTTLE_WAIT_SECONDS if cls is Throttled else None,
    )


def fault_in_body(payload: Any) -> bool:
    """True when a successfully parsed JSON answer still carries a ``Fault`` (QBO may do that on 200)."""
    return isinstance(payload, dict) and _get(payload, "Fault") is not None


def _message(cls: type[QboFault], status: int, errors: list[FaultError]) -> str:
    said = "; ".join(_describe(error) for error in errors if error.message or error.detail)
    if cls is Throttled:
        base = "QuickBooks is limiting requests for this company (throttled); it will be retried later"
        return f"{base} — {_first_detail(errors)}" if _first_detail(errors) else base
    if cls is AuthenticationFailed:
        return "QuickBooks refused the saved authorization (AuthenticationFailed); reconnect QuickBooks"
    if cls is Forbidden:
        base = "QuickBooks does not allow this connection to do that (authorization failure)"
        return f"{base} — {said}" if said else base
    if said:
        return f"QuickBooks says: {said}"
    if cls is ServerError:
        return f"QuickBooks had an internal error (HTTP {status}); it will be retried later"
    return f"QuickBooks rejected the request (HTTP {status}) without saying why"


def _describe(error: FaultError) -> str:
    message = error.message.strip()
    detail = error.detail.strip()
    # Intuit often repeats the message at the start of the detail ("Stale Object Error : You and …").
    if message and detail.startswith(message):
        detail = detail[len(message) :].lstrip(" :").strip()
    text = " — ".join(part for part in (message, detail) if part)
    if error.element:
        text += f" (field {error.element})"
    return text


def _first_detail(errors: list[FaultError]) -> str:
    for error in errors:
        if error.detail.strip():
            return error.detail.strip()
    return ""


def _read_errors(body: bytes, content_type: str) -> tuple[str | None, list[FaultError]]:
    text = body.lstrip()
    if not text:
        return None, []
    if "xml" in content_type.lower() or text.startswith(b"<"):
        return _read_xml(body)
    return _read_json(body)


def _read_json(body: bytes) -> tuple[str | None, list[FaultError]]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, []
    if not isinstance(payload, dict):
        return None, []
    fault = _get(payload, "Fault")
    if not isinstance(fault, dict):
        return None, []
    raw_errors = _get(fault, "Error")
    if isinstance(raw_errors, dict):
        raw_errors = [raw_errors]
    errors = [
        FaultError(
            code=_text(_get(item, "code")),
            message=_text(_get(item, "Message")),
            detail=_text(_get(item, "Detail")),
            element=_text(_get(item, "element")),
        )
        for item in raw_errors or []
        if isinstance(item, dict)
    ]
    fault_type = _get(fault, "type")
    return (str(fault_type) if fault_type is not None else None), errors


def _read_xml(body: bytes) -> tuple[str | None, list[FaultError]]:
    try:
        # Intuit's own answer (TLS to Intuit); the stdlib parser does not fetch external entities and
        # expat ≥ 2.4 limits entity expansion.
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError:
        return None, []
    fault = next((el for el in root.iter() if _local(el.tag) == "Fault"), None)
    if fault is None:
        return None, []
    errors: list[FaultError] = []
    for error in fault:
        if _local(error.tag) != "Error":
            continue
        parts = {_local(child.tag): (child.text or "") for child in error}
        errors.append(
            FaultError(
                code=error.get("code", ""),
                message=parts.get("Message", ""),
                detail=parts.get("Detail", ""),
                element=error.get("element", "") or parts.get("element", ""),
            )
        )
    return fault.get("type"), errors


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _get(mapping: dict[str, Any], key: str) -> Any:
    """Key lookup that also accepts Intuit's lower-case variants (``fault``/``error``/``message``)."""
    if key in mapping:
        return mapping[key]
    lowered = key.lower()
    for candidate, value in mapping.items():
        if candidate.lower() == lowered:
            return value
    return None


def _text(value: Any) -> str:
    return "" if value is None else str(value)
