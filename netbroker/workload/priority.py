"""Job priorities: fair share, boosts, aging and the failure penalty.

A waiting job's priority is recomputed from its task's base priority::

    priority = base
             + boosts        operator rules for its user or group, at its site,
                             in its site's cloud, or everywhere; unexpired; summed
             + aging         aging_per_hour * hours waiting, at most aging_cap
             - failures      failure_penalty * (attempt_nr - 1)
             - fair share    fairshare_penalty * (usage / user_cpu_hours_per_day - 1)
                             when the user's CPU-hours over the last 24 h exceed
                             the share, at most fairshare_max_penalty

The dispatcher hands out the highest priority first, so aging guarantees
that an old low-priority job eventually overtakes new ones (no starvation),
and a heavy user's new jobs rank below a light user's. The arithmetic is
pure numpy over all waiting jobs (:func:`compute_priorities`);
:func:`recompute` reads them once and writes only the changed ones, in
batches of :data:`WRITE_BATCH`, never a per-job query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
from sqlalchemy.engine import Connection, Engine

from netbroker.common.config import PrioritySettings
from netbroker.common.enums import utcnow
from netbroker.common.errors import InvalidBoost, UnknownBoost, UnknownCloud, UnknownSite
from netbroker.db import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.priority import PriorityDB

__all__ = [
    "PriorityContext",
    "add_boost",
    "aging",
    "boost_values",
    "compute_priorities",
    "fairshare_penalty",
    "list_boosts",
    "priorities_for_new_jobs",
    "priority_context",
    "recompute",
    "remove_boost",
]


# Jobs whose priority one write transaction sets: small enough that it holds
# SQLite's write lock (or a batch of PostgreSQL row locks) for milliseconds.
WRITE_BATCH = 1000


def fairshare_penalty(usage_hours: np.ndarray, settings: PrioritySettings) -> np.ndarray:
    """Priority lost by each job for its user's CPU-hours over the last 24 h. O(J).

    >>> s = PrioritySettings(user_cpu_hours_per_day=100, fairshare_penalty=100)
    >>> fairshare_penalty(np.array([50.0, 100.0, 150.0, 10_000.0]), s).tolist()
    [0, 0, 50, 500]
    """
    over = usage_hours / settings.user_cpu_hours_per_day - 1.0
    penalty = np.minimum(settings.fairshare_penalty * np.maximum(over, 0.0),
                         settings.fairshare_max_penalty)
    return np.rint(penalty).astype(np.int64)


def aging(waited_hours: np.ndarray, settings: PrioritySettings) -> np.ndarray:
    """Priority gained by waiting, capped. O(J).

    >>> aging(np.array([0.0, 2.5, 1000.0]), PrioritySettings()).tolist()
    [0, 25, 300]
    """
    gain = np.minimum(settings.aging_per_hour * np.maximum(waited_hours, 0.0),
                      settings.aging_cap)
    return np.floor(gain).astype(np.int64)


def boost_values(users: np.ndarray, groups: np.ndarray, site_ids: np.ndarray,
                 cloud_ids: np.ndarray, boosts: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The summed value of the boost rules matching each job. O(b * J).

    A rule matches a job when its user (or working group) is the job's, and
    its site (or cloud) is the job's site (the cloud of the job's site), or
    it names no place.

    >>> rule = {"user_name": "alice", "working_group": None, "site_id": 3, "cloud_id": None,
    ...         "value": 200}
    >>> boost_values(np.array(["alice", "alice", "bob"]), np.array(["", "", ""]),
    ...              np.array([3, 4, 3]), np.array([1, 1, 1]), [rule]).tolist()
    [200, 0, 0]
    """
    total = np.zeros(len(users), np.int64)
    for rule in boosts:
        who = np.zeros(len(users), bool)
        if rule.get("user_name"):
            who |= users == rule["user_name"]
        if rule.get("working_group"):
            who |= groups == rule["working_group"]
        if rule.get("site_id") is not None:
            who &= site_ids == rule["site_id"]
        elif rule.get("cloud_id") is not None:
            who &= cloud_ids == rule["cloud_id"]
        total[who] += int(rule["value"])
    return total


