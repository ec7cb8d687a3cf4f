"""JSON for payloads that carry money: ``Decimal`` in, ``Decimal`` out, never through float.

``dumps`` writes a ``Decimal`` as a bare JSON number with exactly its digits (``Decimal("10.50")``
→ ``10.50``); ``loads`` reads every JSON number with a fraction or exponent as ``Decimal``.
This is the one way the project turns payloads into bytes and back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any


def _write(value: Any, out: list[str]) -> None:
    if value is None or isinstance(value, bool | str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot write {value} as a JSON number")
        out.append(format(value, "f"))
    elif isinstance(value, int):
        out.append(str(value))
    elif isinstance(value, float):
        raise TypeError("floats are not written to payloads; use Decimal")
    elif isinstance(value, datetime | date):
        out.append(json.dumps(value.isoformat()))
    elif isinstance(value, Mapping):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
            if index:
                out.append(",")
            out.append(json.dumps(key, ensure_ascii=False))
            out.append(":")
            _write(item, out)
        out.append("}")
    elif isinstance(value, Sequence):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _write(item, out)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(payload: Any) -> bytes:
    """Serialise ``payload`` to compact UTF-8 JSON; Decimals become exact JSON numbers."""
    out: list[str] = []
    _write(payload, out)
    return "".join(out).encode("utf-8")


def loads(data: bytes | str) -> Any:
    """Parse JSON; numbers with a fraction or exponent become ``Decimal``, integers stay ``int``."""
    return json.loads(data, parse_float=Decimal)
