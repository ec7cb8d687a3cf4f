"""HighLevel (CRM) emulator: ``CrmSandbox`` holds the state, ``create_app`` serves HighLevel's API paths."""

from .app import API_VERSIONS, create_app
from .state import CrmSandbox, Location, RequestRecord

__all__ = ["API_VERSIONS", "CrmSandbox", "Location", "RequestRecord", "create_app"]
