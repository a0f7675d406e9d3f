"""Persons, API tokens and role-based access."""
