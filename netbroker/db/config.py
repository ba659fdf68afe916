"""ConfigDB: the runtime settings overrides and their audit log, on one open connection.

Values are stored as JSON text; encoding and decoding them is the caller's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.schema import config_audit, config_overrides

__all__ = ["ConfigDB"]


class ConfigDB:
    """Reads and writes ``config_overrides`` and ``config_audit``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def overrides(self) -> dict[str, str]:
        """Every stored override: dotted key -> its value as JSON text."""
        rows = self.conn.execute(sa.select(config_overrides.c.key, config_overrides.c.value))
        return {k: v for k, v in rows}

    def set_override(self, key: str, value: str, now: datetime, who: str) -> None:
        """Store (replace) the override of ``key``, its value JSON text; returns nothing."""
        self.conn.execute(sa.delete(config_overrides).where(config_overrides.c.key == key))
        self.conn.execute(sa.insert(config_overrides).values(
            key=key, value=value, updated_at=now, updated_by=who))

    def add_audit(self, row: dict[str, Any]) -> None:
        """Append one change (at, who, key, old, new as JSON text) to the audit log."""
        self.conn.execute(sa.insert(config_audit).values(**row))

    def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` audit rows, newest first (old and new as JSON text)."""
        rows = self.conn.execute(sa.select(config_audit).order_by(config_audit.c.id.desc())
                                 .limit(limit)).mappings().all()
        return [dict(r) for r in rows]
