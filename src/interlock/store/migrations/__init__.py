"""Alembic migrations of the store's schema, run programmatically (no alembic.ini needed).

Each revision runs inside the caller's transaction, with the version row it records.
"""
