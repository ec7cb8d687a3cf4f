"""qbconnect.crm."""
