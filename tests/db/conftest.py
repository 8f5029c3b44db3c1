"""Fixtures for the database tests (``database``: SQLite and PostgreSQL)."""

from dbkit import database  # noqa: F401 - the fixture, on SQLite and PostgreSQL
