"""The link repository: the one owner of the link table (CRM object ↔ QuickBooks object)."""
