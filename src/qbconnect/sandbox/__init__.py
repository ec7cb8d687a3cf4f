"""qbconnect.sandbox."""
