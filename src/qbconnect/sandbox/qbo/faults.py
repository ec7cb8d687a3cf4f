"""Intuit-shaped faults: the JSON ``Fault`` envelope, the XML throttle body, and helpers for each code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .clock import qbo_time, utcnow


@dataclass
class QboFault(Exception):
    """One API error: HTTP status plus one Intuit ``Error`` (code, Message, Detail, element)."""

    status: int
    code: str
    message: str
    detail: str
    fault_type: str = "ValidationFault"
    element: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.message}: {self.detail}"

    def error(self) -> dict[str, Any]:
        return {"Message": self.message, "Detail": self.detail, "code": self.code, "element": self.element}

    def fault(self) -> dict[str, Any]:
        return {"Error": [self.error()], "type": self.fault_type}

    def body(self) -> dict[str, Any]:
        return {"Fault": self.fault(), "time": qbo_time(utcnow(), millis=True)}


def throttle_xml() -> str:
    """The body Intuit returns on HTTP 429 -- XML even when JSON was asked for."""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse time="{qbo_time(utcnow(), millis=True)}" xmlns="http://schema.intuit.com/finance/v3">'
        '<Fault type="SERVICE"><Error code="3001">'
        "<Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>"
        "<Detail>The request limit was reached.  Try again later</Detail>"
        "</Error></Fault></IntuitResponse>"
    )


def authentication_failed(detail: str = "Token expired") -> QboFault:
    return QboFault(
        401,
        "3200",
        "message=AuthenticationFailed; errorCode=003200; statusCode=401",
        detail,
        fault_type="AuthenticationFault",
        extra_headers={"WWW-Authenticate": 'Bearer realm="Intuit", error="invalid_token"'},
    )


def authorization_failed(detail: str) -> QboFault:
    return QboFault(
        403,
        "3100",
        "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403",
        detail,
        fault_type="AuthorizationFault",
    )


def stale_object() -> QboFault:
    return QboFault(
        400,
        "5010",
        "Stale Object Error",
        "Stale Object Error : You and root were working on this at the same time. "
        "root finished before you did, so your work was not saved.",
    )


def duplicate_name(detail: str | None = None) -> QboFault:
    return QboFault(
        400,
        "6240",
        "Duplicate Name Exists Error",
        detail
        or "The name supplied already exists. : Another customer, vendor or employee is already using "
        "this name. Please use a different name.",
    )


def object_not_found(detail: str | None = None) -> QboFault:
    return QboFault(
        400,
        "610",
        "Object Not Found",
        detail
        or "Object Not Found : Something you're trying to use has been made inactive. Check the fields "
        "with accounts, customers, items, vendors or employees.",
    )


def invalid_reference(entity: str, ref_id: str, element: str) -> QboFault:
    return QboFault(
        400,
        "2500",
        "Invalid Reference Id",
        f"Invalid Reference Id : {entity} assigned to this transaction does not exist (Id={ref_id}).",
        element=element,
    )


def unsupported_property(detail: str, element: str = "") -> QboFault:
    return QboFault(
        400,
        "2010",
        "Request has invalid or unsupported property",
        f"Property Name:{detail} specified is unsupported or invalid",
        element=element,
    )


def required_missing(name: str) -> QboFault:
    return QboFault(
        400,
        "2020",
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {name} is missing in the request",
        element=name,
    )


def string_length(name: str, maximum: int, supplied: int) -> QboFault:
    return QboFault(
        400,
        "2050",
        "String length is either shorter or longer than supported by specification",
        f"String length specified does not match the supported length. Min:0 Max:{maximum} supplied:{supplied}",
        element=name,
    )


def business_validation(detail: str, code: str = "6000", element: str = "") -> QboFault:
    return QboFault(
        400,
        code,
        "A business validation error has occurred while processing your request",
        f"Business Validation Error: {detail}",
        element=element,
    )


def amount_mismatch(amount: str, expected: str) -> QboFault:
    return business_validation(
        f"Amount is not equal to UnitPrice * Qty. Supplied value:{amount}, expected:{expected}",
        code="6070",
        element="Line.Amount",
    )


def duplicate_doc_number(doc_number: str, txn_type: str, txn_id: str) -> QboFault:
    return QboFault(
        400,
        "6140",
        "Duplicate Document Number Error",
        "Duplicate Document Number Error : You must specify a different number. This number has already "
        f"been used. DocNumber={doc_number} is assigned to TxnType={txn_type} with TxnId={txn_id}",
    )


def invalid_query(detail: str) -> QboFault:
    return QboFault(400, "4001", "Invalid query", f"QueryParserError: {detail}")


def unsupported_operation(detail: str) -> QboFault:
    return QboFault(400, "500", "Unsupported Operation", f"Operation {detail} is not supported.")


def system_fault(status: int = 500, detail: str = "An internal error occurred.") -> QboFault:
    return QboFault(
        status,
        "10000",
        "An application error has occurred while processing your request",
        f"System Failure Error: {detail}",
        fault_type="SystemFault",
    )
