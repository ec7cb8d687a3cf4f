"""Review requests: is this the customer's first invoice, fully paid? And the message to send."""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Mapping, Sequence
from urllib.parse import urlparse

from qbconnect.domain.qbo_models import QboInvoice

DEFAULT_SUBJECT = "Thank you from {business_name}"
_PLACEHOLDER = re.compile(r"\{\{\s*([a-zA-Z_.]+)\s*\}\}|\{([a-zA-Z_]+)\}")
_ALIASES = {
    "first_name": "first_name",
    "contact.first_name": "first_name",
    "contact.firstname": "first_name",
    "business_name": "business_name",
    "location.name": "business_name",
    "business.name": "business_name",
    "review_link": "review_link",
    "location.review_link": "review_link",
}


def _sort_key(invoice: QboInvoice) -> tuple[str, int, str]:
    return (invoice.txn_date or "9999-12-31", int(invoice.id) if invoice.id.isdigit() else 0, invoice.id)


def first_invoice(invoices: Sequence[QboInvoice]) -> QboInvoice | None:
    """The customer's first invoice: earliest TxnDate, ties by numeric Id; voided/zero invoices skipped."""
    real = [inv for inv in invoices if inv.total > 0]
    return min(real, key=_sort_key) if real else None


def is_first_invoice_fully_paid(invoices: Sequence[QboInvoice], paid_invoice_ids: Collection[str]) -> bool:
    """True when the payment just seen (paying ``paid_invoice_ids``) settles the customer's first invoice."""
    first = first_invoice(invoices)
    if first is None:
        return False
    return first.id in {str(i) for i in paid_invoice_ids} and first.balance == 0


def _values(first_name: str, business_name: str, review_link: str) -> dict[str, str]:
    return {
        "first_name": first_name.strip() or "there",
        "business_name": business_name.strip(),
        "review_link": review_link,
    }


def _fill(template: str, values: Mapping[str, str], escape: bool) -> str:
    def replace(match: re.Match[str]) -> str:
        key = _ALIASES.get((match.group(1) or match.group(2)).lower())
        if key is None:
            return match.group(0)
        value = values[key]
        return html.escape(value, quote=True) if escape else value

    return _PLACEHOLDER.sub(replace, template)


def render_review_message(template: str, first_name: str, business_name: str, review_link: str) -> tuple[str, str, str]:
    """(subject, html, text) of a review request.

    Placeholders: ``{first_name}``, ``{business_name}``, ``{review_link}`` (also ``{{contact.first_name}}``,
    ``{{location.name}}``). A first line ``Subject: ...`` sets the subject. The template and the values
    are escaped in the HTML; the review link (http/https only) becomes a link.
    """
    scheme = urlparse(review_link).scheme.lower()
    if scheme not in {"http", "https"}:
        raise ValueError("the review link must be an http(s) address")
    values = _values(first_name, business_name, review_link)
    body = template.strip("\n")
    subject_template = DEFAULT_SUBJECT
    first_line, _, rest = body.partition("\n")
    if first_line.lower().startswith("subject:"):
        subject_template = first_line.split(":", 1)[1].strip()
        body = rest.strip("\n")
    subject = " ".join(_fill(subject_template, values, escape=False).split())
    text = _fill(body, values, escape=False)
    if review_link not in text:
        text = f"{text}\n\n{review_link}"

    link = html.escape(review_link, quote=True)
    anchor = f'<a href="{link}">{link}</a>'
    paragraphs = []
    for block in re.split(r"\n\s*\n", body):
        escaped = html.escape(block, quote=True)
        filled = _fill(escaped, values, escape=True).replace(link, anchor)
        paragraphs.append("<p>" + filled.replace("\n", "<br>") + "</p>")
    rendered = "\n".join(paragraphs)
    if anchor not in rendered:
        rendered += f"\n<p>{anchor}</p>"
    return subject, rendered, text
