"""Logs are structured and never carry tokens or secrets."""

from __future__ import annotations

import json

import structlog

from qbconnect.logs import configure_logging


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
