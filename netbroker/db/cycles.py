"""CycleDB: the lease and the outcomes of each periodic cycle.

A lease is taken with one statement, an upsert (portable: SQLite and
PostgreSQL both have ``INSERT ... ON CONFLICT DO UPDATE ... WHERE``): it
creates the cycle's row on the first attempt ever, and takes the lease when
nobody holds it, the lease ran out, or the caller already holds it. So
among any number of service processes on any number of hosts, one runs a
given cycle, another takes over within one lease time after it dies, and
there is no read-then-write for two transactions to race on.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.engine import insert_for
from netbroker.db.schema import cycles

__all__ = ["CycleDB", "cycle_health", "is_overdue"]


class CycleDB:
    """Reads and writes ``cycles`` on one open connection."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def try_lease(self, name: str, holder: str, now: datetime, ttl_s: float,
                  period_s: float | None = None) -> bool:
        """Take or renew the lease of cycle ``name`` for ``ttl_s`` seconds; True if held.

        ``period_s``, the holder's period of the cycle, is stored with the
        lease, so readers can tell an overdue cycle (:func:`is_overdue`).
        """
        insert = insert_for(self.conn, cycles)
        expires = now + timedelta(seconds=ttl_s)
        stmt = insert.values(name=name, holder=holder, lease_expires_at=expires, runs=0,
                             failures=0, period_s=period_s)
        stmt = stmt.on_conflict_do_update(
            index_elements=[cycles.c.name],
            set_={"holder": holder, "lease_expires_at": expires, "period_s": period_s},
            where=sa.or_(cycles.c.holder.is_(None), cycles.c.holder == holder,
                         cycles.c.lease_expires_at < now))
        # RETURNING, not rowcount: a row comes back only where the upsert wrote.
        return self.conn.execute(stmt.returning(cycles.c.name)).first() is not None

    def record_run(self, name: str, started: datetime, finished: datetime,
                   error: str | None) -> None:
        """Store how a run went: its times, its error if any, the counters, and the
        time of the last success or of the last failure with its message."""
        outcome: dict[str, Any] = ({"last_failed_at": finished, "last_failure": error}
                                   if error else {"last_succeeded_at": finished})
        self.conn.execute(
            sa.update(cycles).where(cycles.c.name == name).values(
                last_started_at=started, last_finished_at=finished,
                last_duration_s=(finished - started).total_seconds(), last_error=error,
                runs=cycles.c.runs + 1,
                failures=cycles.c.failures + (1 if error else 0), **outcome))

    def release(self, name: str, holder: str) -> None:
        """Give the lease up (at shutdown), so another process need not wait it out."""
        self.conn.execute(sa.update(cycles)
                          .where(cycles.c.name == name, cycles.c.holder == holder)
                          .values(holder=None, lease_expires_at=None))

    def list_cycles(self) -> list[dict[str, Any]]:
        """Every cycle's row, by name."""
        return [dict(r) for r in self.conn.execute(
            sa.select(cycles).order_by(cycles.c.name)).mappings()]


def is_overdue(cycle: dict[str, Any], now: datetime) -> bool:
    """Whether ``cycle`` (a :meth:`CycleDB.list_cycles` row) should have run by ``now``.

    Overdue when two of its periods have passed since it last finished (a
    run skipped, or a holder stuck in one), or, never finished, when its
    lease ran out (the holder died or hangs in its first run). Unknown
    period (a row from before periods were stored): never overdue.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> row = {"period_s": 60.0, "last_finished_at": t, "lease_expires_at": None}
    >>> is_overdue(row, t + timedelta(seconds=119)), is_overdue(row, t + timedelta(seconds=121))
    (False, True)
    """
    period = cycle.get("period_s")
    if not period:
        return False
    last = cycle.get("last_finished_at")
    if last is None:
        expires = cycle.get("lease_expires_at")
        return expires is not None and now > expires
    return bool(now - last > timedelta(seconds=2 * period))


def cycle_health(cycle: dict[str, Any], now: datetime) -> str:
    """One word for an operator: ``failing`` (its last run failed), ``overdue``
    (:func:`is_overdue`), ``running`` (leased, never finished yet) or ``ok``.

    >>> from datetime import UTC
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> cycle_health({"period_s": 60.0, "last_finished_at": t, "last_error": "boom"}, t)
    'failing'
    """
    if cycle.get("last_error"):
        return "failing"
    if is_overdue(cycle, now):
        return "overdue"
    return "running" if cycle.get("last_finished_at") is None else "ok"
