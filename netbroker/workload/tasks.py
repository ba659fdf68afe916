"""Tasks: submission, dynamic job definition through brokerage, follow-up and kill.

A user submits a task (:class:`TaskSpec`, from TOML or JSON): an input
dataset, a transformation and its parameters, the resources one job needs
and how to split the input. :func:`submit` registers it and brokers it at
once (:func:`broker_tasks`): the task goes to a cloud (or nucleus), its
jobs are defined from the dataset's files and placed on queues, each job
sized to its queue, and both decisions are stored with every candidate.
A task no candidate can take stays ``pending`` with the reason, and the
brokerage cycle tries it again.

Job parameters are a template: ``$IN`` (the job's input files, comma
separated), ``$OUT`` (its output file), ``$FIRST_EVENT``, ``$MAX_EVENTS``
(event-split tasks) and ``$JOB`` (its number in the task) are filled in.
A job whose input is at its site, or can be brought within
``brokerage.remote_input_max_transfer_s``, is ``activated`` at once; the
others wait ``assigned`` for the data.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from string import Template
from typing import Any

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from netbroker.common.config import Settings
from netbroker.common.enums import JobStatus, ProcessingType, TaskStatus, utcnow
from netbroker.common.errors import (
    InvalidFilter,
    InvalidTask,
    InvalidTransition,
    TaskExists,
    UnknownDataset,
    UnknownJob,
    UnknownSite,
    UnknownTask,
)
from netbroker.common.lifecycle import FINAL
from netbroker.db import begin_immediate
from netbroker.db.events import EventDB
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.pd2p import Pd2pDB
from netbroker.db.tasks import TaskDB
from netbroker.workload.brokerage import MB, JobPlan, TaskNeeds, broker_jobs, broker_task
from netbroker.workload.gridview import load_grid_view
from netbroker.workload.priority import priorities_for_new_jobs, priority_context

__all__ = [
    "DECISION_COLUMNS",
    "TaskSpec",
    "broker_tasks",
    "error_summary",
    "explain_job",
    "explain_task",
    "failures",
    "finish_tasks",
    "get_task",
    "job_user",
    "kill_job",
    "kill_task",
    "list_jobs",
    "list_tasks",
    "load_task_file",
    "parse_task",
    "state_counts",
    "submit",
    "task_needs",
]

OPEN = (TaskStatus.REGISTERED, TaskStatus.PENDING)
UNKNOWN = {"file_id": None, "bytes": None, "guid": None, "adler32": None}  # outputs, until made
LABELS = {ProcessingType.PRODUCTION: "managed", ProcessingType.ANALYSIS: "user"}


class TaskSpec(BaseModel):
    """A task as a user describes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:+-]+$",
                      description="Unique task name.")
    user: str = Field(min_length=1, max_length=64)
    working_group: str = Field("", max_length=64)
    processing_type: ProcessingType = ProcessingType.PRODUCTION
    input_dataset: str = Field(min_length=3, max_length=320, description="scope:name")
    transformation: str = Field(min_length=1, max_length=512)
    parameters: str = Field("", max_length=8000, description="Job parameter template.")
    cores: int = Field(1, ge=1, le=1024)
    memory_mb: int = Field(2000, ge=0, le=4_000_000, description="Memory of one job, MB.")
    walltime_s: int = Field(3600, ge=1, le=30 * 86400,
                            description="Wall time of a full-size job, s.")
    files_per_job: int = Field(1, ge=1, le=100_000)
    events_per_job: int | None = Field(None, ge=1, le=10**9)
    events_per_file: int | None = Field(None, ge=1, le=10**9)
    event_service: bool = Field(False, description="Hand each job's events out in ranges.")
    events_per_range: int = Field(100, ge=1, le=1_000_000)
    priority: int = Field(1000, ge=-100_000, le=100_000)
    max_attempts: int = Field(3, ge=1, le=100)
    site: str | None = Field(None, min_length=1, max_length=128,
                             description="Pin the task to this site (never rebrokered).")

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        scope, colon, name = self.input_dataset.partition(":")
        if not colon or not scope or not name:
            raise ValueError(f"input_dataset {self.input_dataset!r} is not scope:name")
        if (self.events_per_job is None) != (self.events_per_file is None):
            raise ValueError("events_per_job and events_per_file go together")
        if self.event_service and self.events_per_job is None:
            raise ValueError("event_service needs events_per_job and events_per_file")
        return self


