from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from qbconnect.domain.payment import build_qbo_payment, payments_needed
from tests.support.qbo_xsd import validate_qbo_json


def test_payments_needed() -> None:
    assert payments_needed(Decimal("899"), Decimal("0")) == Decimal("899.00")
    assert payments_needed(Decimal("999"), Decimal("899")) == Decimal("100.00")
    assert payments_needed(Decimal("999"), Decimal("999.00")) == Decimal("0.00")
    assert payments_needed(Decimal("500"), Decimal("999")) == Decimal("0.00")


def test_payment_linked_to_invoice() -> None:
    body = build_qbo_payment(
        customer_id="20",
        invoice_id="67",
        amount=Decimal("25.005"),
        txn_date=date(2024, 3, 5),
        payment_method_id="3",
        deposit_account_id="35",
        reference="ch_" + "x" * 40,
        private_note="Topline OS invoice #19 payment",
    )
    assert body["TotalAmt"] == Decimal("25.01")
    assert body["Line"] == [{"Amount": Decimal("25.01"), "LinkedTxn": [{"TxnId": "67", "TxnType": "Invoice"}]}]
    assert body["CustomerRef"] == {"value": "20"}
    assert body["TxnDate"] == "2024-03-05"
    assert len(body["PaymentRefNum"]) == 21
    assert validate_qbo_json("Payment", body) == []


def test_payment_defaults_to_undeposited_funds_and_currency() -> None:
    body = build_qbo_payment(customer_id="1", invoice_id="2", amount=Decimal(10), currency="EUR", multicurrency=True)
    assert "DepositToAccountRef" not in body
    assert body["CurrencyRef"] == {"value": "EUR"}
    assert validate_qbo_json("Payment", body) == []
    with pytest.raises(ValueError):
        build_qbo_payment(customer_id="1", invoice_id="2", amount=Decimal(0))
