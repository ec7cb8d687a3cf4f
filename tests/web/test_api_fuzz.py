"""Property-based fuzzing of the JSON API against the service's own OpenAPI document.

Every operation under ``/api`` in ``/api/openapi.json`` (fetched with the admin token, as a client would) is
called with generated path parameters, query strings and bodies (schemathesis: values that fit the schema
and values that break it), authenticated as the admin, against the running service over loopback HTTP, on
SQLite and on PostgreSQL. Half of the examples aim at rows that exist (the connected location, its sync-log
rows), so the handlers get past their 404s. For every answer: never a 5xx, and a refused request (4xx)
leaves every table exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, Response
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation
from sqlalchemy import select

from qbconnect.db.link_model import Link
from qbconnect.db.models import Activity, Base
from qbconnect.runtime import Runtime
from qbconnect.sandbox.stack import Stack, start_stack
from qbconnect.sync.engine import jobs
from tests.conftest import TEST_ADMIN, TEST_SECRET
from tests.support.databases import fresh_database
from tests.support.stack_fixtures import Connected

AUTH = {"Authorization": f"Bearer {TEST_ADMIN}"}
EXAMPLES = 30
Snapshot = dict[str, set[str]]
Operation = APIOperation[Any, Any, Any, Any]
AnyCase = Case[Any]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=[pytest.mark.postgres, pytest.mark.redis])]
)
def fuzz_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connected]:
    """One connected location per backend, shared by every operation's fuzzing (module-scoped: fast)."""
    tmp_path: Path = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    jobs.set_dispatcher(None)
    with fresh_database(str(request.param), tmp_path) as url:
        stack = start_stack(
            database_url=url,
            queue_url=f"sqlite:///{tmp_path / 'queue.db'}",
            secret_key=TEST_SECRET,
            admin_token=TEST_ADMIN,
        )
        try:
            location_id = stack.install_crm_location(name="Fuzz Plumbing")
            realm_id = stack.connect_quickbooks(location_id, name="Fuzz Plumbing LLC", country="US")
            stack.drain()
            _seed_sync_log(stack, location_id)
            yield Connected(stack=stack, location_id=location_id, realm_id=realm_id)
        finally:
            stack.stop()
            jobs.set_dispatcher(None)


def _seed_sync_log(stack: Stack, location_id: str) -> None:
    with stack.runtime.sessions.begin() as session:
        session.add(Link(location_id=location_id, kind="customer", crm_id="c1", qbo_id="1", data={}))
        for status in ("failed", "skipped", "done", "failed"):
            session.add(
                Activity(
                    location_id=location_id,
                    kind="invoice",
                    entity_id=f"inv-{status}",
                    direction="crm_to_qbo",
                    status=status,
                    summary="seeded",
                    error_message="seeded",
                )
            )


def _api_operations(stack: Stack) -> list[Operation]:
    document = httpx.get(f"{stack.service_url}/api/openapi.json", headers=AUTH, timeout=30)
    assert document.status_code == 200
    schema = schemathesis.openapi.from_dict(document.json())
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), "the document has operations schemathesis cannot read"
    return [op for op in operations if op.path.startswith("/api/")]


def _snapshot(runtime: Runtime) -> Snapshot:
    """Every row of every table (the whole store): a refused request must leave it exactly as it was."""
    with runtime.sessions() as session:
        return {
            table.name: {repr(tuple(row)) for row in session.execute(select(table)).all()}
            for table in Base.metadata.sorted_tables
        }


def _known_ids(runtime: Runtime, location_id: str) -> dict[str, list[Any]]:
    with runtime.sessions() as session:
        activity_ids = list(session.execute(select(Activity.id).where(Activity.location_id == location_id)).scalars())
    return {"location_id": [location_id], "activity_id": activity_ids}


def _cases(operation: Operation, known: dict[str, list[Any]]) -> st.SearchStrategy[AnyCase]:
    """Generated cases, positive and negative; half of them with their path parameters set to existing rows."""
    path_names = [p.name for p in operation.path_parameters]
    strategies: list[st.SearchStrategy[AnyCase]] = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        strategies.append(operation.as_strategy(generation_mode=mode))
        if path_names and all(known.get(name) for name in path_names):
            pinned = {name: known[name][0] for name in path_names}
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=pinned))
            if path_names == ["activity_id"]:
                strategies.extend(
                    operation.as_strategy(generation_mode=mode, path_parameters={"activity_id": value})
                    for value in known["activity_id"][1:]
                )
    return st.one_of(strategies)


def _call(case: AnyCase, base_url: str, session: requests.Session) -> Response:
    return case.call(base_url=base_url, session=session, headers=AUTH, timeout=30)


