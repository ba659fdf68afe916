"""The dispatcher's work: hand out jobs, take state reports, recover silent jobs.

Each call is one short transaction (``BEGIN IMMEDIATE`` on SQLite, row
locks on PostgreSQL) around ``netbroker.db.jobs.JobDB``; the lifecycle rules
are the core's (``netbroker.common.lifecycle``).
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection, Engine

from netbroker.common.config import DispatcherSettings
from netbroker.common.enums import JobStatus, utcnow
from netbroker.common.errors import Forbidden, InvalidTransition, UnknownJob, UnknownQueue
from netbroker.common.lifecycle import FINAL, LIVE, pilot_sources
from netbroker.common.text import Diagnostic, LogTail, Name, ShortText
from netbroker.db import atomic_write, begin_immediate, database_key
from netbroker.db.grid import GridDB
from netbroker.db.jobs import AcquireArgs as JobArgs
from netbroker.db.jobs import JobDB
from netbroker.db.schema import queues
from netbroker.db.tasks import TaskDB
from netbroker.registry.datasets import endpoint_of_url, pfn

__all__ = [
    "AcquireRequest",
    "OutputReport",
    "UpdateRequest",
    "acquire_job",
    "acquire_jobs",
    "job_log",
    "pilot_demand",
    "register_outputs",
    "release_job",
    "report_is_one_statement",
    "update_job",
    "update_jobs",
    "upload_log",
    "watchdog",
]

log = logging.getLogger(__name__)

LOST_HEARTBEAT_CODE = 1144  # our pilot error code for a job whose pilot went silent


class AcquireRequest(BaseModel):
    """What a pilot offers when it asks for work."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: Name = Field(min_length=1, max_length=128)
    prod_source_label: Name = Field("managed", min_length=1, max_length=32)
    cores: int | None = Field(None, ge=1, le=4096, description="Default: the queue's cores.")
    memory_mb: int | None = Field(None, ge=0, le=2**31 - 1,
                                  description="Default: the queue's max memory.")
    disk_mb: int = Field(10_000, ge=0, le=2**31 - 1)
    # Free text, cleaned and cut to the column (netbroker.common.text), not refused.
    node: ShortText = ""
    pilot_id: ShortText = ""


class OutputReport(BaseModel):
    """An output (or log) file the pilot staged out, as it measured it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lfn: Name = Field(min_length=1, max_length=255)
    bytes: int = Field(ge=0, le=2**63 - 1)
    adler32: str = Field(pattern=r"^[0-9a-f]{8}$")
    guid: Name | None = Field(None, max_length=36)
    url: Name | None = Field(None, max_length=2048, description="Where it was written.")


class UpdateRequest(BaseModel):
    """A pilot's report: the state reached, and the outcome when it is final."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: JobStatus
    exit_code: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    pilot_error_code: int | None = Field(None, ge=-(2**31), le=2**31 - 1)
    error_diag: Diagnostic | None = None
    cpu_time_s: float | None = Field(None, ge=0, le=1e12, allow_inf_nan=False,
                                     description="Payload CPU time so far, s.")
    max_rss_kb: int | None = Field(None, ge=0, le=2**63 - 1,
                                   description="Payload peak resident memory, kB.")
    files: list[OutputReport] | None = Field(
        None, max_length=10_000, description="Outputs staged out (with a final state).")
    pilot_log: LogTail | None = Field(
        None, description="The pilot's log extracts (with a final state); the tail is kept.")


# What a report sets on its job besides the state (its files go to job_files).
_REPORTED = tuple(name for name in UpdateRequest.model_fields if name not in ("state", "files"))

_QUEUE_CACHE_S = 30.0  # queue ids and limits change rarely; getJob is the hot path
_queue_cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}


def _queue(engine: Engine, name: str) -> dict[str, Any]:
    """The queue's registry row, remembered for a few seconds per process."""
    key = (database_key(engine), name)  # one cache per database
    hit = _queue_cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < _QUEUE_CACHE_S:
        return hit[1]
    with engine.connect() as conn:
        queue = GridDB(conn).queue(name)
    if queue is None:
        raise UnknownQueue(name)
    _queue_cache[key] = (time.monotonic(), queue)
    return queue


