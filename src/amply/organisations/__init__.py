"""Organisations, their members and their funds."""
