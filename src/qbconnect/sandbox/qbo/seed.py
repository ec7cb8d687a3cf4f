"""What a new sandbox company holds: chart of accounts, items, payment methods, tax codes, preferences."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .company import Company

_CURRENCIES = {
    "USD": "United States Dollar",
    "GBP": "British Pound Sterling",
    "CAD": "Canadian Dollar",
    "AUD": "Australian Dollar",
    "EUR": "Euro",
    "INR": "Indian Rupee",
}
_CLASSIFICATION = {
    "Bank": "Asset",
    "Accounts Receivable": "Asset",
    "Other Current Asset": "Asset",
    "Fixed Asset": "Asset",
    "Other Asset": "Asset",
    "Accounts Payable": "Liability",
    "Credit Card": "Liability",
    "Other Current Liability": "Liability",
    "Long Term Liability": "Liability",
    "Equity": "Equity",
    "Income": "Revenue",
    "Other Income": "Revenue",
    "Cost of Goods Sold": "Expense",
    "Expense": "Expense",
    "Other Expense": "Expense",
}
ACCOUNTS = (
    ("Services", "Income", "ServiceFeeIncome"),
    ("Sales of Product Income", "Income", "SalesOfProductIncome"),
    ("Discounts given", "Income", "DiscountsRefundsGiven"),
    ("Undeposited Funds", "Other Current Asset", "UndepositedFunds"),
    ("Checking", "Bank", "Checking"),
    ("Accounts Receivable (A/R)", "Accounts Receivable", "AccountsReceivable"),
    ("Inventory Asset", "Other Current Asset", "Inventory"),
    ("Cost of Goods Sold", "Cost of Goods Sold", "SuppliesMaterialsCogs"),
)
PAYMENT_METHODS = (
    ("Cash", "NON_CREDIT_CARD"),
    ("Check", "NON_CREDIT_CARD"),
    ("Visa", "CREDIT_CARD"),
    ("MasterCard", "CREDIT_CARD"),
    ("American Express", "CREDIT_CARD"),
    ("Discover", "CREDIT_CARD"),
)
NON_US_RATES = (("20.0% S", 20), ("5.0% R", 5), ("Exempt", 0))


def currency_name(code: str) -> str:
    return _CURRENCIES.get(code, code)


def classification(account_type: str) -> str:
    return _CLASSIFICATION.get(account_type, "Asset")


def ref(obj: dict[str, Any], name_key: str = "Name") -> dict[str, Any]:
    return {"value": obj["Id"], "name": obj[name_key]}


def seed_company(company: Company, *, custom_txn_numbers: bool, multicurrency: bool) -> None:
    home = {"value": company.home_currency, "name": currency_name(company.home_currency)}
    accounts: dict[str, dict[str, Any]] = {}
    for name, account_type, sub_type in ACCOUNTS:
        accounts[name] = company.insert(
            "Account",
            {
                "Name": name,
                "SubAccount": False,
                "FullyQualifiedName": name,
                "Active": True,
                "Classification": classification(account_type),
                "AccountType": account_type,
                "AccountSubType": sub_type,
                "CurrentBalance": 0,
                "CurrentBalanceWithSubAccounts": 0,
                "CurrencyRef": dict(home),
            },
        )
    for name, price in (("Services", 0), ("Hours", 50), ("Design", 75)):
        company.insert(
            "Item",
            {
                "Name": name,
                "FullyQualifiedName": name,
                "Active": True,
                "SubItem": False,
                "Type": "Service",
                "UnitPrice": price,
                "Taxable": False,
                "IncomeAccountRef": ref(accounts["Services"]),
            },
        )
    company.insert(
        "Item",
        {
            "Name": "Widget",
            "FullyQualifiedName": "Widget",
            "Active": True,
            "SubItem": False,
            "Type": "Inventory",
            "UnitPrice": 10,
            "TrackQtyOnHand": True,
            "QtyOnHand": 100,
            "InvStartDate": "2024-01-01",
            "IncomeAccountRef": ref(accounts["Sales of Product Income"]),
            "AssetAccountRef": ref(accounts["Inventory Asset"]),
            "ExpenseAccountRef": ref(accounts["Cost of Goods Sold"]),
        },
    )
    for name, kind in PAYMENT_METHODS:
        company.insert("PaymentMethod", {"Name": name, "Active": True, "Type": kind})
    if company.is_us:
        for code, taxable, description in (("TAX", True, "Taxable"), ("NON", False, "Non-taxable")):
            company.insert(
                "TaxCode",
                {"Name": code, "Description": description, "Active": True, "Taxable": taxable, "TaxGroup": False},
                obj_id=code,
            )
    else:
        for name, value in NON_US_RATES:
            rate = company.insert(
                "TaxRate",
                {
                    "Name": name,
                    "Description": f"{name} (sales)",
                    "Active": True,
                    "RateValue": value,
                    "SpecialTaxType": "NONE",
                    "DisplayType": "ReadOnly",
                },
            )
            company.insert(
                "TaxCode",
                {
                    "Name": name,
                    "Description": name,
                    "Active": True,
                    "Taxable": value > 0,
                    "TaxGroup": False,
                    "SalesTaxRateList": {
                        "TaxRateDetail": [{"TaxRateRef": ref(rate), "TaxTypeApplicable": "TaxOnAmount", "TaxOrder": 0}]
                    },
                    "PurchaseTaxRateList": {"TaxRateDetail": []},
                },
            )
    company.insert(
        "Preferences",
        {
            "AccountingInfoPrefs": {"FirstMonthOfFiscalYear": "January", "TaxYearMonth": "January"},
            "ProductAndServicesPrefs": {"ForSales": True, "ForPurchase": True},
            "SalesFormsPrefs": {
                "AllowDeposit": True,
                "AllowDiscount": True,
                "AllowEstimates": True,
                "CustomTxnNumbers": custom_txn_numbers,
                "ETransactionEnabledStatus": "Enabled",
            },
            "TaxPrefs": {"UsingSalesTax": True, "PartnerTaxEnabled": False},
            "CurrencyPrefs": {"MultiCurrencyEnabled": multicurrency, "HomeCurrency": {"value": company.home_currency}},
            "ReportPrefs": {"ReportBasis": "Accrual", "CalcAgingReportFromTxnDate": False},
        },
        obj_id="1",
    )
    company.insert(
        "CompanyInfo",
        {
            "CompanyName": company.name,
            "LegalName": company.name,
            "CompanyAddr": {"Line1": "123 Sierra Way", "City": "San Pablo", "Country": company.country},
            "Email": {"Address": "noreply@sandbox.example"},
            "CompanyStartDate": "2024-01-01",
            "FiscalYearStartMonth": "January",
            "Country": company.country,
            "SupportedLanguages": "en",
            "NameValue": [{"Name": "NeoEnabled", "Value": "true"}],
        },
        obj_id="1",
    )
