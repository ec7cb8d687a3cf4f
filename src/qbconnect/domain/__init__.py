"""qbconnect.domain."""
