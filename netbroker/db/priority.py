"""PriorityDB: boost rules, users' recent CPU use, and the bulk priority update."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from netbroker.common.config import PrioritySettings
from netbroker.db.functions import clamp, floor_nonnegative, seconds_since
from netbroker.db.jobs import WAITING
from netbroker.db.schema import UTCDateTime, clouds, jobs, priority_boosts, queues, sites

__all__ = ["PriorityDB", "WaitingJobs"]


class PriorityDB:
    """Reads and writes ``priority_boosts`` and the priorities of waiting jobs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_boost(self, row: dict[str, Any]) -> int:
        return int(self.conn.execute(
            sa.insert(priority_boosts).returning(priority_boosts.c.id), [row]).scalar_one())

    def remove_boost(self, boost_id: int) -> bool:
        result = self.conn.execute(sa.delete(priority_boosts)
                                   .where(priority_boosts.c.id == boost_id))
        return result.rowcount == 1

    def boosts(self, active_at: datetime | None = None) -> list[dict[str, Any]]:
        """Boost rules with site and cloud names, newest first; only active ones if asked."""
        b = priority_boosts
        stmt = (sa.select(b, sites.c.name.label("site"), clouds.c.name.label("cloud"))
                .outerjoin(sites, b.c.site_id == sites.c.id)
                .outerjoin(clouds, b.c.cloud_id == clouds.c.id).order_by(b.c.id.desc()))
        if active_at is not None:
            stmt = stmt.where(b.c.expires_at > active_at)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def cpu_hours_by_user(self, since: datetime) -> dict[str, float]:
        """CPU-hours each user's jobs reported, for jobs changed since ``since``."""
        stmt = (sa.select(jobs.c.user_name, sa.func.sum(jobs.c.cpu_time_s))
                .where(jobs.c.modified_at >= since, jobs.c.cpu_time_s.is_not(None))
                .group_by(jobs.c.user_name))
        return {user: float(total) / 3600 for user, total in self.conn.execute(stmt)}

    def waiting_jobs(self, users: Collection[str], groups: Collection[str], now: datetime
                     ) -> WaitingJobs:
        """The waiting jobs of ``users`` or of working groups ``groups``, with what their
        priority depends on (the time waited until ``now``), as column arrays. O(k) in
        them."""
        stmt = (sa.select(jobs.c.id, jobs.c.priority, jobs.c.base_priority, jobs.c.attempt_nr,
                          seconds_since(jobs.c.waiting_since, _time(now)),
                          sa.func.coalesce(jobs.c.queue_id, -1), jobs.c.user_name,
                          jobs.c.working_group)
                .where(_waiting(), sa.or_(jobs.c.user_name.in_(sorted(users)),
                                          jobs.c.working_group.in_(sorted(groups)))))
        rows = self.conn.execute(stmt).all()
        columns = list(zip(*rows, strict=True)) if rows else [()] * 8
        ids, priority, base, attempts = (np.array(c, dtype=np.int64) for c in columns[:4])
        return WaitingJobs(ids, priority, base, attempts,
                           np.array(columns[4], dtype=float),  # None -> NaN
                           np.array(columns[5], dtype=np.int64),
                           np.array(columns[6], dtype=object), np.array(columns[7], dtype=object))

    def own_priority_changes(self, now: datetime, settings: PrioritySettings,
                             except_users: Collection[str], except_groups: Collection[str]
                             ) -> tuple[list[int], list[int]]:
        """The waiting jobs whose own priority differs from their priority: their ids and
        own priorities.

        A job's own priority is ``netbroker.workload.priority.compute_priorities`` with no
        boost and no usage, computed here in SQL, at ``now``::

            base_priority + floor(min(aging_per_hour * max(hours waiting, 0), aging_cap))
                          - failure_penalty * (attempt_nr - 1)

        (no ``waiting_since``: no aging). The jobs of ``except_users`` and of
        ``except_groups`` are left out (their priority has more parts). One read,
        no lock taken; only the changed rows come back. O(j) in the database.
        """
        own = _own_priority(settings, now)
        stmt = sa.select(jobs.c.id, own).where(_waiting(), jobs.c.priority != own)
        if except_users:
            stmt = stmt.where(jobs.c.user_name.not_in(sorted(except_users)))
        if except_groups:
            stmt = stmt.where(jobs.c.working_group.not_in(sorted(except_groups)))
        rows = self.conn.execute(stmt).all()
        return [r[0] for r in rows], [r[1] for r in rows]

    def queue_places(self) -> dict[int, tuple[int, int]]:
        """Each queue's (site id, cloud id), -1 for a cloud it lacks."""
        stmt = (sa.select(queues.c.id, queues.c.site_id, sites.c.cloud_id)
                .join(sites, queues.c.site_id == sites.c.id))
        return {q: (s, -1 if c is None else c) for q, s, c in self.conn.execute(stmt)}

    def set_priorities(self, ids: Sequence[int], values: Sequence[int]) -> int:
        """Set ``priority`` of waiting jobs ``ids`` to ``values``; how many were set.

        One statement for the batch. A job that left the waiting states
        meanwhile is left alone; on PostgreSQL so is a job whose row a
        pilot's acquisition holds at that moment (``SKIP LOCKED``: it is
        being sent, and the cycle does not wait for it).
        """
        if not ids:
            return 0
        if self.conn.dialect.name == "postgresql":
            return _set_priorities_postgresql(self.conn, ids, values)
        # SQLite: an executemany, in the caller's (short) write transaction.
        stmt = (sa.update(jobs).where(jobs.c.id == sa.bindparam("job_id"), _waiting())
                .values(priority=sa.bindparam("new_priority")))
        result = self.conn.execute(stmt, [{"job_id": i, "new_priority": p}
                                          for i, p in zip(ids, values, strict=True)])
        return int(result.rowcount)


