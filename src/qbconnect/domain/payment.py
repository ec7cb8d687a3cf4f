"""CRM invoice payments → QBO Payments linked to the QBO invoice."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from qbconnect.domain.money import round_money

PAYMENT_REF_LIMIT = 21


def payments_needed(crm_amount_paid: Decimal, qbo_booked_total: Decimal, currency: str = "USD") -> Decimal:
    """The amount to book now: what the CRM says was paid minus what QBO already holds (never below 0)."""
    difference = round_money(crm_amount_paid, currency) - round_money(qbo_booked_total, currency)
    return difference if difference > 0 else round_money(Decimal(0), currency)


def build_qbo_payment(
    *,
    customer_id: str,
    invoice_id: str,
    amount: Decimal,
    currency: str = "USD",
    txn_date: date | None = None,
    payment_method_id: str | None = None,
    deposit_account_id: str | None = None,
    reference: str | None = None,
    private_note: str | None = None,
    multicurrency: bool = False,
) -> dict[str, Any]:
    """A QBO Payment of ``amount`` applied to invoice ``invoice_id``.

    Without ``deposit_account_id`` QBO deposits to Undeposited Funds.
    """
    value = round_money(amount, currency)
    if value <= 0:
        raise ValueError("a payment amount must be positive")
    body: dict[str, Any] = {
        "CustomerRef": {"value": customer_id},
        "TotalAmt": value,
        "Line": [{"Amount": value, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
    }
    if txn_date:
        body["TxnDate"] = txn_date.isoformat()
    if payment_method_id:
        body["PaymentMethodRef"] = {"value": payment_method_id}
    if deposit_account_id:
        body["DepositToAccountRef"] = {"value": deposit_account_id}
    if reference:
        body["PaymentRefNum"] = reference[:PAYMENT_REF_LIMIT]
    if private_note:
        body["PrivateNote"] = private_note[:4000]
    if multicurrency:
        body["CurrencyRef"] = {"value": currency.upper()}
    return body
