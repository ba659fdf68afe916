"""Settings operators change at runtime: validated, audited, previewed.

The tunable groups (clouds, brokerage, rebrokerage, priority, pd2p) may be
changed while the service runs; the rest (database, service, collectors,
metrics, dispatcher) need a restart. A change is a set of dotted keys and
new values: it is validated as a whole against the settings models (a bad
value names its key and changes nothing), stored as overrides in the
database (so every service process, and the next cycle, sees it) and
written to the audit log as who, when, key, old -> new.

:func:`effective_settings` is the file and environment settings with the
overrides on top; the cycles and the API read it each time (overrides are
cached per process for a few seconds). :func:`preview` answers what a
change would do before it is made: the cloud membership joins and leaves,
and which recent tasks' brokerage would choose another cloud.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from netbroker.clouds import membership as clouds
from netbroker.common.config import Settings
from netbroker.common.enums import TaskStatus, utcnow
from netbroker.common.errors import ConfigError
from netbroker.db import begin_immediate, database_key
from netbroker.db.config import ConfigDB
from netbroker.db.tasks import TaskDB
from netbroker.workload.brokerage import GridView, broker_task
from netbroker.workload.gridview import load_grid_view

__all__ = ["TUNABLE", "apply_overrides", "audit_log", "cached_overrides", "change_settings",
           "effective_settings", "overrides", "preview"]

TUNABLE = ("clouds", "brokerage", "rebrokerage", "priority", "pd2p")
CACHE_S = 5.0
_cache: dict[str, tuple[float, dict[str, Any]]] = {}


def overrides(engine: Engine, fresh: bool = False) -> dict[str, Any]:
    """The stored overrides, ``{dotted key: value}`` (cached for a few seconds)."""
    if not fresh:
        hit = cached_overrides(engine)
        if hit is not None:
            return hit
    with engine.connect() as conn:
        found = {k: json.loads(v) for k, v in ConfigDB(conn).overrides().items()}
    _cache[database_key(engine)] = (time.monotonic(), found)
    return found


def _apply(base: Settings, changes: Mapping[str, Any]) -> Settings:
    """``base`` with ``changes`` on top, validated; raises ``ConfigError`` naming keys."""
    problems = []
    data = base.model_dump()
    for key, value in changes.items():
        group, _, name = key.partition(".")
        if group not in TUNABLE:
            problems.append(f"{key}: not changeable at runtime (tunable groups: "
                            f"{', '.join(TUNABLE)})")
            continue
        if name not in data[group]:
            problems.append(f"{key}: unknown setting")
            continue
        data[group][name] = value
    if problems:
        raise ConfigError(problems)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"{'.'.join(map(str, e['loc']))} = {e['input']!r}: {e['msg']}"
                           for e in exc.errors()]) from None


def cached_overrides(engine: Engine) -> dict[str, Any] | None:
    """The overrides :func:`overrides` remembers, or None when they are stale.

    No I/O: the API's dependencies call it on the event loop and read the
    database (off the loop) only when it says None.
    """
    hit = _cache.get(database_key(engine))
    if hit is None or time.monotonic() - hit[0] >= CACHE_S:
        return None
    return hit[1]


def effective_settings(engine: Engine, base: Settings) -> Settings:
    """The settings in force: ``base`` (file, environment) with the stored overrides."""
    return apply_overrides(base, overrides(engine))


def apply_overrides(base: Settings, stored: Mapping[str, Any]) -> Settings:
    """``base`` with the stored overrides on top; ``base`` when there are none, or when
    one is no longer accepted by the code (a stale override must not stop the service)."""
    if not stored:
        return base
    try:
        return _apply(base, stored)
    except ConfigError:
        return base


def change_settings(engine: Engine, base: Settings, changes: Mapping[str, Any],
                    who: str) -> list[dict[str, Any]]:
    """Validate and store ``changes``; returns the audit rows written (key, old, new).

    Raises ``ConfigError`` naming each bad key; then nothing is stored.
    """
    if not changes:
        raise ConfigError(["no change given"])
    current = effective_settings(engine, base)
    _apply(current, changes)  # validate the whole change first
    now = utcnow()
    rows = []
    with begin_immediate(engine) as conn:
        db = ConfigDB(conn)
        for key, value in changes.items():
            group, _, name = key.partition(".")
            old = getattr(getattr(current, group), name)
            db.set_override(key, json.dumps(value), now, who)
            row = {"at": now, "who": who, "key": key, "old": json.dumps(old, default=str),
                   "new": json.dumps(value)}
            db.add_audit(row)
            rows.append({**row, "old": old, "new": value})
    _cache.clear()
    return rows


def audit_log(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """Changes, newest first: when, who, key, old -> new."""
    with engine.connect() as conn:
        rows = ConfigDB(conn).audit_log(limit)
    return [{**r, "old": json.loads(r["old"]), "new": json.loads(r["new"])} for r in rows]


def preview(engine: Engine, base: Settings, changes: Mapping[str, Any],
            tasks: int = 50) -> dict[str, Any]:
    """What ``changes`` would do now, without storing anything.

    ``clouds``: the joins and leaves of a recomputation under the new
    settings. ``brokerage``: the ``tasks`` most recent tasks (any state but
    cancelled) brokered again now, under the current settings and under the
    new ones (with the membership the new ones would give), and those whose
    cloud (or nucleus) differs; ``tasks_checked`` is how many were brokered
    again, ``by_status`` how many of each state.
    """
    current = effective_settings(engine, base)
    proposed = _apply(current, changes)
    membership = clouds.preview(engine, proposed.clouds, proposed.metrics)
    with engine.connect() as conn:
        db = TaskDB(conn)
        statuses = [s for s in TaskStatus if s != TaskStatus.CANCELLED]
        recent = db.tasks(statuses=statuses, limit=tasks)
        files = db.dataset_file_bytes({t["dataset_id"] for t in recent}) if recent else {}
    moved = []
    if recent:
        from netbroker.workload.tasks import task_needs

        view, _ = load_grid_view(engine, current, {t["dataset_id"] for t in recent})
        views = (view, _with_membership(view, membership))
        index = view.site_index()
        for task in recent:
            needs = task_needs(task, files[task["dataset_id"]], index)
            picks = []
            for settings, seen in zip((current, proposed), views, strict=True):
                rng = np.random.default_rng([settings.brokerage.seed, task["id"]])
                choice = broker_task(seen, needs, settings.brokerage,
                                     settings.clouds.min_mbytes_per_s_from_tier1, rng)
                picks.append(choice.chosen_name)
            if picks[0] != picks[1]:
                moved.append({"task_id": task["id"], "name": task["name"], "now": picks[0],
                              "after": picks[1]})
    by_status: dict[str, int] = {}
    for task in recent:
        by_status[str(task["status"])] = by_status.get(str(task["status"]), 0) + 1
    return {"changes": dict(changes),
            "clouds": [vars(c) for c in membership],
            "brokerage": {"tasks_checked": len(recent), "by_status": by_status,
                          "would_change": moved}}


def _with_membership(view: GridView, changes: list[clouds.MembershipChange]) -> GridView:
    """``view`` with the foreign members ``changes`` would give (a copy)."""
    foreign = view.foreign.copy()
    c_index, s_index = {c: k for k, c in enumerate(view.clouds)}, view.site_index()
    for change in changes:
        if change.cloud in c_index and change.site in s_index:
            foreign[c_index[change.cloud], s_index[change.site]] = change.change == "joined"
    return dataclasses.replace(view, foreign=foreign)
