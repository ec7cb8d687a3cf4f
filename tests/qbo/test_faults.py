"""Fault parsing: every reference example maps to the right class and category."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qbconnect.errors import AuthError, ConflictError, ErrorCategory, PermanentError, TransientError
from qbconnect.qbo.faults import (
    AuthenticationFailed,
    DuplicateDocNumber,
    DuplicateName,
    FaultError,
    Forbidden,
    NotFound,
    QboFault,
    ServerError,
    StaleObject,
    Throttled,
    Validation,
    fault_in_body,
    parse_fault,
)
from tests.support.reference import reference_dir

JSON = "application/json;charset=UTF-8"

# file → (status Intuit answers with, expected class, category, first code)
EXAMPLES: dict[str, tuple[int, type[QboFault], ErrorCategory, str]] = {
    "fault-5010-from-batch-sample.json": (400, StaleObject, ErrorCategory.CONFLICT, "5010"),
    "fault-610-from-batch-sample.json": (400, NotFound, ErrorCategory.PERMANENT, "610"),
    "fault-6240-from-batch-sample.json": (400, DuplicateName, ErrorCategory.CONFLICT, "6240"),
    "fault-envelope-format.json": (400, Validation, ErrorCategory.PERMANENT, "<code>"),
    "throttle-exceeded-429.xml": (429, Throttled, ErrorCategory.TRANSIENT, "3001"),
}


def faults_dir() -> Path:
    return reference_dir("qbo", "examples", "faults")


def test_every_fault_example_has_an_expectation() -> None:
    assert sorted(p.name for p in faults_dir().iterdir()) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_fault_example_parses_to_class_and_category(name: str) -> None:
    status, cls, category, code = EXAMPLES[name]
    path = faults_dir() / name
    content_type = "application/xml" if name.endswith(".xml") else JSON
    fault = parse_fault(status, path.read_bytes(), content_type, "tid-1")
    assert type(fault) is cls
    assert fault.category is category
    assert fault.code == code
    assert fault.status == status
    assert fault.intuit_tid == "tid-1"
    assert len(fault.errors) == 1


def test_xml_throttle_is_recognised_by_code_even_with_other_status_and_json_content_type() -> None:
    body = (faults_dir() / "throttle-exceeded-429.xml").read_bytes()
    # Intuit sends XML although JSON was asked for; older answers had statusCode=403.
    fault = parse_fault(403, body, JSON, None)
    assert isinstance(fault, Throttled)
    assert isinstance(fault, TransientError)
    assert fault.retry_after == 60.0
    assert fault.fault_type == "SERVICE"
    assert fault.errors[0] == FaultError(
        code="3001",
        message="message=ThrottleExceeded; errorCode=003001; statusCode=429",
        detail="The request limit was reached.  Try again later",
        element="",
    )
    assert "throttled" in fault.message
    assert "The request limit was reached" in fault.message


def test_json_throttle_body() -> None:
    body = json.dumps(
        {
            "Fault": {
                "Error": [
                    {
                        "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
                        "Detail": "The request limit was reached.",
                        "code": "3001",
                    }
                ],
                "type": "SERVICE",
            }
        }
    ).encode()
    fault = parse_fault(429, body, JSON, None)
    assert isinstance(fault, Throttled)
    assert fault.retry_after == 60.0


def test_duplicate_name_message_is_plain_language() -> None:
    fault = parse_fault(400, (faults_dir() / "fault-6240-from-batch-sample.json").read_bytes(), JSON, None)
    assert fault.message == (
        "QuickBooks says: Duplicate Name Exists Error — The name supplied already exists. : Another "
        "customer, vendor or employee is already using this name. Please use a different name."
    )
    assert str(fault) == fault.message
    assert isinstance(fault, ConflictError)


def test_stale_object_message_does_not_repeat_the_title() -> None:
    fault = parse_fault(400, (faults_dir() / "fault-5010-from-batch-sample.json").read_bytes(), JSON, None)
    assert fault.message == (
        "QuickBooks says: Stale Object Error — You and root were working on this at the same time. "
        "root finished before you did, so your work was not saved."
    )


def _fault(code: str, message: str = "m", detail: str = "d", element: str = "") -> bytes:
    error = {"Message": message, "Detail": detail, "code": code, "element": element}
    return json.dumps({"Fault": {"Error": [error], "type": "ValidationFault"}}).encode()


@pytest.mark.parametrize(
    ("status", "body", "cls", "parent"),
    [
        (
            401,
            _fault("3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401"),
            AuthenticationFailed,
            AuthError,
        ),
        (401, b"", AuthenticationFailed, AuthError),
        (403, _fault("3100", "message=ApplicationAuthorizationFailed"), Forbidden, AuthError),
        (400, _fault("6140", "Duplicate Document Number Error"), DuplicateDocNumber, PermanentError),
        (400, _fault("6000", "A business validation error has occurred"), Validation, PermanentError),
        (400, _fault("4001", "Invalid query"), Validation, PermanentError),
        (500, b"", ServerError, TransientError),
        (503, b"<html><body>Service Unavailable</body></html>", ServerError, TransientError),
        (502, b"not json at all", ServerError, TransientError),
    ],
)
def test_status_and_code_classification(status: int, body: bytes, cls: type[QboFault], parent: type[Exception]) -> None:
    fault = parse_fault(status, body, JSON, None)
    assert type(fault) is cls
    assert isinstance(fault, parent)


def test_authentication_failed_message_asks_to_reconnect() -> None:
    fault = parse_fault(401, _fault("3200"), JSON, None)
    assert fault.category is ErrorCategory.AUTH
    assert "reconnect" in fault.message


def test_server_error_without_body_says_so() -> None:
    fault = parse_fault(503, b"", "text/html", "tid-9")
    assert fault.message == "QuickBooks had an internal error (HTTP 503); it will be retried later"
    assert fault.errors == []
    assert fault.code is None


def test_lower_case_keys_and_several_errors() -> None:
    body = json.dumps(
        {
            "fault": {
                "error": [
                    {
                        "message": "Required param missing",
                        "detail": "Need CustomerRef",
                        "code": "2020",
                        "element": "CustomerRef",
                    },
                    {"message": "Invalid Number", "detail": "Amount is not a number", "code": "2040"},
                ],
                "type": "ValidationFault",
            }
        }
    ).encode()
    fault = parse_fault(400, body, JSON, None)
    assert isinstance(fault, Validation)
    assert [e.code for e in fault.errors] == ["2020", "2040"]
    assert fault.message == (
        "QuickBooks says: Required param missing — Need CustomerRef (field CustomerRef); "
        "Invalid Number — Amount is not a number"
    )


def test_element_error_item_as_single_object() -> None:
    body = json.dumps({"Fault": {"Error": {"Message": "Object Not Found", "code": "610"}}}).encode()
    assert isinstance(parse_fault(400, body, JSON, None), NotFound)


def test_unreadable_xml_is_a_validation_fault_without_errors() -> None:
    fault = parse_fault(400, b"<IntuitResponse><Fault", "application/xml", None)
    assert isinstance(fault, Validation)
    assert fault.errors == []
    assert fault.message == "QuickBooks rejected the request (HTTP 400) without saying why"


def test_fault_in_body() -> None:
    assert fault_in_body({"Fault": {"Error": []}})
    assert not fault_in_body({"Invoice": {}})
    assert not fault_in_body([])