def acquire_job(engine: Engine, request: AcquireRequest, owner: str | None = None
                ) -> dict[str, Any] | None:
    """The single highest-priority activated job of the queue that fits, sent to this pilot.

    ``owner`` (the pilot token's name) is recorded: only that pilot may then
    report on the job. Returns None when no job fits (not an error). Raises
    ``UnknownQueue``.
    """
    ask = _ask(engine, request, owner)
    with atomic_write(engine) as conn:  # one statement on PostgreSQL
        return JobDB(conn).acquire(ask.queue_id, ask.label, ask.cores, ask.memory_mb,
                                   ask.disk_mb, ask.pilot_id, ask.node, utcnow(), ask.owner)


def _ask(engine: Engine, request: AcquireRequest, owner: str | None) -> JobArgs:
    """The ask as the statement takes it: the queue's id, and its cores and memory
    where the pilot gave none. Raises ``UnknownQueue``."""
    queue = _queue(engine, request.queue)
    return JobArgs(
        queue["id"], request.prod_source_label,
        request.cores if request.cores is not None else queue["cores"],
        request.memory_mb if request.memory_mb is not None else queue["max_memory_mb"],
        request.disk_mb, request.pilot_id, request.node, owner)


def acquire_jobs(engine: Engine, asked: list[tuple[AcquireRequest, str | None]]
                 ) -> list[dict[str, Any] | Exception | None]:
    """:func:`acquire_job` for several pilots at once, in one statement on PostgreSQL
    (``JobDB.acquire_batch``): for each ask its job, None, or the ``UnknownQueue``
    it raised. An ask the batch left without a job while others of its queue
    got one (see ``JobDB.acquire_batch``) is asked again alone (what that
    raises is its outcome). A failed batch statement raises: no ask was sent
    a job."""
    out: list[dict[str, Any] | Exception | None] = [None] * len(asked)
    places: list[int] = []
    args: list[JobArgs] = []
    for i, (request, owner) in enumerate(asked):
        try:
            args.append(_ask(engine, request, owner))
        except UnknownQueue as exc:
            out[i] = exc
            continue
        places.append(i)
    with atomic_write(engine) as conn:
        jobs = JobDB(conn).acquire_batch(args, utcnow())
    served = {a.queue_id for a, job in zip(args, jobs, strict=True) if job is not None}
    for i, a, job in zip(places, args, jobs, strict=True):
        out[i] = job
        if job is None and a.queue_id in served:
            try:  # the others are sent their jobs whatever happens to this one
                out[i] = acquire_job(engine, *asked[i])
            except Exception as exc:
                out[i] = exc
    return out


def release_job(engine: Engine, job_id: int, owner: str | None = None) -> bool:
    """Give a job just sent back to the queue (activated again): its answer could not
    be made, so its pilot never learnt of it. True if it was still sent."""
    with begin_immediate(engine) as conn:
        return JobDB(conn).set_status(job_id, JobStatus.ACTIVATED, {JobStatus.SENT}, utcnow(),
                                      owner, pilot_id=None, node=None)


def report_is_one_statement(report: UpdateRequest) -> bool:
    """Whether applying ``report`` is the state change alone (one statement on
    PostgreSQL): a heartbeat, or an end without outputs to record and no retry
    to make. The usual report; the others take a transaction."""
    return report.state != JobStatus.FAILED and not report.files


def update_job(engine: Engine, job_id: int, report: UpdateRequest, owner: str | None = None
               ) -> dict[str, Any]:
    """Apply a pilot's report; returns the job's state and a command for the pilot.

    A failed job with attempts left is retried at once as a new activated job
    (``attempt_nr + 1``, ``retry_of`` the failed one), as PanDA does.

    A pilot moves its job only along its own transitions
    (``netbroker.common.lifecycle.pilot_sources``). A live report on a cancelled job is
    answered with ``tobekilled``, its final report acknowledged, and neither
    changes anything; a final report repeated (a pilot retrying a lost
    answer) is acknowledged and changes nothing. With ``owner`` (a pilot's token name)
    only the pilot that took the job may report on it. Raises ``UnknownJob``,
    ``Forbidden`` (another pilot's job), or ``InvalidTransition`` naming the
    current state when the move is not allowed.
    """
    fields = _reported(report)
    now, sources = utcnow(), pilot_sources(report.state)
    # Refused: the job is read to say why, on the writer's connection, which
    # inside a write batch (SQLite) sees the batch's earlier writes.
    if report_is_one_statement(report):
        with atomic_write(engine) as conn:
            db = JobDB(conn)
            changed = bool(sources) and db.set_status(job_id, report.state, sources, now,
                                                      owner, **fields)
            job = None if changed else db.get(job_id)
    else:
        with begin_immediate(engine) as conn:
            db = JobDB(conn)
            changed = bool(sources) and db.set_status(job_id, report.state, sources, now,
                                                      owner, **fields)
            if changed and report.files:
                outputs = [f.model_dump() for f in report.files]
                TaskDB(conn).record_outputs(job_id, outputs)
                register_outputs(conn, job_id, outputs, now)
            if changed and report.state == JobStatus.FAILED:
                db.retry(job_id, now)
            job = None if changed else db.get(job_id)
    if changed:
        return {"job_id": job_id, "status": report.state.value, "command": "NULL"}
    if job is None:
        raise UnknownJob(str(job_id))
    if owner is not None and job["owner"] != owner:
        raise Forbidden(f"job {job_id} was taken by another pilot")
    if job["status"] == JobStatus.CANCELLED:  # told to stop: its end changes nothing
        command = "tobekilled" if report.state in LIVE else "NULL"
        return {"job_id": job_id, "status": JobStatus.CANCELLED.value, "command": command}
    if job["status"] == report.state and report.state in FINAL:
        return {"job_id": job_id, "status": report.state.value, "command": "NULL"}
    raise InvalidTransition(job_id, str(job["status"]), report.state.value)


def update_jobs(engine: Engine, reports: list[tuple[int, UpdateRequest, str | None]]
                ) -> list[dict[str, Any] | Exception]:
    """:func:`update_job` for several one-statement reports
    (:func:`report_is_one_statement`) at once: one statement per kind of
    report (its state, whether it has an owner, the fields it sets) on
    PostgreSQL (``JobDB.set_status_batch``). For each report what
    :func:`update_job` returns, or the exception it raises: a report the
    statement did not apply (refused, repeated, or its job given twice) is
    run again alone by :func:`update_job`, which says why. A statement that
    fails is the error of its kind's reports (it changed nothing); the other
    kinds' stand."""
    out: list[dict[str, Any] | Exception | None] = [None] * len(reports)
    kinds: dict[tuple[JobStatus, bool, tuple[str, ...]], list[int]] = {}
    for i, (_, report, owner) in enumerate(reports):
        kinds.setdefault((report.state, owner is not None, tuple(_reported(report))),
                         []).append(i)
    now = utcnow()
    for (state, owned, fields), places in kinds.items():
        sources = pilot_sources(state)
        if not sources:
            continue
        ids = [reports[i][0] for i in places]
        try:
            with atomic_write(engine) as conn:
                moved = JobDB(conn).set_status_batch(
                    state, sources, now, ids,
                    [reports[i][2] or "" for i in places] if owned else None,
                    {f: [getattr(reports[i][1], f) for i in places] for f in fields})
        except Exception as exc:  # this kind's statement changed nothing: its reports' error
            for i in places:
                out[i] = exc
            continue
        for i, job_id in zip(places, ids, strict=True):
            if job_id in moved:
                moved.discard(job_id)  # a job given twice: the first report moved it
                out[i] = {"job_id": job_id, "status": state.value, "command": "NULL"}
    for i, outcome in enumerate(out):
        if outcome is None:
            try:
                out[i] = update_job(engine, *reports[i])
            except Exception as exc:
                out[i] = exc
    return cast(list[dict[str, Any] | Exception], out)  # every place filled above


def _reported(report: UpdateRequest) -> dict[str, Any]:
    """What ``report`` sets on its job besides the state: its fields given, in the
    order of :data:`_REPORTED`."""
    return {k: v for k in _REPORTED if (v := getattr(report, k)) is not None}


def register_outputs(conn: Connection, job_id: int, outputs: list[dict[str, Any]],
                     now: datetime) -> int:
    """The job's outputs and log, as the pilot reported them, become files of their
    datasets with a replica at the endpoint each was written to; returns how many.

    The endpoint is the one whose protocol URL the file's URL starts with (the
    job's site's first, then any), else where the dispatcher told the pilot to
    write. A GUID the pilot did not give is derived from the file's name. A
    reported file that is not one of the job's outputs is logged and skipped.
    """
    db, job = TaskDB(conn), JobDB(conn).get(job_id)
    if job is None:
        return 0
    mine = {f["lfn"]: f for f in db.output_files(job_id)}
    site_id = conn.execute(sa.select(queues.c.site_id)
                           .where(queues.c.id == job["queue_id"])).scalar()
    here, anywhere = db.storage_prefixes(site_id), None
    told = db.output_endpoint(job["queue_id"]) if job["queue_id"] else None
    registered = 0
    for report in outputs:
        spec = mine.get(report["lfn"])
        if spec is None:
            log.warning("job %d reported %r, which is none of its outputs", job_id,
                        report["lfn"], extra={"job_id": job_id})
            continue
        url = report.get("url") or ""
        endpoint = endpoint_of_url(url, here) if url else None
        if url and endpoint is None:
            anywhere = anywhere if anywhere is not None else db.storage_prefixes()
            endpoint = endpoint_of_url(url, anywhere)
        if endpoint is None and told is not None:
            endpoint = told["name"]
            url = url or (pfn(told["url"], spec["scope"], spec["lfn"]) if told["url"] else "")
        guid = report.get("guid") or str(uuid.uuid5(uuid.NAMESPACE_URL,
                                                     f"{spec['scope']}:{spec['lfn']}"))
        dataset_id, file_id = db.add_output_file(spec["scope"], spec["dataset"], spec["lfn"],
                                                 guid, report["bytes"], report["adler32"], now)
        db.link_job_file(spec["id"], file_id)
        if endpoint is not None:
            db.add_file_replica(dataset_id, file_id, endpoint, url, now)
        registered += 1
    return registered


MAX_LOG_BYTES = 8 * 2**20


def upload_log(engine: Engine, job_id: int, content: bytes, media_type: str,
               owner: str | None = None) -> dict[str, Any]:
    """Keep the log a pilot sends at the end of a job (at most ``MAX_LOG_BYTES``).

    With ``owner`` only the pilot that took the job may. Raises ``UnknownJob``,
    ``Forbidden`` or ``ValueError`` (too large).
    """
    if len(content) > MAX_LOG_BYTES:
        raise ValueError(f"log of {len(content)} bytes exceeds {MAX_LOG_BYTES}")
    with begin_immediate(engine) as conn:
        db = JobDB(conn)
        job = db.get(job_id)
        if job is None:
            raise UnknownJob(str(job_id))
        if owner is not None and job["owner"] != owner:
            raise Forbidden(f"job {job_id} was taken by another pilot")
        db.save_log(job_id, content, media_type[:64], utcnow())
    return {"job_id": job_id, "bytes": len(content)}


def job_log(engine: Engine, job_id: int) -> tuple[bytes, str]:
    """A job's log and its media type: the one its pilot uploaded (netbroker-pilot),
    else what PanDA pilots leave (their log extracts and the log file they staged
    out, with its size and checksum). Raises ``UnknownJob`` for an unknown job or
    one with no log of any kind."""
    with engine.connect() as conn:
        db = JobDB(conn)
        uploaded = db.log(job_id)
        job = db.get(job_id) if uploaded is None else None
        logs = [f for f in TaskDB(conn).job_files(job_id)
                if f["kind"] == "log" and f["bytes"] is not None] if job is not None else []
        copies = TaskDB(conn).file_copies([f["file_id"] for f in logs if f["file_id"]])
    if uploaded is not None:
        return uploaded["content"], uploaded["media_type"]
    if job is None:
        raise UnknownJob(str(job_id))
    lines = [f"log file {f['scope']}:{f['lfn']}: {f['bytes']} bytes, adler32 {f['adler32']}"
             + "".join(f"\n  at {endpoint}: {url}"
                       for endpoint, url in copies.get(f["file_id"], []))
             for f in logs]
    if job["pilot_log"]:
        lines += [*([""] if lines else []), "pilot log extracts:", job["pilot_log"]]
    if not lines:
        raise UnknownJob(f"{job_id} (no log: none uploaded, none reported)")
    return ("\n".join(lines) + "\n").encode(), "text/plain"


