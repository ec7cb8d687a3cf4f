"""QuickBooks customers → CRM contacts: handler, import, change sweep, merges."""
