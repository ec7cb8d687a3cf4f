"""Property-based fuzzing of both webhook parsers and routes with signed random bodies: never a 500 (the
test client re-raises any server error), and a refused body stores nothing. Well-formed, fresh deliveries
whose ids are any text reach storage: each event is stored or refused alone (422), never taken for
"storage down" (429/503)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from qbconnect.clock import utcnow
from qbconnect.crm.events import EventParseError, parse_event
from qbconnect.qbo.webhooks import parse_events
from qbconnect.runtime import Runtime
from qbconnect.web.app import create_app
from tests.support.signing import CrmSigner, intuit_headers
from tests.support.webhooks import VERIFIER, connect, counts

SIGNER = CrmSigner.generate()
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any Unicode, lone surrogates and NUL included; some very long.
texts = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.text(st.characters(exclude_categories=()), min_size=60, max_size=300),
    st.sampled_from(["loc-1", "9130", "58", "", "\x00", "\ud800"]),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**20, max_value=10**60), st.floats(), texts
)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12
)
timestamps = st.one_of(
    st.just("now"),
    st.integers(min_value=-(10**6), max_value=10**6).map(lambda s: (utcnow() + timedelta(seconds=s)).isoformat()),
    scalars,
    st.sampled_from(["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59", "2025-13-45", "1e999"]),
)
crm_types = st.one_of(
    st.sampled_from(["InvoiceSent", "InvoicePaid", "OrderCreate", "ContactUpdate", "UNINSTALL", "AppUninstall"]),
    json_values,
)


@st.composite
def crm_bodies(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    payload: dict[str, Any] = {
        "type": draw(crm_types),
        "locationId": draw(st.one_of(st.just("loc-1"), json_values)),
        "webhookId": draw(st.one_of(texts, st.integers(), json_values)),
        "_id": draw(st.one_of(texts, json_values)),
    }
    stamp = draw(timestamps)
    payload["timestamp"] = utcnow().isoformat() if stamp == "now" else stamp
    payload.update(draw(st.dictionaries(texts, json_values, max_size=3)))
    text = json.dumps(payload, allow_nan=True)
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-16", "utf-32"]))
    return text.encode(encoding, "surrogatepass")


@st.composite
def qbo_bodies(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    entity = st.fixed_dictionaries(
        {
            "id": st.one_of(st.sampled_from(["58", "1"]), texts, json_values),
            "operation": st.one_of(st.sampled_from(["Create", "Update", "Merge"]), json_values),
            "name": st.one_of(st.sampled_from(["Customer", "Payment", "Invoice"]), json_values),
            "lastUpdated": st.one_of(st.just("2026-11-01T10:00:00Z"), timestamps),
        }
    )
    cloud = st.fixed_dictionaries(
        {
            "specversion": st.just("1.0"),
            "id": st.one_of(texts, json_values),
            "type": st.one_of(st.sampled_from(["qbo.customer.updated.v1", "qbo.payment.created.v1"]), json_values),
            "time": timestamps,
            "intuitentityid": st.one_of(texts, st.integers()),
            "intuitaccountid": st.one_of(st.just("9130"), texts, st.integers()),
        }
    )
    legacy = st.fixed_dictionaries(
        {
            "eventNotifications": st.lists(
                st.fixed_dictionaries(
                    {
                        "realmId": st.one_of(st.just("9130"), texts, json_values),
                        "dataChangeEvent": st.one_of(
                            st.fixed_dictionaries({"entities": st.lists(entity, max_size=4)}), json_values
                        ),
                    }
                ),
                max_size=3,
            )
        }
    )
    payload = draw(st.one_of(legacy, st.lists(cloud, max_size=4), json_values))
    text = json.dumps(payload, allow_nan=True)
    return text.encode(draw(st.sampled_from(["utf-8", "utf-8", "utf-16"])), "surrogatepass")


# Ids as a platform could sign them: any non-empty text, lone surrogates, NUL and over-long values included.
ids = st.one_of(texts.filter(bool), st.sampled_from(["\ud800", "a\x00", "L" * 65, "W" * 129, "9" * 40]))


@st.composite
def fresh_crm_bodies(draw: st.DrawFn) -> bytes:
    payload = {
        "type": draw(st.sampled_from(["InvoiceSent", "InvoicePaid", "OrderCreate", "ContactUpdate"])),
        "locationId": draw(st.one_of(st.just("loc-1"), ids)),
        "webhookId": draw(ids),
        "_id": draw(ids),
        "timestamp": utcnow().isoformat(),
    }
    return json.dumps(payload).encode()


@st.composite
def qbo_batches_with_any_ids(draw: st.DrawFn) -> bytes:
    entity = st.fixed_dictionaries(
        {
            "id": ids,
            "operation": st.sampled_from(["Create", "Update", "Delete"]),
            "name": st.one_of(st.sampled_from(["Customer", "Invoice", "Payment"]), ids),
            "lastUpdated": st.just("2026-11-01T10:00:00Z"),
        }
    )
    entities = draw(st.lists(entity, min_size=1, max_size=4))
    notification = {"realmId": draw(st.one_of(st.just("9130"), ids)), "dataChangeEvent": {"entities": entities}}
    return json.dumps({"eventNotifications": [notification]}).encode()


@pytest.fixture
def client(runtime: Runtime) -> Iterator[TestClient]:
    runtime.settings.crm_webhook_public_key = SIGNER.public_key_b64
    runtime.settings.crm_webhook_rsa_public_key = SIGNER.rsa_public_pem
    runtime.settings.qbo_webhook_verifier_token = SecretStr(VERIFIER)
    connect(runtime, "loc-1", "9130")
    with TestClient(create_app(runtime)) as test_client:
        yield test_client


@FUZZ
@given(body=crm_bodies())
def test_crm_parser_raises_only_its_own_error(body: bytes) -> None:
    with contextlib.suppress(EventParseError):
        parse_event(body)


@FUZZ
@given(body=qbo_bodies())
def test_qbo_parser_raises_only_value_error(body: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_events(body)


@pytest.mark.postgres
@FUZZ
@given(body=crm_bodies())
def test_signed_random_crm_bodies_never_500_and_refusals_store_nothing(
    client: TestClient, runtime: Runtime, body: bytes
) -> None:
    before = counts(runtime)
    response = client.post("/webhooks/crm", content=body, headers=SIGNER.ghl_headers(body))
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code != 200:
        assert counts(runtime) == before and response.json()["error"]


@pytest.mark.postgres
@FUZZ
@given(body=qbo_bodies())
def test_signed_random_intuit_bodies_never_500_and_refusals_store_nothing(
    client: TestClient, runtime: Runtime, body: bytes
) -> None:
    before = counts(runtime)
    response = client.post("/webhooks/qbo", content=body, headers=intuit_headers(body, VERIFIER))
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code != 200:
        assert counts(runtime) == before
    else:
        outcomes = response.json()["events"]
        stored = sum(1 for outcome in outcomes if outcome not in ("refused", "duplicate"))
        assert counts(runtime)[0] == before[0] + stored


@pytest.mark.postgres
@FUZZ
@given(body=fresh_crm_bodies())
def test_signed_fresh_crm_events_with_any_ids_are_stored_or_refused_alone(
    client: TestClient, runtime: Runtime, body: bytes
) -> None:
    before = counts(runtime)
    response = client.post("/webhooks/crm", content=body, headers=SIGNER.ghl_headers(body))
    assert response.status_code in (200, 422), response.text
    stored = response.status_code == 200 and response.json()["status"] != "duplicate"
    assert counts(runtime)[0] == before[0] + stored


@pytest.mark.postgres
@FUZZ
@given(body=qbo_batches_with_any_ids())
def test_signed_intuit_batches_with_any_ids_store_each_event_or_refuse_it_alone(
    client: TestClient, runtime: Runtime, body: bytes
) -> None:
    before = counts(runtime)
    response = client.post("/webhooks/qbo", content=body, headers=intuit_headers(body, VERIFIER))
    assert response.status_code in (200, 422), response.text
    outcomes = response.json()["events"] if response.status_code == 200 else []
    assert counts(runtime)[0] == before[0] + sum(1 for outcome in outcomes if outcome not in ("refused", "duplicate"))
