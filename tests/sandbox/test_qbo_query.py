"""Query language, CDC and batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from qbconnect.sandbox.qbo import QboSandbox

from .qbo_fixtures import Qbo, connect, qbo_fixture  # noqa: F401


def _rows(qbo: Qbo, text: str, entity: str = "Customer") -> list[dict[str, object]]:
    response = qbo.query(text)
    assert response.status_code == 200, response.text
    rows: list[dict[str, object]] = response.json()["QueryResponse"].get(entity, [])
    return rows


def test_where_operators_like_in_and_dotted_fields(qbo: Qbo) -> None:
    qbo.sandbox.seed_customers(qbo.realm, 30)
    assert [
        r["DisplayName"] for r in _rows(qbo, "select * from Customer where PrimaryEmailAddr = 'CUSTOMER7@example.com'")
    ] == ["Customer 000007"]
    assert len(_rows(qbo, "SELECT * FROM Customer WHERE DisplayName LIKE 'customer 00001%'")) == 10
    assert [r["Id"] for r in _rows(qbo, "select * from Customer where Id IN ('2', '5')")] == ["2", "5"]
    assert (
        len(
            _rows(
                qbo,
                "select * from Customer where PrimaryEmailAddr LIKE '%@example.com'"
                " AND DisplayName >= 'Customer 000025'",
            )
        )
        == 6
    )
    assert (
        len(
            _rows(
                qbo,
                "select * from Customer where MetaData.LastUpdatedTime > "
                f"'{(datetime.now(UTC) - timedelta(hours=1)).isoformat()}'",
            )
        )
        == 30
    )
    item_rows = _rows(qbo, "select * from Item where UnitPrice > '40' ORDERBY UnitPrice DESC", "Item")
    assert [r["Name"] for r in item_rows] == ["Design", "Hours"]
    assert _rows(qbo, "select * from Customer where DisplayName = 'O\\'Brien'") == []


def test_paging_count_and_active_default(qbo: Qbo) -> None:
    qbo.sandbox.seed_customers(qbo.realm, 250)
    first = qbo.query("select * from Customer ORDERBY Id STARTPOSITION 1 MAXRESULTS 100").json()["QueryResponse"]
    assert first["startPosition"] == 1 and first["maxResults"] == 100 and first["Customer"][0]["Id"] == "1"
    third = _rows(qbo, "select * from Customer STARTPOSITION 201 MAXRESULTS 100")
    assert len(third) == 50 and third[-1]["Id"] == "250"
    assert len(_rows(qbo, "select * from Customer")) == 100  # default MAXRESULTS
    assert len(_rows(qbo, "select * from Customer MAXRESULTS 5000")) == 250  # capped at 1000
    qbo.ok("Customer", {"Id": "3", "SyncToken": "0", "sparse": True, "Active": False})
    count = qbo.query("select count(*) from Customer").json()["QueryResponse"]
    assert count == {"totalCount": 249}
    both = qbo.query("select count(*) from Customer where Active IN (true, false)").json()["QueryResponse"]
    assert both["totalCount"] == 250
    assert qbo.query("select * from Customer where DisplayName = 'nobody'").json()["QueryResponse"] == {}


def test_post_query_with_application_text(qbo: Qbo) -> None:
    response = qbo.client.post(
        qbo.url("query"),
        content="select * from PaymentMethod",
        headers={**qbo.headers(), "Content-Type": "application/text"},
    )
    names = {m["Name"] for m in response.json()["QueryResponse"]["PaymentMethod"]}
    assert names == {"Cash", "Check", "Visa", "MasterCard", "American Express", "Discover"}


def test_bad_queries_are_4001(qbo: Qbo) -> None:
    for text in (
        "select Id from Customer",
        "select * from Nothing",
        "select * from Customer where DisplayName = 'a' OR DisplayName = 'b'",
        "select * from Customer where Bogus = '1'",
        "select * from Customer where Id > '3'",
        "select * from Customer where",
        "",
    ):
        assert qbo.fault(qbo.query(text))["code"] == "4001", text


def test_cdc_returns_changes_and_deletions_within_30_days(qbo: Qbo) -> None:
    sandbox = qbo.sandbox
    start = (datetime.now(UTC) + timedelta(minutes=1)).replace(microsecond=0)
    sandbox.clock = lambda: start
    old = qbo.customer("Old")
    invoice = qbo.invoice(old["Id"], (1, 10))
    later = start + timedelta(minutes=5)
    sandbox.clock = lambda: later
    new = qbo.customer("New")
    qbo.ok("Invoice", {"Id": invoice["Id"], "SyncToken": invoice["SyncToken"]}, operation="delete")
    since = (start + timedelta(minutes=1)).isoformat()
    response = qbo.client.get(
        qbo.url("cdc"), params={"entities": "Customer,Invoice", "changedSince": since}, headers=qbo.headers()
    )
    assert response.status_code == 200, response.text
    parts = response.json()["CDCResponse"][0]["QueryResponse"]
    assert [c["Id"] for c in parts[0]["Customer"]] == [new["Id"]]
    assert parts[1]["Invoice"] == [
        {
            "status": "Deleted",
            "domain": "QBO",
            "Id": invoice["Id"],
            "MetaData": {"LastUpdatedTime": later.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }
    ]
    too_old = (later - timedelta(days=31)).isoformat()
    stale = qbo.client.get(
        qbo.url("cdc"), params={"entities": "Customer", "changedSince": too_old}, headers=qbo.headers()
    )
    assert qbo.fault(stale)["code"] == "4001"
    tax = qbo.client.get(qbo.url("cdc"), params={"entities": "TaxCode", "changedSince": since}, headers=qbo.headers())
    assert tax.status_code == 400


def test_batch_items_are_independent_with_faults(qbo: Qbo) -> None:
    customer = qbo.customer("Batch Co")
    receipt = qbo.ok(
        "SalesReceipt",
        {
            "CustomerRef": {"value": customer["Id"]},
            "Line": [
                {"Amount": 400, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {"ItemRef": {"value": "1"}}}
            ],
        },
    )
    body = {
        "BatchItemRequest": [
            {"bId": "b1", "operation": "create", "Customer": {"DisplayName": "Batch Co"}},
            {"bId": "b2", "operation": "delete", "Invoice": {"Id": "999", "SyncToken": "0"}},
            {
                "bId": "b3",
                "operation": "update",
                "SalesReceipt": {"Id": receipt["Id"], "SyncToken": "9", "sparse": True},
            },
            {"bId": "b4", "Query": "select * from SalesReceipt where TotalAmt > '300.00'"},
            {"bId": "b5", "operation": "create", "Customer": {"DisplayName": "Fresh"}},
            {
                "bId": "b6",
                "operation": "update",
                "optionsData": "void",
                "SalesReceipt": {"Id": receipt["Id"], "SyncToken": "0", "sparse": True},
            },
        ]
    }
    response = qbo.client.post(qbo.url("batch"), json=body, headers=qbo.headers())
    assert response.status_code == 200
    items = {i["bId"]: i for i in response.json()["BatchItemResponse"]}
    assert items["b1"]["Fault"]["Error"][0]["code"] == "6240"
    assert items["b2"]["Fault"]["Error"][0]["code"] == "610"
    assert items["b3"]["Fault"]["Error"][0]["code"] == "5010"
    assert items["b4"]["QueryResponse"]["SalesReceipt"][0]["Id"] == receipt["Id"]
    assert items["b5"]["Customer"]["DisplayName"] == "Fresh"
    assert items["b6"]["SalesReceipt"]["TotalAmt"] == 0
    too_many = {"BatchItemRequest": [{"bId": str(i), "Query": "select * from Item"} for i in range(31)]}
    assert qbo.fault(qbo.client.post(qbo.url("batch"), json=too_many, headers=qbo.headers()))["code"] == "6000"


def test_seed_customers_scales() -> None:
    sandbox = QboSandbox()
    realm = sandbox.add_company()
    sandbox.seed_customers(realm, 10_000)
    qbo = connect(sandbox, realm)
    page = qbo.query("select * from Customer ORDERBY Id STARTPOSITION 9001 MAXRESULTS 1000").json()["QueryResponse"]
    assert page["maxResults"] == 1000 and page["Customer"][-1]["Id"] == "10000"
