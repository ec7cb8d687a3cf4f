"""Fixtures for the QBO emulator tests: a sandbox, a connected TestClient and small helpers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from fastapi.testclient import TestClient

from qbconnect.sandbox.qbo import QboSandbox, create_app

REDIRECT = "https://app.example/oauth/quickbooks/callback"
SCOPE = "com.intuit.quickbooks.accounting"
BASIC = ("sandbox-client", "sandbox-secret")


def authorize(client: TestClient, state: str = "st-1") -> dict[str, str]:
    response = client.get(
        "/connect/oauth2",
        params={
            "client_id": BASIC[0],
            "response_type": "code",
            "scope": SCOPE,
            "redirect_uri": REDIRECT,
            "state": state,
        },
        follow_redirects=False,
    )
    assert response.status_code == 302, response.text
    query = parse_qs(urlparse(response.headers["location"]).query)
    return {k: v[0] for k, v in query.items()}


def exchange(client: TestClient, code: str, **headers: str) -> Any:
    return client.post(
        "/oauth2/v1/tokens/bearer",
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT},
        auth=BASIC,
        headers=headers,
    )


@dataclass
class Qbo:
    sandbox: QboSandbox
    client: TestClient
    realm: str
    token: dict[str, Any]

    def headers(self, *, json: bool = True) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token['access_token']}"}
        if json:
            headers["Accept"] = "application/json"
        return headers

    def url(self, path: str) -> str:
        return f"/v3/company/{self.realm}/{path}"

    def post(self, entity: str, body: Any, *, json: bool = True, **params: Any) -> Any:
        return self.client.post(
            self.url(entity), json=body, params={"minorversion": 75, **params}, headers=self.headers(json=json)
        )

    def read(self, entity: str, entity_id: str) -> Any:
        return self.client.get(self.url(f"{entity}/{entity_id}"), headers=self.headers())

    def query(self, text: str) -> Any:
        return self.client.get(self.url("query"), params={"query": text}, headers=self.headers())

    def ok(self, entity: str, body: Any, **params: Any) -> dict[str, Any]:
        response = self.post(entity.lower(), body, **params)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()[entity]
        return result

    def fault(self, response: Any) -> dict[str, Any]:
        assert response.status_code >= 400, response.text
        error: dict[str, Any] = response.json()["Fault"]["Error"][0]
        return error

    def customer(self, name: str = "Jane Doe", email: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"DisplayName": name}
        if email:
            body["PrimaryEmailAddr"] = {"Address": email}
        return self.ok("Customer", body)

    def invoice(self, customer_id: str, *lines: tuple[int | float, int | float], **extra: Any) -> dict[str, Any]:
        body = {
            "CustomerRef": {"value": customer_id},
            "Line": [
                {
                    "Amount": round(q * p, 2),
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": q, "UnitPrice": p},
                }
                for q, p in lines
            ],
            **extra,
        }
        return self.ok("Invoice", body)


def connect(sandbox: QboSandbox, realm: str | None = None) -> Qbo:
    client = TestClient(create_app(sandbox))
    if realm is not None:
        sandbox.next_realm_id = realm
    params = authorize(client)
    response = exchange(client, params["code"])
    assert response.status_code == 200, response.text
    return Qbo(sandbox, client, params["realmId"], response.json())


@pytest.fixture(name="qbo")
def qbo_fixture() -> Iterator[Qbo]:
    sandbox = QboSandbox()
    sandbox.add_company()
    with TestClient(create_app(sandbox)) as _:
        yield connect(sandbox)
