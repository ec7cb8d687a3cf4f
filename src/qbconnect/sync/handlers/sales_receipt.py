"""Handlers for the sales_receipt job kinds (being written)."""
