"""qbconnect.web."""
