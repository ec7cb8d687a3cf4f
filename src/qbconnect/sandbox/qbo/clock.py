"""Time helpers: timezone-aware UTC, formatted the way QBO writes xs:dateTime values."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def qbo_time(moment: datetime, *, millis: bool = False) -> str:
    """``2015-07-24T10:33:39-00:00``-style timestamp (QBO gives seconds in MetaData)."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def parse_time(text: str) -> datetime:
    """Parse an xs:date or xs:dateTime; naive values are taken as UTC."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed
