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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
        needs = task_needs(task, [f["bytes"] for f in task_files], s_index)
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
    files and event ranges, and the analysis tasks' dataset accesses (PD2P's popularity).

    One statement per table for the whole pass, its rows built a task at a time
    as the statement takes them, so PostgreSQL stores a task's rows while the
    next task's are built (``netbroker.db.bulk.insert_columns``).
    """
    if not placed:
        return
    counts = [len(p[3]) for p in placed]
    starts = np.concatenate([[0], np.cumsum(counts)]).tolist()
    queue_ids = np.array(ids_of["queues"], dtype=np.int64)
    job_queues = np.concatenate([queue_ids[p[3].queue] for p in placed])
    placed_tasks = [p[0] for p in placed]
    priorities = priorities_for_new_jobs(
        priority_context(conn, now), np.repeat([t["priority"] for t in placed_tasks], counts),
        np.repeat(np.array([t["user_name"] for t in placed_tasks], dtype=object), counts),
        np.repeat(np.array([t["working_group"] for t in placed_tasks], dtype=object), counts),
        job_queues, site_of_queue, settings.priority).tolist()
    job_db = JobDB(conn)
    ids = job_db.new_ids(len(job_queues))
    defined: list[_Defined] = []

    def job_chunks() -> Iterator[dict[str, list[Any]]]:
        for k, (task, task_files, needs, plan, d) in enumerate(placed):
            a, b = starts[k], starts[k + 1]
            made = _task_jobs(task, task_files, needs, plan, ids[a:b], priorities[a:b],
                              job_queues[a:b].tolist(), decision_ids[d], settings)
            defined.append(made)
            yield made.jobs

    job_db.add_job_columns(job_chunks(), now)
    TaskDB(conn).add_job_files(_task_files(p[0], p[1], made, ids[starts[k]:starts[k + 1]])
                               for k, (p, made) in enumerate(zip(placed, defined, strict=True)))
    EventDB(conn).add_ranges_of([r for made in defined for r in made.ranges], now)
    Pd2pDB(conn).record_accesses([  # popularity, for PD2P
        {"dataset_id": task["dataset_id"], "task_id": task["id"],
         "user_name": task["user_name"], "jobs": n, "at": now}
        for task, n in zip(placed_tasks, counts, strict=True)
        if task["processing_type"] == ProcessingType.ANALYSIS])


def task_needs(task: Mapping[str, Any], file_bytes: Sequence[int] | np.ndarray,
               site_index: Mapping[str, int]) -> TaskNeeds:
    """What brokerage compares for a task row (as :class:`TaskDB` reads it), whose
    dataset's files have these sizes in bytes, in the task's order."""
    return TaskNeeds(
        task_id=task["id"], processing_type=str(task["processing_type"]),
        dataset_id=task["dataset_id"],
        file_bytes=np.asarray(file_bytes, dtype=np.float64),
        cores=task["cores"], memory_mb=task["memory_mb"], walltime_s=task["walltime_s"],
        files_per_job=task["files_per_job"], events_per_job=task["events_per_job"],
        events_per_file=task["events_per_file"],
        pinned_site=site_index.get(task["site"], -1) if task["site"] else -1)


def _seed(base: int, task_id: int) -> int:
    """A per-task seed from the configured one, stable across runs (63 bits)."""
    return int(np.random.SeedSequence([base, task_id]).generate_state(1, np.uint64)[0] >> 1)


@dataclass
class _Defined:
    """A task's jobs as :func:`_task_jobs` defines them: their columns, their event
    ranges ``(job id, first, last event)``, and what their file rows need."""

    jobs: dict[str, list[Any]]
    ranges: list[tuple[int, int, int]]
    first_file: np.ndarray
    n_files: np.ndarray
    names: list[str]


def _task_jobs(task: dict[str, Any], task_files: list[dict[str, Any]], needs: TaskNeeds,
               plan: JobPlan, job_ids: list[int], priorities: list[int], queue_ids: list[int],
               decision_id: int, settings: Settings) -> _Defined:
    """The plan's jobs as columns (``JobDB.add_job_columns``): each job's files in the
    task's order, its parameters filled in, its wall time and disk those of its own
    files. O(j + f) for j jobs over f files."""
    b = settings.brokerage
    n = len(plan)
    label = LABELS[ProcessingType(task["processing_type"])]
    sizes = np.array([f["bytes"] for f in task_files], dtype=np.int64)
    ends = np.concatenate([[0], np.cumsum(sizes)])
    in_bytes = ends[plan.first_file + plan.n_files] - ends[plan.first_file]
    units = plan.n_events if plan.n_events is not None else plan.n_files
    walltime = np.ceil(units * needs.seconds_per_unit).astype(np.int64)
    disk = (np.ceil(in_bytes / MB) + b.scratch_disk_mb).astype(np.int64)
    active = (plan.data_local | (plan.transfer_s <= b.remote_input_max_transfer_s)).tolist()
    first, count = plan.first_file.tolist(), plan.n_files.tolist()
    names = [f"{task['name']}._{j:06d}" for j in range(1, n + 1)]
    lfns = [f["name"] for f in task_files]
    fill = _template_filler(task["job_pars"])
    events = (plan.first_event.tolist(), plan.n_events.tolist()) \
        if plan.first_event is not None and plan.n_events is not None else None
    pars: list[str] = []
    ranges: list[tuple[int, int, int]] = []
    for j in range(n):
        values = {"IN": ",".join(lfns[first[j]:first[j] + count[j]]),
                  "OUT": f"{names[j]}.root.1", "JOB": str(j + 1)}
        if events is not None:
            values.update(FIRST_EVENT=str(events[0][j]), MAX_EVENTS=str(events[1][j]))
            if task["event_service"]:
                start, stop = events[0][j], events[0][j] + events[1][j]
                step = task["events_per_range"] or events[1][j]
                ranges.extend((job_ids[j], a, min(a + step, stop) - 1)
                              for a in range(start, stop, step))
        pars.append(fill(values))
    same = [task["id"], label, task["priority"], task["max_attempts"], task["cores"],
            task["memory_mb"], task["transformation"], task["user_name"],
            task["working_group"], decision_id, task["site_id"] is not None,
            bool(task["event_service"])]
    (task_id, label_, base, attempts, cores, memory, trf, user, group, decision, pinned,
     es) = ([v] * n for v in same)
    jobs = {"id": job_ids, "task_id": task_id, "name": names,
            "status": [JobStatus.ACTIVATED if a else JobStatus.ASSIGNED for a in active],
            "queue_id": queue_ids, "prod_source_label": label_, "base_priority": base,
            "priority": priorities, "max_attempts": attempts, "cores": cores,
            "min_ram_mb": memory, "max_disk_mb": disk.tolist(),
            "max_walltime_s": walltime.tolist(), "transformation": trf, "job_pars": pars,
            "user_name": user, "working_group": group, "input_bytes": in_bytes.tolist(),
            "brokerage_id": decision, "pinned": pinned, "event_service": es}
    return _Defined(jobs, ranges, plan.first_file, plan.n_files, names)


def _task_files(task: dict[str, Any], task_files: list[dict[str, Any]], made: _Defined,
                job_ids: list[int]) -> dict[str, list[Any]]:
    """The file rows of a task's jobs as columns (``TaskDB.add_job_files``): per job
    its input files in order, then its output and its log (named now, size and
    checksum filled when the pilot reports). O(r) for r rows, numpy-indexed."""
    n, nfile = len(job_ids), len(task_files)
    per_job = made.n_files + 2
    job_of = np.repeat(np.arange(n), per_job)
    pos = np.arange(int(per_job.sum())) - np.repeat(np.cumsum(per_job) - per_job, per_job)
    inputs = made.n_files[job_of]
    # Each row's value in the concatenation (input files, outputs, logs).
    index = np.where(pos < inputs, made.first_file[job_of] + pos,
                     np.where(pos == inputs, nfile + job_of, nfile + n + job_of))
    label = LABELS[ProcessingType(task["processing_type"])]
    out_scope = task["dataset_scope"] if label == "managed" else f"user.{task['user_name']}"
    unknown: list[Any] = [None] * n

    def column(of_inputs: list[Any], outputs: list[Any], logs: list[Any]) -> list[Any]:
        return np.array(of_inputs + outputs + logs, dtype=object)[index].tolist()

    return {
        "job_id": np.array(job_ids, dtype=np.int64)[job_of].tolist(),
        "kind": column(["input"] * nfile, ["output"] * n, ["log"] * n),
        "lfn": column([f["name"] for f in task_files], [f"{m}.root.1" for m in made.names],
                      [f"{m}.log.tgz.1" for m in made.names]),
        "scope": column([task["dataset_scope"]] * nfile, [out_scope] * n, [out_scope] * n),
        "dataset": column([task["dataset_name"]] * nfile, [f"{task['name']}.output"] * n,
                          [f"{task['name']}.log"] * n),
        **{key: column([f[of] for f in task_files], unknown, unknown)
           for key, of in (("file_id", "id"), ("bytes", "bytes"), ("guid", "guid"),
                           ("adler32", "adler32"))}}


def _template_filler(text: str) -> Callable[[Mapping[str, str]], str]:
    """``string.Template(text).safe_substitute`` parsed once: the returned function
    fills in a mapping's values (a name it lacks, an invalid ``$`` stay as written,
    ``$$`` is ``$``), so a task's jobs do not parse the template again. O(len(text))
    to parse, O(pieces) a call.

    >>> _template_filler("-i $IN -o ${OUT} $$5 $MISSING $")({"IN": "a,b", "OUT": "c"})
    '-i a,b -o c $5 $MISSING $'
    """
    pieces: list[tuple[str, str | None]] = []  # (text as written, the name it holds)
    last = 0
    for match in Template.pattern.finditer(text):
        pieces.append((text[last:match.start()], None))
        name = match.group("named") or match.group("braced")
        escaped = match.group("escaped") is not None
        pieces.append((Template.delimiter if escaped else match.group(), name))
        last = match.end()
    pieces.append((text[last:], None))

    def fill(values: Mapping[str, str]) -> str:
        return "".join(raw if name is None else values.get(name, raw) for raw, name in pieces)

    return fill


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
             ("wait_s", "wait for a slot, s (lower is better)"),
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
