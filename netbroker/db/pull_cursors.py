"""PullCursorDB: where each pull collector stopped reading each series of an archive."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from netbroker.db.schema import collector_pull_cursors

__all__ = ["PullCursorDB"]


class PullCursorDB:
    """Reads and writes ``collector_pull_cursors`` on one open connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def cursors(self, archive_url: str) -> dict[str, float]:
        """Every series of ``archive_url`` read before: series -> read through (epoch s)."""
        t = collector_pull_cursors
        return {series: float(through) for series, through in self.conn.execute(
            sa.select(t.c.series, t.c.through_s).where(t.c.archive_url == archive_url))}

    def advance(self, archive_url: str, through: dict[str, float], now: datetime) -> None:
        """Set the series' marks, each never moving back (one upsert per series)."""
        t = collector_pull_cursors
        insert = (sqlite.insert(t) if self.conn.dialect.name == "sqlite"
                  else postgresql.insert(t))
        for series, through_s in sorted(through.items()):
            stmt = insert.values(archive_url=archive_url, series=series, through_s=through_s,
                                 updated_at=now)
            self.conn.execute(stmt.on_conflict_do_update(
                index_elements=[t.c.archive_url, t.c.series],
                set_={"through_s": stmt.excluded.through_s, "updated_at": now},
                where=t.c.through_s < stmt.excluded.through_s))
