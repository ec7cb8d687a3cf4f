"""The CRM install callback binds a ``state`` when the install started from the product's own link;
installs started from the Marketplace carry none and still work."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import httpx
from sqlalchemy import select

from qbconnect.crm import oauth as crm_oauth
from qbconnect.db.models import Location
from qbconnect.sandbox.stack import Stack
from tests.conftest import TEST_ADMIN
from tests.support.stack_fixtures import stack  # noqa: F401

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}


def _through_choose_location(stack: Stack, install_url: str, name: str) -> str:  # noqa: F811
    """HighLevel's (auto-approving) choose-location step; returns our callback URL, not yet visited."""
    stack.crm.next_location_id = stack.crm.add_location(name=name)
    answer = httpx.get(install_url, follow_redirects=False)
    assert answer.status_code in (302, 303), answer.text
    return answer.headers["location"]


def _with_state(url: str, state: str) -> str:
    parts = urlparse(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query["state"] = state
    return urlunparse(parts._replace(query=urlencode(query)))


def _installed(stack: Stack) -> set[str]:  # noqa: F811
    with stack.runtime.sessions() as session:
        return set(session.execute(select(Location.id).where(Location.crm_status == "installed")).scalars())


def test_our_install_link_carries_a_signed_state_that_the_callback_verifies_once(stack: Stack) -> None:  # noqa: F811
    assert httpx.get(f"{stack.service_url}/install/crm", follow_redirects=False).status_code == 303  # → /login
    start = httpx.get(f"{stack.service_url}/install/crm", headers=ADMIN, follow_redirects=False)
    assert start.status_code == 302
    state = parse_qs(urlparse(start.headers["location"]).query)["state"][0]
    callback = _through_choose_location(stack, start.headers["location"], "Linked Shop")
    assert parse_qs(urlparse(callback).query)["state"] == [state]  # HighLevel hands it back

    tampered = _with_state(callback, state[:-2] + ("AA" if not state.endswith("AA") else "BB"))
    refused = httpx.get(tampered, follow_redirects=False)
    assert refused.status_code == 400 and "install link" in refused.text
    assert _installed(stack) == set()

    landed = httpx.get(callback, follow_redirects=False)
    assert landed.status_code == 303 and "installed=1" in landed.headers["location"]
    assert len(_installed(stack)) == 1

    # The same state a second time (with a fresh code) is refused: single use.
    again = _through_choose_location(stack, start.headers["location"], "Second Shop")
    replay = httpx.get(again, follow_redirects=False)
    assert replay.status_code == 400 and "already used" in replay.text
    assert len(_installed(stack)) == 1


def test_marketplace_installs_carry_no_state_and_still_work(stack: Stack) -> None:  # noqa: F811
    settings = stack.runtime.settings
    marketplace_url = crm_oauth.install_url(
        auth_url=settings.crm_auth_url,
        client_id=settings.crm_client_id or "",
        redirect_uri=f"{stack.service_url}/oauth/crm/callback",
        scopes=crm_oauth.SCOPES,
    )
    callback = _through_choose_location(stack, marketplace_url, "Marketplace Shop")
    assert "state" not in parse_qs(urlparse(callback).query)
    landed = httpx.get(callback, follow_redirects=False)
    assert landed.status_code == 303 and "installed=1" in landed.headers["location"]
    assert len(_installed(stack)) == 1
