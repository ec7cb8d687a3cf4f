"""The ``state`` of the QuickBooks authorize round trip: signed, expiring, single-use, bound to a location.

The value is ``base64url(json payload) "." base64url(HMAC-SHA256)`` with a key derived from
``QBCONNECT_SECRET_KEY`` (purpose ``oauth-state``). The payload names a nonce, the location and the issue
time; the nonce is an :class:`~qbconnect.db.models.OAuthState` row that the callback marks used with one
conditional UPDATE, so a state works once even when two callbacks race.

The CRM app install started from the product (``/install/crm``) carries a state of its own kind (purpose
``crm-install-state``, no location yet: its nonce row has an empty location id). HighLevel's callback brings
it back; a callback without one is an install started from the Marketplace, which cannot carry ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from qbconnect.db.crypto import derive_key
from qbconnect.db.models import OAuthState

STATE_TTL = timedelta(minutes=10)
_KEEP_ROWS = timedelta(days=1)


class StateError(Exception):
    """The state cannot be accepted; the message says why in plain words."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret_key: str, payload: str, purpose: str = "oauth-state") -> str:
    key = derive_key(secret_key, purpose)
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def issue_state(session: Session, secret_key: str, location_id: str, *, now: datetime) -> str:
    """Create a state for ``location_id`` (adds its nonce row to the session; the caller commits)."""
    session.execute(delete(OAuthState).where(OAuthState.created_at < now - _KEEP_ROWS))
    nonce = secrets.token_urlsafe(24)
    session.add(OAuthState(nonce=nonce, location_id=location_id, created_at=now))
    payload = _b64(json.dumps({"n": nonce, "l": location_id, "t": int(now.timestamp())}).encode())
    return f"{payload}.{_sign(secret_key, payload)}"


def read_state(secret_key: str, state: str, *, now: datetime) -> tuple[str, str]:
    """Check signature and age; returns ``(nonce, location_id)``. Does not consume it."""
    payload, sep, signature = (state or "").partition(".")
    if not sep or not payload or not hmac.compare_digest(signature, _sign(secret_key, payload)):
        raise StateError(
            "The sign-in answer from QuickBooks could not be verified (its state was altered or is not ours). "
            "Start again from the Settings page."
        )
    try:
        data = json.loads(_unb64(payload))
        nonce, location_id, issued = str(data["n"]), str(data["l"]), int(data["t"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(
            "The sign-in answer from QuickBooks is malformed. Start again from the Settings page."
        ) from exc
    age = now.timestamp() - issued
    if age > STATE_TTL.total_seconds() or age < -60:
        raise StateError(
            "This QuickBooks sign-in link has expired (links are valid for 10 minutes). "
            "Start again from the Settings page."
        )
    return nonce, location_id


def consume_state(session: Session, secret_key: str, state: str, *, now: datetime) -> str:
    """Verify and use up a state; returns its location id. The caller commits at once."""
    nonce, location_id = read_state(secret_key, state, now=now)
    result = session.execute(
        update(OAuthState)
        .where(OAuthState.nonce == nonce, OAuthState.location_id == location_id, OAuthState.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        known = session.execute(select(OAuthState.nonce).where(OAuthState.nonce == nonce)).first()
        if known is None:
            raise StateError("This QuickBooks sign-in link is unknown or too old. Start again from the Settings page.")
        raise StateError(
            "This QuickBooks sign-in link was already used. Start again from the Settings page to connect."
        )
    return location_id


INSTALL_PURPOSE = "crm-install-state"
_INSTALL_LOCATION = ""  # the nonce row's location id: none is known before the install


def issue_install_state(session: Session, secret_key: str, *, now: datetime) -> str:
    """A state for the CRM install link (adds its nonce row to the session; the caller commits)."""
    session.execute(delete(OAuthState).where(OAuthState.created_at < now - _KEEP_ROWS))
    nonce = secrets.token_urlsafe(24)
    session.add(OAuthState(nonce=nonce, location_id=_INSTALL_LOCATION, created_at=now))
    payload = _b64(json.dumps({"n": nonce, "p": INSTALL_PURPOSE, "t": int(now.timestamp())}).encode())
    return f"{payload}.{_sign(secret_key, payload, INSTALL_PURPOSE)}"


def consume_install_state(session: Session, secret_key: str, state: str, *, now: datetime) -> None:
    """Verify and use up an install state; StateError says why it cannot be used. The caller commits at once."""
    payload, sep, signature = state.partition(".")
    if not sep or not payload or not hmac.compare_digest(signature, _sign(secret_key, payload, INSTALL_PURPOSE)):
        raise StateError(
            "This install link could not be verified (its state was altered or is not ours). "
            "Start the install again from the product or the marketplace."
        )
    try:
        data: dict[str, Any] = json.loads(_unb64(payload))
        nonce, issued = str(data["n"]), int(data["t"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError("This install link is malformed. Start the install again.") from exc
    age = now.timestamp() - issued
    if age > STATE_TTL.total_seconds() or age < -60:
        raise StateError("This install link has expired (links are valid for 10 minutes). Start the install again.")
    result = session.execute(
        update(OAuthState)
        .where(OAuthState.nonce == nonce, OAuthState.location_id == _INSTALL_LOCATION, OAuthState.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise StateError("This install link was already used or is unknown. Start the install again.")