def compute_priorities(base: np.ndarray, boost: np.ndarray, waited_hours: np.ndarray,
                       attempt_nr: np.ndarray, usage_hours: np.ndarray,
                       settings: PrioritySettings) -> np.ndarray:
    """Every job's priority from its parts (see the module docstring). O(J).

    >>> s = PrioritySettings(user_cpu_hours_per_day=100)
    >>> compute_priorities(np.array([1000, 1000]), np.array([0, 50]), np.array([0.0, 3.0]),
    ...                    np.array([1, 2]), np.array([0.0, 200.0]), s).tolist()
    [1000, 930]
    """
    return (base + boost + aging(waited_hours, settings)
            - settings.failure_penalty * (attempt_nr - 1)
            - fairshare_penalty(usage_hours, settings)).astype(np.int64)


def _priorities(base: np.ndarray, users: np.ndarray, groups: np.ndarray,
                site_ids: np.ndarray, cloud_ids: np.ndarray, waited_hours: np.ndarray,
                attempt_nr: np.ndarray, context: PriorityContext,
                settings: PrioritySettings) -> np.ndarray:
    """Every job's priority from its columns and the pass's boosts and usage. O(b * J)."""
    names, index = np.unique(users.astype(str), return_inverse=True)
    usage = np.array([context.usage_hours.get(u, 0.0) for u in names.tolist()], dtype=float)
    return compute_priorities(
        base, boost_values(users, groups, site_ids, cloud_ids, context.boosts),
        np.nan_to_num(waited_hours, nan=0.0), attempt_nr, usage[index], settings)


def recompute(engine: Engine, settings: PrioritySettings, now: datetime | None = None) -> int:
    """Recompute the priority of every waiting job; returns how many changed.

    Most jobs' priority is their own: base, aging and failures, no boost
    matching them and their user within the fair share. Those are compared
    in the database (``PriorityDB.own_priority_changes``, the sum of
    :func:`compute_priorities` with no boost and no usage), so only the
    rows that change come back. The jobs of the users and working groups a
    boost names, and of the users over their share, are read and computed
    here in numpy. Reads take no lock; the changed priorities are written
    :data:`WRITE_BATCH` at a time, each batch a short write transaction:
    the dispatcher's acquisitions take turns with them (SQLite) or meet a
    few locked rows at most (PostgreSQL, where the batch skips a row a
    pilot holds), instead of waiting out one transaction over every
    waiting job. A job a pilot takes meanwhile keeps its priority. O(j) in
    the database, O(b * k) here for the k jobs with boosts or fair share.
    """
    now = now or utcnow()
    with engine.connect() as conn:
        db = PriorityDB(conn)
        context = priority_context(conn, now)
        users, groups = _context_keys(context, settings)
        ids, values = db.own_priority_changes(now, settings, users, groups)
        if users or groups:
            more_ids, more_values = _in_context(db, users, groups, context, settings, now)
            ids, values = ids + more_ids, values + more_values
    done = 0
    for start in range(0, len(ids), WRITE_BATCH):
        with begin_immediate(engine) as conn:
            done += PriorityDB(conn).set_priorities(ids[start:start + WRITE_BATCH],
                                                    values[start:start + WRITE_BATCH])
    return done


def _context_keys(context: PriorityContext, settings: PrioritySettings
                  ) -> tuple[list[str], list[str]]:
    """The users and working groups whose jobs' priorities have more than their own:
    users over the fair share, users and groups a boost names."""
    names = sorted(context.usage_hours)
    penalty = fairshare_penalty(np.array([context.usage_hours[u] for u in names], dtype=float),
                                settings)
    users = {u for u, p in zip(names, penalty.tolist(), strict=True) if p > 0}
    users |= {b["user_name"] for b in context.boosts if b.get("user_name")}
    groups = {b["working_group"] for b in context.boosts if b.get("working_group")}
    return sorted(users), sorted(groups)


def _in_context(db: PriorityDB, users: list[str], groups: list[str],
                context: PriorityContext, settings: PrioritySettings, now: datetime
                ) -> tuple[list[int], list[int]]:
    """The waiting jobs of ``users`` and ``groups`` whose priority, with their boosts
    and fair share, changed: their ids and new priorities."""
    waiting = db.waiting_jobs(users, groups, now)
    site_ids, cloud_ids = _places(waiting.queue_id, db.queue_places())
    new = _priorities(waiting.base_priority, waiting.user_name, waiting.working_group,
                      site_ids, cloud_ids, waiting.waited_s / 3600,
                      waiting.attempt_nr, context, settings)
    changed = np.flatnonzero(new != waiting.priority)
    return waiting.id[changed].tolist(), new[changed].tolist()


