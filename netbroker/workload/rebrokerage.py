"""Rebrokerage: move waiting jobs when their data or their queue changes.

A periodic pass (:func:`rebroker`) does two things:

1. An ``assigned`` job (waiting for its input) whose input is now on disk
   at its own site is ``activated`` — the replica arrived (PD2P or DDM).
2. A job waiting (assigned or activated) for at least
   ``rebrokerage.min_wait_minutes``, not pinned and moved fewer than
   ``max_rebrokerages`` times, is moved when something changed for it —
   its queue is busy (more than ``busy_queued_per_slot`` waiting jobs per
   pilot slot), its input is now on disk at another eligible site while
   not at its own, or its queue no longer passes the filters — *and*
   another queue of its task's cloud that fits the job scores better by
   ``better_by_fraction``; or, whatever changed, when it would start more
   than ``start_sooner_by_minutes`` sooner at such a queue with a free slot
   (its wait behind the jobs ahead of it against the time to bring its input
   there): a backlog moves to idle queues as PanDA's queue-load term and its
   reassignment of jobs waiting too long do.

The jobs that cannot move (pinned, moved too often, not waiting long
enough) are left out by the database, and assigned ones are only read to be
activated.

A task's moves are conditional UPDATEs, one per (from, to, state) (each job
must still be waiting at the old queue in the state the pass read: a pilot
that took it meanwhile wins), recorded in
``rebrokerages`` with the reason and in a ``rebrokerage`` decision that
explains every candidate. :func:`plan_moves` is the pure decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import orjson
from sqlalchemy.engine import Connection, Engine

from netbroker.common.config import RebrokerageSettings, Settings
from netbroker.common.enums import JobStatus, utcnow
from netbroker.db import begin_immediate
from netbroker.db.jobs import JobDB
from netbroker.db.tasks import TaskDB
from netbroker.workload.brokerage import (
    GridView,
    QueueScores,
    members_of,
    mesh_members,
    queue_candidates,
    queue_scores,
)
from netbroker.workload.gridview import load_grid_view
from netbroker.workload.tasks import task_needs

__all__ = ["Move", "plan_moves", "rebroker"]

WAITING = (JobStatus.ASSIGNED, JobStatus.ACTIVATED)


@dataclass(frozen=True)
class Move:
    """One job to move: row ``job`` of the candidates, from queue index to queue index."""

    job: int
    from_queue: int
    to_queue: int
    reason: str


def plan_moves(view: GridView, qs: QueueScores, job_queue: np.ndarray,
               job_walltime_s: np.ndarray, job_disk_mb: np.ndarray,
               settings: RebrokerageSettings, free: np.ndarray,
               job_ahead: np.ndarray) -> list[Move]:
    """Decide which of a task's waiting jobs move, and where.

    A job moves by either of two rules, to a queue that fits it (wall time,
    disk) and has a free slot:

    - *score*: something changed for it (its queue is busy, no longer passes,
      or its input is now on disk elsewhere and not there) and the best such
      queue scores more than ``current * (1 + better_by_fraction)``;
    - *start*: its expected wait where it is, ``ahead / slots * wall time``
      (the jobs a pilot takes before it, a slot's worth per turn, each turn as
      long as this job), is more than ``start_sooner_by_minutes`` above its
      start at the queue where it would start first: the time to bring its
      input there (nothing if the input is on disk there; a free slot, so no
      queue wait), the better scored queue among equal starts.

    Parameters
    ----------
    view : GridView
        Its ``queue_waiting`` is updated as jobs move.
    qs : QueueScores
        The task's queues judged by :func:`netbroker.workload.brokerage.queue_scores`.
    job_queue, job_walltime_s, job_disk_mb : (J,) arrays
        Each waiting job's queue index and the wall time (s) and disk (MB) it was
        sized to.
    settings : RebrokerageSettings
    free : (q,) int array
        Free pilot slots per queue for this pass; decremented per move.
    job_ahead : (J,) int array
        Jobs waiting at the job's queue that a pilot takes before it, counted at
        the start of the pass.

    Returns
    -------
    list of Move. O(J * q) at worst; jobs with no reason to move cost O(1), and so
    do jobs like one already judged (same queue, wall time and disk) while no move
    has happened since, as nothing the queues' side of their decision reads has
    changed.
    """
    moves: list[Move] = []
    open_ = free > 0
    if not open_.any():
        return moves  # no queue has a free slot: nothing can move
    slots = np.maximum(view.queue_slots, 1)
    any_data = bool((qs.data[qs.eligible] > 0).any())
    start_s = np.where(qs.data > 0, 0.0, qs.seconds)  # to bring a job's input there
    sooner_s = settings.start_sooner_by_minutes * 60
    sized: dict[tuple[float, float], np.ndarray] = {}  # (wall time, disk) -> queues that fit
    judged: dict[tuple[int, float, float], tuple[int, int]] = {}  # since the last move
    for j, q0 in enumerate(job_queue.tolist()):
        ineligible = not qs.eligible[q0]
        busy = view.queue_waiting[q0] / slots[q0] > settings.busy_queued_per_slot
        elsewhere = any_data and not qs.data[q0]
        wait_s = float(job_ahead[j]) / slots[q0] * float(job_walltime_s[j])
        changed = ineligible or busy or elsewhere
        if not (changed or wait_s > sooner_s):
            continue
        key = (q0, float(job_walltime_s[j]), float(job_disk_mb[j]))
        if key not in judged:
            judged[key] = _best_queues(view, qs, key, sized, open_, start_s, settings)
        by_score, by_start = judged[key]
        current = qs.score[q0] if qs.eligible[q0] else 0.0
        why = _changes(view, q0, ineligible, busy, elsewhere)
        if changed and by_score >= 0:
            to = by_score
            why.append(f"score {current:.3f} -> {qs.score[to]:.3f}")
        elif by_start >= 0 and wait_s > start_s[by_start] + sooner_s:
            to = by_start
            why.append(f"{int(job_ahead[j])} jobs ahead for {int(view.queue_slots[q0])} "
                       f"slots: start in {wait_s / 3600:.2f} h -> "
                       f"{start_s[to] / 3600:.2f} h at {view.queues[to]}")
        else:
            continue
        moves.append(Move(j, q0, to, "; ".join(why)))
        free[to] -= 1
        open_[to] = free[to] > 0
        view.queue_waiting[to] += 1
        view.queue_waiting[q0] -= 1
        judged.clear()
    return moves


def _best_queues(view: GridView, qs: QueueScores, key: tuple[int, float, float],
                 sized: dict[tuple[float, float], np.ndarray], open_: np.ndarray,
                 start_s: np.ndarray, settings: RebrokerageSettings) -> tuple[int, int]:
    """For a job at queue ``key[0]`` sized ``key[1:]`` (wall time s, disk MB): the
    queue the score rule moves it to (-1: none scores enough better) and the open
    fitting queue where it starts first (-1: none fits)."""
    q0, size = key[0], key[1:]
    if size not in sized:
        sized[size] = (qs.eligible & (view.queue_walltime_s >= size[0])
                       & (view.queue_disk_mb >= size[1]))
    fits = sized[size] & open_
    fits[q0] = False
    if not fits.any():
        return -1, -1
    best = int(np.argmax(np.where(fits, qs.score, -np.inf)))
    current = qs.score[q0] if qs.eligible[q0] else 0.0
    by_score = best if qs.score[best] > current * (1 + settings.better_by_fraction) else -1
    first = fits & (start_s == np.where(fits, start_s, np.inf).min())
    return by_score, int(np.argmax(np.where(first, qs.score, -np.inf)))


def _changes(view: GridView, q0: int, ineligible: bool, busy: bool,
             elsewhere: bool) -> list[str]:
    """What changed for a job at queue ``q0``, in words, for the stored reason."""
    why = []
    if ineligible:
        why.append(f"{view.queues[q0]} no longer passes the filters")
    if busy:
        why.append(f"{view.queues[q0]} busy: {int(view.queue_waiting[q0])} waiting for "
                   f"{int(view.queue_slots[q0])} slots")
    if elsewhere:
        why.append("input now on disk at another site")
    return why


def rebroker(engine: Engine, settings: Settings, now: datetime | None = None,
             now_s: float | None = None, task_ids: set[int] | None = None,
             min_wait_minutes: float | None = None) -> dict[str, Any]:
    """One rebrokerage pass; returns ``{"activated": n, "moved": [...]}``.

    ``task_ids`` limits it to the jobs of those tasks and ``min_wait_minutes``
    overrides the setting: PD2P rebrokers the jobs waiting for a dataset as
    soon as its new replica is done.
    """
    now = now or utcnow()
    r = settings.rebrokerage
    wait = r.min_wait_minutes if min_wait_minutes is None else min_wait_minutes
    limit = now - timedelta(minutes=wait)
    read = _read_waiting(engine, r, limit, task_ids)
    if read is None:
        return {"activated": 0, "moved": []}
    waiting, task_rows, files = read
    view, ids_of = load_grid_view(engine, settings, {t["dataset_id"] for t in
                                                     task_rows.values()}, now_s)
    q_index = {qid: k for k, qid in enumerate(ids_of["queues"])}
    activate = [w.id for w in waiting if w.status == JobStatus.ASSIGNED
                and w.queue_id in q_index
                and _present(view, task_rows[w.task_id]["dataset_id"],
                             view.queue_site[q_index[w.queue_id]])]
    activated = set(activate)
    movable: dict[int, list[Any]] = {}  # task id -> its movable jobs' rows
    for w in waiting:
        if w.movable and w.queue_id in q_index and w.id not in activated:
            movable.setdefault(w.task_id, []).append(w)
    planned = _plan_tasks(view, ids_of, q_index, movable, task_rows, files, settings)
    return _store(engine, settings, view, ids_of, activate, planned, now)


def _read_waiting(engine: Engine, r: RebrokerageSettings, limit: datetime,
                  task_ids: set[int] | None
                  ) -> tuple[list[Any], dict[int, Any], dict[int, np.ndarray]] | None:
    """The waiting jobs that wait for data or may move (the database leaves the others
    out), their tasks and the file sizes of the datasets of the tasks with a job that
    may move; None when there are none (then no grid view is read: it counts every
    waiting job)."""
    with engine.connect() as conn:
        waiting = JobDB(conn).waiting_task_jobs(WAITING, limit, r.max_rebrokerages, task_ids,
                                                any_wait=(JobStatus.ASSIGNED,))
        if not waiting:
            return None
        db = TaskDB(conn)
        task_rows = {t["id"]: t for t in db.tasks(ids={w.task_id for w in waiting})}
        files = db.dataset_file_bytes({task_rows[w.task_id]["dataset_id"] for w in waiting
                                       if w.movable})
    return waiting, task_rows, files


def _plan_tasks(view: GridView, ids_of: dict[str, list[int]], q_index: dict[int, int],
                movable: dict[int, list[Any]], task_rows: dict[int, Any],
                files: dict[int, np.ndarray], settings: Settings) -> list[Any]:
    """Per task with movable jobs: (task, its rows, its queue scores, its moves), for the
    tasks that have a move; pinned tasks and tasks placed nowhere known are left."""
    s_index = view.site_index()
    cloud_index = {cid: k for k, cid in enumerate(ids_of["clouds"])}
    site_by_id = {sid: i for i, sid in enumerate(ids_of["sites"])}
    free = np.maximum(view.queue_slots - view.queue_waiting - view.queue_running, 0)
    planned = []
    for task_id, rows in movable.items():
        if not (free > 0).any():
            break  # no free slot left: no task's job can move (plan_moves)
        task = task_rows[task_id]
        if task["site_id"] is not None:
            continue  # pinned tasks are never rebrokered
        if task["cloud_id"] in cloud_index:
            members = members_of(view, cloud_index[task["cloud_id"]])
        elif task["nucleus_site_id"] in site_by_id:
            members = mesh_members(view, site_by_id[task["nucleus_site_id"]],
                                   settings.clouds.min_mbytes_per_s_from_tier1)
        else:
            continue
        needs = task_needs(task, files[task["dataset_id"]], s_index)
        qs = queue_scores(view, needs, members, settings.brokerage)
        moves = plan_moves(view, qs, np.array([q_index[w.queue_id] for w in rows]),
                           np.array([w.max_walltime_s for w in rows]),
                           np.array([w.max_disk_mb for w in rows]), settings.rebrokerage,
                           free, np.array([w.ahead for w in rows]))
        if moves:
            planned.append((task, rows, qs, moves))
    return planned


def _present(view: GridView, dataset_id: int, site: int) -> bool:
    present = view.present.get(dataset_id)
    return bool(present is not None and present[site])


def _store(engine: Engine, settings: Settings, view: GridView, ids_of: dict[str, list[int]],
           activate: list[int], planned: list[Any], now: datetime) -> dict[str, Any]:
    """Write a pass in one transaction: activate the jobs whose data arrived, then each
    task's moves with their decision and history."""
    moved: list[dict[str, Any]] = []
    with begin_immediate(engine) as conn:
        activated = JobDB(conn).activate_assigned(activate, now) if activate else 0
        for task, rows, qs, moves in planned:
            moved += _store_moves(conn, settings, view, ids_of, task, rows, qs, moves, now)
    return {"activated": activated, "moved": moved}


