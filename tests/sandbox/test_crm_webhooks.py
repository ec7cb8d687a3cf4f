"""Webhooks: Ed25519 and RSA signatures over the raw body, delivery, redelivery, loss, 429 retry."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from fastapi import FastAPI, Request
from fastapi.responses import Response

from qbconnect.sandbox.crm import CrmSandbox
from qbconnect.sandbox.server import serve_in_thread
from tests.sandbox.crm_fixtures import LOCATION


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[bytes, dict[str, str]]], list[int]]]:
    received: list[tuple[bytes, dict[str, str]]] = []
    answers: list[int] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook(request: Request) -> Response:
        received.append((await request.body(), dict(request.headers)))
        return Response(status_code=answers.pop(0) if answers else 200)

    server = serve_in_thread(app)
    yield server.base_url + "/hook", received, answers
    server.stop()


def test_signatures_verify_with_public_keys() -> None:
    sandbox = CrmSandbox(sign_legacy_rsa=True)
    sandbox.add_location(LOCATION)
    sandbox.create_contact(LOCATION, email="a@example.com")
    event = sandbox._outbox.events[0]
    ed_key = serialization.load_der_public_key(base64.b64decode(sandbox.webhook_public_key))
    assert isinstance(ed_key, ed25519.Ed25519PublicKey)
    ed_key.verify(base64.b64decode(event.headers["x-ghl-signature"]), event.body)
    pem_key = serialization.load_pem_public_key(sandbox.webhook_public_key_pem.encode())
    assert isinstance(pem_key, ed25519.Ed25519PublicKey)
    rsa_key = serialization.load_pem_public_key(sandbox.legacy_rsa_public_key_pem.encode())
    assert isinstance(rsa_key, rsa.RSAPublicKey)
    rsa_key.verify(base64.b64decode(event.headers["x-wh-signature"]), event.body, padding.PKCS1v15(), hashes.SHA256())
    with pytest.raises(InvalidSignature):
        ed_key.verify(base64.b64decode(event.headers["x-ghl-signature"]), event.body + b" ")


def test_rsa_header_only_when_asked() -> None:
    sandbox = CrmSandbox()
    sandbox.add_location(LOCATION)
    sandbox.create_contact(LOCATION, email="a@example.com")
    assert "x-wh-signature" not in sandbox._outbox.events[0].headers
    assert "x-ghl-signature" in sandbox._outbox.events[0].headers


def test_delivery_redelivery_and_drop(receiver: Any) -> None:
    url, received, _ = receiver
    sandbox = CrmSandbox(webhook_url=url)
    sandbox.add_location(LOCATION)
    sandbox.create_contact(LOCATION, email="a@example.com")
    assert sandbox.pending_webhooks() == 1
    assert sandbox.flush_webhooks(times=2) == 1
    assert sandbox.pending_webhooks() == 0
    assert len(received) == 2 and received[0][0] == received[1][0]
    payload = json.loads(received[0][0])
    assert payload["type"] == "ContactCreate" and payload["webhookId"] and payload["timestamp"].endswith("Z")
    sandbox.create_contact(LOCATION, email="b@example.com")
    assert sandbox.flush_webhooks(drop=True) == 1 and len(received) == 2 and sandbox.pending_webhooks() == 0
    sandbox.close()


def test_only_429_is_retried(receiver: Any) -> None:
    url, received, answers = receiver
    sandbox = CrmSandbox(webhook_url=url)
    sandbox.add_location(LOCATION)
    sandbox.create_contact(LOCATION, email="a@example.com")
    sandbox.create_contact(LOCATION, email="b@example.com")
    answers.extend([429, 500])
    sandbox.flush_webhooks()
    assert sandbox.pending_webhooks() == 1  # the 429 one waits; the 500 one is lost, as on HighLevel
    sandbox.flush_webhooks()
    assert sandbox.pending_webhooks() == 0
    ids = [json.loads(body)["webhookId"] for body, _ in received]
    assert len(ids) == 3 and ids[0] == ids[2]
    sandbox.close()
