"""Handlers for the review job kinds (being written)."""
