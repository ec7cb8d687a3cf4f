"""Small helpers shared by the CRM emulator: ids, timestamps, JSON rendering of Decimal amounts."""

from __future__ import annotations

import secrets
import string
from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

_ALNUM = string.ascii_letters + string.digits


def object_id() -> str:
    """A 24-hex id like HighLevel's Mongo ids (invoices, orders, transactions)."""
    return secrets.token_hex(12)


def short_id() -> str:
    """A 20-character id like HighLevel's contact and location ids."""
    return "".join(secrets.choice(_ALNUM) for _ in range(20))


def iso_ms(moment: datetime) -> str:
    """``2023-12-12T09:27:42.355Z``, as HighLevel writes timestamps."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_seconds(moment: datetime) -> str:
    """``2025-01-28T14:35:00Z``, as in the webhook ``timestamp`` field."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """Parse ``YYYY-MM-DD`` (midnight UTC) or an ISO 8601 timestamp."""
    text = value.strip()
    if len(text) == 10:
        return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def money_json(value: Decimal) -> int | float:
    """A Decimal amount as a JSON number: ``999`` or ``150.1`` (HighLevel sends plain numbers)."""
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def jsonable(value: Any) -> Any:
    """Deep copy of ``value`` with every Decimal turned into a JSON number."""
    if isinstance(value, Decimal):
        return money_json(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
