"""Handlers for the invoice job kinds (being written)."""
