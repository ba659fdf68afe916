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
:func:`recompute` reads them once and writes the changed ones in one
executemany, never a per-job query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection, Engine

from netbroker.config import PrioritySettings
from netbroker.db import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.priority import PriorityDB
from netbroker.db.schema import clouds, sites, utcnow
from netbroker.errors import InvalidBoost, UnknownBoost, UnknownCloud, UnknownSite

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


def _priorities(frame: pd.DataFrame, boosts: Sequence[Mapping[str, Any]],
                usage: Mapping[str, float], now: datetime,
                settings: PrioritySettings) -> np.ndarray:
    since = pd.to_datetime(frame["waiting_since"], utc=True)
    waited = ((pd.Timestamp(now) - since).dt.total_seconds() / 3600).fillna(0.0).to_numpy()
    users = frame["user_name"].to_numpy(dtype=object)
    return compute_priorities(
        frame["base_priority"].to_numpy(np.int64),
        boost_values(users, frame["working_group"].to_numpy(dtype=object),
                     frame["site_id"].fillna(-1).to_numpy(np.int64),
                     frame["cloud_id"].fillna(-1).to_numpy(np.int64), boosts),
        waited, frame["attempt_nr"].to_numpy(np.int64),
        np.array([usage.get(u, 0.0) for u in users], dtype=float), settings)


def recompute(engine: Engine, settings: PrioritySettings, now: datetime | None = None) -> int:
    """Recompute the priority of every waiting job; returns how many changed.

    One read of the waiting jobs, the boosts and the users' CPU-hours, numpy
    in between, one executemany of the changed rows.
    """
    now = now or utcnow()
    with begin_immediate(engine) as conn:
        db = PriorityDB(conn)
        frame = db.waiting_jobs()
        if frame.empty:
            return 0
        new = _priorities(frame, db.boosts(active_at=now),
                          db.cpu_hours_by_user(now - timedelta(hours=24)), now, settings)
        changed = new != frame["priority"].to_numpy(np.int64)
        ids = frame["id"].to_numpy(np.int64)[changed]
        return db.set_priorities(list(zip(ids.tolist(), new[changed].tolist(), strict=True)))


class PriorityContext(NamedTuple):
    """What new jobs' priorities depend on besides themselves, read once per pass."""

    boosts: list[dict[str, Any]]
    usage_hours: dict[str, float]


def priority_context(conn: Connection, now: datetime) -> PriorityContext:
    """The active boosts and every user's CPU-hours over the last 24 h."""
    db = PriorityDB(conn)
    return PriorityContext(db.boosts(active_at=now),
                           db.cpu_hours_by_user(now - timedelta(hours=24)))


def priorities_for_new_jobs(context: PriorityContext, rows: Sequence[Mapping[str, Any]],
                            site_of_queue: Mapping[int, tuple[int, int]],
                            settings: PrioritySettings, now: datetime) -> np.ndarray:
    """Starting priorities for jobs about to be inserted (not waited yet).

    ``rows`` carry ``base_priority, user_name, working_group, attempt_nr,
    queue_id``; ``site_of_queue`` maps a queue id to (site id, cloud id).
    """
    place = [site_of_queue.get(r["queue_id"], (-1, -1)) for r in rows]
    frame = pd.DataFrame({
        "base_priority": [r["base_priority"] for r in rows],
        "user_name": [r["user_name"] for r in rows],
        "working_group": [r["working_group"] for r in rows],
        "attempt_nr": [r.get("attempt_nr", 1) for r in rows],
        "site_id": [p[0] for p in place], "cloud_id": [p[1] for p in place],
        "waiting_since": [now] * len(rows)})
    return _priorities(frame, context.boosts, context.usage_hours, now, settings)


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
            site_id = grid.ids(sites).get(site)
            if site_id is None:
                raise UnknownSite(site)
        if cloud:
            cloud_id = grid.ids(clouds).get(cloud)
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
