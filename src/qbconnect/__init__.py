"""qbconnect."""
