"""Keeps both platforms' tokens fresh for every installed location."""
