"""Webhook signatures: Ed25519 (x-ghl-signature) and legacy RSA (x-wh-signature), failing closed."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from qbconnect.crm.webhooks import (
    HIGHLEVEL_RSA_PUBLIC_KEY_PEM,
    load_ed25519_public_key,
    load_rsa_public_key,
    verify_ed25519,
    verify_rsa,
    verify_webhook,
)
from tests.support.reference import reference_dir

BODY = b'{"type":"OrderCreate","locationId":"L1","webhookId":"w1","timestamp":"2025-01-28T14:35:00Z"}'


@pytest.fixture(scope="module")
def ed_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ed_pem(key: Ed25519PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _ed_spki_b64(key: Ed25519PrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _ed_sign(key: Ed25519PrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body)).decode()


def _rsa_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _rsa_sign(key: rsa.RSAPrivateKey, body: bytes) -> str:
    return base64.b64encode(key.sign(body, padding.PKCS1v15(), hashes.SHA256())).decode()


# ---- Ed25519 -------------------------------------------------------------------------------------


def test_ed25519_valid_signature_with_pem_and_spki_base64(ed_key: Ed25519PrivateKey) -> None:
    signature = _ed_sign(ed_key, BODY)
    assert verify_ed25519(BODY, signature, _ed_pem(ed_key))
    assert verify_ed25519(BODY, signature, _ed_spki_b64(ed_key))


def test_ed25519_raw_32_byte_key_in_base64(ed_key: Ed25519PrivateKey) -> None:
    raw = ed_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert verify_ed25519(BODY, _ed_sign(ed_key, BODY), base64.b64encode(raw).decode())


def test_ed25519_rejects_changed_body_wrong_key_and_garbage(ed_key: Ed25519PrivateKey) -> None:
    signature = _ed_sign(ed_key, BODY)
    assert not verify_ed25519(BODY + b" ", signature, _ed_pem(ed_key))
    assert not verify_ed25519(BODY, signature, _ed_pem(Ed25519PrivateKey.generate()))
    assert not verify_ed25519(BODY, "not base64!!", _ed_pem(ed_key))
    assert not verify_ed25519(BODY, base64.b64encode(b"short").decode(), _ed_pem(ed_key))
    assert not verify_ed25519(BODY, "", _ed_pem(ed_key))
    assert not verify_ed25519(BODY, signature, "not a key")


def test_documented_third_party_ed25519_key_loads() -> None:
    # the SPKI value quoted in the fact sheet (unverified provenance) is at least a valid Ed25519 key
    load_ed25519_public_key("MCowBQYDK2VwAyEAi2HR1srL4o18O8BRa7gVJY7G7bupbN3H9AwJrHCDiOg=")


def test_ed25519_loader_refuses_rsa_keys(rsa_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ValueError):
        load_ed25519_public_key(_rsa_pem(rsa_key))
    with pytest.raises(ValueError):
        load_ed25519_public_key("@@@")


# ---- RSA -----------------------------------------------------------------------------------------


def test_rsa_valid_signature(rsa_key: rsa.RSAPrivateKey) -> None:
    assert verify_rsa(BODY, _rsa_sign(rsa_key, BODY), _rsa_pem(rsa_key))


def test_rsa_rejects_forgery(rsa_key: rsa.RSAPrivateKey) -> None:
    signature = _rsa_sign(rsa_key, BODY)
    assert not verify_rsa(BODY.replace(b"L1", b"L2"), signature, _rsa_pem(rsa_key))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert not verify_rsa(BODY, signature, _rsa_pem(other))
    assert not verify_rsa(BODY, "%%%", _rsa_pem(rsa_key))
    assert not verify_rsa(BODY, "", _rsa_pem(rsa_key))
    assert not verify_rsa(BODY, signature, "-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----")
    # a PSS signature is not the documented PKCS#1 v1.5 scheme
    pss = rsa_key.sign(BODY, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    assert not verify_rsa(BODY, base64.b64encode(pss).decode(), _rsa_pem(rsa_key))


def test_rsa_loader_refuses_ed25519_keys(ed_key: Ed25519PrivateKey) -> None:
    with pytest.raises(ValueError):
        load_rsa_public_key(_ed_pem(ed_key))


def test_published_rsa_key_matches_the_docs() -> None:
    doc = (reference_dir("highlevel", "docs") / "WebhookAuthentication.md").read_text()
    match = re.search(r"-----BEGIN PUBLIC KEY-----.*?-----END PUBLIC KEY-----", doc, flags=re.DOTALL)
    assert match is not None
    assert HIGHLEVEL_RSA_PUBLIC_KEY_PEM.strip() == match.group(0).strip()
    key = load_rsa_public_key(HIGHLEVEL_RSA_PUBLIC_KEY_PEM)
    assert isinstance(key, RSAPublicKey)
    assert key.key_size == 4096
    assert not verify_rsa(BODY, base64.b64encode(b"\0" * 512).decode(), HIGHLEVEL_RSA_PUBLIC_KEY_PEM)


# ---- verify_webhook ------------------------------------------------------------------------------


def test_webhook_prefers_ed25519(ed_key: Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    headers = {"X-GHL-Signature": _ed_sign(ed_key, BODY)}
    assert verify_webhook(BODY, headers, ed25519_key=_ed_pem(ed_key), rsa_key_pem=_rsa_pem(rsa_key))


def test_webhook_legacy_rsa_fallback(ed_key: Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    headers = {"x-wh-signature": _rsa_sign(rsa_key, BODY)}
    assert verify_webhook(BODY, headers, ed25519_key=_ed_pem(ed_key), rsa_key_pem=_rsa_pem(rsa_key))
    # also when an Ed25519 header is present but cannot be checked (no key configured)
    headers["x-ghl-signature"] = _ed_sign(ed_key, BODY)
    assert verify_webhook(BODY, headers, ed25519_key=None, rsa_key_pem=_rsa_pem(rsa_key))


def test_webhook_forged_signatures_fail(ed_key: Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    forged = Ed25519PrivateKey.generate()
    forged_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers = {"x-ghl-signature": _ed_sign(forged, BODY), "x-wh-signature": _rsa_sign(forged_rsa, BODY)}
    assert not verify_webhook(BODY, headers, ed25519_key=_ed_pem(ed_key), rsa_key_pem=_rsa_pem(rsa_key))
    good = {"x-ghl-signature": _ed_sign(ed_key, BODY)}
    assert not verify_webhook(BODY + b"x", good, ed25519_key=_ed_pem(ed_key), rsa_key_pem=None)


def test_webhook_missing_header_fails(ed_key: Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    assert not verify_webhook(BODY, {}, ed25519_key=_ed_pem(ed_key), rsa_key_pem=_rsa_pem(rsa_key))
    assert not verify_webhook(BODY, {"x-ghl-signature": ""}, ed25519_key=_ed_pem(ed_key), rsa_key_pem=_rsa_pem(rsa_key))


def test_webhook_no_key_configured_fails_closed(ed_key: Ed25519PrivateKey, rsa_key: rsa.RSAPrivateKey) -> None:
    headers = {"x-ghl-signature": _ed_sign(ed_key, BODY), "x-wh-signature": _rsa_sign(rsa_key, BODY)}
    assert not verify_webhook(BODY, headers, ed25519_key=None, rsa_key_pem=None)
    assert not verify_webhook(BODY, headers, ed25519_key="", rsa_key_pem="")
    # a key of the other scheme only: the header that matches it is missing
    assert not verify_webhook(
        BODY, {"x-ghl-signature": _ed_sign(ed_key, BODY)}, ed25519_key=None, rsa_key_pem=_rsa_pem(rsa_key)
    )
