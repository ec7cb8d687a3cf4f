"""Which QBO entities the emulator holds and what each supports."""

from __future__ import annotations

NAME_LISTS = ("Customer", "Vendor", "Item", "Account", "PaymentMethod", "TaxCode", "TaxRate")
SALES_FORMS = ("Invoice", "SalesReceipt", "RefundReceipt", "CreditMemo")
TRANSACTIONS = (*SALES_FORMS, "Payment")
SINGLETONS = ("Preferences", "CompanyInfo")
ALL = (*NAME_LISTS, *TRANSACTIONS, *SINGLETONS)
READ_ONLY = ("TaxCode", "TaxRate")
CDC_UNSUPPORTED = ("TaxCode", "TaxRate")
BY_PATH = {name.lower(): name for name in ALL}

# reference property -> entity it points at ("" = an entity the emulator does not hold: always invalid)
REF_TARGETS = {
    "CustomerRef": "Customer",
    "ProjectRef": "Customer",
    "VendorRef": "Vendor",
    "DepositToAccountRef": "Account",
    "ARAccountRef": "Account",
    "IncomeAccountRef": "Account",
    "ExpenseAccountRef": "Account",
    "AssetAccountRef": "Account",
    "DiscountAccountRef": "Account",
    "ItemAccountRef": "Account",
    "PaymentMethodRef": "PaymentMethod",
    "ItemRef": "Item",
    "TaxCodeRef": "TaxCode",
    "DefaultTaxCodeRef": "TaxCode",
    "TxnTaxCodeRef": "TaxCode",
    "SalesTaxCodeRef": "TaxCode",
    "PurchaseTaxCodeRef": "TaxCode",
    "TaxRateRef": "TaxRate",
}
# references the emulator does not check (currency codes, tax agencies)
UNCHECKED_REFS = ("CurrencyRef", "AgencyRef", "HomeCurrency")


def display_name(entity: str, obj: dict[str, object]) -> str:
    """The text QBO puts in a reference's ``name`` for an object."""
    key = "DisplayName" if entity in ("Customer", "Vendor") else "Name"
    if entity == "Item" or entity == "Account":
        key = "FullyQualifiedName" if "FullyQualifiedName" in obj else "Name"
    return str(obj.get(key, ""))
