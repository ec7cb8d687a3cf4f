"""The whole product on one machine: both emulators and the service, wired together over loopback HTTP.

Used by the end-to-end tests, the benchmarks and ``qbconnect demo``. Each piece runs as a real HTTP server
(uvicorn in a thread), so the service talks to the emulators exactly as it would to Intuit and HighLevel.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy import select, update

from qbconnect.clock import utcnow
from qbconnect.config import Settings
from qbconnect.db.migrate import upgrade
from qbconnect.db.models import Location, SyncJob
from qbconnect.runtime import Runtime, build_runtime
from qbconnect.sandbox.crm import CrmSandbox
from qbconnect.sandbox.crm import create_app as create_crm_app
from qbconnect.sandbox.qbo import QboSandbox
from qbconnect.sandbox.qbo import create_app as create_qbo_app
from qbconnect.sandbox.server import RunningServer, free_port, serve_in_thread
from qbconnect.services import flows
from qbconnect.sync.engine.runner import JobRunner
from qbconnect.web.app import create_app
from qbconnect.worker import Queue

QBO_CLIENT_ID = "qbconnect-qbo-client"
QBO_CLIENT_SECRET = "qbconnect-qbo-secret"
QBO_VERIFIER = "qbconnect-qbo-verifier"
CRM_CLIENT_ID = "qbconnect-crm-client"
CRM_CLIENT_SECRET = "qbconnect-crm-secret"


@dataclass
class Stack:
    runtime: Runtime
    qbo: QboSandbox
    crm: CrmSandbox
    qbo_url: str
    crm_url: str
    service_url: str
    queue: Queue | None
    servers: list[RunningServer] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return self.runtime.settings

    def process_env(self, **extra: str) -> dict[str, str]:
        """The environment of a ``qbconnect`` process (``serve``, ``worker``) joining this stack: this process's
        environment without its ``QBCONNECT_*`` variables, every setting of the stack's service that differs
        from its default as a ``QBCONNECT_*`` variable, then ``extra``."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("QBCONNECT_")}
        for name, info in Settings.model_fields.items():
            value = getattr(self.settings, name)
            if value is None or value == info.get_default(call_default_factory=True):
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"QBCONNECT_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
        env.update(extra)
        return env

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.qbo.stop_webhook_delivery()
        self.crm.stop_webhook_delivery()
        self.runtime.close()

    # ------------------------------------------------------------------ connecting
    def install_crm_location(self, *, name: str = "Demo Location", country: str = "US") -> str:
        """Install the app in a new CRM location through HighLevel's OAuth and the service's own callback.

        choose-location (auto-approved) → our ``/oauth/crm/callback?code=…`` → redirect to the settings page.
        """
        location_id = self.crm.add_location(name=name, country=country)
        self.crm.next_location_id = location_id
        url = flows.crm_install_url(self.runtime)
        callback = _redirect_target(self.runtime.http.get(url, follow_redirects=False), "CRM install")
        landed = _redirect_target(self.runtime.http.get(callback, follow_redirects=False), "our CRM callback")
        if "/settings/integrations" not in landed:
            raise OAuthFlowError(f"the CRM callback sent us to {landed}")
        # HighLevel's token answer carries no location name; the emulator knows it, so record it here.
        with self.runtime.sessions.begin() as session:
            location = session.get(Location, location_id)
            if location is not None and not location.name:
                location.name = name
        return location_id

    def install_agency(self, names: list[str], *, company_id: str = "agency-demo", country: str = "US") -> list[str]:
        """An agency installs the app in several of its locations at once (a bulk install): one Company
        grant through HighLevel's OAuth, a location token minted for each. Returns the location ids."""
        location_ids = [self.crm.add_location(name=name, country=country, company_id=company_id) for name in names]
        self.crm.next_bulk_install = list(location_ids)
        url = flows.crm_install_url(self.runtime)
        callback = _redirect_target(self.runtime.http.get(url, follow_redirects=False), "CRM install")
        landed = _redirect_target(self.runtime.http.get(callback, follow_redirects=False), "our CRM callback")
        if "/settings/integrations" not in landed:
            raise OAuthFlowError(f"the CRM callback sent us to {landed}")
        return location_ids

    def connect_quickbooks(self, location_id: str, *, realm_id: str | None = None, **company: Any) -> str:
        """Connect a location to a new (or given) sandbox company through the service's "QB Connect" flow.

        ``/connect/quickbooks`` (admin) → Intuit's authorize page (auto-approved) → our
        ``/oauth/quickbooks/callback`` → redirect to the settings page. Raises OAuthFlowError on refusal.
        """
        realm_id = realm_id or self.qbo.add_company(**company)
        self.qbo.next_realm_id = realm_id
        http = self.runtime.http
        start = http.get(
            f"{self.service_url}/connect/quickbooks",
            params={"location_id": location_id},
            headers={"Authorization": f"Bearer {self.settings.secret('admin_token')}"},
            follow_redirects=False,
        )
        authorize = _redirect_target(start, "QB Connect")
        callback = _redirect_target(http.get(authorize, follow_redirects=False), "Intuit's authorize page")
        landed = _redirect_target(http.get(callback, follow_redirects=False), "our QuickBooks callback")
        if "/settings/integrations" not in landed:
            raise OAuthFlowError(f"the QuickBooks callback sent us to {landed}")
        return realm_id

    # ------------------------------------------------------------------ running jobs without a queue
    def deliver_webhooks(self) -> int:
        return self.crm.flush_webhooks() + self.qbo.flush_webhooks()

    def drain(self, *, timeout: float = 120.0, fast_forward: bool = True) -> int:
        """Run every pending job (and the jobs they enqueue) in this thread until none is left.

        ``fast_forward`` makes backed-off retries due at once instead of waiting for their time.
        Returns the number of runs.
        """
        runner = JobRunner(self.runtime)
        runs = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.runtime.sessions.begin() as session:
                if fast_forward:
                    session.execute(update(SyncJob).where(SyncJob.state == "pending").values(run_after=utcnow()))
                due = list(
                    session.execute(
                        select(SyncJob.id)
                        .where(SyncJob.state == "pending", SyncJob.run_after <= utcnow())
                        .order_by(SyncJob.id)
                    ).scalars()
                )
            if not due:
                with self.runtime.sessions() as session:
                    running = session.execute(select(SyncJob.id).where(SyncJob.state == "running")).first()
                if running is None:
                    return runs
                time.sleep(0.05)
                continue
            for job_id in due:
                if runner.run(job_id) is not None:
                    runs += 1
        raise TimeoutError(f"jobs still pending after {timeout}s")


