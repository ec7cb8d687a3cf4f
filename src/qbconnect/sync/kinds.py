"""Every entity kind the engine runs: importing a kind's handler module registers its handler and periodic
passes with the engine's registry. The list is explicit, so a reader sees every kind in one place."""

from __future__ import annotations

from types import ModuleType

from qbconnect.sync.contacts import handler as contacts
from qbconnect.sync.invoices import handler as invoices
from qbconnect.sync.keepalive import handler as keepalive
from qbconnect.sync.receipts import handler as receipts
from qbconnect.sync.reviews import handler as reviews
from qbconnect.sync.workflows import fields as workflow_fields
from qbconnect.sync.workflows import handler as workflows

HANDLER_MODULES = (invoices, receipts, contacts, reviews, keepalive, workflows, workflow_fields)


def load_handlers() -> tuple[ModuleType, ...]:
    """The handler modules (importing this module registered them; calling this says so at the call site)."""
    return HANDLER_MODULES