def _places(queue_ids: np.ndarray, places: Mapping[int, tuple[int, int]]
            ) -> tuple[np.ndarray, np.ndarray]:
    """Each job's (site id, cloud id) arrays from its queue id, -1 where unknown."""
    known, index = np.unique(queue_ids, return_inverse=True)
    table = np.array([places.get(q, (-1, -1)) for q in known.tolist()], dtype=np.int64
                     ).reshape(-1, 2)
    return table[index, 0], table[index, 1]


class PriorityContext(NamedTuple):
    """What new jobs' priorities depend on besides themselves, read once per pass."""

    boosts: list[dict[str, Any]]
    usage_hours: dict[str, float]


def priority_context(conn: Connection, now: datetime) -> PriorityContext:
    """The active boosts and every user's CPU-hours over the last 24 h."""
    db = PriorityDB(conn)
    return PriorityContext(db.boosts(active_at=now),
                           db.cpu_hours_by_user(now - timedelta(hours=24)))


def priorities_for_new_jobs(context: PriorityContext, base_priority: np.ndarray,
                            users: np.ndarray, groups: np.ndarray, queue_ids: np.ndarray,
                            site_of_queue: Mapping[int, tuple[int, int]],
                            settings: PrioritySettings) -> np.ndarray:
    """Starting priorities for first attempts about to be inserted (not waited yet).

    One value per job of the columns ``base_priority``, ``users``, ``groups``
    (object arrays) and ``queue_ids``; ``site_of_queue`` maps a queue id to
    (site id, cloud id). O(b * J) for b boosts and J jobs.
    """
    known, index = np.unique(queue_ids, return_inverse=True)
    place = np.array([site_of_queue.get(q, (-1, -1)) for q in known.tolist()],
                     dtype=np.int64).reshape(-1, 2)[index]
    return _priorities(np.asarray(base_priority, dtype=np.int64), users, groups,
                       place[:, 0], place[:, 1], np.zeros(len(queue_ids)),
                       np.ones(len(queue_ids), dtype=np.int64), context, settings)


def add_boost(engine: Engine, value: int, hours: float, user: str | None = None,
              group: str | None = None, site: str | None = None, cloud: str | None = None,
              created_by: str = "", comment: str = "") -> dict[str, Any]:
    """Store a boost rule; returns it.

    Raises ``InvalidBoost``, ``UnknownSite`` or ``UnknownCloud``.
    """
    if not user and not group:
        raise InvalidBoost("a boost needs a user or a working group")
    if site and cloud:
        raise InvalidBoost("a boost applies at a site or in a cloud, not both")
    if hours <= 0:
        raise InvalidBoost(f"hours = {hours}: a boost must last a positive time")
    now = utcnow()
    with begin_immediate(engine) as conn:
        grid = GridDB(conn)
        site_id = cloud_id = None
        if site:
            site_id = grid.site_ids().get(site)
            if site_id is None:
                raise UnknownSite(site)
        if cloud:
            cloud_id = grid.cloud_ids().get(cloud)
            if cloud_id is None:
                raise UnknownCloud(cloud)
        boost_id = PriorityDB(conn).add_boost({
            "user_name": user or None, "working_group": group or None, "site_id": site_id,
            "cloud_id": cloud_id, "value": value, "expires_at": now + timedelta(hours=hours),
            "created_at": now, "created_by": created_by, "comment": comment})
        return next(b for b in PriorityDB(conn).boosts() if b["id"] == boost_id)


def list_boosts(engine: Engine, active_only: bool = False) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return PriorityDB(conn).boosts(active_at=utcnow() if active_only else None)


def remove_boost(engine: Engine, boost_id: int) -> None:
    """Delete a boost rule. Raises ``UnknownBoost`` when there is none with that id."""
    with begin_immediate(engine) as conn:
        if not PriorityDB(conn).remove_boost(boost_id):
            raise UnknownBoost(str(boost_id))