def _fuzz(operation: Operation, connected: Connected, check: Callable[[AnyCase, Response], None]) -> None:
    runtime = connected.stack.runtime
    known = _known_ids(runtime, connected.location_id)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=_cases(operation, known))
    def run(case: AnyCase) -> None:
        with requests.Session() as session:
            before = _snapshot(runtime)
            response = _call(case, connected.stack.service_url, session)
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} query={case.query!r} body={case.body!r} "
                f"answered {response.status_code}: {response.text[:300]}"
            )
            if 400 <= response.status_code < 500:
                assert _snapshot(runtime) == before, (
                    f"{case.method} {case.formatted_path} body={case.body!r} was refused "
                    f"({response.status_code}) but changed what is stored"
                )
            check(case, response)

    run()


def _no_extra_check(case: AnyCase, response: Response) -> None:
    return None


def test_the_fuzzed_operations_are_every_api_operation_of_the_document(fuzz_target: Connected) -> None:
    found = {(op.method.upper(), op.path) for op in _api_operations(fuzz_target.stack)}
    assert found >= {
        ("GET", "/api/locations/{location_id}"),
        ("GET", "/api/locations/{location_id}/settings"),
        ("PATCH", "/api/locations/{location_id}/settings"),
        ("GET", "/api/locations/{location_id}/activity"),
        ("POST", "/api/activity/{activity_id}/retry"),
        ("POST", "/api/locations/{location_id}/disconnect"),
    }


@pytest.mark.parametrize(
    "operation_key",
    [
        "GET /api/locations/{location_id}",
        "GET /api/locations/{location_id}/settings",
        "PATCH /api/locations/{location_id}/settings",
        "GET /api/locations/{location_id}/activity",
        "POST /api/activity/{activity_id}/retry",
        "POST /api/locations/{location_id}/disconnect",
    ],
)
def test_api_operation_never_answers_5xx_and_refusals_store_nothing(fuzz_target: Connected, operation_key: str) -> None:
    operations = {f"{op.method.upper()} {op.path}": op for op in _api_operations(fuzz_target.stack)}
    operation = operations[operation_key]
    check: Callable[[AnyCase, Response], None] = _no_extra_check
    if operation_key == "PATCH /api/locations/{location_id}/settings":
        check = _settings_check(fuzz_target)
    _fuzz(operation, fuzz_target, check)
    if operation_key == "POST /api/locations/{location_id}/disconnect":
        # Later operations should still meet a connected location.
        fuzz_target.stack.connect_quickbooks(fuzz_target.location_id, realm_id=fuzz_target.realm_id)
        fuzz_target.stack.drain()


def _settings_check(connected: Connected) -> Callable[[AnyCase, Response], None]:
    """A 200 PATCH answers the settings now stored; a refused one keeps what a GET answered before."""
    url = f"{connected.stack.service_url}/api/locations/{connected.location_id}/settings"

    def check(case: AnyCase, response: Response) -> None:
        if case.path_parameters.get("location_id") != connected.location_id:
            return
        stored = httpx.get(url, headers=AUTH, timeout=30)
        assert stored.status_code == 200
        if response.status_code == 200:
            assert stored.json() == response.json()
        else:
            assert response.status_code in (400, 404, 409, 413, 415, 422), response.status_code

    return check


@pytest.mark.parametrize(
    ("method", "path", "data"),
    [
        ("POST", "/api/activity/9223372036854775808/retry", None),
        ("GET", "/api/locations/{loc}/activity?before_id=9223372036854775808", None),
        ("GET", "/api/locations/a%00b", None),
        ("GET", "/api/locations/{loc}/activity?status=fail%00ed", None),
        ("GET", "/api/locations/" + "x" * 65, None),
        ("GET", "/settings/integrations?location_id=a%00b", None),
        ("GET", "/settings/integrations/sync-log?location_id=a%00b", None),
        ("GET", "/connect/quickbooks?location_id=a%00b", None),
        ("POST", "/settings/integrations/retry", {"location_id": "{loc}", "activity_id": "9223372036854775808"}),
        ("POST", "/settings/integrations/disconnect", {"location_id": "a\x00b"}),
        ("POST", "/settings/integrations/settings", {"location_id": "a\x00b"}),
    ],
)
def test_ids_storage_cannot_hold_are_a_4xx_not_storage_unavailable(
    fuzz_target: Connected, method: str, path: str, data: dict[str, str] | None
) -> None:
    """Found by the fuzzing: on PostgreSQL a NUL or a past-BIGINT id was a DataError answered 503."""
    stack = fuzz_target.stack
    loc = fuzz_target.location_id
    with httpx.Client(base_url=stack.service_url, headers=AUTH, timeout=30) as client:
        form = None
        if data is not None:
            # The page forms need the admin session's CSRF token; take it from the page itself (opening the
            # page may cache the pre-flight checks, so the snapshot is taken after it).
            page = client.get(f"/settings/integrations?location_id={loc}")
            token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
            form = {key: value.replace("{loc}", loc) for key, value in data.items()} | {"csrf_token": token}
        before = _snapshot(stack.runtime)
        answer = client.request(method, path.replace("{loc}", loc), data=form)
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:200])
    assert _snapshot(stack.runtime) == before
