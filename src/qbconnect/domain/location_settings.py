"""Per-location settings (``GET``/``PATCH /api/locations/{id}/settings`` and the settings page).

Stored as JSON on the location row; this model is the one definition of their names, types and defaults.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, field_validator

from qbconnect.domain.sources import ReceiptKind

DEFAULT_REVIEW_MESSAGE = (
    "Hi {first_name}, thank you for choosing {business_name}! "
    "Would you take a minute to leave us a review? {review_link}"
)
DEFAULT_REVIEW_SUBJECT = "How did we do, {first_name}?"


class LocationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # What syncs.
    sync_invoices: bool = True
    sync_sales_receipts: bool = True
    import_contacts: bool = True
    # Review request when QuickBooks shows the customer's first invoice fully paid.
    review_request_enabled: bool = True
    review_request_channel: Literal["Email", "SMS"] = "Email"
    review_link: HttpUrl | None = None
    review_message: str = Field(default=DEFAULT_REVIEW_MESSAGE, min_length=1, max_length=1600)
    review_subject: str = Field(default=DEFAULT_REVIEW_SUBJECT, min_length=1, max_length=200)
    # Items: map CRM products to QBO items, else find by name / create, or always use the default item.
    item_strategy: Literal["match_or_create", "default_item"] = "match_or_create"
    product_item_map: dict[str, str] = Field(default_factory=dict)  # CRM productId -> QBO Item Id
    default_item_id: str | None = None
    income_account_id: str | None = None  # for items we create; default: the company's first Income account
    shipping_item_id: str | None = None
    discount_account_id: str | None = None
    # Taxes (non-US companies): CRM tax id, name or "rate:20" (and "exempt") -> QBO TaxCode Id.
    tax_code_map: dict[str, str] = Field(default_factory=dict)
    # Money in: where payments and receipts are deposited (default: Undeposited Funds).
    deposit_account_id: str | None = None
    payment_method_map: dict[str, str] = Field(default_factory=dict)  # CRM card brand / mode -> QBO PaymentMethod Id
    # Sales receipts.
    receipt_kinds_disabled: list[ReceiptKind] = Field(default_factory=list)
    skip_test_mode_payments: bool = True
    transaction_poll_minutes: int = Field(default=5, ge=1, le=1440)
    refund_lookback_days: int = Field(default=90, ge=1, le=365)
    # Contacts from QuickBooks.
    contacts_without_email: Literal["skip", "phone"] = "skip"
    contact_tag: str = Field(default="quickbooks", min_length=1, max_length=64)
    # Workflows: keep "QuickBooks open balance" / "QuickBooks overdue" custom fields on linked contacts.
    workflow_balance_fields: bool = False

    @field_validator("receipt_kinds_disabled")
    @classmethod
    def _no_invoice_kind(cls, value: list[ReceiptKind]) -> list[ReceiptKind]:
        return [kind for kind in value if kind is not ReceiptKind.INVOICE]

    @property
    def review_requests_active(self) -> bool:
        """Review requests go out only when enabled and a review link is set."""
        return self.review_request_enabled and self.review_link is not None

    def receipt_kind_enabled(self, kind: ReceiptKind) -> bool:
        return kind.is_receipt and kind not in self.receipt_kinds_disabled


def load(raw: dict[str, Any] | None) -> LocationSettings:
    """Settings from the stored JSON; unknown or invalid stored keys fall back to defaults."""
    raw = dict(raw or {})
    try:
        return LocationSettings.model_validate(raw)
    except ValidationError:
        known = {k: v for k, v in raw.items() if k in LocationSettings.model_fields}
        clean: dict[str, Any] = {}
        for key, value in known.items():
            try:
                LocationSettings.model_validate({key: value})
            except ValidationError:
                continue
            clean[key] = value
        return LocationSettings.model_validate(clean)


def apply_patch(current: LocationSettings, patch: dict[str, Any]) -> LocationSettings:
    """Validate a partial update; raises pydantic.ValidationError with per-field messages."""
    merged = current.model_dump(mode="json")
    merged.update(patch)
    return LocationSettings.model_validate(merged)


def dump(settings: LocationSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json")
