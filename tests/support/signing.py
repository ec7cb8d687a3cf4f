"""Sign webhook bodies the way HighLevel (Ed25519 / RSA) and Intuit (HMAC-SHA256) do."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass
class CrmSigner:
    ed25519: Ed25519PrivateKey
    rsa_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls) -> CrmSigner:
        return cls(Ed25519PrivateKey.generate(), rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def public_key_b64(self) -> str:
        der = self.ed25519.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    @property
    def rsa_public_pem(self) -> str:
        return (
            self.rsa_key.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def ghl_headers(self, body: bytes) -> dict[str, str]:
        return {
            "x-ghl-signature": base64.b64encode(self.ed25519.sign(body)).decode(),
            "content-type": "application/json",
        }

    def legacy_headers(self, body: bytes) -> dict[str, str]:
        signature = self.rsa_key.sign(body, padding.PKCS1v15(), hashes.SHA256())
        return {"x-wh-signature": base64.b64encode(signature).decode(), "content-type": "application/json"}


def intuit_headers(body: bytes, verifier_token: str) -> dict[str, str]:
    digest = hmac.new(verifier_token.encode(), body, hashlib.sha256).digest()
    return {"intuit-signature": base64.b64encode(digest).decode(), "content-type": "application/json"}
