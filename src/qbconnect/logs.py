"""Structured logging (structlog). Secrets never reach a log line, nor do SQL parameters.

Engines are built with ``hide_parameters=True``; on top of that, an exception that is (or wraps) a database
error is rendered here from safe parts only: the traceback frames, the exception classes, the SQL text
(parameters are bound, never inlined), the SQLSTATE and constraint name. Driver messages that may quote
values (PostgreSQL's ``DETAIL: Key (…)=(…)``, "invalid input syntax …: \"value\"") are left out. This
applies to structlog's ``log.exception`` and to the standard library's logging (uvicorn's error log).
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Iterator, MutableMapping
from typing import Any

import structlog
from sqlalchemy.exc import StatementError

_SECRET_KEYS = re.compile(r"(token|secret|password|authorization|code_verifier|client_secret)", re.I)
_BEARER = re.compile(r"(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]+")


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key != "event" and _SECRET_KEYS.search(key) and key not in ("token_health",):
            event[key] = "[redacted]"
        elif isinstance(event[key], str):
            event[key] = _BEARER.sub(r"\1 [redacted]", event[key])
    return event


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def _is_driver_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in ("sqlite3", "psycopg", "psycopg2")


def _describe(exc: BaseException) -> str:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    if isinstance(exc, StatementError):
        orig = exc.orig
        inner = f" ({_describe(orig)})" if orig is not None else ""
        return f"{name}:{inner} [SQL: {exc.statement}]"
    if _is_driver_error(exc):
        if type(exc).__module__.startswith("sqlite3"):
            # SQLite's own messages name tables, columns and constraints, never values.
            return f"{name}: {str(exc).splitlines()[0] if str(exc) else ''}"
        diag = getattr(exc, "diag", None)
        sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        constraint = getattr(diag, "constraint_name", None) if diag is not None else None
        return f"{name}: sqlstate {sqlstate}" + (f", constraint {constraint}" if constraint else "")
    return f"{type(exc).__qualname__}: {exc}" if str(exc) else type(exc).__qualname__


def safe_exception_text(exc: BaseException) -> str | None:
    """A traceback text without SQL parameters or driver messages, or None when no database error is involved."""
    chain = list(_exception_chain(exc))
    if not any(isinstance(item, StatementError) or _is_driver_error(item) for item in chain):
        return None
    parts = [
        "Traceback (most recent call last):\n" + "".join(traceback.format_tb(item.__traceback__)) + _describe(item)
        for item in reversed(chain)
    ]
    return "\n\nwhich led to:\n\n".join(parts)


def _exception_of(exc_info: Any) -> BaseException | None:
    if isinstance(exc_info, BaseException):
        return exc_info
    if isinstance(exc_info, tuple) and len(exc_info) == 3 and isinstance(exc_info[1], BaseException):
        return exc_info[1]
    if exc_info is True:
        return sys.exc_info()[1]
    return None


def _safe_db_exceptions(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    exc = _exception_of(event.get("exc_info"))
    if exc is not None:
        text = safe_exception_text(exc)
        if text is not None:
            event.pop("exc_info", None)
            event["exception"] = text
    return event


_base_record_factory = logging.getLogRecordFactory()


def _safe_record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_record_factory(*args, **kwargs)
    if record.exc_info and record.exc_info[1] is not None:
        text = safe_exception_text(record.exc_info[1])
        if text is not None:
            record.exc_text = text  # Formatter uses it instead of formatting exc_info itself
    return record


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is at that moment (it may be replaced after start-up), in one
    write: ``print`` writes the newline separately, so two threads' JSON objects could share a line."""

    def msg(self, message: str) -> None:
        stream = sys.stderr
        stream.write(message + "\n")
        stream.flush()

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger_factory(*_: Any) -> _StderrLogger:
    return _StderrLogger()


def configure_logging(*, json: bool = True, level: int = logging.INFO) -> None:
    logging.basicConfig(format="%(message)s", stream=sys.stderr, level=level)
    logging.setLogRecordFactory(_safe_record_factory)
    for noisy in ("httpx", "httpcore", "huey", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    renderer: Any = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact,
            _safe_db_exceptions,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger_factory,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
