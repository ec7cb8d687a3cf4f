"""HighLevel's user context for Marketplace custom pages: decrypt it with the app's Shared Secret.

Facts (marketplace.gohighlevel.com/docs/other/user-context-marketplace-apps): a custom page posts
``{message: "REQUEST_USER_DATA"}`` to its parent frame and receives ``{message:
"REQUEST_USER_DATA_RESPONSE", payload: "<encrypted>"}``; the backend decrypts the payload with the app's
Shared Secret the way ``CryptoJS.AES.decrypt(payload, sharedSecret)`` does. That is CryptoJS's passphrase
format, the same as ``openssl enc -aes-256-cbc -md md5``: base64 of ``"Salted__"`` + an 8-byte salt + the
ciphertext; key (32 bytes) and IV (16 bytes) come from OpenSSL's ``EVP_BytesToKey`` with MD5 and one
iteration over passphrase + salt; AES-256-CBC with PKCS#7 padding. The plaintext is JSON with ``userId``,
``companyId``, ``role``, ``type`` (``agency`` or ``location``), ``activeLocation`` (for a location),
``userName`` and ``email``.

There is no MAC in this format: a payload "decrypts" only if the padding and the JSON come out right, so
anything else is refused as a whole (:class:`UserContextError`), never partly trusted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Literal

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SALTED = b"Salted__"
SALT_BYTES = 8
KEY_BYTES = 32
IV_BYTES = 16
BLOCK_BYTES = 16
# A user context is a few hundred bytes; anything much larger is not one.
MAX_PAYLOAD_CHARS = 16_384
ID_MAX = 64


class UserContextError(ValueError):
    """The payload is not a user context encrypted with this Shared Secret (the message names no values)."""


@dataclass(frozen=True)
class UserContext:
    user_id: str
    company_id: str
    type: Literal["agency", "location"]
    active_location: str | None
    role: str | None
    user_name: str | None
    email: str | None


def evp_bytes_to_key(
    passphrase: bytes, salt: bytes, key_len: int = KEY_BYTES, iv_len: int = IV_BYTES
) -> tuple[bytes, bytes]:
    """OpenSSL's ``EVP_BytesToKey`` with MD5 and one iteration (what CryptoJS uses for passphrases)."""
    derived = b""
    block = b""
    while len(derived) < key_len + iv_len:
        block = hashlib.md5(block + passphrase + salt).digest()  # noqa: S324 (the format's own KDF)
        derived += block
    return derived[:key_len], derived[key_len : key_len + iv_len]


def encrypt(plaintext: bytes, passphrase: str, *, salt: bytes | None = None) -> str:
    """``CryptoJS.AES.encrypt(text, passphrase).toString()``: for the CRM emulator and tests."""
    salt = salt if salt is not None else os.urandom(SALT_BYTES)
    if len(salt) != SALT_BYTES:
        raise ValueError("the salt is 8 bytes")
    key, iv = evp_bytes_to_key(passphrase.encode(), salt)
    padder = padding.PKCS7(BLOCK_BYTES * 8).padder()
    padded = padder.update(plaintext) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    return base64.b64encode(SALTED + salt + ciphertext).decode("ascii")


def decrypt(payload: str, passphrase: str) -> bytes:
    """The plaintext bytes of a CryptoJS passphrase payload; UserContextError when it does not decrypt."""
    if not passphrase:
        raise UserContextError("no Shared Secret is configured")
    if not payload or len(payload) > MAX_PAYLOAD_CHARS:
        raise UserContextError("the payload is empty or too large")
    try:
        raw = base64.b64decode(payload.strip().encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError) as exc:
        raise UserContextError("the payload is not base64") from exc
    if not raw.startswith(SALTED) or len(raw) < len(SALTED) + SALT_BYTES + BLOCK_BYTES:
        raise UserContextError("the payload is not in the salted CryptoJS format")
    salt = raw[len(SALTED) : len(SALTED) + SALT_BYTES]
    ciphertext = raw[len(SALTED) + SALT_BYTES :]
    if len(ciphertext) % BLOCK_BYTES:
        raise UserContextError("the ciphertext is truncated")
    key, iv = evp_bytes_to_key(passphrase.encode(), salt)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(ciphertext) + decryptor.finalize()
    unpadder = padding.PKCS7(BLOCK_BYTES * 8).unpadder()
    try:
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError as exc:
        raise UserContextError("the payload does not decrypt with this Shared Secret") from exc


def _id(data: dict[str, object], name: str, *, required: bool) -> str | None:
    value = data.get(name)
    if value is None or value == "":
        if required:
            raise UserContextError(f"the user context has no {name}")
        return None
    if not isinstance(value, str) or len(value) > ID_MAX or not value.isprintable() or value.strip() != value:
        raise UserContextError(f"the user context's {name} is not an id")
    return value


def _text(data: dict[str, object], name: str) -> str | None:
    value = data.get(name)
    return value[:255] if isinstance(value, str) and value else None


def parse(plaintext: bytes) -> UserContext:
    """The decrypted JSON as a :class:`UserContext`; UserContextError when it is not one."""
    try:
        data = json.loads(plaintext.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserContextError("the decrypted payload is not JSON") from exc
    if not isinstance(data, dict):
        raise UserContextError("the decrypted payload is not a user context")
    kind = data.get("type")
    if kind not in ("agency", "location"):
        raise UserContextError("the user context's type is neither agency nor location")
    user_id = _id(data, "userId", required=True)
    company_id = _id(data, "companyId", required=True)
    active = _id(data, "activeLocation", required=kind == "location")
    assert user_id is not None and company_id is not None
    return UserContext(
        user_id=user_id,
        company_id=company_id,
        type="agency" if kind == "agency" else "location",
        active_location=active,
        role=_text(data, "role"),
        user_name=_text(data, "userName"),
        email=_text(data, "email"),
    )


def decrypt_user_context(payload: str, shared_secret: str) -> UserContext:
    """``encryptedData`` from a custom page → the user context. Raises UserContextError."""
    return parse(decrypt(payload, shared_secret))