class OAuthFlowError(RuntimeError):
    """A step of an OAuth round trip did not answer with the expected redirect."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def _redirect_target(response: httpx.Response, step: str) -> str:
    """The absolute URL a redirect answer points to; OAuthFlowError when the step answered otherwise."""
    if response.status_code not in (302, 303, 307):
        raise OAuthFlowError(
            f"{step} answered {response.status_code}: {response.text[:300]}",
            status=response.status_code,
            body=response.text,
        )
    return str(response.request.url.join(response.headers["location"]))


def start_stack(
    *,
    database_url: str,
    queue_url: str | None = None,
    secret_key: str,
    admin_token: str,
    service_port: int | None = None,
    run_worker: bool = False,
    qbo_options: dict[str, Any] | None = None,
    crm_options: dict[str, Any] | None = None,
    settings_overrides: dict[str, Any] | None = None,
) -> Stack:
    """Start both emulators and the service. With ``run_worker`` jobs run in the service's worker,
    otherwise they wait in the job table for :meth:`Stack.drain`."""
    qbo = QboSandbox(
        client_id=QBO_CLIENT_ID, client_secret=QBO_CLIENT_SECRET, verifier_token=QBO_VERIFIER, **(qbo_options or {})
    )
    crm = CrmSandbox(client_id=CRM_CLIENT_ID, client_secret=CRM_CLIENT_SECRET, **(crm_options or {}))
    qbo_server = serve_in_thread(create_qbo_app(qbo))
    crm_server = serve_in_thread(create_crm_app(crm))
    port = service_port or free_port()
    service_url = f"http://127.0.0.1:{port}"
    values: dict[str, Any] = {
        "database_url": database_url,
        "queue_url": queue_url,
        "public_url": service_url,
        "secret_key": secret_key,
        "admin_token": admin_token,
        "qbo_client_id": QBO_CLIENT_ID,
        "qbo_client_secret": QBO_CLIENT_SECRET,
        "qbo_api_base": qbo_server.base_url,
        "qbo_auth_url": f"{qbo_server.base_url}/connect/oauth2",
        "qbo_token_url": f"{qbo_server.base_url}/oauth2/v1/tokens/bearer",
        "qbo_revoke_url": f"{qbo_server.base_url}/v2/oauth2/tokens/revoke",
        "qbo_webhook_verifier_token": QBO_VERIFIER,
        "crm_api_base": crm_server.base_url,
        "crm_client_id": CRM_CLIENT_ID,
        "crm_client_secret": CRM_CLIENT_SECRET,
        "crm_auth_url": f"{crm_server.base_url}/oauth/chooselocation",
        "crm_webhook_public_key": crm.webhook_public_key,
        "crm_webhook_rsa_public_key": crm.legacy_rsa_public_key_pem,
        "crm_shared_secret": crm.custom_page.shared_secret,
        "frame_ancestors": f"'self' {crm_server.base_url}",  # the CRM emulator frames the custom page
        "log_json": False,
        "_env_file": None,
    }
    values.update(settings_overrides or {})
    settings = Settings(**values)
    upgrade(settings.database_url)
    runtime = build_runtime(settings)
    queue = Queue(runtime) if run_worker else None
    from qbconnect.sync.kinds import load_handlers

    load_handlers()
    app = create_app(runtime, queue=queue, run_worker=run_worker)
    service_server = serve_in_thread(app, port=port)
    qbo.webhook_url = f"{service_url}/webhooks/qbo"
    crm.webhook_url = f"{service_url}/webhooks/crm"
    crm.custom_page.url = f"{service_url}/sso/crm"
    crm.workflows.api_base = crm_server.base_url  # the app's workflow trigger and action URLs (docs/workflows.md)
    crm.workflows.subscription_url = f"{service_url}/workflows/crm/subscription"
    crm.workflows.action_url = f"{service_url}/workflows/crm/actions/balance"
    return Stack(
        runtime=runtime,
        qbo=qbo,
        crm=crm,
        qbo_url=qbo_server.base_url,
        crm_url=crm_server.base_url,
        service_url=service_url,
        queue=queue,
        servers=[qbo_server, crm_server, service_server],
    )