def _store_moves(conn: Connection, settings: Settings, view: GridView,
                 ids_of: dict[str, list[int]], task: Any, rows: list[Any], qs: QueueScores,
                 moves: list[Move], now: datetime) -> list[dict[str, Any]]:
    """One task's moves: its rebrokerage decision, each job moved that still waits where
    it was, the history rows; returns the moves made."""
    db, job_db = TaskDB(conn), JobDB(conn)
    remote_s = settings.brokerage.remote_input_max_transfer_s
    counts: dict[tuple[str, str], int] = {}
    for m in moves:
        key = (view.queues[m.from_queue], view.queues[m.to_queue])
        counts[key] = counts.get(key, 0) + 1
    summary = "; ".join(f"{a} -> {b} ({n})" for (a, b), n in counts.items())
    candidates = queue_candidates(view, qs.codes, qs.in_scope, qs.eligible, qs.data,
                                  qs.free, qs.seconds, qs.score)
    arriving: dict[int, int] = {}
    for m in moves:
        arriving[m.to_queue] = arriving.get(m.to_queue, 0) + 1
    for row in candidates:
        k = row.pop("_index")
        if qs.eligible[k]:
            row["jobs"] = arriving.get(k, 0)  # the jobs this pass moves there
    (decision_id,) = db.add_decisions([{
        "kind": "rebrokerage", "task_id": task["id"], "at": now, "seed": 0,
        "chosen": summary, "summary": f"moved {len(moves)} jobs: {summary}"[:512],
        "weights": orjson.dumps({"rebrokerage": settings.rebrokerage.model_dump(),
                                 "brokerage": settings.brokerage.model_dump()}).decode(),
        "candidates": orjson.dumps(candidates).decode()}])
    # The moves as one statement per (from, to, old state, new state): the rows
    # still waiting where the pass read them move, the others are left.
    queue_id = ids_of["queues"]
    groups: dict[tuple[int, int, JobStatus, JobStatus], list[int]] = {}
    for m in moves:
        job = rows[m.job]
        local = bool(qs.data[m.to_queue]) or qs.seconds[m.to_queue] <= remote_s
        status = JobStatus.ACTIVATED if local else JobStatus.ASSIGNED
        groups.setdefault((queue_id[m.from_queue], queue_id[m.to_queue], job.status, status),
                          []).append(job.id)
    done = set()
    for (old_q, new_q, old_status, status), ids in groups.items():
        done |= job_db.rebroker_jobs(ids, old_q, new_q, old_status, status, WAITING, now)
    history, moved = [], []
    for m in moves:
        job = rows[m.job]
        if job.id not in done:
            continue  # a pilot took it, or it changed meanwhile
        history.append({"job_id": job.id, "from_queue_id": queue_id[m.from_queue],
                        "to_queue_id": queue_id[m.to_queue], "decision_id": decision_id,
                        "at": now, "reason": m.reason[:512]})
        moved.append({"job_id": job.id, "from": view.queues[m.from_queue],
                      "to": view.queues[m.to_queue], "reason": m.reason})
    db.add_rebrokerages(history)
    db.set_task(task["id"], modified_at=now)
    return moved
