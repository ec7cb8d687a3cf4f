from __future__ import annotations

import pytest

from qbconnect.domain.qbo_models import QboInvoice
from qbconnect.domain.review import first_invoice, is_first_invoice_fully_paid, render_review_message

RAW = [
    {"Id": "12", "TxnDate": "2024-02-01", "TotalAmt": 50, "Balance": 0},
    {"Id": "9", "TxnDate": "2024-01-15", "TotalAmt": 100, "Balance": 0},
    {"Id": "10", "TxnDate": "2024-01-15", "TotalAmt": 70, "Balance": 20},
    {"Id": "3", "TxnDate": "2024-01-01", "TotalAmt": 0, "Balance": 0},  # voided
]
INVOICES = [QboInvoice.from_api(raw) for raw in RAW]


def test_first_invoice_is_earliest_then_lowest_numeric_id() -> None:
    first = first_invoice(INVOICES)
    assert first is not None and first.id == "9"
    assert first_invoice([]) is None


def test_is_first_invoice_fully_paid() -> None:
    assert is_first_invoice_fully_paid(INVOICES, {"9"})
    assert not is_first_invoice_fully_paid(INVOICES, {"12"})  # not the first
    unpaid = [QboInvoice.from_api(dict(RAW[1], Balance=5))]
    assert not is_first_invoice_fully_paid(unpaid, ["9"])
    assert not is_first_invoice_fully_paid([], ["9"])


def test_render_review_message_escapes() -> None:
    template = "Subject: Thanks {first_name}!\nHi {first_name},\n\nPlease review {business_name}: {review_link}"
    subject, html, text = render_review_message(template, "<Bob>", "Tom & Jerry's", "https://g.page/r/abc?x=1&y=2")
    assert subject == "Thanks <Bob>!"
    assert text == "Hi <Bob>,\n\nPlease review Tom & Jerry's: https://g.page/r/abc?x=1&y=2"
    assert "&lt;Bob&gt;" in html and "<Bob>" not in html
    assert "Tom &amp; Jerry&#x27;s" in html
    assert '<a href="https://g.page/r/abc?x=1&amp;y=2">' in html


def test_render_review_message_defaults() -> None:
    subject, html, text = render_review_message(
        "Hello {{contact.first_name}}, thanks!", "", "Acme", "https://example.com/review"
    )
    assert subject == "Thank you from Acme"
    assert text.startswith("Hello there, thanks!") and text.endswith("https://example.com/review")
    assert '<a href="https://example.com/review">' in html
    with pytest.raises(ValueError):
        render_review_message("x", "a", "b", "javascript:alert(1)")
