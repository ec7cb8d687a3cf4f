"""Connections: CRM app installs, QuickBooks connections, their tokens and the clients built on them."""
