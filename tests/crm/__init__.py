"""Tests for qbconnect.crm (the HighLevel client side)."""
