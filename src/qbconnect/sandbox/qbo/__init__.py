"""QuickBooks Online emulator: OAuth 2.0, Accounting API v3, faults, throttling and webhooks in memory."""

from __future__ import annotations

from .app import create_app
from .faults import QboFault
from .state import FaultRule, QboSandbox, RequestRecord

__all__ = ["FaultRule", "QboFault", "QboSandbox", "RequestRecord", "create_app"]
