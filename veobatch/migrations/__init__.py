"""Alembic migrations of the veo-batch schema (`alembic.ini` at the repository root)."""
