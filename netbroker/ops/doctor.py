"""``netbroker doctor``: what an operator checks after installing or upgrading.

Each check reads the database the service uses and says ``ok``, ``warn``
(works, but look) or ``fail`` (broken), with why:

- **database**: reachable, and its schema at this code's head;
- **registry**: sites, queues and storage endpoints imported, endpoints with
  protocols (the pilots stage files through them);
- **cycles**: every cycle has run, none failing or overdue
  (``netbroker.db.cycles.cycle_health``);
- **metrics**: each metric source's newest sample younger than ``stale_hours``
  (a source never seen is a warning: maybe not configured yet);
- **pilots**: a pilot took or reported a job within ``pilot_hours``;
- **tokens**: pilot tokens exist when the service requires them;
- **job files**: every job file row has its job, and every input its catalog
  file (the table has no foreign keys: ``netbroker.db.schema``'s comment says
  why). One anti-join per key: seconds on millions of rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.config import Settings
from netbroker.db import current_revision, head_revision
from netbroker.db.cycles import CycleDB, cycle_health
from netbroker.db.schema import (
    api_tokens,
    endpoint_protocols,
    endpoints,
    files,
    job_files,
    jobs,
    metric_samples,
    queues,
    sites,
)

__all__ = ["Check", "checkup"]


@dataclass(frozen=True)
class Check:
    """One check's verdict: ``ok``, ``warn`` or ``fail``, and why."""

    name: str
    status: str
    detail: str


def checkup(engine: Engine, settings: Settings, stale_hours: float = 6.0,
            pilot_hours: float = 24.0, now: datetime | None = None) -> list[Check]:
    """Every check, in order; a database that cannot be read fails alone."""
    now = now or datetime.now(UTC)
    try:
        revision = current_revision(engine)
    except sa.exc.DBAPIError as exc:
        return [Check("database", "fail", f"not reachable: {exc.orig}")]
    head = head_revision()
    if revision != head:
        return [Check("database", "fail", f"schema at {revision}, this netbroker needs {head}: "
                                          "run netbroker db upgrade")]
    out = [Check("database", "ok", f"reachable, schema at head ({head})")]
    with engine.connect() as conn:
        out.append(_registry(conn))
        out.append(_cycles(CycleDB(conn).list_cycles(), settings, now))
        out += _metrics(conn, stale_hours)
        out.append(_pilots(conn, pilot_hours, now))
        out.append(_tokens(conn, settings))
        out.append(_job_files(conn))
    return out


def _count(conn: Any, table: sa.Table, *where: Any) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))
               .scalar_one())


def _registry(conn: Any) -> Check:
    n_sites, n_queues, n_endpoints = (_count(conn, t) for t in (sites, queues, endpoints))
    if not (n_sites and n_queues and n_endpoints):
        return Check("registry", "fail", f"{n_sites} sites, {n_queues} queues, {n_endpoints} "
                                         "endpoints: import the grid (netbroker grid import)")
    bare = _count(conn, endpoints, ~sa.exists().where(
        endpoint_protocols.c.endpoint_id == endpoints.c.id))
    detail = f"{n_sites} sites, {n_queues} queues, {n_endpoints} endpoints"
    if bare:
        return Check("registry", "warn", f"{detail}; {bare} endpoints have no protocols "
                                         "(pilots cannot stage files there)")
    return Check("registry", "ok", detail)


def _cycles(rows: list[dict[str, Any]], settings: Settings, now: datetime) -> Check:
    if not rows:
        what = "on" if settings.service.run_cycles else "off here (service.run_cycles)"
        return Check("cycles", "warn", f"no cycle has run yet (cycles are {what}): is "
                                       "netbroker serve running?")
    unwell = {r["name"]: cycle_health(r, now) for r in rows}
    unwell = {k: v for k, v in unwell.items() if v in ("failing", "overdue")}
    if unwell:
        worst = "; ".join(f"{k} {v}" + (f" ({r['last_failure']})" if v == "failing" else "")
                          for r in rows for k, v in unwell.items() if r["name"] == k)
        return Check("cycles", "fail", worst[:500])
    return Check("cycles", "ok", f"{len(rows)} cycles healthy")


def _metrics(conn: Any, stale_hours: float) -> list[Check]:
    newest = dict(conn.execute(sa.select(metric_samples.c.source,
                                         sa.func.max(metric_samples.c.ts_s))
                               .group_by(metric_samples.c.source)).all())
    if not newest:
        return [Check("metrics", "warn", "no network metric stored yet: configure the "
                                         "collectors (netbroker collect, collect stomp)")]
    out = []
    for source, ts in sorted(newest.items()):
        age_h = (time.time() - float(ts)) / 3600
        status = "ok" if age_h <= stale_hours else "warn"
        out.append(Check(f"metrics.{source}", status, f"newest sample {age_h:.1f} h old"
                         + ("" if status == "ok" else f" (more than {stale_hours:g} h)")))
    return out


def _pilots(conn: Any, pilot_hours: float, now: datetime) -> Check:
    last = conn.execute(sa.select(sa.func.max(jobs.c.heartbeat_at))).scalar()
    if last is None:
        return Check("pilots", "warn", "no pilot has taken a job yet")
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    age = now - last
    if age > timedelta(hours=pilot_hours):
        return Check("pilots", "warn", f"last heard of {age.total_seconds() / 3600:.1f} h ago")
    return Check("pilots", "ok", f"last heard of {age.total_seconds():.0f} s ago")


def _tokens(conn: Any, settings: Settings) -> Check:
    if settings.service.auth == "off":
        return Check("tokens", "warn", "service.auth is off: anyone may do anything")
    pilots = _count(conn, api_tokens, api_tokens.c.role == "pilot",
                    api_tokens.c.revoked_at.is_(None))
    if not pilots:
        return Check("tokens", "fail", "auth is required and no pilot token exists "
                                       "(netbroker token create --role pilot ...)")
    return Check("tokens", "ok", f"{pilots} pilot tokens")


def _job_files(conn: Any) -> Check:
    no_job = _count(conn, job_files, ~sa.exists().where(jobs.c.id == job_files.c.job_id))
    no_file = _count(conn, job_files, job_files.c.file_id.is_not(None),
                     ~sa.exists().where(files.c.id == job_files.c.file_id))
    if no_job or no_file:
        return Check("job files", "fail", f"{no_job} rows name a job and {no_file} a catalog "
                                          "file that does not exist")
    return Check("job files", "ok", "every row has its job and catalog file")
