"""Request parameters the storage can hold, declared once: anything else is a 422 before any query runs.

PostgreSQL refuses text holding NUL and integers past BIGINT (a DataError, which would be answered as
"storage unavailable"); SQLite refuses integers past 64 bits. Identifiers are also no longer than their
columns. The limits are part of the OpenAPI document, so clients see them.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Form, Path, Query

MAX_ROW_ID = 2**63 - 1
"""The largest id a BIGINT (PostgreSQL) or INTEGER (SQLite) primary key can hold."""
PLAIN_TEXT = r"^[^\x00-\x1f\x7f]*$"
"""No control characters (NUL above all)."""
LOCATION_ID_LENGTH = 64

LocationIdPath = Annotated[str, Path(min_length=1, max_length=LOCATION_ID_LENGTH, pattern=PLAIN_TEXT)]
LocationIdQuery = Annotated[str, Query(min_length=1, max_length=LOCATION_ID_LENGTH, pattern=PLAIN_TEXT)]
OptionalLocationIdQuery = Annotated[str | None, Query(max_length=LOCATION_ID_LENGTH, pattern=PLAIN_TEXT)]
LocationIdForm = Annotated[str, Form(min_length=1, max_length=LOCATION_ID_LENGTH, pattern=PLAIN_TEXT)]
RowIdPath = Annotated[int, Path(ge=1, le=MAX_ROW_ID)]
RowIdForm = Annotated[int, Form(ge=1, le=MAX_ROW_ID)]


def is_location_id(value: str) -> bool:
    """Whether ``value`` could be a location id (for ids read by hand, e.g. from a form of many fields)."""
    return 0 < len(value) <= LOCATION_ID_LENGTH and re.fullmatch(PLAIN_TEXT, value) is not None
