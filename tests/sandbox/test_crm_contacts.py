"""Contacts: create, strict bodies, upsert (email-then-phone), duplicate search, search, tags."""

from __future__ import annotations

from tests.sandbox import crm_fixtures
from tests.sandbox.crm_fixtures import LOCATION, Crm

contact_id = crm_fixtures.contact_id
crm = crm_fixtures.crm


def test_create_refuses_unknown_and_invalid_fields(crm: Crm) -> None:
    response = crm.client.post(
        "/contacts/", json={"locationId": LOCATION, "email": "not-an-email", "nickname": "x"}, headers=crm.headers()
    )
    assert response.status_code == 422
    body = response.json()
    assert body["statusCode"] == 422 and body["error"] == "Unprocessable Entity"
    assert "property nickname should not exist" in body["message"]
    assert "email must be an email" in body["message"]
    assert crm.client.post("/contacts/", json={"email": "a@b.co"}, headers=crm.headers()).status_code == 422


def test_update_has_no_company_name(crm: Crm, contact_id: str) -> None:
    response = crm.client.put(f"/contacts/{contact_id}", json={"companyName": "X"}, headers=crm.headers())
    assert response.status_code == 422
    assert response.json()["message"] == ["property companyName should not exist"]
    ok = crm.client.put(f"/contacts/{contact_id}", json={"city": "Paris", "tags": ["vip"]}, headers=crm.headers())
    assert ok.status_code == 200 and ok.json()["succeded"] is True
    assert ok.json()["contact"]["city"] == "Paris" and ok.json()["contact"]["tags"] == ["vip"]


def test_create_duplicate_is_refused_when_location_disallows(crm: Crm, contact_id: str) -> None:
    response = crm.client.post(
        "/contacts/", json={"locationId": LOCATION, "email": "ADA@example.com"}, headers=crm.headers()
    )
    assert response.status_code == 400
    assert response.json()["meta"] == {"contactName": "Ada Lovelace", "contactId": contact_id, "matchingField": "email"}


def test_upsert_matches_email_first_and_ignores_conflicting_phone(crm: Crm, contact_id: str) -> None:
    other = crm.sandbox.create_contact(LOCATION, firstName="Bob", phone="+14155550199")
    response = crm.client.post(
        "/contacts/upsert",
        json={"locationId": LOCATION, "email": "ada@example.com", "phone": "+14155550199", "city": "London"},
        headers=crm.headers(),
    )
    body = response.json()
    assert response.status_code == 200 and body["new"] is False and "traceId" in body
    assert body["contact"]["id"] == contact_id
    assert body["contact"]["phone"] == "+14155550100"  # the second field is ignored, no duplicate made
    assert body["contact"]["city"] == "London"
    assert crm.sandbox.contact(other["id"])["phone"] == "+14155550199"


def test_upsert_falls_back_to_phone_then_creates(crm: Crm, contact_id: str) -> None:
    by_phone = crm.client.post(
        "/contacts/upsert",
        json={"locationId": LOCATION, "phone": "(415) 555-0100", "lastName": "King"},
        headers=crm.headers(),
    ).json()
    assert by_phone["new"] is False and by_phone["contact"]["id"] == contact_id
    created = crm.client.post(
        "/contacts/upsert", json={"locationId": LOCATION, "email": "new@example.com"}, headers=crm.headers()
    ).json()
    assert created["new"] is True and created["contact"]["id"] != contact_id


def test_upsert_tags_overwrite_only_when_sent(crm: Crm, contact_id: str) -> None:
    crm.sandbox.contact(contact_id)["tags"] = ["old"]
    kept = crm.client.post(
        "/contacts/upsert", json={"locationId": LOCATION, "email": "ada@example.com"}, headers=crm.headers()
    ).json()
    assert kept["contact"]["tags"] == ["old"]
    replaced = crm.client.post(
        "/contacts/upsert",
        json={"locationId": LOCATION, "email": "ada@example.com", "tags": ["new"]},
        headers=crm.headers(),
    ).json()
    assert replaced["contact"]["tags"] == ["new"]


