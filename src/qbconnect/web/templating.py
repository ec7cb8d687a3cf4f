"""The Jinja2 environment of the pages (templates/ beside this module) and its filters."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates

from qbconnect.sync.workflows.catalogue import BALANCE, TRIGGERS

TEMPLATE_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"


def brand(request: Request) -> dict[str, Any]:
    """White-label names for every page: the product's name and accent colour from the settings."""
    settings = request.app.state.runtime.settings
    return {"product_name": settings.product_name, "brand_color": settings.brand_color}


templates = Jinja2Templates(directory=str(TEMPLATE_DIR), context_processors=[brand])


def _when(value: datetime | None) -> str:
    return value.strftime("%b %d, %Y %H:%M UTC") if value else "—"


def _day(value: datetime | None) -> str:
    return value.strftime("%b %d, %Y") if value else "—"


templates.env.filters["when"] = _when
templates.env.filters["day"] = _day
# The app's workflow triggers and action, listed on the settings page (docs/workflows.md).
templates.env.globals["workflow_triggers"] = tuple(TRIGGERS.values())
templates.env.globals["workflow_action"] = BALANCE
