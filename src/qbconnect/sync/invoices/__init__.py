"""CRM invoices → QuickBooks invoices, payments and voids: handler, convergence, reconciliation."""
