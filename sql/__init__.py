"""Alembic migrations of netbroker's schema (``env.py`` and ``versions/``).

The revisions are generated from :data:`netbroker.db.schema.metadata`;
``netbroker db upgrade`` (and ``netbroker serve`` at start) apply them.
"""
