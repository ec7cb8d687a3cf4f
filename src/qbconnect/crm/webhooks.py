"""HighLevel webhook signatures, checked over the raw request bytes.

Two schemes (see the fact sheet, §2.4):
- ``x-ghl-signature``: base64 Ed25519 signature of the raw body; preferred. The public key comes from
  the Marketplace app settings (configuration: PEM, base64 SPKI DER, or the raw 32-byte key in base64).
- ``x-wh-signature``: base64 RSASSA-PKCS1-v1_5 + SHA-256 signature of the raw body with HighLevel's
  static RSA key (``docs/WebhookAuthentication.md``, copied below); legacy, announced to stop on
  2026-07-01.

Fail closed: no header or no configured key means "not verified". Replay protection (timestamp window,
``webhookId`` dedup) belongs to the intake; :mod:`qbconnect.crm.events` exposes both fields.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping

import structlog
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

log = structlog.get_logger(__name__)

ED25519_HEADER = "x-ghl-signature"
RSA_HEADER = "x-wh-signature"

# HighLevel's published webhook public key, as printed in docs/WebhookAuthentication.md (a public key).
HIGHLEVEL_RSA_PUBLIC_KEY_PEM = """-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEAokvo/r9tVgcfZ5DysOSC
Frm602qYV0MaAiNnX9O8KxMbiyRKWeL9JpCpVpt4XHIcBOK4u3cLSqJGOLaPuXw6
dO0t6Q/ZVdAV5Phz+ZtzPL16iCGeK9po6D6JHBpbi989mmzMryUnQJezlYJ3DVfB
csedpinheNnyYeFXolrJvcsjDtfAeRx5ByHQmTnSdFUzuAnC9/GepgLT9SM4nCpv
uxmZMxrJt5Rw+VUaQ9B8JSvbMPpez4peKaJPZHBbU3OdeCVx5klVXXZQGNHOs8gF
3kvoV5rTnXV0IknLBXlcKKAQLZcY/Q9rG6Ifi9c+5vqlvHPCUJFT5XUGG5RKgOKU
J062fRtN+rLYZUV+BjafxQauvC8wSWeYja63VSUruvmNj8xkx2zE/Juc+yjLjTXp
IocmaiFeAO6fUtNjDeFVkhf5LNb59vECyrHD2SQIrhgXpO4Q3dVNA5rw576PwTzN
h/AMfHKIjE4xQA1SZuYJmNnmVZLIZBlQAF9Ntd03rfadZ+yDiOXCCs9FkHibELhC
HULgCsnuDJHcrGNd5/Ddm5hxGQ0ASitgHeMZ0kcIOwKDOzOU53lDza6/Y09T7sYJ
PQe7z0cvj7aE4B+Ax1ZoZGPzpJlZtGXCsu9aTEGEnKzmsFqwcSsnw3JB31IGKAyk
T1hhTiaCeIY/OwwwNUY2yvcCAwEAAQ==
-----END PUBLIC KEY-----
"""


def load_ed25519_public_key(public_key: str) -> Ed25519PublicKey:
    """Parse a configured Ed25519 key; raises ``ValueError`` when it is not one (check at start-up)."""
    text = public_key.strip()
    try:
        if "-----BEGIN" in text:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        else:
            raw = base64.b64decode(text, validate=True)
            if len(raw) == 32:
                return Ed25519PublicKey.from_public_bytes(raw)
            key = serialization.load_der_public_key(raw)
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not an Ed25519 public key: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the configured webhook key is not an Ed25519 public key")
    return key


def load_rsa_public_key(public_key_pem: str) -> RSAPublicKey:
    """Parse a configured RSA key (PEM); raises ``ValueError`` when it is not one."""
    try:
        key = serialization.load_pem_public_key(public_key_pem.strip().encode("ascii"))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not an RSA public key in PEM form: {exc}") from exc
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the configured webhook key is not an RSA public key")
    return key


def verify_ed25519(body: bytes, signature_b64: str, public_key: str) -> bool:
    """True when ``signature_b64`` is a valid Ed25519 signature of exactly ``body``."""
    signature = _b64(signature_b64)
    if signature is None or len(signature) != 64:
        return False
    try:
        key = load_ed25519_public_key(public_key)
    except ValueError as exc:
        log.error("crm.webhook.bad_ed25519_key", error=str(exc))
        return False
    try:
        key.verify(signature, body)
    except InvalidSignature:
        return False
    return True


def verify_rsa(body: bytes, signature_b64: str, public_key_pem: str) -> bool:
    """True when ``signature_b64`` is a valid RSASSA-PKCS1-v1_5/SHA-256 signature of exactly ``body``."""
    signature = _b64(signature_b64)
    if not signature:
        return False
    try:
        key = load_rsa_public_key(public_key_pem)
    except ValueError as exc:
        log.error("crm.webhook.bad_rsa_key", error=str(exc))
        return False
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    ed25519_key: str | None,
    rsa_key_pem: str | None,
) -> bool:
    """Check a delivery: ``x-ghl-signature`` first, then the legacy ``x-wh-signature``.

    Returns False when neither header can be checked with a configured key (never accepts unsigned).
    Each scheme is a full cryptographic check, so trying the legacy one after a failed Ed25519 check
    accepts nothing HighLevel did not sign.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    ghl_signature = lowered.get(ED25519_HEADER)
    wh_signature = lowered.get(RSA_HEADER)
    if ghl_signature and ed25519_key and verify_ed25519(body, ghl_signature, ed25519_key):
        return True
    if wh_signature and rsa_key_pem and verify_rsa(body, wh_signature, rsa_key_pem):
        return True
    log.warning(
        "crm.webhook.unverified",
        has_ghl_signature=bool(ghl_signature),
        has_wh_signature=bool(wh_signature),
        ed25519_key_configured=bool(ed25519_key),
        rsa_key_configured=bool(rsa_key_pem),
    )
    return False


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (ValueError, binascii.Error):
        return None
