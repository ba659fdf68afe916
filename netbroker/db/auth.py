"""AuthDB: the API's bearer tokens (``api_tokens``), on one open connection.

Only a token's SHA-256 is stored; the caller hashes and owns the transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.schema import api_tokens

__all__ = ["AuthDB"]


class AuthDB:
    """Reads and writes ``api_tokens``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def token_exists(self, name: str) -> bool:
        """Whether a token (revoked or not) has this name."""
        return self.conn.execute(sa.select(api_tokens.c.id)
                                 .where(api_tokens.c.name == name)).first() is not None

    def add_token(self, name: str, role: str, token_sha256: str, now: datetime) -> None:
        """Store a new token by its digest; returns nothing."""
        self.conn.execute(sa.insert(api_tokens).values(name=name, role=role,
                                                       token_sha256=token_sha256,
                                                       created_at=now))

    def holder(self, token_sha256: str) -> tuple[str, str] | None:
        """(name, role) of the unrevoked token with this digest, or None."""
        row = self.conn.execute(sa.select(api_tokens.c.name, api_tokens.c.role).where(
            api_tokens.c.token_sha256 == token_sha256, api_tokens.c.revoked_at.is_(None))
        ).first()
        return None if row is None else (row.name, row.role)

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token's name, role, creation and revocation time, by name."""
        return [dict(r) for r in self.conn.execute(
            sa.select(api_tokens.c.name, api_tokens.c.role, api_tokens.c.created_at,
                      api_tokens.c.revoked_at).order_by(api_tokens.c.name)).mappings()]

    def revoke_token(self, name: str, now: datetime) -> int:
        """Revoke the unrevoked token of this name; returns the rows revoked (0 or 1)."""
        return int(self.conn.execute(sa.update(api_tokens).where(
            api_tokens.c.name == name, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=now)).rowcount)
