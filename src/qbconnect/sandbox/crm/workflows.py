"""HighLevel's Marketplace workflow triggers and actions, as the emulator plays them.

What HighLevel documents (marketplace.gohighlevel.com/docs/marketplace-modules/WorkflowActionsAndTriggers):

- when a workflow starts, changes or stops using one of an app's triggers, HighLevel posts
  ``{triggerData: {id, key, filters, eventType: CREATED|UPDATED|DELETED, targetUrl}, meta: {key, version},
  extras: {locationId, workflowId, companyId}}`` to the trigger's Subscription URL, with the headers the app
  configured for it;
- the app starts the workflow by posting the trigger's data to ``targetUrl``
  (``…/workflows-marketplace/triggers/execute/<…>/<trigger id>``);
- an action's execution posts ``{data, extras: {locationId, contactId, workflowId}, meta: {key, version}}`` to
  the action's URL, with its configured headers, and the answer's fields become the action's variables.

Not documented, so chosen here [inferred]: firing authenticates with the location's access token and the
``Version`` header like every API call, answers 200 ``{"success": true}``, and 404 once the workflow no
longer uses the trigger. The headers the app configured are ``Authorization: Bearer <Shared Secret>``.

``start_workflow`` / ``stop_workflow`` play a user publishing or removing a workflow that uses a trigger,
``executions`` records what each target URL received, and ``run_action`` plays the action's step.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import APIRouter, Request

from .apiutil import NO_ACCESS, grant_of, json_body, require_location
from .common import object_id, short_id
from .errors import HLError

if TYPE_CHECKING:
    from .state import CrmSandbox

EXECUTE_PREFIX = "/workflows-marketplace/triggers/execute"


@dataclass
class TriggerUse:
    """One workflow's use of one trigger."""

    id: str
    key: str
    location_id: str
    workflow_id: str
    company_id: str
    target_url: str
    filters: list[Any] = field(default_factory=list)
    version: str = "1.0"
    active: bool = True


@dataclass(frozen=True)
class Execution:
    """What a trigger's target URL received."""

    trigger_id: str
    key: str
    location_id: str
    workflow_id: str
    payload: dict[str, Any]
    at: datetime


