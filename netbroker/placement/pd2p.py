"""PD2P: popularity-driven, network-aware data placement, and the DDM teams' feed.

A cycle (:func:`run_cycle`):

1. expires the open decisions past their ``decision_expiry_hours``;
2. finds the triggered datasets: at least ``min_waiting_jobs`` waiting jobs
   read it, or ``min_accesses_per_week`` jobs were brokered on it in 7 days
   (popularity is recorded when analysis tasks are brokered); with fewer
   than ``max_replicas`` disk replicas (tape does not count; open decisions
   do); no open decision and none failed or expired within
   ``cooldown_hours``; and a name matching none of ``excluded_patterns``;
3. places each (most waiting jobs first) with :func:`choose_target`: a disk
   endpoint, active, at an online site, with room after the bytes open
   decisions already reserved, at a site under its daily byte quota, not
   already holding the dataset, ranked by the time to copy the dataset from
   its best-connected available replica (unmeasured links count as slow:
   ranked last, not first), the site's free pilot slots and its tier;
4. stores the decisions (at most ``max_decisions_per_hour``), each with its
   ranked sources, the candidates weighed and the reason with the numbers.

DDM consumes the feed by id cursor (:func:`feed`), acknowledges, and reports
``done`` (the replica enters the catalogue with PD2P's lifetime and the jobs
waiting for the data are rebrokered) or ``failed`` (after the cooldown the
dataset may be placed elsewhere). :func:`rucio_rule` gives a decision as the
arguments of Rucio's ``add_replication_rule``.
"""

from __future__ import annotations

import fnmatch
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
from sqlalchemy.engine import Engine

from netbroker.common.config import Pd2pSettings, Settings
from netbroker.common.enums import ReplicaState, utcnow
from netbroker.common.errors import (
    DecisionConflict,
    InvalidDecision,
    UnknownDataset,
    UnknownDecision,
)
from netbroker.common.units import human_bytes, iso_utc
from netbroker.db import begin_immediate
from netbroker.db.pd2p import OPEN_STATES, Pd2pDB
from netbroker.db.tasks import TaskDB
from netbroker.network.metrics import MetricKind, tier1_links
from netbroker.workload.rebrokerage import rebroker

__all__ = [
    "Placement",
    "choose_target",
    "cleanup_proposals",
    "feed",
    "get_decision",
    "latest",
    "mark_acknowledged",
    "mark_done",
    "mark_failed",
    "parse_cursor",
    "popularity",
    "rucio_rule",
    "run_cycle",
]

MB = 1_000_000
TIER_WEIGHT = {0: 1.0, 1: 1.0, 2: 0.7, 3: 0.4}


@dataclass(frozen=True)
class Placement:
    """A chosen target (endpoint index) with its transfer estimate, or why none."""

    target: int | None
    transfer_s: float
    sources: list[int]             # endpoint indices, best first
    candidates: list[dict[str, Any]]
    rejected: dict[str, int]       # filter -> endpoints it removed


