"""A user as operators see one: fair-share usage, the boosts that apply, tasks, jobs.

Users are not registered: a user exists for netbroker once a task, a job or
a boost rule names them. :func:`user_summary` gives a user's CPU-hours over
the last 24 h beside the fair share (``priority.user_cpu_hours_per_day``)
and the priority penalty it costs each waiting job now
(:func:`netbroker.workload.priority.fairshare_penalty`), the boost rules for the
user or one of their working groups, their tasks and their jobs per state.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from netbroker.common.config import PrioritySettings
from netbroker.common.enums import utcnow
from netbroker.common.errors import UnknownUser
from netbroker.db.jobs import JobDB
from netbroker.db.priority import PriorityDB
from netbroker.workload import tasks
from netbroker.workload.priority import fairshare_penalty

__all__ = ["user_summary"]


def user_summary(engine: Engine, name: str, settings: PrioritySettings,
                 max_tasks: int = 200) -> dict[str, Any]:
    """``usage`` (cpu_hours_24h, share_hours, used_fraction, penalty), ``boosts``
    (for the user or a working group of theirs, newest first, each ``active``),
    ``tasks`` (newest first, at most ``max_tasks``) and ``jobs`` (state -> count).

    Raises ``UnknownUser`` when no task, job or boost names ``name``.
    """
    now = utcnow()
    own_tasks = tasks.list_tasks(engine, user=name, limit=max_tasks)
    with engine.connect() as conn:
        jobs = {state: n for _, state, n in JobDB(conn).state_counts("user", user=name)}
        db = PriorityDB(conn)
        hours = db.cpu_hours_by_user(now - timedelta(hours=24)).get(name, 0.0)
        groups = {t["working_group"] for t in own_tasks if t["working_group"]}
        boosts = [{**b, "active": b["expires_at"] > now} for b in db.boosts()
                  if b["user_name"] == name or (b["working_group"] in groups
                                                and b["user_name"] is None)]
    if not own_tasks and not jobs and not boosts:
        raise UnknownUser(name)
    penalty = int(fairshare_penalty(np.array([hours]), settings)[0])
    return {"user": name, "working_groups": sorted(groups),
            "usage": {"cpu_hours_24h": hours, "share_hours": settings.user_cpu_hours_per_day,
                      "used_fraction": hours / settings.user_cpu_hours_per_day,
                      "penalty": penalty},
            "boosts": boosts, "tasks": own_tasks, "jobs": jobs}
