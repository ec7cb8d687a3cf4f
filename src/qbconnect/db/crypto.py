"""Tokens at rest: Fernet keyed from ``QBCONNECT_SECRET_KEY`` (HKDF-SHA256), with older keys still readable.

``QBCONNECT_SECRET_KEY`` is the newest key: everything is encrypted under it. ``QBCONNECT_SECRET_KEY_PREVIOUS``
(comma-separated) lists older keys whose tokens still decrypt (``MultiFernet``) until ``qbconnect rotate-key``
has re-encrypted them under the newest key.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def derive_key(secret_key: str, purpose: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"qbconnect", info=purpose.encode())
    return hkdf.derive(secret_key.encode())


def _fernet(secret_key: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(secret_key, "tokens-at-rest")))


class TokenCipher:
    def __init__(self, secret_key: str, previous: Sequence[str] = ()) -> None:
        self._newest = _fernet(secret_key)
        self._all = MultiFernet([self._newest, *(_fernet(key) for key in previous if key and key != secret_key)])

    def encrypt(self, plaintext: str) -> str:
        return self._newest.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._all.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "stored token cannot be decrypted with QBCONNECT_SECRET_KEY or QBCONNECT_SECRET_KEY_PREVIOUS"
            ) from exc

    def is_current(self, ciphertext: str) -> bool:
        """True when ``ciphertext`` is already encrypted under the newest key."""
        try:
            self._newest.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, ciphertext: str) -> str:
        """The same plaintext encrypted under the newest key (ValueError if no known key opens it)."""
        try:
            return self._all.rotate(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored token cannot be decrypted with any configured key") from exc
