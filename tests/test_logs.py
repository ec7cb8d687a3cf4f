"""Logs are structured and never carry tokens or secrets."""

from __future__ import annotations

import io
import json
import logging

import structlog
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from qbconnect.clock import utcnow
from qbconnect.logs import configure_logging
from qbconnect.runtime import Runtime


def test_secret_fields_and_bearer_values_are_redacted(capsys) -> None:
    configure_logging(json=True)
    log = structlog.get_logger("test")
    log.info(
        "qbo.call",
        location_id="loc-1",
        realm_id="9130",
        access_token="eyJsecret",
        client_secret="shh",
        note="sent Authorization: Bearer abc.def.ghi to Intuit",
    )
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert record["location_id"] == "loc-1" and record["realm_id"] == "9130"
    assert record["access_token"] == "[redacted]" and record["client_secret"] == "[redacted]"
    assert "abc.def.ghi" not in line and "eyJsecret" not in line and "shh" not in line


def test_logging_follows_a_replaced_stderr(capsys) -> None:
    configure_logging(json=True)
    capsys.readouterr()
    import io
    import sys

    replaced = io.StringIO()
    original = sys.stderr
    sys.stderr = replaced
    try:
        structlog.get_logger("test").info("after.replace", location_id="loc-2")
    finally:
        sys.stderr = original
    assert "after.replace" in replaced.getvalue()


def test_each_log_line_is_one_write_so_threads_never_share_a_line(monkeypatch) -> None:
    configure_logging(json=True)
    writes: list[str] = []

    class Recorder(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    monkeypatch.setattr("sys.stderr", Recorder())
    structlog.get_logger("test").info("one.line", location_id="loc-3")
    assert len(writes) == 1 and writes[0].endswith("}\n")
    assert json.loads(writes[0])["event"] == "one.line"


MARKER = "marker-jane@example.com"


def _duplicate_insert(runtime: Runtime) -> Exception:
    """A unique violation whose values carry ``MARKER`` (PostgreSQL quotes them in its DETAIL line)."""
    statement = text(
        "INSERT INTO inbox_events (source, event_id, event_type, outcome, body, received_at) "
        "VALUES ('crm', :event_id, 'ContactCreate', 'queued', :body, :received_at)"
    )
    values = {"event_id": MARKER, "body": json.dumps({"email": MARKER}), "received_at": utcnow().replace(tzinfo=None)}
    with runtime.engine.begin() as conn:
        conn.execute(statement, values)
    try:
        with runtime.engine.begin() as conn:
            conn.execute(statement, values)
    except IntegrityError as exc:
        return exc
    raise AssertionError("the duplicate insert was accepted")


def test_database_errors_are_logged_without_sql_parameters_or_quoted_values(runtime: Runtime, capsys) -> None:
    configure_logging(json=True)
    error = _duplicate_insert(runtime)
    capsys.readouterr()
    try:
        raise error
    except IntegrityError:
        structlog.get_logger("test").exception("webhook.crm.storage_unavailable")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert "IntegrityError" in record["exception"] and "INSERT INTO inbox_events" in record["exception"]
    assert MARKER not in line


def test_standard_library_log_records_of_database_errors_carry_no_values(runtime: Runtime) -> None:
    """uvicorn logs unhandled exceptions through the standard library, not structlog."""
    configure_logging(json=True)
    error = _duplicate_insert(runtime)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("uvicorn.error.test")
    logger.addHandler(handler)
    try:
        logger.error("Exception in ASGI application", exc_info=error)
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "IntegrityError" in written and MARKER not in written
