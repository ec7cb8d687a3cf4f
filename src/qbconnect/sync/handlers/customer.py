"""Handlers for the customer job kinds (being written)."""
