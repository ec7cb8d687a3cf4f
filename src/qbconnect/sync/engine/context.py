"""What a handler receives (JobContext) and returns (Result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs


@dataclass(frozen=True)
class Result:
    """A handler's answer. ``skipped`` runs are logged with ``summary`` as the reason."""

    summary: str
    crm_id: str | None = None
    qbo_id: str | None = None
    skipped: bool = False


@dataclass
class JobContext:
    runtime: Runtime
    session: Session  # the job's unit of work: committed once, with the outcome, when the handler returns
    job_id: int
    location_id: str
    kind: str
    entity_id: str
    reason: str | None
    attempt: int
    owner: str
    log: Any = field(repr=False, default=None)

    def heartbeat(self) -> None:
        """Long handlers call this to keep their lease (a separate short transaction)."""
        with self.runtime.sessions.begin() as session:
            if not jobs.heartbeat(session, self.job_id, self.owner, self.runtime.settings.job_lease_seconds):
                raise jobs.LeaseLostError(f"job {self.job_id} lost its lease")

    def checkpoint(self) -> None:
        """Commit what the handler wrote so far (e.g. a requestid before the call that uses it)."""
        self.session.commit()
