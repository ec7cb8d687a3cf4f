"""Shared fixtures for the CRM (HighLevel) emulator tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient

from qbconnect.sandbox.crm import CrmSandbox, create_app

LOCATION = "locAAAAAAAAAAAAAAAA1"
OTHER_LOCATION = "locBBBBBBBBBBBBBBBB2"
V_CONTACTS = "2021-07-28"
V_CONVERSATIONS = "2021-04-15"


@dataclass
class Crm:
    sandbox: CrmSandbox
    client: TestClient
    token: dict[str, Any]

    def headers(self, version: str = V_CONTACTS) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token['access_token']}", "Version": version}

    def get(self, path: str, version: str = V_CONTACTS, **params: Any) -> Any:
        return self.client.get(path, params=params, headers=self.headers(version))


def install(sandbox: CrmSandbox, client: TestClient, scope: str = "contacts.write invoices.readonly") -> dict[str, Any]:
    """Run the Marketplace install (chooselocation → code → token) and return the token response."""
    response = client.get(
        "/oauth/chooselocation",
        params={
            "response_type": "code",
            "client_id": sandbox.client_id,
            "redirect_uri": "https://app.example/oauth/crm/callback",
            "scope": scope,
        },
        follow_redirects=False,
    )
    assert response.status_code == 302, response.text
    code = parse_qs(urlparse(response.headers["location"]).query)["code"][0]
    token = client.post(
        "/oauth/token",
        data={
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
            "grant_type": "authorization_code",
            "code": code,
            "user_type": "Location",
            "redirect_uri": "https://app.example/oauth/crm/callback",
        },
    )
    assert token.status_code == 200, token.text
    result: dict[str, Any] = token.json()
    return result


def make_crm(**options: Any) -> Crm:
    sandbox = CrmSandbox(**options)
    sandbox.add_location(LOCATION, name="Acme Plumbing")
    sandbox.add_location(OTHER_LOCATION, name="Other Co")
    sandbox.next_location_id = LOCATION
    client = TestClient(create_app(sandbox))
    return Crm(sandbox, client, install(sandbox, client))


@pytest.fixture
def crm() -> Iterator[Crm]:
    instance = make_crm(sign_legacy_rsa=True)
    yield instance
    instance.sandbox.close()


@pytest.fixture
def contact_id(crm: Crm) -> str:
    contact = crm.sandbox.create_contact(
        LOCATION, firstName="Ada", lastName="Lovelace", email="ada@example.com", phone="+1 415-555-0100"
    )
    return str(contact["id"])
