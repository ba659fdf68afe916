"""CycleDB: the lease and the last outcome of each periodic cycle.

A lease is taken with one conditional UPDATE (portable, no dialect
locking): it succeeds when nobody holds the cycle, the lease ran out, or
the caller already holds it. So among any number of service processes on
any number of hosts, one runs a given cycle, and another takes over within
one lease time after it dies.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.schema import cycles

__all__ = ["CycleDB"]


class CycleDB:
    """Reads and writes ``cycles`` on one open connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def try_lease(self, name: str, holder: str, now: datetime, ttl_s: float) -> bool:
        """Take or renew the lease of cycle ``name`` for ``ttl_s`` seconds; True if held."""
        exists = self.conn.execute(sa.select(cycles.c.name).where(cycles.c.name == name))
        if exists.first() is None:
            try:
                with self.conn.begin_nested():
                    self.conn.execute(sa.insert(cycles).values(name=name, runs=0, failures=0))
            except sa.exc.IntegrityError:
                pass  # another process created it first: fine, compete below
        result = self.conn.execute(
            sa.update(cycles)
            .where(cycles.c.name == name,
                   sa.or_(cycles.c.holder.is_(None), cycles.c.holder == holder,
                          cycles.c.lease_expires_at < now))
            .values(holder=holder, lease_expires_at=now + timedelta(seconds=ttl_s)))
        return result.rowcount == 1

    def record_run(self, name: str, started: datetime, finished: datetime,
                   error: str | None) -> None:
        """Store how a run went: its times, its error if any, the counters."""
        self.conn.execute(
            sa.update(cycles).where(cycles.c.name == name).values(
                last_started_at=started, last_finished_at=finished,
                last_duration_s=(finished - started).total_seconds(), last_error=error,
                runs=cycles.c.runs + 1,
                failures=cycles.c.failures + (1 if error else 0)))

    def release(self, name: str, holder: str) -> None:
        """Give the lease up (at shutdown), so another process need not wait it out."""
        self.conn.execute(sa.update(cycles)
                          .where(cycles.c.name == name, cycles.c.holder == holder)
                          .values(holder=None, lease_expires_at=None))

    def list_cycles(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.conn.execute(
            sa.select(cycles).order_by(cycles.c.name)).mappings()]
