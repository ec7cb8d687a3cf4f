"""qbconnect.sync."""