def parse_task(data: Mapping[str, Any] | str | bytes, source: str = "<input>") -> TaskSpec:
    """Validate a task description; raises ``InvalidTask`` naming every bad field."""
    try:
        if isinstance(data, str | bytes):
            data = json.loads(data)
        return TaskSpec.model_validate(data)
    except json.JSONDecodeError as exc:
        raise InvalidTask([f"not valid JSON: {exc}"], source) from None
    except ValidationError as exc:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'task'}: {e['msg']}"
                    for e in exc.errors()]
        raise InvalidTask(problems, source) from None


def load_task_file(path: str | Path) -> TaskSpec:
    """Read a task from a ``.toml`` file or a JSON file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidTask([f"cannot read: {exc.strerror}"], str(path)) from None
    if path.suffix == ".toml":
        try:
            return parse_task(tomllib.loads(raw.decode()), str(path))
        except tomllib.TOMLDecodeError as exc:
            raise InvalidTask([f"not valid TOML: {exc}"], str(path)) from None
    return parse_task(raw, str(path))


def submit(engine: Engine, spec: TaskSpec, settings: Settings) -> dict[str, Any]:
    """Register a task and broker it now; returns the task as :func:`get_task` shows it.

    Raises ``TaskExists``, ``UnknownDataset``, ``UnknownSite``, ``InvalidTask``
    (the dataset has no files). Nothing is stored when it raises.
    """
    now = utcnow()
    scope, _, name = spec.input_dataset.partition(":")
    try:
        with begin_immediate(engine) as conn:
            db = TaskDB(conn)
            existing = db.task_id(spec.name)
            if existing is not None:
                raise TaskExists(spec.name, existing)
            dataset_id = db.dataset_id(scope, name)
            if dataset_id is None:
                raise UnknownDataset(spec.input_dataset)
            if not db.dataset_files([dataset_id])[dataset_id]:
                raise InvalidTask([f"input_dataset: {spec.input_dataset} has no files"])
            site_id = None
            if spec.site is not None:
                site_id = GridDB(conn).site_ids().get(spec.site)
                if site_id is None:
                    raise UnknownSite(spec.site)
            task_id = db.add_task({
                "name": spec.name, "user_name": spec.user, "working_group": spec.working_group,
                "processing_type": spec.processing_type, "dataset_id": dataset_id,
                "transformation": spec.transformation, "job_pars": spec.parameters,
                "cores": spec.cores, "memory_mb": spec.memory_mb, "walltime_s": spec.walltime_s,
                "files_per_job": spec.files_per_job, "events_per_job": spec.events_per_job,
                "events_per_file": spec.events_per_file, "priority": spec.priority,
                "event_service": spec.event_service,
                "events_per_range": spec.events_per_range if spec.event_service else None,
                "max_attempts": spec.max_attempts, "site_id": site_id,
                "status": TaskStatus.REGISTERED, "created_at": now, "modified_at": now})
    except IntegrityError:  # a concurrent submission of the same name won
        with engine.connect() as conn:
            raise TaskExists(spec.name, TaskDB(conn).task_id(spec.name) or -1) from None
    broker_tasks(engine, settings, ids=[task_id])
    return get_task(engine, task_id)


def broker_tasks(engine: Engine, settings: Settings, ids: list[int] | None = None,
                 now_s: float | None = None) -> list[dict[str, Any]]:
    """Broker the registered and pending tasks (or those of ``ids``); one pass.

    One grid view for all of them: each task's jobs make the queues busier
    for the next task. Returns one row per task: id, status, where, jobs,
    reason. A task brokered meanwhile by another process is skipped.
    """
    now = utcnow()
    with engine.connect() as conn:
        db = TaskDB(conn)
        todo = db.tasks(statuses=OPEN, ids=ids)
        if not todo:
            return []
        todo.reverse()  # oldest first
        files = db.dataset_files({t["dataset_id"] for t in todo})
    view, ids_of = load_grid_view(engine, settings, {t["dataset_id"] for t in todo}, now_s)
    site_of_queue = {qid: (ids_of["sites"][i], ids_of["clouds"][view.site_cloud[i]])
                     for qid, i in zip(ids_of["queues"], view.queue_site.tolist(), strict=True)}
    s_index = view.site_index()
    planned = []
    for task in todo:
        task_files = files[task["dataset_id"]]
        needs = task_needs(task, task_files, s_index)
        seed = _seed(settings.brokerage.seed, task["id"])
        rng = np.random.default_rng(seed)
        choice = broker_task(view, needs, settings.brokerage,
                             settings.clouds.min_mbytes_per_s_from_tier1, rng)
        plan = None
        if choice.chosen is not None:
            plan = broker_jobs(view, needs, choice.members, settings.brokerage, rng)
        planned.append((task, task_files, needs, seed, choice, plan))
    with begin_immediate(engine) as conn:
        return _store_pass(conn, planned, ids_of, site_of_queue, settings, now)


def _store_pass(conn: Connection, planned: list[Any], ids_of: dict[str, list[int]],
                site_of_queue: dict[int, tuple[int, int]], settings: Settings, now: Any
                ) -> list[dict[str, Any]]:
    """Write a brokerage pass: claim its tasks, store its decisions, set the tasks'
    states, insert the jobs with their files and ranges. Each kind in one statement
    (or one bulk insert) for the whole pass, not a round of statements per task."""
    db = TaskDB(conn)
    claimed = db.claim_tasks([p[0]["id"] for p in planned], OPEN, now)
    out, decisions, updates, placed = _pass_decisions(
        [p for p in planned if p[0]["id"] in claimed], ids_of, settings, now)
    decision_ids = db.add_decisions(decisions)
    db.set_tasks(updates)
    _add_pass_jobs(conn, placed, decision_ids, ids_of, site_of_queue, settings, now)
    return out


def _pass_decisions(planned: list[Any], ids_of: dict[str, list[int]], settings: Settings,
                    now: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                       list[dict[str, Any]], list[Any]]:
    """For the claimed tasks of a pass: (the rows to report, the decision rows, the task
    updates, and per placed task (task, its files, its needs, its plan, index of its job
    decision))."""
    weights = orjson.dumps(settings.brokerage.model_dump()).decode()
    out: list[dict[str, Any]] = []
    decisions: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    placed = []
    for task, task_files, needs, seed, choice, plan in planned:
        decision = {"kind": "task", "task_id": task["id"], "at": now, "seed": seed,
                    "chosen": choice.chosen_name or "", "summary": choice.summary,
                    "weights": weights, "candidates": orjson.dumps(choice.candidates).decode()}
        decisions.append(decision)
        if plan is None or len(plan) == 0:
            reason = choice.summary if plan is None else plan.summary
            if plan is not None:
                decisions.append({**decision, "kind": "job", "chosen": "",
                                  "summary": plan.summary,
                                  "candidates": orjson.dumps(plan.candidates).decode()})
            updates.append({"id": task["id"], "status": TaskStatus.PENDING,
                            "reason": reason[:512]})
            out.append({"task_id": task["id"], "status": "pending", "jobs": 0,
                        "where": None, "reason": reason})
            continue
        decisions.append({**decision, "kind": "job", "chosen": plan.summary[:4000],
                          "summary": plan.summary[:512],
                          "candidates": orjson.dumps(plan.candidates).decode()})
        placed.append((task, task_files, needs, plan, len(decisions) - 1))
        where = {"cloud_id": None, "nucleus_site_id": None}
        if settings.brokerage.mode == "clouds":
            where["cloud_id"] = ids_of["clouds"][choice.chosen]  # type: ignore[index]
        else:
            where["nucleus_site_id"] = ids_of["sites"][choice.chosen]  # type: ignore[index]
        updates.append({"id": task["id"], "status": TaskStatus.RUNNING,
                        "reason": choice.summary[:512], **where})
        out.append({"task_id": task["id"], "status": "running", "jobs": len(plan),
                    "where": choice.chosen_name, "reason": choice.summary})
    return out, decisions, updates, placed


def _add_pass_jobs(conn: Connection, placed: list[Any], decision_ids: list[int],
                   ids_of: dict[str, list[int]], site_of_queue: dict[int, tuple[int, int]],
                   settings: Settings, now: Any) -> None:
    """Insert the placed tasks' jobs (priorities computed once for the pass) with their
    files and event ranges, and the analysis tasks' dataset accesses (PD2P's popularity)."""
    new_jobs: list[dict[str, Any]] = []
    new_files: list[list[dict[str, Any]]] = []  # per job, without its id yet
    accesses: list[dict[str, Any]] = []
    for task, task_files, needs, plan, k in placed:
        rows, files_of = _job_rows(task, task_files, needs, plan, decision_ids[k], ids_of,
                                   settings)
        if task["processing_type"] == ProcessingType.ANALYSIS:  # popularity, for PD2P
            accesses.append({"dataset_id": task["dataset_id"], "task_id": task["id"],
                             "user_name": task["user_name"], "jobs": len(rows), "at": now})
        new_jobs.extend(rows)
        new_files.extend(files_of)
    if not new_jobs:
        return
    # One priority computation and two bulk inserts for the whole pass.
    priorities = priorities_for_new_jobs(priority_context(conn, now), new_jobs,
                                         site_of_queue, settings.priority, now)
    for row, p in zip(new_jobs, priorities.tolist(), strict=True):
        row["priority"] = p
    ranges = [row.pop("_ranges", []) for row in new_jobs]
    ids = JobDB(conn).add_jobs(new_jobs, now)
    TaskDB(conn).add_job_files([{**f, "job_id": job_id}
                                for job_id, job_files in zip(ids, new_files, strict=True)
                                for f in job_files])
    EventDB(conn).add_ranges_of([(job_id, a, b) for job_id, bounds in
                                 zip(ids, ranges, strict=True) for a, b in bounds], now)
    Pd2pDB(conn).record_accesses(accesses)


def task_needs(task: Mapping[str, Any], task_files: list[dict[str, Any]],
               site_index: Mapping[str, int]) -> TaskNeeds:
    """What brokerage compares for a task row (as :class:`TaskDB` reads it)."""
    return TaskNeeds(
        task_id=task["id"], processing_type=str(task["processing_type"]),
        dataset_id=task["dataset_id"],
        file_bytes=np.array([f["bytes"] for f in task_files], dtype=np.float64),
        cores=task["cores"], memory_mb=task["memory_mb"], walltime_s=task["walltime_s"],
        files_per_job=task["files_per_job"], events_per_job=task["events_per_job"],
        events_per_file=task["events_per_file"],
        pinned_site=site_index.get(task["site"], -1) if task["site"] else -1)


def _seed(base: int, task_id: int) -> int:
    """A per-task seed from the configured one, stable across runs (63 bits)."""
    return int(np.random.SeedSequence([base, task_id]).generate_state(1, np.uint64)[0] >> 1)


def _job_rows(task: dict[str, Any], task_files: list[dict[str, Any]], needs: TaskNeeds,
              plan: JobPlan, decision_id: int, ids_of: dict[str, list[int]],
              settings: Settings) -> tuple[list[dict[str, Any]], list[list[dict[str, Any]]]]:
    """The plan's job rows (priority still the base) and each job's file rows."""
    b = settings.brokerage
    label = LABELS[ProcessingType(task["processing_type"])]
    template = Template(task["job_pars"])
    sizes = np.array([f["bytes"] for f in task_files], dtype=np.int64)
    ends = np.concatenate([[0], np.cumsum(sizes)])
    queue_ids = np.array(ids_of["queues"], dtype=np.int64)[plan.queue]
    in_bytes = ends[plan.first_file + plan.n_files] - ends[plan.first_file]
    units = plan.n_events if plan.n_events is not None else plan.n_files
    walltime = np.ceil(units * needs.seconds_per_unit).astype(np.int64)
    disk = (np.ceil(in_bytes / MB) + b.scratch_disk_mb).astype(np.int64)
    active = plan.data_local | (plan.transfer_s <= b.remote_input_max_transfer_s)
    out_scope = task["dataset_scope"] if label == "managed" else f"user.{task['user_name']}"
    inputs = [{"kind": "input", "lfn": f["name"], "scope": task["dataset_scope"],
               "dataset": task["dataset_name"], "file_id": f["id"], "bytes": f["bytes"],
               "guid": f["guid"], "adler32": f["adler32"]} for f in task_files]
    pinned = task["site_id"] is not None
    rows, files_of = [], []
    for j in range(len(plan)):
        f0, nf = int(plan.first_file[j]), int(plan.n_files[j])
        name = f"{task['name']}._{j + 1:06d}"
        out_lfn = f"{name}.root.1"
        subst = {"IN": ",".join(f["name"] for f in task_files[f0:f0 + nf]), "OUT": out_lfn,
                 "JOB": str(j + 1)}
        if plan.first_event is not None and plan.n_events is not None:
            subst.update(FIRST_EVENT=str(int(plan.first_event[j])),
                         MAX_EVENTS=str(int(plan.n_events[j])))
        rows.append({
            "task_id": task["id"], "name": name,
            "status": JobStatus.ACTIVATED if active[j] else JobStatus.ASSIGNED,
            "queue_id": int(queue_ids[j]), "prod_source_label": label,
            "base_priority": task["priority"], "priority": task["priority"],
            "max_attempts": task["max_attempts"], "cores": task["cores"],
            "min_ram_mb": task["memory_mb"], "max_disk_mb": int(disk[j]),
            "max_walltime_s": int(walltime[j]), "transformation": task["transformation"],
            "job_pars": template.safe_substitute(subst), "user_name": task["user_name"],
            "working_group": task["working_group"], "input_bytes": int(in_bytes[j]),
            "brokerage_id": decision_id, "pinned": pinned,
            "event_service": bool(task["event_service"])})
        if task["event_service"] and plan.first_event is not None and plan.n_events is not None:
            first, count = int(plan.first_event[j]), int(plan.n_events[j])
            step = task["events_per_range"] or count
            rows[-1]["_ranges"] = [(a, min(a + step, first + count) - 1)
                                   for a in range(first, first + count, step)]
        files_of.append([*inputs[f0:f0 + nf],
                         {"kind": "output", "lfn": out_lfn, "scope": out_scope,
                          "dataset": f"{task['name']}.output", **UNKNOWN},
                         {"kind": "log", "lfn": f"{name}.log.tgz.1", "scope": out_scope,
                          "dataset": f"{task['name']}.log", **UNKNOWN}])
    return rows, files_of


def finish_tasks(engine: Engine) -> dict[int, str]:
    """Close the running tasks whose jobs are all final; returns their new states.

    A task is ``done`` when the last attempt of every job finished, ``failed``
    when some job's last attempt failed (its attempts are exhausted). The
    tasks are found by a read (an index look-up per running task, no lock
    held); each is closed by a write that checks again that it is running
    and has no job left to end.
    """
    with engine.connect() as conn:
        ended = TaskDB(conn).ended_tasks()
    if not ended:
        return {}
    out: dict[int, str] = {}
    now = utcnow()
    with begin_immediate(engine) as conn:
        db = TaskDB(conn)
        for task_id, failed in ended.items():
            state = TaskStatus.FAILED if failed else TaskStatus.DONE
            reason = f"{failed} jobs failed for good" if failed else "all done"
            if db.close_task(task_id, state, reason, now):
                out[task_id] = state.value
    return out


# --- reading -------------------------------------------------------------------------


def get_task(engine: Engine, task_id: int) -> dict[str, Any]:
    """A task with its jobs per state. Raises ``UnknownTask``."""
    with engine.connect() as conn:
        db = TaskDB(conn)
        task = db.task(task_id)
        if task is None:
            raise UnknownTask(str(task_id))
        return _task_out(task, db.job_counts([task_id])[task_id])


def list_tasks(engine: Engine, status: str | None = None, user: str | None = None,
               limit: int = 100) -> list[dict[str, Any]]:
    """Tasks, newest first, with their jobs per state.

    Raises ``InvalidFilter`` when ``status`` is no task status.
    """
    _known_state("status", status, TaskStatus)
    with engine.connect() as conn:
        db = TaskDB(conn)
        rows = db.tasks(statuses=[status] if status else None, user=user, limit=limit)
        counts = db.job_counts([t["id"] for t in rows])
        return [_task_out(t, counts[t["id"]]) for t in rows]


def _task_out(task: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    keep = ("id", "name", "user_name", "working_group", "processing_type", "status", "reason",
            "cloud", "nucleus", "site", "transformation", "cores", "memory_mb", "walltime_s",
            "files_per_job", "events_per_job", "events_per_file", "event_service",
            "events_per_range", "priority", "max_attempts",
            "created_at", "modified_at")
    out = {k: task[k] for k in keep}
    out["input_dataset"] = f"{task['dataset_scope']}:{task['dataset_name']}"
    out["jobs"] = counts
    return out


def list_jobs(engine: Engine, task_id: int | None = None, status: str | None = None,
              site: str | None = None, user: str | None = None, limit: int = 100,
              error: int | None = None) -> list[dict[str, Any]]:
    """Jobs, newest first, with their queue and site names (``error``: a pilot error code).

    Raises ``InvalidFilter`` when ``status`` is no job state.
    """
    _known_state("status", status, JobStatus)
    with engine.connect() as conn:
        return JobDB(conn).list_jobs(task_id, status, site, user, limit, error)


def _known_state(name: str, value: str | None, states: type[StrEnum]) -> None:
    """Refuse a state filter no row can have (it would match nothing, or fail in SQL)."""
    if value is not None and value not in states._value2member_map_:
        raise InvalidFilter(name, value, [s.value for s in states])


def error_summary(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    """Failed jobs grouped by pilot error code and site, most frequent first, with one
    diagnostic of each."""
    with engine.connect() as conn:
        return JobDB(conn).error_summary(limit)


def failures(engine: Engine, since: datetime | None = None, task_id: int | None = None
             ) -> list[dict[str, Any]]:
    """Failed jobs by site, task and pilot error code (how many, the last, a diagnostic),
    most frequent first: what the error page scatters."""
    with engine.connect() as conn:
        return JobDB(conn).failures(since, task_id)


def state_counts(engine: Engine, by: str, since: datetime | None = None,
                 site: str | None = None, user: str | None = None,
                 task_id: int | None = None) -> dict[str, dict[str, int]]:
    """Jobs per state keyed by ``by`` (``site``, ``queue`` or ``user``) of the jobs
    changed since ``since``: ``{key: {state: jobs}}``."""
    with engine.connect() as conn:
        rows = JobDB(conn).state_counts(by, since, site, user, task_id)
    out: dict[str, dict[str, int]] = {}
    for key, state, n in rows:
        out.setdefault(key, {})[state] = n
    return out


def kill_task(engine: Engine, task_id: int) -> dict[str, Any]:
    """Cancel a task and every job of it not yet final; returns how many jobs.

    Running jobs are told to stop at their next heartbeat (``tobekilled``).
    Raises ``UnknownTask``, or ``InvalidTransition`` when the task is final.
    """
    now = utcnow()
    with begin_immediate(engine) as conn:
        db = TaskDB(conn)
        task = db.task(task_id)
        if task is None:
            raise UnknownTask(str(task_id))
        if task["status"] in (TaskStatus.DONE, TaskStatus.FAILED, TaskStatus.CANCELLED):
            raise InvalidTransition(task_id, str(task["status"]), "cancelled", what="task")
        db.set_task(task_id, status=TaskStatus.CANCELLED, modified_at=now,
                    reason="killed by request")
        cancelled = JobDB(conn).cancel_task_jobs(task_id, now)
    return {"task_id": task_id, "status": "cancelled", "jobs_cancelled": cancelled}


def job_user(engine: Engine, job_id: int) -> str:
    """The user a job runs for. Raises ``UnknownJob``."""
    with engine.connect() as conn:
        job = JobDB(conn).get(job_id)
    if job is None:
        raise UnknownJob(str(job_id))
    return str(job["user_name"])


def kill_job(engine: Engine, job_id: int) -> dict[str, Any]:
    """Cancel one job. Raises ``UnknownJob``, or ``InvalidTransition`` when it is final."""
    with begin_immediate(engine) as conn:
        db = JobDB(conn)
        live = [s for s in JobStatus if s not in FINAL and s != JobStatus.CLOSED]
        if db.set_status(job_id, JobStatus.CANCELLED, live, utcnow()):
            return {"job_id": job_id, "status": "cancelled"}
        job = db.get(job_id)
    if job is None:
        raise UnknownJob(str(job_id))
    raise InvalidTransition(job_id, str(job["status"]), "cancelled")


def explain_task(engine: Engine, task_id: int) -> dict[str, Any]:
    """A task's brokerage decisions, oldest first, each with every candidate, best first
    (see :func:`_decision_out`), and the datasets it writes."""
    with engine.connect() as conn:
        db = TaskDB(conn)
        task = db.task(task_id)
        if task is None:
            raise UnknownTask(str(task_id))
        homes = GridDB(conn).site_clouds()
        decisions = [_decision_out(d, d["chosen"], task["cloud"], homes)
                     for d in db.decisions(task_id=task_id)]
        counts = db.job_counts([task_id])[task_id]
        outputs = db.output_datasets(task_id)
    return {"task": _task_out(task, counts), "decisions": decisions,
            "outputs": [{**o, "did": f"{o['scope']}:{o['dataset']}"} for o in outputs]}


def explain_job(engine: Engine, job_id: int) -> dict[str, Any]:
    """Why a job runs where it does: the task's cloud decision, the job decision
    (every queue candidate; ``highlight`` the queue this job was placed on), each
    rebrokerage that moved it (``highlight`` the queue it moved to), and its timeline:
    its states and its moves, oldest first."""
    with engine.connect() as conn:
        job_db, db = JobDB(conn), TaskDB(conn)
        job = job_db.get(job_id)
        if job is None:
            raise UnknownJob(str(job_id))
        queue = GridDB(conn).queue_site_names(job["queue_id"])
        task = db.task(job["task_id"]) if job["task_id"] is not None else None
        stored = db.decisions(task_id=job["task_id"]) if task is not None else []
        moves = db.rebrokerages_of(job_id)
        files = db.job_files(job_id)
        states = job_db.timeline(job_id)
        homes = GridDB(conn).site_clouds()
    placed = moves[0]["from_queue"] if moves else (queue[0] if queue else None)
    moved_to = {m["decision_id"]: m["to_queue"] for m in moves}
    cloud = task["cloud"] if task is not None else None
    decisions = []
    for d in stored:
        if d["kind"] == "task":
            decisions.append(_decision_out(d, d["chosen"], cloud, homes))
        elif d["kind"] == "job" and d["id"] == job["brokerage_id"]:
            decisions.append(_decision_out(d, placed, cloud, homes))
        elif d["kind"] == "rebrokerage" and d["id"] in moved_to:
            decisions.append(_decision_out(d, moved_to[d["id"]], cloud, homes))
    timeline = sorted([{"at": t["at"], "event": str(t["status"]), "detail": ""}
                       for t in states] +
                      [{"at": m["at"], "event": "moved",
                        "detail": f"{m['from_queue']} -> {m['to_queue']}: {m['reason']}",
                        "decision_id": m["decision_id"]} for m in moves],
                      key=lambda e: e["at"])
    return {"job": {"id": job_id, "name": job["name"], "status": str(job["status"]),
                    "task_id": job["task_id"], "user_name": job["user_name"],
                    "queue": queue[0] if queue else None, "site": queue[1] if queue else None,
                    "cloud": cloud, "placed_on": placed,
                    "priority": job["priority"], "base_priority": job["base_priority"],
                    "attempt_nr": job["attempt_nr"], "rebrokerages": job["rebrokerages"],
                    "pinned": job["pinned"], "input_bytes": job["input_bytes"],
                    "brokerage_id": job["brokerage_id"]},
            "decisions": decisions, "rebrokerages": moves, "timeline": timeline,
            "files": [{k: f[k] for k in ("kind", "lfn", "scope", "dataset", "bytes")}
                      for f in files]}


# What each candidate column of a decision means, as tables and pages head them.
DECISION_COLUMNS: dict[str, list[tuple[str, str]]] = {
    "task": [("score", "score (higher wins)"), ("data", "input on disk (1 yes, 0 no)"),
             ("capacity", "free slots, share of the best (higher is better)"),
             ("transfer_s", "transfer time, s (lower is better)"),
             ("network", "network term, 0..1 (higher is better)"),
             ("members", "member sites"), ("share", "draw probability")],
    "job": [("score", "score (higher wins)"), ("data", "input on disk (1 yes, 0 no)"),
            ("capacity", "free slots / slots (higher is better)"),
            ("transfer_s", "transfer time of a job's input, s (lower is better)"),
            ("share", "draw probability"), ("jobs", "jobs placed")],
    "rebrokerage": [("score", "score (higher wins)"), ("data", "input on disk (1 yes, 0 no)"),
                    ("capacity", "free slots / slots (higher is better)"),
                    ("transfer_s", "transfer time of a job's input, s (lower is better)"),
                    ("jobs", "jobs moved here")],
}


def _decision_out(d: dict[str, Any], highlight: str | None = None, cloud: str | None = None,
                  homes: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A stored decision for people and scripts: its candidates best first (the chosen
    one, then the others that passed by score, then the filtered by name), each with
    ``transfer_s`` and its terms flat (``data``, ``capacity``, ``network``), ``foreign``
    when a queue's site is a foreign calculated member of ``cloud``; ``columns`` names
    what each column means; ``highlight`` the candidate to mark (the chosen cloud, the
    queue a job was placed on or moved to)."""
    candidates = orjson.loads(d["candidates"])
    for c in candidates:
        terms = c.get("terms", {})
        c.setdefault("transfer_s", terms.get("transfer_s"))
        for key in ("data", "capacity", "network"):  # a task's own "data" (bool) stays
            if key in terms:
                c.setdefault(key, terms[key])
        if homes is not None and cloud is not None and "site" in c:
            c["foreign"] = homes.get(c["site"]) not in (None, cloud)
    chosen = d["chosen"] if d["kind"] == "task" else None
    candidates.sort(key=lambda c: (c["name"] != chosen, "score" not in c,
                                   -c.get("score", 0.0), c["name"]))
    return {"id": d["id"], "kind": d["kind"], "at": d["at"], "seed": d["seed"],
            "chosen": d["chosen"], "summary": d["summary"], "highlight": highlight,
            "columns": DECISION_COLUMNS[d["kind"]],
            "weights": orjson.loads(d["weights"]), "candidates": candidates}