def test_upsert_creates_duplicate_only_when_allowed_and_asked(crm: Crm, contact_id: str) -> None:
    body = {"locationId": LOCATION, "email": "ada@example.com", "createNewIfDuplicateAllowed": True}
    assert crm.client.post("/contacts/upsert", json=body, headers=crm.headers()).json()["new"] is False
    crm.sandbox.location(LOCATION).allow_duplicate_contact = True
    assert crm.client.post("/contacts/upsert", json=body, headers=crm.headers()).json()["new"] is True


def test_duplicate_search_by_email_or_number(crm: Crm, contact_id: str) -> None:
    by_email = crm.get("/contacts/search/duplicate", locationId=LOCATION, email="Ada@Example.com").json()
    assert by_email["contact"]["id"] == contact_id
    by_number = crm.get("/contacts/search/duplicate", locationId=LOCATION, number="+14155550100").json()
    assert by_number["contact"]["id"] == contact_id
    assert crm.get("/contacts/search/duplicate", locationId=LOCATION, email="x@y.z").json()["contact"] is None


def test_search_by_email_filter_and_paging(crm: Crm, contact_id: str) -> None:
    for n in range(3):
        crm.sandbox.create_contact(LOCATION, email=f"p{n}@example.com")
    found = crm.client.post(
        "/contacts/search",
        json={"locationId": LOCATION, "filters": [{"field": "email", "operator": "eq", "value": "ADA@example.com"}]},
        headers=crm.headers(),
    ).json()
    assert [c["id"] for c in found["contacts"]] == [contact_id] and found["total"] == 1
    paged = crm.client.post(
        "/contacts/search", json={"locationId": LOCATION, "page": 2, "pageLimit": 3}, headers=crm.headers()
    ).json()
    assert paged["total"] == 4 and len(paged["contacts"]) == 1


def test_tags_add_and_remove(crm: Crm, contact_id: str) -> None:
    added = crm.client.post(f"/contacts/{contact_id}/tags", json={"tags": ["A", "b"]}, headers=crm.headers())
    assert added.status_code == 201 and added.json()["tags"] == ["a", "b"]
    removed = crm.client.request("DELETE", f"/contacts/{contact_id}/tags", json={"tags": ["a"]}, headers=crm.headers())
    assert removed.status_code == 200 and removed.json()["tags"] == ["b"]
    types = [w["type"] for w in crm.sandbox.emitted_webhooks]
    assert types.count("ContactTagUpdate") == 2


def test_unknown_contact_is_400_and_foreign_contact_403(crm: Crm) -> None:
    assert crm.get("/contacts/nope").status_code == 400
    foreign = crm.sandbox.create_contact("locBBBBBBBBBBBBBBBB2", email="z@example.com")
    assert crm.get(f"/contacts/{foreign['id']}").status_code == 403


def test_search_pages_by_search_after_oldest_first(crm: Crm, contact_id: str) -> None:
    for n in range(6):
        crm.sandbox.create_contact(LOCATION, email=f"s{n}@example.com")
    body = {"locationId": LOCATION, "pageLimit": 3, "sort": [{"field": "dateAdded", "direction": "asc"}]}
    seen: list[str] = []
    cursor = None
    while True:
        sent = {**body, "searchAfter": cursor} if cursor else {**body, "page": 1}
        page = crm.client.post("/contacts/search", json=sent, headers=crm.headers()).json()
        seen += [c["id"] for c in page["contacts"]]
        assert page["total"] == 7
        if len(page["contacts"]) < 3:
            break
        cursor = page["contacts"][-1]["searchAfter"]
    assert seen[0] == contact_id and len(seen) == len(set(seen)) == 7  # every contact once, the oldest first


def test_search_refuses_pages_past_ten_thousand_and_page_with_cursor(crm: Crm) -> None:
    deep = {"locationId": LOCATION, "page": 21, "pageLimit": 500}
    assert crm.client.post("/contacts/search", json=deep, headers=crm.headers()).status_code == 422
    both = {"locationId": LOCATION, "page": 1, "pageLimit": 5, "searchAfter": [0, "x"]}
    assert crm.client.post("/contacts/search", json=both, headers=crm.headers()).status_code == 422
