"""Unit-level harness for the invoice handler pieces: a QBO sandbox behind a TestClient, a SQLite runtime,
and a hand-built JobContext (no job table involved)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from qbconnect.db.models import Location
from qbconnect.qbo.client import QboClient
from qbconnect.qbo.tokens import StaticTokenSource
from qbconnect.runtime import Runtime
from qbconnect.sandbox.qbo import QboSandbox, create_app
from qbconnect.sync.engine.context import JobContext

LOCATION = "loc-unit"
REDIRECT = "https://app.example/oauth/quickbooks/callback"


@dataclass
class Harness:
    runtime: Runtime
    sandbox: QboSandbox
    client: TestClient
    session: Session
    tokens: dict[str, str]

    def qbo(self, realm_id: str) -> QboClient:
        """A client like the engine's: the job session's transaction ends before every call."""
        return QboClient(
            realm_id=realm_id,
            api_base="http://testserver",
            tokens=_EndingTransaction(self.session, StaticTokenSource(self.tokens[realm_id])),
            http=self.client,
            sleep=lambda _: None,
        )

    def company(self, **kwargs: Any) -> str:
        realm = self.sandbox.add_company(**kwargs)
        self.sandbox.next_realm_id = realm
        response = self.client.get(
            "/connect/oauth2",
            params={
                "client_id": "sandbox-client",
                "response_type": "code",
                "scope": "com.intuit.quickbooks.accounting",
                "redirect_uri": REDIRECT,
                "state": "s",
            },
            follow_redirects=False,
        )
        code = parse_qs(urlparse(response.headers["location"]).query)["code"][0]
        token = self.client.post(
            "/oauth2/v1/tokens/bearer",
            data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
            auth=("sandbox-client", "sandbox-secret"),
        ).json()
        self.tokens[realm] = token["access_token"]
        return realm

    def ctx(self, entity_id: str = "inv-1", *, reason: str = "test") -> JobContext:
        return JobContext(
            runtime=self.runtime,
            session=self.session,
            job_id=1,
            location_id=LOCATION,
            kind="invoice",
            entity_id=entity_id,
            reason=reason,
            attempt=1,
            owner="test",
            log=structlog.get_logger("test"),
        )

    def entities(self, realm: str, entity: str) -> list[dict[str, Any]]:
        return self.sandbox.entities(realm, entity)


class _EndingTransaction:
    """Tokens that first commit the job session, as the engine's clients do (sync/engine/clients.py)."""

    def __init__(self, session: Session, inner: StaticTokenSource) -> None:
        self._session = session
        self._inner = inner

    def access_token(self) -> str:
        if self._session.in_transaction():
            self._session.commit()
        return self._inner.access_token()

    def force_refresh(self, rejected_token: str) -> str:
        return self._inner.force_refresh(rejected_token)


@pytest.fixture
def harness(sqlite_runtime: Runtime) -> Iterator[Harness]:
    sandbox = QboSandbox()
    client = TestClient(create_app(sandbox))
    session = sqlite_runtime.sessions()
    session.add(Location(id=LOCATION, name="Unit", settings={}, state={}))
    session.commit()
    try:
        yield Harness(sqlite_runtime, sandbox, client, session, {})
    finally:
        session.close()
        client.close()


def test_harness_reaches_the_sandbox(harness: Harness) -> None:
    realm = harness.company()
    assert harness.qbo(realm).company_info()["CompanyName"]
