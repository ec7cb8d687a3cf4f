"""Request bodies as JSON, the way RFC 8259 exchanges it: UTF-8, and nothing that can crash the parser."""

from __future__ import annotations

import json
from typing import Any


def decode_json(body: bytes) -> Any:
    """Parse ``body``; ``ValueError`` with a plain reason for another encoding (UTF-16/32), invalid UTF-8,
    nesting too deep to parse, or text that is not JSON. A leading byte order mark is ignored."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"body is not UTF-8 encoded JSON (RFC 8259): invalid byte at offset {exc.start}") from exc
    if "\x00" in text:  # UTF-16/32 without a byte order mark decodes as UTF-8 with NULs in it
        raise ValueError("body is not UTF-8 encoded JSON (RFC 8259): it contains NUL bytes (UTF-16 or UTF-32?)")
    try:
        return json.loads(text.removeprefix("\ufeff"))
    except RecursionError as exc:
        raise ValueError("body is nested too deeply") from exc
    except ValueError as exc:
        raise ValueError(f"body is not JSON: {exc}") from exc
