"""Outgoing webhooks: signed like HighLevel (Ed25519 ``x-ghl-signature``, legacy RSA ``x-wh-signature``),
queued, and delivered one POST per event. Like HighLevel, only a 429 answer is retried (up to 6 times)."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

MAX_RETRIES = 6


@cache
def _legacy_rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key per process (generation is slow); the Ed25519 key is new for every sandbox."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class WebhookSigner:
    """Per-sandbox key pairs; the public halves are what a receiver is configured with."""

    def __init__(self) -> None:
        self._ed25519 = ed25519.Ed25519PrivateKey.generate()
        self._rsa = _legacy_rsa_key()
        ed_public = self._ed25519.public_key()
        spki = ed_public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.ed25519_public_key_b64 = base64.b64encode(spki).decode("ascii")
        self.ed25519_public_key_pem = ed_public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")
        self.rsa_public_key_pem = (
            self._rsa.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode("ascii")
        )

    def sign_ed25519(self, body: bytes) -> str:
        return base64.b64encode(self._ed25519.sign(body)).decode("ascii")

    def sign_rsa(self, body: bytes) -> str:
        signature = self._rsa.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return base64.b64encode(signature).decode("ascii")


@dataclass
class WebhookEvent:
    webhook_id: str
    event_type: str
    payload: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    attempts: int = 0


@dataclass
class Outbox:
    """The queue of events waiting for delivery. Thread-safe."""

    events: list[WebhookEvent] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, event: WebhookEvent) -> None:
        with self.lock:
            self.events.append(event)

    def take_all(self) -> list[WebhookEvent]:
        with self.lock:
            taken, self.events = self.events, []
        return taken

    def put_back(self, events: list[WebhookEvent]) -> None:
        with self.lock:
            self.events[:0] = events

    def __len__(self) -> int:
        with self.lock:
            return len(self.events)


def encode_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def signed_headers(signer: WebhookSigner, body: bytes, *, legacy_rsa: bool) -> dict[str, str]:
    headers = {"content-type": "application/json", "x-ghl-signature": signer.sign_ed25519(body)}
    if legacy_rsa:
        headers["x-wh-signature"] = signer.sign_rsa(body)
    return headers


def deliver(client: httpx.Client, url: str, event: WebhookEvent) -> int | None:
    """POST one event; the status code, or None when the receiver could not be reached."""
    event.attempts += 1
    try:
        response = client.post(url, content=event.body, headers=event.headers)
    except httpx.HTTPError:
        return None
    return response.status_code


class DeliveryThread:
    """Calls ``flush`` every ``interval`` seconds until stopped."""

    def __init__(self, flush: Any, interval: float) -> None:
        self._flush = flush
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crm-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._flush()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
