"""Entity kinds and the handler that syncs each one, and the periodic passes that enqueue work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from qbconnect.runtime import Runtime
from qbconnect.sync.engine import jobs

if TYPE_CHECKING:
    from qbconnect.sync.engine.context import JobContext, Result

Handler = Callable[["JobContext"], "Result"]


@dataclass(frozen=True)
class HandlerSpec:
    kind: str
    direction: str  # crm_to_qbo | qbo_to_crm | internal
    handler: Handler
    title: str  # how the sync log names the thing, e.g. "Invoice"


HANDLERS: dict[str, HandlerSpec] = {}


def register(kind: str, *, direction: str, title: str) -> Callable[[Handler], Handler]:
    def decorate(fn: Handler) -> Handler:
        if kind in HANDLERS and HANDLERS[kind].handler is not fn:
            raise ValueError(f"a handler for {kind!r} is already registered")
        HANDLERS[kind] = HandlerSpec(kind=kind, direction=direction, handler=fn, title=title)
        jobs.DIRECTIONS[kind] = direction
        return fn

    return decorate


def get(kind: str) -> HandlerSpec:
    try:
        return HANDLERS[kind]
    except KeyError:
        raise KeyError(f"no handler registered for job kind {kind!r}") from None


@dataclass(frozen=True)
class Periodic:
    """A periodic hook: ``fn(runtime, session)`` enqueues whatever needs a look (reconciliation, polling)."""

    name: str
    every_seconds: Callable[[Runtime], float]
    fn: Callable[[Runtime, Session], None]


PERIODIC: list[Periodic] = []


def register_periodic(name: str, every_seconds: Callable[[Runtime], float]) -> Callable[..., Any]:
    def decorate(fn: Callable[[Runtime, Session], None]) -> Callable[[Runtime, Session], None]:
        PERIODIC.append(Periodic(name=name, every_seconds=every_seconds, fn=fn))
        return fn

    return decorate