def pilot_demand(engine: Engine, queue: str, pending: int = 0, label: str | None = None
                 ) -> dict[str, Any]:
    """How many pilots a factory should submit to ``queue`` now.

    ``pending`` pilots were submitted by the factory and have not asked yet;
    ``label`` counts only the activated jobs of that prodSourceLabel (the
    ones the factory's pilots will ask for); the slots are the queue's.
    The demand covers the activated jobs not already promised to a pilot,
    within the queue's pilot slots less the pilots holding jobs:
    ``max(0, min(activated - pending, slots - sent - running - pending))``.

    >>> max(0, min(120 - 10, 100 - 5 - 60 - 10))  # 120 waiting, 100 slots
    25
    """
    row = _queue(engine, queue)
    with engine.connect() as conn:
        db = JobDB(conn)
        counts = db.count_by_status(row["id"])
        wanted = db.count_by_status(row["id"], label) if label else counts
    activated, sent = wanted.get("activated", 0), counts.get("sent", 0)
    running = sum(counts.get(s, 0) for s in ("starting", "running", "transferring"))
    slots = row["pilot_slots"]
    demand = max(0, min(activated - pending, slots - sent - running - pending))
    return {"queue": queue, "activated": activated, "sent": sent, "running": running,
            "pilot_slots": slots, "pending": pending, "demand": demand}


# Silent jobs one watchdog write transaction recovers: a short hold of the write lock.
WATCHDOG_BATCH = 500


def watchdog(engine: Engine, settings: DispatcherSettings) -> dict[str, list[int]]:
    """Recover silent jobs: sent but never started go back to activated; running but
    silent fail with a lost-heartbeat error (and are retried while attempts are
    left). Returns the ids of each.

    The silent jobs are found by a read (no lock held), then moved
    :data:`WATCHDOG_BATCH` at a time, each batch a short write transaction,
    so that a site going dark (thousands of jobs silent at once) does not
    hold the dispatcher's acquisitions for the whole recovery. Each move is
    conditional: a job that reported meanwhile is left alone.

    (The event ranges of vanished pilots are given back by
    ``dispatcher.events.release_silent_ranges``, in the same cycle.)"""
    now = utcnow()
    running = LIVE - {JobStatus.SENT}
    with engine.connect() as conn:
        db = JobDB(conn)
        unstarted = db.silent({JobStatus.SENT},
                              now - timedelta(minutes=settings.start_timeout_minutes))
        lost = db.silent(running, now - timedelta(minutes=settings.lost_heartbeat_minutes))
    out: dict[str, list[int]] = {"requeued": [], "lost": []}
    diag = f"lost heartbeat: no report for {settings.lost_heartbeat_minutes:g} minutes"
    for start in range(0, len(unstarted), WATCHDOG_BATCH):
        with begin_immediate(engine) as conn:
            db = JobDB(conn)
            out["requeued"] += [job_id for job_id in unstarted[start:start + WATCHDOG_BATCH]
                                if db.set_status(job_id, JobStatus.ACTIVATED, {JobStatus.SENT},
                                                 now, pilot_id=None, node=None)]
    for start in range(0, len(lost), WATCHDOG_BATCH):
        with begin_immediate(engine) as conn:
            db = JobDB(conn)
            for job_id in lost[start:start + WATCHDOG_BATCH]:
                if db.set_status(job_id, JobStatus.FAILED, running, now,
                                 pilot_error_code=LOST_HEARTBEAT_CODE, error_diag=diag):
                    out["lost"].append(job_id)
                    db.retry(job_id, now)
    return out
