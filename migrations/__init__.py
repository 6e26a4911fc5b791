"""Alembic migrations of the veo-batch schema (`alembic.ini` at the repository root)."""

# The newest revision. A new migration updates it; tests/test_store.py checks it against the
# files in versions/, so the application can tell an up-to-date schema without loading Alembic.
HEAD = "0002"
