"""qbconnect.db."""
