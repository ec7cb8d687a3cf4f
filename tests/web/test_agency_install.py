"""Agency (Company) installs: the callback stores the company token, lists the installed locations, mints a
location token for each through /oauth/locationToken; INSTALL adds a later location, UNINSTALL removes one."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from qbconnect.connections.tokens import DbCrmTokenSource
from qbconnect.db.models import CrmCompany, Location
from qbconnect.sandbox.stack import Stack
from qbconnect.services import flows
from tests.conftest import TEST_ADMIN
from tests.support.stack_fixtures import stack  # noqa: F401

ADMIN = {"Authorization": f"Bearer {TEST_ADMIN}"}


def _follow(http: httpx.Client, url: str) -> str:
    answer = http.get(url, follow_redirects=False)
    assert answer.status_code in (302, 303), answer.text
    return answer.headers["location"]


def _minted(stack: Stack) -> list[str]:  # noqa: F811
    return [r.path for r in stack.crm.request_log if r.path == "/oauth/locationToken" and r.status == 201]


def test_agency_install_mints_a_token_per_location_and_follows_install_and_uninstall(stack: Stack) -> None:  # noqa: F811
    a = stack.crm.add_location(name="North Clinic", company_id="agency-9")
    b = stack.crm.add_location(name="South Clinic", company_id="agency-9")
    c = stack.crm.add_location(name="East Clinic", company_id="agency-9")
    stack.crm.next_bulk_install = [a, b]
    http = stack.runtime.http
    callback = _follow(http, flows.crm_install_url(stack.runtime))
    landed = _follow(http, callback)
    assert landed == "/settings/integrations?installed=1"  # two locations: the picker

    assert len(_minted(stack)) == 2
    with stack.runtime.sessions() as session:
        company = session.get(CrmCompany, "agency-9")
        assert company is not None and company.status == "installed" and company.refresh_token
        rows = {loc.id: loc for loc in session.execute(select(Location)).scalars()}
    assert set(rows) == {a, b}
    for location_id, name in ((a, "North Clinic"), (b, "South Clinic")):
        row = rows[location_id]
        assert row.crm_status == "installed" and row.company_id == "agency-9" and row.name == name
        assert row.crm_access_token and row.crm_refresh_token is None
    # The minted tokens are location tokens the CRM accepts.
    for location_id in (a, b):
        token = DbCrmTokenSource(stack.runtime, location_id).access_token()
        grant = stack.crm.tokens.authenticate(f"Bearer {token}", stack.crm.now())
        assert grant.user_type == "Location" and grant.location_id == location_id
    # An expired (rejected) location token is replaced by minting another from the company token.
    old = DbCrmTokenSource(stack.runtime, a).access_token()
    fresh = DbCrmTokenSource(stack.runtime, a).force_refresh(old)
    assert fresh != old and len(_minted(stack)) == 3

    # A location added to the install later: INSTALL webhook → installed, its token minted on first use.
    stack.crm.agency_installs["agency-9"].add(c)
    stack.crm.emit("INSTALL", {"type": "INSTALL", "appId": "app", "locationId": c, "companyId": "agency-9"})
    stack.crm.flush_webhooks()
    with stack.runtime.sessions() as session:
        later = session.get(Location, c)
        assert later is not None and later.crm_status == "installed" and later.company_id == "agency-9"
    token_c = DbCrmTokenSource(stack.runtime, c).access_token()
    assert stack.crm.tokens.authenticate(f"Bearer {token_c}", stack.crm.now()).location_id == c

    # The agency uninstalls one location: that one stops, the others stay.
    stack.crm.emit("UNINSTALL", {"type": "UNINSTALL", "appId": "app", "locationId": b, "companyId": "agency-9"})
    stack.crm.flush_webhooks()
    with stack.runtime.sessions() as session:
        states = {loc.id: loc.crm_status for loc in session.execute(select(Location)).scalars()}
    assert states == {a: "installed", b: "uninstalled", c: "installed"}

    # The admin token sees every location, however it was installed.
    with httpx.Client(base_url=stack.service_url, headers=ADMIN) as client:
        for location_id in (a, b, c):
            assert client.get(f"/api/locations/{location_id}").status_code == 200
        picker = client.get("/settings/integrations")
        assert picker.status_code == 200 and "North Clinic" in picker.text and c in picker.text


def test_a_location_install_still_gets_a_location_token(stack: Stack) -> None:  # noqa: F811
    location_id = stack.install_crm_location(name="Solo Shop")
    with stack.runtime.sessions() as session:
        row = session.get(Location, location_id)
        assert row is not None and row.crm_refresh_token is not None
        assert session.execute(select(CrmCompany)).first() is None
    assert _minted(stack) == []