def choose_target(nbytes: float, replica_eps: np.ndarray, available: np.ndarray,
                  ep_site: np.ndarray, ep_ok: np.ndarray, ep_free: np.ndarray,
                  site_room: np.ndarray, site_free_slots: np.ndarray,
                  site_tier_weight: np.ndarray, throughput: np.ndarray,
                  unknown_mbytes_per_s: float, network_scale_s: float,
                  settings: Pd2pSettings, names: list[str],
                  failed_before: np.ndarray | None = None) -> Placement:
    """Rank every endpoint as a new home for a dataset of ``nbytes``.

    Parameters
    ----------
    replica_eps : (r,) int array
        Endpoints already holding the dataset (any state); ``available``
        marks the ones that can be copied from. ``failed_before`` (indices)
        are endpoints where a replica of it failed: not tried again.
    ep_site, ep_ok, ep_free : (e,) arrays
        Each endpoint's site index; whether it may receive data at all (disk,
        active, site online); its free bytes less what open decisions reserved.
    site_room : (n,) array
        Bytes each site may still receive today (its quota less what it got).
    site_free_slots, site_tier_weight : (n,) arrays
    throughput : (n, n) array
        Consolidated MB/s from site to site, NaN when not measured.

    Returns
    -------
    Placement
        The best endpoint (highest score, then the first listed) or None, the sources
        ranked by their throughput to it, the top candidates with their
        terms, and how many endpoints each filter removed. O(e * r).
    """
    e = len(ep_site)
    holding = np.zeros(e, bool)
    holding[replica_eps] = True
    sources = replica_eps[available]
    rejected = {"not a disk endpoint at an online site": int((~ep_ok).sum()),
                "holds the dataset": int((ep_ok & holding).sum())}
    ok = ep_ok & ~holding
    if failed_before is not None and len(failed_before):
        failed = np.zeros(e, bool)
        failed[failed_before] = True
        rejected["failed there before"] = int((ok & failed).sum())
        ok &= ~failed
    full = ok & (ep_free < nbytes)
    rejected["not enough free space"] = int(full.sum())
    ok &= ~full
    over = ok & (site_room[ep_site] < nbytes)
    rejected["site over its daily quota"] = int(over.sum())
    ok &= ~over
    if len(sources) == 0 or not ok.any():
        return Placement(None, math.inf, [], [], rejected)
    src_sites = ep_site[sources]
    rates = throughput[np.ix_(src_sites, ep_site)]          # (s, e)
    rates = np.where(np.isnan(rates), unknown_mbytes_per_s, rates)
    best_rate = rates.max(axis=0)
    seconds = nbytes / (best_rate * MB)
    slots = site_free_slots[ep_site].astype(float)
    capacity = slots / max(slots[ok].max(), 1.0)
    score = (settings.weight_network / (1 + seconds / network_scale_s)
             + settings.weight_capacity * capacity
             + settings.weight_tier * site_tier_weight[ep_site])
    passing = np.flatnonzero(ok)  # in endpoint order: the first of equal scores wins
    order = passing[np.argsort(-score[passing], kind="stable")[:10]].tolist()
    target = int(order[0])
    ranked_sources = [int(s) for s in sources[np.argsort(-rates[:, target], kind="stable")]]
    candidates = [{"endpoint": names[k], "score": round(float(score[k]), 4),
                   "transfer_s": round(float(seconds[k]), 1),
                   "mbytes_per_s": round(float(best_rate[k]), 2),
                   "free_slots": int(slots[k]), "tier_weight": float(site_tier_weight[
                       ep_site[k]])} for k in order[:10]]
    return Placement(target, float(seconds[target]), ranked_sources, candidates, rejected)


def _excluded(name: str, patterns: list[str]) -> bool:
    """Whether a dataset name matches an exclusion pattern.

    >>> _excluded("user.jdoe.test.log", ["*.log"]), _excluded("data23.AOD", ["*.log"])
    (True, False)
    """
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def run_cycle(engine: Engine, settings: Settings, now: datetime | None = None,
              now_s: float | None = None) -> dict[str, Any]:
    """One PD2P cycle; returns the new decisions (id, dataset, target, reason) and
    the ids of decisions that expired."""
    now = now or utcnow()
    with begin_immediate(engine) as conn:
        expired = Pd2pDB(conn).expire(now)
    wanted = _wanted(engine, settings.pd2p, now)
    if wanted is None:
        return {"decisions": [], "expired": expired}
    # Only with something to place: where it could go (the free slots count every
    # waiting and running job of every queue).
    targets = _targets(engine, settings, wanted, now, now_s)
    rows, planned = _plan(wanted, targets, settings, now)
    return _store(engine, settings.pd2p, rows, planned, now, expired)


@dataclass
class _Wanted:
    """The datasets a cycle tries to place, best first, and what it knows of them."""

    todo: list[int]
    waiting: dict[int, int]                    # dataset id -> jobs waiting for it
    accesses: dict[int, int]                   # dataset id -> accesses in 7 days
    info: dict[int, dict[str, Any]]            # dataset id -> scope, name, bytes
    by_dataset: dict[int, list[dict[str, Any]]]  # dataset id -> its replicas


@dataclass
class _Targets:
    """Every endpoint a replica could go to, with its site's room, slots and links."""

    eps: pd.DataFrame
    names: list[str]
    ep_site: np.ndarray
    ep_index: dict[int, int]
    ep_ok: np.ndarray
    ep_free: np.ndarray
    site_room: np.ndarray
    slots: np.ndarray
    tier_weight: np.ndarray
    throughput: np.ndarray
    failed_at: dict[int, Any]