class WaitingJobs(NamedTuple):
    """The waiting jobs as :meth:`PriorityDB.waiting_jobs` reads them, one array a column.

    ``waited_s`` is the seconds waited (NaN: not known), ``queue_id`` -1 for none.
    """

    id: np.ndarray
    priority: np.ndarray
    base_priority: np.ndarray
    attempt_nr: np.ndarray
    waited_s: np.ndarray
    queue_id: np.ndarray
    user_name: np.ndarray
    working_group: np.ndarray


def _waiting() -> sa.ColumnElement[bool]:
    # A fixed list (no expanding IN): the statement's text stays one.
    return jobs.c.status.in_([sa.literal(s, jobs.c.status.type) for s in sorted(WAITING)])


def _time(at: datetime) -> sa.BindParameter[datetime]:
    return sa.literal(at, UTCDateTime())


def _own_priority(settings: PrioritySettings, now: datetime) -> sa.ColumnElement[int]:
    """A job's priority without boosts or fair share, in SQL (see
    :meth:`PriorityDB.own_priority_changes`)."""
    hours = seconds_since(jobs.c.waiting_since, _time(now)) / 3600.0
    # No waiting_since: no aging (the clamp's NULL).
    capped = clamp(sa.literal(settings.aging_per_hour, sa.Float) * hours, 0.0,
                   float(settings.aging_cap))
    return (jobs.c.base_priority + floor_nonnegative(capped)
            - settings.failure_penalty * (jobs.c.attempt_nr - 1))


def _set_priorities_postgresql(conn: Connection, ids: Sequence[int],
                               values: Sequence[int]) -> int:
    """The batch as one UPDATE from two arrays, its rows locked ``SKIP LOCKED`` first."""
    given = sa.select(sa.func.unnest(sa.bindparam("ids", type_=ARRAY(sa.BigInteger)))
                      .label("job_id"),
                      sa.func.unnest(sa.bindparam("values", type_=ARRAY(sa.Integer)))
                      .label("new_priority")).subquery("given")
    ids_param = sa.bindparam("ids", type_=ARRAY(sa.BigInteger))
    free = (sa.select(jobs.c.id).where(jobs.c.id == sa.any_(ids_param), _waiting())
            .with_for_update(skip_locked=True).cte("free"))
    stmt = (sa.update(jobs).where(jobs.c.id == given.c.job_id,
                                  jobs.c.id.in_(sa.select(free.c.id)))
            .values(priority=given.c.new_priority).add_cte(free))
    return int(conn.execute(stmt, {"ids": list(ids), "values": list(values)}).rowcount)
