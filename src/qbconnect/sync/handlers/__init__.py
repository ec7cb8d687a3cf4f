"""One module per entity kind; importing them registers their handlers and periodic hooks."""

from __future__ import annotations

import importlib

HANDLER_MODULES: tuple[str, ...] = ("invoice", "sales_receipt", "customer", "review", "connection")


def load_handlers() -> None:
    for name in HANDLER_MODULES:
        importlib.import_module(f"qbconnect.sync.handlers.{name}")