def _wanted(engine: Engine, p: Pd2pSettings, now: datetime) -> _Wanted | None:
    """The hot datasets (waiting jobs, accesses) not excluded, decided lately nor
    replicated enough, within the hourly budget; None when there is none."""
    with engine.connect() as conn:
        db = Pd2pDB(conn)
        pop = db.popularity(now - timedelta(days=1), now - timedelta(days=7))
        waiting = db.waiting_jobs()
        accesses = dict(zip(pop["dataset_id"].tolist(), pop["accesses_1w"].tolist(),
                            strict=True)) if len(pop) else {}
        hot = {d for d, n in waiting.items() if n >= p.min_waiting_jobs}
        hot |= {d for d, n in accesses.items() if n >= p.min_accesses_per_week}
        if not hot:
            return None
        info = db.datasets(hot)
        reps = db.replicas_of(hot)
        decided = db.decided(hot, now - timedelta(hours=p.cooldown_hours))
        budget = p.max_decisions_per_hour - db.decisions_since(now - timedelta(hours=1))
    by_dataset: dict[int, list[dict[str, Any]]] = {}
    for r in reps:
        by_dataset.setdefault(r["dataset_id"], []).append(r)
    todo = []
    for d in sorted(hot, key=lambda d: (-waiting.get(d, 0), -accesses.get(d, 0), d)):
        disk = [r for r in by_dataset.get(d, []) if r["kind"] == "disk"]
        if (d not in info or d in decided or len(disk) >= p.max_replicas
                or _excluded(info[d]["name"], p.excluded_patterns)):
            continue
        todo.append(d)
    todo = todo[:max(0, budget)]
    if not todo:
        return None
    return _Wanted(todo, waiting, accesses, info, by_dataset)


def _targets(engine: Engine, settings: Settings, wanted: _Wanted, now: datetime,
             now_s: float | None) -> _Targets:
    """The endpoints as arrays: usable, free space less what is reserved, their site's
    daily room, free slots, tier weight, and the links from the replicas' sites."""
    p = settings.pd2p
    with engine.connect() as conn:
        db = Pd2pDB(conn)
        room_used = db.bytes_sent_by_site(now - timedelta(days=1))
        eps = db.endpoints()
        reserved = db.reserved_bytes()
        failed_at = db.failed_targets(set(wanted.todo))
        free_slots = db.free_slots_by_site()
    site_ids = sorted(set(eps["site_id"].tolist()))
    s_index = {s: i for i, s in enumerate(site_ids)}
    ep_site = np.array([s_index[s] for s in eps["site_id"]], dtype=np.int64)
    ep_index = {e: k for k, e in enumerate(eps["id"].tolist())}
    ep_ok = ((eps["kind"] == "disk") & eps["active"].astype(bool)
             & (eps["site_status"] == "online")).to_numpy()
    # Unknown space (not reported yet) is not a reason to refuse an endpoint.
    free = eps["free_bytes"].astype("float64").to_numpy()
    ep_free = np.where(np.isnan(free), np.inf, free) - np.array(
        [reserved.get(e, 0) for e in eps["id"]], dtype=float)
    tiers = eps.groupby("site_id")["tier"].first()
    tier_weight = np.array([TIER_WEIGHT.get(int(tiers[s]), 0.4) for s in site_ids])
    site_room = np.array([p.site_quota_bytes_per_day - room_used.get(s, 0) for s in site_ids],
                         dtype=float)
    slots = np.array([free_slots.get(s, 0) for s in site_ids], dtype=float)
    throughput = _throughput(engine, settings, site_ids, {
        r["site_id"] for d in wanted.todo for r in wanted.by_dataset.get(d, [])}, now_s)
    return _Targets(eps, eps["name"].tolist(), ep_site, ep_index, ep_ok, ep_free, site_room,
                    slots, tier_weight, throughput, failed_at)


