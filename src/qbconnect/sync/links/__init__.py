"""The link repository: the one owner of the link table (CRM object ↔ QuickBooks object).

Every other module asks these modules, one per link kind; none imports the link model (an import-linter
contract in pyproject.toml keeps it so). Rows come back as typed records whose fields are stored in the
row's columns and its ``data`` JSON column, under the keys listed in each module.

| module | kind(s) | record |
|---|---|---|
| ``customers`` | ``customer`` | :class:`~qbconnect.sync.links.customers.CustomerLink` |
| ``invoices`` | ``invoice`` | :class:`~qbconnect.sync.links.invoices.InvoiceLink` |
| ``receipts`` | ``sales_receipt`` | :class:`~qbconnect.sync.links.receipts.ReceiptLink` |
| ``lists`` | ``item``, ``payment_method``, ``account`` | :class:`~qbconnect.sync.links.lists.ListLink` |
| ``rows`` | all | counts for the overview, and the row access the modules above share |
"""
