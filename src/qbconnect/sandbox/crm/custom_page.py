"""A stand-in for the CRM's own page around a Marketplace app's custom page.

HighLevel shows a custom page in an iframe under Settings > Integrations and answers the frame's
``{message: "REQUEST_USER_DATA"}`` with ``{message: "REQUEST_USER_DATA_RESPONSE", payload}``: the user
context (``userId``, ``companyId``, ``role``, ``type``, ``activeLocation``, ``userName``, ``email``)
encrypted with the app's Shared Secret in CryptoJS's passphrase format. This page does the same, so the
app's single sign-on and its page can be driven in a browser exactly as inside the CRM.

``GET /ui/locations/{location_id}/integrations`` opens a location user's view (``?role=admin|user``);
``?agency=1`` opens an agency user's view of the same company.
"""

from __future__ import annotations

import html
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from qbconnect.crm.user_context import encrypt

if TYPE_CHECKING:
    from .state import CrmSandbox


@dataclass
class CustomPage:
    """The app's custom page as registered in the Marketplace: its URL and the app's Shared Secret."""

    url: str | None = None
    shared_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Settings · Integrations · CRM</title>
<style>
  body {{ margin: 0; font-family: system-ui, sans-serif; background: #f3f4f6; }}
  header {{ background: #111827; color: #fff; padding: .6rem 1rem; font-size: .9rem; }}
  iframe {{ display: block; width: 100%; height: calc(100vh - 2.4rem); border: 0; background: #fff; }}
</style></head>
<body>
<header>{location_name} · Settings &gt; Integrations</header>
<iframe id="app-frame" title="App" src="{src}"></iframe>
<script>
  var PAYLOAD = {payload};
  window.addEventListener("message", function (event) {{
    var frame = document.getElementById("app-frame");
    if (!frame || event.source !== frame.contentWindow) return;
    if (event.data && event.data.message === "REQUEST_USER_DATA") {{
      event.source.postMessage({{ message: "REQUEST_USER_DATA_RESPONSE", payload: PAYLOAD }}, "*");
    }}
  }});
</script>
</body></html>
"""


def build_custom_page_router(sandbox: CrmSandbox) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/ui/locations/{location_id}/integrations", response_class=HTMLResponse)
    def integrations(location_id: str, role: str = "admin", agency: bool = False) -> HTMLResponse:
        page = sandbox.custom_page
        if page.url is None:
            return HTMLResponse("<p>No custom page is registered for the app.</p>", status_code=404)
        location = sandbox.location(location_id)
        context = {
            "userId": f"user-{location_id}-{role}",
            "companyId": location.company_id,
            "role": role,
            "type": "agency" if agency else "location",
            "activeLocation": location_id,
            "userName": "Agency Owner" if agency else "Location Admin",
            "email": "owner@agency.example" if agency else "admin@location.example",
        }
        payload = encrypt(json.dumps(context).encode("utf-8"), page.shared_secret)
        body = PAGE.format(
            location_name=html.escape(location.name),
            src=html.escape(page.url, quote=True),
            payload=json.dumps(payload),
        )
        return HTMLResponse(body)

    return router