def _plan(wanted: _Wanted, t: _Targets, settings: Settings, now: datetime
          ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Each wanted dataset's target, best first, each placement using up its endpoint's
    space and its site's room; returns the decision rows and what to report of them."""
    p = settings.pd2p
    waiting, accesses, info, names = wanted.waiting, wanted.accesses, wanted.info, t.names
    rows: list[dict[str, Any]] = []
    planned: list[dict[str, Any]] = []
    for d in wanted.todo:
        mine = wanted.by_dataset.get(d, [])
        replica_eps = np.array([t.ep_index[r["endpoint_id"]] for r in mine], dtype=np.int64)
        available = np.array([r["state"] == ReplicaState.AVAILABLE and r["active"]
                              for r in mine], dtype=bool)
        nbytes = float(info[d]["bytes"])
        placement = choose_target(
            nbytes, replica_eps, available, t.ep_site, t.ep_ok, t.ep_free, t.site_room,
            t.slots, t.tier_weight, t.throughput, settings.brokerage.unknown_link_mbytes_per_s,
            settings.brokerage.network_scale_s, p, names,
            np.array([t.ep_index[e] for e in t.failed_at.get(d, ())], dtype=np.int64))
        if placement.target is None:
            continue
        k = placement.target
        t.ep_free[k] -= nbytes
        t.site_room[t.ep_site[k]] -= nbytes
        copies = sum(1 for r in mine if r["kind"] == "disk")
        why = [f"{waiting.get(d, 0)} waiting jobs" + (
            f" >= {p.min_waiting_jobs}" if waiting.get(d, 0) >= p.min_waiting_jobs else ""),
            f"{accesses.get(d, 0)} accesses in 7 days" + (
            f" >= {p.min_accesses_per_week}" if accesses.get(d, 0) >= p.min_accesses_per_week
            else ""),
            f"{copies} disk replicas < {p.max_replicas}",
            f"to {names[k]}: {human_bytes(nbytes)} from {names[placement.sources[0]]} in "
            f"about {placement.transfer_s:.3g} s ({placement.candidates[0]['mbytes_per_s']:.3g}"
            f" MB/s)"]
        sources = [{"endpoint": names[s], "rank": i + 1} for i, s in
                   enumerate(placement.sources)]
        rows.append({"dataset_id": d, "bytes": int(nbytes),
                     "target_endpoint_id": int(t.eps["id"].iloc[k]),
                     "sources": orjson.dumps(sources).decode(),
                     "candidates": orjson.dumps({"ranked": placement.candidates,
                                                 "rejected": placement.rejected}).decode(),
                     "reason": "; ".join(why)[:1024], "state": "new",
                     "lifetime_days": p.replica_lifetime_days, "created_at": now,
                     "expires_at": now + timedelta(hours=p.decision_expiry_hours),
                     "updated_at": now})
        planned.append({"dataset": f"{info[d]['scope']}:{info[d]['name']}",
                        "target": names[k], "reason": "; ".join(why)})
    return rows, planned


def _store(engine: Engine, p: Pd2pSettings, rows: list[dict[str, Any]],
           planned: list[dict[str, Any]], now: datetime, expired: Any) -> dict[str, Any]:
    """Store the decisions no other cycle made meanwhile (rechecked under the write
    lock); returns the cycle's result."""
    with begin_immediate(engine) as conn:
        db = Pd2pDB(conn)
        again = db.decided([r["dataset_id"] for r in rows],
                           now - timedelta(hours=p.cooldown_hours))
        keep = [i for i, r in enumerate(rows) if r["dataset_id"] not in again]
        ids = db.add_decisions([rows[i] for i in keep])
    return {"decisions": [{"id": i, **planned[k]} for i, k in zip(ids, keep, strict=True)],
            "expired": expired}


def _throughput(engine: Engine, settings: Settings, site_ids: list[int], sources: set[int],
                now_s: float | None) -> np.ndarray:
    """(n, n) consolidated MB/s from the given source sites to every site; NaN elsewhere."""
    n = len(site_ids)
    out = np.full((n, n), np.nan)
    index = {s: i for i, s in enumerate(site_ids)}
    if not sources:
        return out
    for src, dst, _, value in tier1_links(engine, MetricKind.THROUGHPUT, settings.clouds.window,
                                          sorted(sources), settings.metrics,
                                          time.time() if now_s is None else now_s):
        if src in index and dst in index:
            out[index[src], index[dst]] = value
    return out


# --- the DDM feed ---------------------------------------------------------------------


def parse_cursor(after: str | int | None) -> int:
    """A feed cursor: a non-negative decision id (0: from the start).

    >>> parse_cursor("42"), parse_cursor(None)
    (42, 0)
    """
    if after is None or after == "":
        return 0
    try:
        value = int(after)
    except (TypeError, ValueError):
        raise InvalidDecision(f"cursor {after!r} is not a decision id") from None
    if not 0 <= value < 2**63:
        raise InvalidDecision(f"cursor {after!r} is not a decision id (0 to 2**63 - 1)")
    return value


def _out(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "dataset": f"{row['scope']}:{row['dataset_name']}",
            "scope": row["scope"], "name": row["dataset_name"], "bytes": row["bytes"],
            "target": row["target"], "sources": orjson.loads(row["sources"]),
            "reason": row["reason"], "state": row["state"],
            "failure_reason": row["failure_reason"], "lifetime_days": row["lifetime_days"],
            "created_at": row["created_at"], "expires_at": row["expires_at"],
            "updated_at": row["updated_at"], "candidates": orjson.loads(row["candidates"])}


def feed(engine: Engine, after: int = 0, limit: int = 100, fmt: str = "json",
         settings: Pd2pSettings | None = None) -> dict[str, Any]:
    """One page of decisions after the cursor, in id order, with the next cursor.

    ``fmt="rucio"`` gives each as Rucio rule arguments (:func:`rucio_rule`).
    """
    if not 1 <= limit <= 10_000:
        raise InvalidDecision(f"limit {limit} is outside 1..10000")
    with engine.connect() as conn:
        rows = Pd2pDB(conn).feed(after, limit)
    items = [_out(r) for r in rows]
    if fmt == "rucio":
        items = [{"id": i["id"], "state": i["state"],
                  "rule": rucio_rule(i, settings or Pd2pSettings())} for i in items]
    return {"decisions": items, "next": rows[-1]["id"] if rows else after}


def rucio_rule(decision: dict[str, Any], settings: Pd2pSettings) -> dict[str, Any]:
    """A decision as the keyword arguments of Rucio's ``add_replication_rule``.

    >>> d = {"id": 7, "scope": "data23", "name": "data23.AOD", "target": "DESY_DATADISK",
    ...      "sources": [{"endpoint": "FZK_DATADISK"}], "lifetime_days": 1.0,
    ...      "reason": "30 waiting jobs"}
    >>> r = rucio_rule(d, Pd2pSettings())
    >>> r["dids"], r["rse_expression"], r["lifetime"], r["source_replica_expression"]
    ([{'scope': 'data23', 'name': 'data23.AOD'}], 'DESY_DATADISK', 86400, 'FZK_DATADISK')
    """
    sources = "|".join(s["endpoint"] for s in decision["sources"])
    return {"dids": [{"scope": decision["scope"], "name": decision["name"]}], "copies": 1,
            "rse_expression": decision["target"], "grouping": "DATASET",
            "lifetime": int(decision["lifetime_days"] * 86400),
            "activity": settings.activity, "source_replica_expression": sources or None,
            "comment": f"netbroker PD2P decision {decision['id']}: {decision['reason']}"[:250],
            "asynchronous": True}


def latest(engine: Engine, limit: int = 100) -> list[dict[str, Any]]:
    """The newest decisions, newest first (for people; DDM reads :func:`feed`)."""
    with engine.connect() as conn:
        return [_out(r) for r in Pd2pDB(conn).latest(limit)]


def get_decision(engine: Engine, decision_id: int) -> dict[str, Any]:
    """One decision. Raises ``UnknownDecision``."""
    with engine.connect() as conn:
        return _out(_decision(Pd2pDB(conn), decision_id))


def _decision(db: Pd2pDB, decision_id: int) -> dict[str, Any]:
    row = db.decision(decision_id)
    if row is None:
        raise UnknownDecision(str(decision_id))
    return row


def mark_acknowledged(engine: Engine, decision_id: int) -> dict[str, Any]:
    """DDM took the decision (new -> acknowledged; repeating it is harmless)."""
    with begin_immediate(engine) as conn:
        db = Pd2pDB(conn)
        row = _decision(db, decision_id)
        if row["state"] != "acknowledged" and not db.set_state(
                decision_id, ("new",), "acknowledged", utcnow()):
            raise DecisionConflict(f"decision {decision_id} is {row['state']}: "
                                   "only a new decision can be acknowledged")
        return _out(_decision(db, decision_id))


def mark_done(engine: Engine, decision_id: int, settings: Settings,
              now: datetime | None = None, now_s: float | None = None) -> dict[str, Any]:
    """The replica exists: it enters the catalogue with PD2P's lifetime, the target's
    free space shrinks, and the jobs waiting for the dataset are rebrokered.

    ``now`` and ``now_s`` (the clock and the network window's end, as for
    :func:`run_cycle`) default to the present."""
    now = now or utcnow()
    with begin_immediate(engine) as conn:
        db = Pd2pDB(conn)
        row = _decision(db, decision_id)
        if not db.set_state(decision_id, OPEN_STATES, "done", now):
            raise DecisionConflict(f"decision {decision_id} is {row['state']}: only a new or "
                                   "acknowledged decision can be done")
        db.add_replica(row["dataset_id"], row["target_endpoint_id"],
                       now + timedelta(days=row["lifetime_days"]), now)
        db.use_space(row["target_endpoint_id"], row["bytes"])
        task_ids = TaskDB(conn).tasks_reading(row["dataset_id"])
    moved = rebroker(engine, settings, now=now, now_s=now_s, task_ids=task_ids,
                     min_wait_minutes=0.0) if task_ids else {"activated": 0, "moved": []}
    with engine.connect() as conn:
        out = _out(_decision(Pd2pDB(conn), decision_id))
    return {**out, "rebrokered": moved}


def mark_failed(engine: Engine, decision_id: int, reason: str) -> dict[str, Any]:
    """DDM could not make the replica; after the cooldown PD2P may try elsewhere."""
    if not reason.strip():
        raise InvalidDecision("a failure needs a reason")
    with begin_immediate(engine) as conn:
        db = Pd2pDB(conn)
        row = _decision(db, decision_id)
        if not db.set_state(decision_id, OPEN_STATES, "failed", utcnow(),
                            failure_reason=reason[:1024]):
            raise DecisionConflict(f"decision {decision_id} is {row['state']}: only a new or "
                                   "acknowledged decision can fail")
        return _out(_decision(db, decision_id))


# --- popularity and clean-up ----------------------------------------------------------


def popularity(engine: Engine, dataset: str | None = None, top: int = 20,
               now: datetime | None = None) -> list[dict[str, Any]]:
    """Jobs brokered per dataset over 1 day and 7 days, distinct users, waiting jobs.

    One dataset (``scope:name``, raises ``UnknownDataset``) or the ``top`` most
    accessed this week.
    """
    now = now or utcnow()
    with engine.connect() as conn:
        db = Pd2pDB(conn)
        ids = None
        if dataset is not None:
            scope, _, name = dataset.partition(":")
            found = db.dataset_id(scope, name)
            if found is None:
                raise UnknownDataset(dataset)
            ids = [found]
        pop = db.popularity(now - timedelta(days=1), now - timedelta(days=7), ids)
        waiting = db.waiting_jobs(ids)
        wanted = set(pop["dataset_id"].tolist()) | set(waiting) | set(ids or [])
        info = db.datasets(wanted) if wanted else {}
    frame = pop.set_index("dataset_id") if len(pop) else pd.DataFrame()
    rows = []
    for d in wanted:
        got = frame.loc[d] if d in frame.index else None
        rows.append({"dataset": f"{info[d]['scope']}:{info[d]['name']}", "bytes": info[d]["bytes"],
                     "accesses_1d": int(got["accesses_1d"]) if got is not None else 0,
                     "accesses_1w": int(got["accesses_1w"]) if got is not None else 0,
                     "users_1w": int(got["users_1w"]) if got is not None else 0,
                     "waiting_jobs": waiting.get(d, 0)})
    rows.sort(key=lambda r: (-r["accesses_1w"], -r["waiting_jobs"], r["dataset"]))
    return rows[:top]


def cleanup_proposals(engine: Engine, settings: Pd2pSettings, now: datetime | None = None
                      ) -> list[dict[str, Any]]:
    """PD2P replicas to delete: lifetime over, or no longer popular (no waiting job and
    fewer than ``min_accesses_per_week`` accesses)."""
    now = now or utcnow()
    with engine.connect() as conn:
        db = Pd2pDB(conn)
        mine = db.pd2p_replicas()
        if not mine:
            return []
        ids = {r["dataset_id"] for r in mine}
        pop = db.popularity(now - timedelta(days=1), now - timedelta(days=7), ids)
        waiting = db.waiting_jobs(ids)
    weekly = dict(zip(pop["dataset_id"].tolist(), pop["accesses_1w"].tolist(), strict=True))
    out = []
    for r in mine:
        used = weekly.get(r["dataset_id"], 0)
        if r["expires_at"] is not None and r["expires_at"] <= now:
            why = f"lifetime ended {iso_utc(r['expires_at'])}"
        elif waiting.get(r["dataset_id"], 0) == 0 and used < settings.min_accesses_per_week:
            why = f"no longer popular: {used} accesses in 7 days, no waiting job"
        else:
            continue
        out.append({"dataset": f"{r['scope']}:{r['dataset_name']}", "endpoint": r["endpoint"],
                    "expires_at": r["expires_at"], "reason": why})
    return out