class WorkflowCallError(RuntimeError):
    """The app did not accept a subscription or action call."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"the app answered {status}: {body[:200]}")
        self.status = status
        self.body = body


class MarketplaceWorkflows:
    """The app's triggers in use in the emulator's workflows, and what they received."""

    def __init__(self, sandbox: CrmSandbox) -> None:
        self.sandbox = sandbox
        self.api_base: str | None = None  # the emulator's own base URL (targetUrl is built on it)
        self.subscription_url: str | None = None  # the app's Subscription URL (one for every trigger)
        self.action_url: str | None = None  # the app's "Get QuickBooks balance" execution URL
        self.uses: dict[str, TriggerUse] = {}
        self.executions: list[Execution] = []
        self.fail_next: list[int] = []  # statuses the next target-URL calls answer with (then normal)
        # Contact custom fields per location (``/locations/:id/customFields``), which the balance fields use.
        self.custom_fields: dict[str, list[dict[str, Any]]] = {}
        self.lock = threading.RLock()
        self._http = httpx.Client(timeout=10.0)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.sandbox.custom_page.shared_secret}", "Content-Type": "application/json"}

    def _post(self, url: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        if not url:
            raise RuntimeError("the app's URL is not configured")
        response = self._http.post(url, content=json.dumps(body), headers=self._headers())
        if response.status_code >= 300:
            raise WorkflowCallError(response.status_code, response.text)
        answer = response.json() if response.content else {}
        return answer if isinstance(answer, dict) else {}

    def _subscription_body(self, use: TriggerUse, event_type: str) -> dict[str, Any]:
        return {
            "triggerData": {
                "id": use.id,
                "key": use.key,
                "filters": copy.deepcopy(use.filters),
                "eventType": event_type,
                "targetUrl": use.target_url,
            },
            "meta": {"key": use.key, "version": use.version},
            "extras": {"locationId": use.location_id, "workflowId": use.workflow_id, "companyId": use.company_id},
        }

    def start_workflow(
        self, location_id: str, trigger_key: str, *, workflow_id: str | None = None, filters: list[Any] | None = None
    ) -> str:
        """A user publishes a workflow that starts with the trigger: the app is told (``CREATED``)."""
        location = self.sandbox.location(location_id)
        if not self.api_base:
            raise RuntimeError("the emulator's API base is not configured")
        trigger_id = object_id()
        use = TriggerUse(
            id=trigger_id,
            key=trigger_key,
            location_id=location_id,
            workflow_id=workflow_id or short_id(),
            company_id=location.company_id,
            target_url=f"{self.api_base.rstrip('/')}{EXECUTE_PREFIX}/{self.sandbox.app_id}/{trigger_id}",
            filters=list(filters or []),
        )
        with self.lock:
            self.uses[trigger_id] = use
        self._post(self.subscription_url, self._subscription_body(use, "CREATED"))
        return trigger_id

    def update_workflow(self, trigger_id: str, filters: list[Any]) -> None:
        with self.lock:
            use = self.uses[trigger_id]
            use.filters = list(filters)
        self._post(self.subscription_url, self._subscription_body(use, "UPDATED"))

    def stop_workflow(self, trigger_id: str) -> None:
        """The workflow stops using the trigger (deleted, or its trigger removed): the app is told (``DELETED``)."""
        with self.lock:
            use = self.uses[trigger_id]
            use.active = False
        self._post(self.subscription_url, self._subscription_body(use, "DELETED"))

    def received(self, *, trigger_id: str | None = None, location_id: str | None = None) -> list[Execution]:
        with self.lock:
            return [
                e
                for e in self.executions
                if (trigger_id is None or e.trigger_id == trigger_id)
                and (location_id is None or e.location_id == location_id)
            ]

    def run_action(
        self, location_id: str, contact_id: str, *, key: str = "quickbooks_get_balance", workflow_id: str = "wf_demo"
    ) -> dict[str, Any]:
        """A workflow reaches the app's action for a contact: the answer is what later steps can use."""
        body = {
            "data": {},
            "extras": {"locationId": location_id, "contactId": contact_id, "workflowId": workflow_id},
            "meta": {"key": key, "version": "1.0"},
        }
        return self._post(self.action_url, body)

    def execute(self, grant_location: str | None, trigger_id: str, payload: Any) -> dict[str, Any]:
        """A call to a target URL (the router's work)."""
        with self.lock:
            use = self.uses.get(trigger_id)
            if use is None or not use.active:
                raise HLError(404, "Trigger not found")
            if grant_location != use.location_id:
                raise HLError(403, NO_ACCESS)
            if self.fail_next:
                status = self.fail_next.pop(0)
                raise HLError(status, "Internal server error" if status >= 500 else "Request refused")
            if not isinstance(payload, dict):
                raise HLError(422, ["body must be a JSON object"])
            self.executions.append(
                Execution(use.id, use.key, use.location_id, use.workflow_id, copy.deepcopy(payload), self.sandbox.now())
            )
        return {"success": True}

    def close(self) -> None:
        self._http.close()


def workflows_router(sandbox: CrmSandbox) -> APIRouter:
    router = APIRouter(prefix=EXECUTE_PREFIX)

    @router.post("/{app_id}/{trigger_id}")
    async def execute(app_id: str, trigger_id: str, request: Request) -> dict[str, Any]:
        grant = grant_of(request)
        if app_id != sandbox.app_id:
            raise HLError(404, "Trigger not found")
        return sandbox.workflows.execute(grant.location_id, trigger_id, await json_body(request))

    return router


def custom_fields_router(sandbox: CrmSandbox) -> APIRouter:
    """``/locations/:locationId/customFields`` (Version 2021-07-28): list and create contact custom fields."""
    router = APIRouter(prefix="/locations/{location_id}/customFields")

    @router.get("")
    async def list_fields(location_id: str, request: Request) -> dict[str, Any]:
        require_location(request, location_id)
        model = request.query_params.get("model")
        with sandbox.workflows.lock:
            found = [f for f in sandbox.workflows.custom_fields.get(location_id, []) if model in (None, f["model"])]
            return {"customFields": copy.deepcopy(found)}

    @router.post("")
    async def create_field(location_id: str, request: Request) -> dict[str, Any]:
        require_location(request, location_id)
        body = await json_body(request)
        if not isinstance(body, dict) or not body.get("name") or not body.get("dataType"):
            raise HLError(422, ["name should not be empty", "dataType should not be empty"])
        key = "contact." + "_".join(str(body["name"]).lower().split())
        field = {
            "id": short_id(),
            "name": str(body["name"]),
            "fieldKey": key,
            "dataType": str(body["dataType"]),
            "model": str(body.get("model") or "contact"),
            "locationId": location_id,
            "position": 0,
        }
        with sandbox.workflows.lock:
            sandbox.workflows.custom_fields.setdefault(location_id, []).append(field)
        return {"customField": copy.deepcopy(field)}

    return router
