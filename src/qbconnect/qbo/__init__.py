"""qbconnect.qbo."""
