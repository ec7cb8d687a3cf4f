"""Row access shared by the link repository's modules, and what the overview counts.

Nothing outside ``qbconnect.sync.links`` sees a row: the modules here turn rows into typed records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from qbconnect.db.link_model import Link

IN_CHUNK = 500


def chunks(values: Sequence[str]) -> Iterable[list[str]]:
    """``values`` in slices small enough for an ``IN (…)`` on every database."""
    for start in range(0, len(values), IN_CHUNK):
        yield list(values[start : start + IN_CHUNK])


def find(session: Session, location_id: str, kind: str, crm_id: str) -> Link | None:
    """The row ``(location, kind, crm_id)`` (unique), if any."""
    return session.execute(_FIND, {"location": location_id, "kind": kind, "crm": crm_id}).scalar_one_or_none()


# Built once: every job reads its link.
_FIND = select(Link).where(
    Link.location_id == bindparam("location"), Link.kind == bindparam("kind"), Link.crm_id == bindparam("crm")
)


def get(session: Session, row_id: int | None) -> Link | None:
    """A row by id (from the session's identity map when it was loaded in this transaction)."""
    return session.get(Link, row_id) if row_id is not None else None


def new(session: Session, location_id: str, kind: str, crm_id: str) -> Link:
    """A new, empty row (added to the session, not flushed)."""
    row = Link(location_id=location_id, kind=kind, crm_id=crm_id, data={})
    session.add(row)
    return row


def find_or_new(session: Session, location_id: str, kind: str, crm_id: str, row_id: int | None = None) -> Link:
    row = get(session, row_id) or find(session, location_id, kind, crm_id)
    return row if row is not None else new(session, location_id, kind, crm_id)


def of_kind(session: Session, location_id: str, kind: str, crm_ids: Iterable[str]) -> dict[str, Link]:
    """The rows of ``kind`` for these CRM ids, by CRM id."""
    found: dict[str, Link] = {}
    for chunk in chunks(sorted(set(crm_ids))):
        rows = session.execute(
            select(Link).where(Link.location_id == location_id, Link.kind == kind, Link.crm_id.in_(chunk))
        ).scalars()
        for row in rows:
            found[row.crm_id] = row
    return found


def counts_by_kind(session: Session, location_id: str) -> dict[str, int]:
    """How many links the location has, per kind (the overview's figures)."""
    rows = session.execute(
        select(Link.kind, func.count()).where(Link.location_id == location_id).group_by(Link.kind)
    ).all()
    return {str(kind): int(count) for kind, count in rows}
