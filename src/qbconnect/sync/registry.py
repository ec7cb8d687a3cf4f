"""Entity kinds and the handler that syncs each one."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qbconnect.sync import jobs

if TYPE_CHECKING:
    from qbconnect.sync.context import JobContext, Result

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
