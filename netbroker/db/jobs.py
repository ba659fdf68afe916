"""JobDB: jobs and their state changes, on one open connection.

Acquisition is one UPDATE of the best matching activated job, chosen by a
subquery: on PostgreSQL the subquery locks its row ``FOR UPDATE SKIP
LOCKED`` (concurrent pilots take different jobs, none waits); on SQLite the
caller's ``BEGIN IMMEDIATE`` serialises writers. Either way a job is sent to
exactly one pilot. A state change is one conditional UPDATE (``WHERE status
IN (the allowed sources)``), so a refused move changes nothing.

A job's states are logged in its own row (``jobs.state_log``), by the
statement that changes the state: one line per state, :func:`state_entry`
writes one, :func:`parse_state_log` reads them back.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Connection

from netbroker.common.enums import EventRangeStatus, JobStatus
from netbroker.db.bulk import allocate_ids, insert_columns, insert_rows
from netbroker.db.filters import where_given
from netbroker.db.prepared import prepared
from netbroker.db.schema import (
    event_ranges,
    job_files,
    job_logs,
    jobs,
    queues,
    sites,
    tasks,
)

__all__ = ["DISPATCH_COLUMNS", "WAITING", "AcquireArgs", "JobDB", "output_name", "parse_state_log",
           "state_entry"]

# A job waiting for a pilot: what aging, rebrokerage and the pilot demand count.
WAITING = frozenset({JobStatus.DEFINED, JobStatus.ASSIGNED, JobStatus.ACTIVATED})


def state_entry(status: str, at: datetime) -> str:
    """One line of a job's state log: the state, the time in UTC to the microsecond.

    >>> from datetime import timedelta, timezone
    >>> state_entry(JobStatus.SENT, datetime(2026, 12, 7, 13, 5, 1, 42,
    ...                                      timezone(timedelta(hours=2))))
    'sent 2026-12-07T11:05:01.000042Z\\n'
    """
    if at.tzinfo is None:
        raise ValueError(f"naive datetime {at!r}: netbroker logs aware UTC only")
    # isoformat, not strftime: a third of the time, on the dispatcher's every call.
    return f"{status} {at.astimezone(UTC).isoformat(timespec='microseconds')[:26]}Z\n"


def parse_state_log(log: str) -> list[dict[str, Any]]:
    """A job's state log as ``{"status", "at"}`` dicts, oldest first; O(lines).

    >>> log = "activated 2026-12-07T11:00:00.000000Z\\nsent 2026-12-07T11:05:01.000042Z\\n"
    >>> [(str(e["status"]), e["at"].isoformat()) for e in parse_state_log(log)]
    [('activated', '2026-12-07T11:00:00+00:00'), ('sent', '2026-12-07T11:05:01.000042+00:00')]
    """
    return [{"status": JobStatus(status), "at": datetime.fromisoformat(stamp)}
            for status, _, stamp in (line.partition(" ") for line in log.splitlines())]


def output_name(lfn: str, attempt: int) -> str:
    """An output file's name for an attempt: PanDA's trailing ``.N`` is the attempt.

    >>> output_name("EVNT.41370636._000001.pool.root.1", 2)
    'EVNT.41370636._000001.pool.root.2'
    >>> output_name("log.tgz", 2)
    'log.tgz.2'
    """
    stem, dot, last = lfn.rpartition(".")
    return f"{stem}.{attempt}" if dot and last.isdigit() else f"{lfn}.{attempt}"


class JobDB:
    """Reads and writes ``jobs`` (and their state logs)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add_jobs(self, rows: Sequence[dict[str, Any]], now: datetime) -> list[int]:
        """Insert jobs (their status included) and log their first state; returns the ids.

        ``base_priority`` defaults to ``priority``; a waiting job's
        ``waiting_since`` defaults to ``now``. In bulk (``netbroker.db.bulk``): the
        ids taken first, then one statement per chunk of jobs and of log rows; on
        SQLite inside the caller's write transaction.
        """
        ids = allocate_ids(self.conn, jobs, len(rows))  # see netbroker.db.bulk
        insert_rows(self.conn, jobs, [
            {"base_priority": r["priority"],
             "waiting_since": now if r["status"] in WAITING else None,
             **r, "id": i, "created_at": now, "modified_at": now,
             "state_log": state_entry(r["status"], now)}
            for i, r in zip(ids, rows, strict=True)])
        return ids

    def new_ids(self, n: int) -> list[int]:
        """``n`` ids for jobs about to be inserted (:meth:`add_job_columns`), increasing;
        on SQLite the caller holds the write lock until they are inserted."""
        return allocate_ids(self.conn, jobs, n)

    def add_job_columns(self, chunks: Iterable[Mapping[str, list[Any]]], now: datetime
                        ) -> int:
        """Insert jobs given as chunks of columns and log their first state; returns how
        many.

        Every chunk names the same columns, ``id`` (from :meth:`new_ids`), ``status``
        and ``base_priority`` among them; ``created_at`` and ``modified_at`` are
        ``now``, and so is ``waiting_since`` for a waiting job; the state log starts
        with the job's state. The chunks are consumed as the rows are sent
        (``netbroker.db.bulk.insert_columns``: a generator's next chunk is built
        while PostgreSQL stores the last).
        """
        entries: dict[Any, str] = {}

        def stamped() -> Iterator[dict[str, list[Any]]]:
            for chunk in chunks:
                n = len(chunk["id"])
                status = chunk["status"]
                for s in set(status) - entries.keys():
                    entries[s] = state_entry(s, now)
                yield {**chunk, "created_at": [now] * n, "modified_at": [now] * n,
                       "waiting_since": [now if s in WAITING else None for s in status],
                       "state_log": [entries[s] for s in status]}

        return insert_columns(self.conn, jobs, stamped())

    def set_states(self, rows: Sequence[dict[str, Any]]) -> None:
        """Set jobs' states as something outside the dispatcher saw them change (the
        simulator's pilots): one executemany of ``job_id, status, at, cpu_time_s``.
        No transition is checked and no state change logged."""
        if rows:
            self.conn.execute(sa.update(jobs).where(jobs.c.id == sa.bindparam("job_id"))
                              .values(status=sa.bindparam("new_status"),
                                      modified_at=sa.bindparam("at"),
                                      cpu_time_s=sa.bindparam("cpu")), list(rows))

    def acquire(self, queue_id: int, label: str, cores: int, memory_mb: int, disk_mb: int,
                pilot_id: str, node: str, now: datetime, owner: str | None = None
                ) -> dict[str, Any] | None:
        """Send the best activated job of a queue that fits to this pilot, or None;
        the job as :data:`DISPATCH_COLUMNS`.

        Best: highest priority, then the newest id (the index's order, read
        backwards; waiting jobs climb by aging, so the old are not starved).
        Fits: cores, memory and disk within what the pilot offers, and the
        pilot's prodSourceLabel.
        """
        rows = self._change_and_log(_acquire_statement(), {
            "p_queue": queue_id, "p_label": label, "p_cores": cores, "p_memory": memory_mb,
            "p_disk": disk_mb, "p_pilot": pilot_id, "p_node": node, "p_now": now,
            "p_owner": owner, "p_log_status": JobStatus.SENT})
        if not rows:
            return None
        # What the statement set, from its parameters rather than sent back.
        return {**rows[0], "status": JobStatus.SENT, "queue_id": queue_id,
                "pilot_id": pilot_id, "node": node, "owner": owner}

    def acquire_batch(self, asked: Sequence[AcquireArgs], now: datetime
                      ) -> list[dict[str, Any] | None]:
        """:meth:`acquire` for several pilots in one statement (PostgreSQL): for each
        of ``asked``, its job (as :meth:`acquire` gives it) or None.

        The asks are grouped by what they fit (queue, label, cores, memory,
        disk); each group takes that many of its best jobs (the index's
        backward read, ``SKIP LOCKED``), handed out in the asks' order, so
        the first ask of a group gets its best job, as one call after
        another would. One statement is one transaction: every ask is sent
        its job, or none is. Two groups of one queue may pick the same job
        (a row this statement locked is not skipped by it): the job goes to
        one of them and the other ask gets None, as when the queue runs
        dry; the caller asks again for those alone. O(asks) statements'
        work, in one round trip.
        """
        if not asked:
            return []
        arrays = {param: [getattr(a, field) for a in asked] for param, field in (
            ("p_queue", "queue_id"), ("p_label", "label"), ("p_cores", "cores"),
            ("p_memory", "memory_mb"), ("p_disk", "disk_mb"), ("p_pilot", "pilot_id"),
            ("p_node", "node"), ("p_owner", "owner"))}
        rows = prepared(_acquire_batch_statement(), self.conn.dialect).rows(self.conn, {
            **arrays, "p_ord": list(range(len(asked))), "p_now": now,
            "p_log_entry": state_entry(JobStatus.SENT, now)})
        out: list[dict[str, Any] | None] = [None] * len(asked)
        for row in rows:
            i = row.pop("ord")
            ask = asked[i]
            out[i] = {**row, "status": JobStatus.SENT, "queue_id": ask.queue_id,
                      "pilot_id": ask.pilot_id, "node": ask.node, "owner": ask.owner}
        return out

    def set_status(self, job_id: int, status: JobStatus, sources: Collection[JobStatus],
                   now: datetime, owner: str | None = None, **fields: Any) -> bool:
        """Move a job to ``status`` if it is in one of ``sources`` (and, with ``owner``,
        belongs to it); False if it is not."""
        stmt = _set_status_statement(_in_order(frozenset(sources)),
                                     owner is not None, tuple(sorted(fields)))
        return bool(self._change_and_log(stmt, {
            "p_job": job_id, "p_status": status, "p_now": now, "p_owner": owner,
            "p_log_status": status, **{f"set_{k}": v for k, v in fields.items()}}))

    def set_status_batch(self, status: JobStatus, sources: Collection[JobStatus],
                         now: datetime, job_ids: Sequence[int],
                         owners: Sequence[str] | None = None,
                         fields: Mapping[str, Sequence[Any]] | None = None) -> set[int]:
        """:meth:`set_status` for several jobs in one statement (PostgreSQL): each of
        ``job_ids`` to ``status`` if it is in one of ``sources`` (and, with
        ``owners``, is the same place's owner's), setting each field of
        ``fields`` to the same place's value. Returns the ids moved. One
        statement is one transaction; a job given twice is moved once.
        O(jobs)."""
        if not job_ids:
            return set()
        fields = fields or {}
        stmt = _set_status_batch_statement(_in_order(frozenset(sources)), owners is not None,
                                           tuple(sorted(fields)))
        rows = prepared(stmt, self.conn.dialect).rows(self.conn, {
            "p_job": list(job_ids), "p_owner": list(owners or ()), "p_status": status,
            "p_now": now, "p_log_entry": state_entry(status, now),
            **{f"set_{k}": list(v) for k, v in fields.items()}})
        return {row["id"] for row in rows}

    def _change_and_log(self, stmt: sa.Executable, params: dict[str, Any]
                        ) -> list[dict[str, Any]]:
        """Run a state change built by :func:`_logged` with its parameters (the new state
        ``p_log_status`` at ``p_now`` among them); its rows. One statement."""
        entry = state_entry(params["p_log_status"], params["p_now"])
        return prepared(stmt, self.conn.dialect).rows(  # see netbroker.db.prepared
            self.conn, {**params, "p_log_entry": entry})

    def waiting_task_jobs(self, statuses: Collection[JobStatus], movable_since: datetime,
                          max_rebrokerages: int, task_ids: Collection[int] | None = None,
                          any_wait: Collection[JobStatus] = ()) -> list[Any]:
        """What rebrokerage weighs of the task jobs in these statuses (of these tasks, or
        all) that may move, and of those in ``any_wait`` statuses, by id.

        Each row: ``id, task_id, queue_id, status, max_walltime_s, max_disk_mb``;
        ``ahead``, how many jobs in these statuses wait at the same queue before it in
        the order a pilot takes them (priority, then id, both descending, as
        :meth:`acquire`), jobs of no task and jobs left out included; and
        ``movable``: not pinned, moved fewer than ``max_rebrokerages`` times, waiting
        since ``movable_since`` or before. One statement: the ranking is a sort of
        the waiting jobs of the queues where a row asked for waits, in the database;
        the rows read only those asked for.
        """
        rank = sa.func.row_number().over(partition_by=jobs.c.queue_id,
                                         order_by=(jobs.c.priority.desc(), jobs.c.id.desc()))
        movable = sa.and_(sa.not_(jobs.c.pinned), jobs.c.rebrokerages < max_rebrokerages,
                          jobs.c.waiting_since <= movable_since)
        wanted_here = [jobs.c.status.in_(statuses), jobs.c.task_id.is_not(None),
                       sa.or_(movable, jobs.c.status.in_(list(any_wait)))]
        if task_ids is not None:
            wanted_here.append(jobs.c.task_id.in_(sorted(task_ids)))
        # Only the queues where a row asked for waits are ranked: most waiting jobs
        # (of no task, or not movable yet) are at queues no row of this read is at,
        # and a sort of every waiting job at every pass is the cost of a scan and more.
        ranked = [jobs.c.status.in_(statuses), jobs.c.queue_id.in_(
            sa.select(jobs.c.queue_id).distinct().where(*wanted_here))]
        line = (sa.select(jobs.c.id, jobs.c.task_id, jobs.c.queue_id, jobs.c.status,
                          jobs.c.max_walltime_s, jobs.c.max_disk_mb,
                          (rank - 1).label("ahead"), movable.label("movable"),
                          sa.and_(*wanted_here).label("asked"))
                .where(*ranked).subquery("line"))
        rows = (sa.select(*(line.c[name] for name in (
                    "id", "task_id", "queue_id", "status", "max_walltime_s", "max_disk_mb",
                    "ahead", "movable")))
                .where(line.c.asked).order_by(line.c.id))
        return list(self.conn.execute(rows))

    def activate_assigned(self, job_ids: Collection[int], now: datetime) -> int:
        """Activate those of these jobs still assigned, logging the change; returns how many."""
        done = list(self.conn.execute(
            sa.update(jobs).where(jobs.c.id.in_(job_ids), jobs.c.status == JobStatus.ASSIGNED)
            .values(status=JobStatus.ACTIVATED, modified_at=now,
                    state_log=_appended(_line(JobStatus.ACTIVATED, now)))
            .returning(jobs.c.id)).scalars())
        return len(done)

    def rebroker_jobs(self, job_ids: Collection[int], from_queue_id: int, to_queue_id: int,
                      old_status: JobStatus, status: JobStatus,
                      waiting: Collection[JobStatus], now: datetime) -> set[int]:
        """Move waiting jobs of ``old_status`` from one queue to another (one more
        rebrokerage each, a new state logged when ``status`` differs); returns the ids
        of those moved, leaving out the ones no longer waiting on ``from_queue_id``
        (a pilot took it, or it changed meanwhile). One statement."""
        if not job_ids:
            return set()
        logged = {"state_log": _appended(_line(status, now))} if status != old_status else {}
        return set(self.conn.execute(
            sa.update(jobs).where(jobs.c.id.in_(list(job_ids)), jobs.c.queue_id == from_queue_id,
                                  jobs.c.status == old_status, jobs.c.status.in_(waiting))
            .values(queue_id=to_queue_id, status=status, modified_at=now,
                    rebrokerages=jobs.c.rebrokerages + 1, **logged)
            .returning(jobs.c.id)).scalars())

    def retry(self, job_id: int, now: datetime) -> int | None:
        """A new activated attempt of a failed job, if it has attempts left; its id or None."""
        job = self.get(job_id)
        if job is None or job["attempt_nr"] >= job["max_attempts"]:
            return None
        keep = ("task_id", "name", "queue_id", "prod_source_label", "priority", "max_attempts",
                "cores", "min_ram_mb", "max_disk_mb", "max_walltime_s", "transformation",
                "job_pars", "user_name", "working_group", "base_priority", "input_bytes",
                "brokerage_id", "rebrokerages", "pinned", "event_service")
        (new_id,) = self.add_jobs([{**{k: job[k] for k in keep},
                                    "status": JobStatus.ACTIVATED, "retry_of": job_id,
                                    "attempt_nr": job["attempt_nr"] + 1}], now)
        files = self.conn.execute(sa.select(job_files).where(job_files.c.job_id == job_id)
                                  .order_by(job_files.c.id)).mappings().all()
        if files:  # the same inputs; outputs renamed for the attempt, size and sum unknown
            attempt = job["attempt_nr"] + 1
            self.conn.execute(sa.insert(job_files), [
                {**{k: f[k] for k in ("kind", "scope", "dataset", "file_id")}, "job_id": new_id,
                 **({k: f[k] for k in ("lfn", "bytes", "guid", "adler32")} if f["kind"] == "input"
                    else {"lfn": output_name(f["lfn"], attempt), "bytes": None, "guid": None,
                          "adler32": None})} for f in files])
        if job["event_service"]:
            # Outputs leave with the job, not per range: the new attempt redoes every range.
            self.conn.execute(sa.update(event_ranges).where(event_ranges.c.job_id == job_id)
                              .values(job_id=new_id, status=EventRangeStatus.READY,
                                      pilot_id=None, updated_at=now))
        return new_id

    def cancel_task_jobs(self, task_id: int, now: datetime) -> int:
        """Cancel every job of a task not yet final, in bulk; returns how many."""
        final = [JobStatus.FINISHED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.CLOSED]
        ids = list(self.conn.execute(sa.select(jobs.c.id).where(
            jobs.c.task_id == task_id, jobs.c.status.not_in(final))).scalars())
        if not ids:
            return 0
        done = list(self.conn.execute(
            sa.update(jobs).where(jobs.c.id.in_(ids), jobs.c.status.not_in(final))
            .values(status=JobStatus.CANCELLED, modified_at=now,
                    state_log=_appended(_line(JobStatus.CANCELLED, now)))
            .returning(jobs.c.id)).scalars())
        return len(done)

    def get(self, job_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(sa.select(jobs).where(jobs.c.id == job_id)).mappings().first()
        return dict(row) if row is not None else None

    def timeline(self, job_id: int) -> list[dict[str, Any]]:
        """The job's states (``status``, ``at``), oldest first; empty for no such job."""
        log = self.conn.execute(sa.select(jobs.c.state_log).where(jobs.c.id == job_id)
                                ).scalar()
        return parse_state_log(log or "")

    def state_changes(self, job_ids: Collection[int] | None = None
                      ) -> list[tuple[int, JobStatus, datetime]]:
        """(job id, state, time) of every logged state of these jobs (or of all), by
        time, then job, then the order of the job's log; O(c log c) for c changes."""
        stmt = sa.select(jobs.c.id, jobs.c.state_log).where(jobs.c.state_log != "")
        if job_ids is not None:
            stmt = stmt.where(jobs.c.id.in_(sorted(job_ids)))
        changes = [(job_id, n, entry["status"], entry["at"])
                   for job_id, log in self.conn.execute(stmt)
                   for n, entry in enumerate(parse_state_log(log))]
        changes.sort(key=lambda c: (c[3], c[0], c[1]))
        return [(job_id, status, at) for job_id, _, status, at in changes]

    def silent(self, statuses: Collection[JobStatus], before: datetime) -> list[int]:
        """Ids of jobs in ``statuses`` whose last sign of life is older than ``before``."""
        stmt = sa.select(jobs.c.id).where(jobs.c.status.in_(list(statuses)),
                                          jobs.c.heartbeat_at < before).order_by(jobs.c.id)
        return list(self.conn.execute(stmt).scalars())

    def save_log(self, job_id: int, content: bytes, media_type: str, now: datetime) -> None:
        """Keep a job's log (a later upload replaces an earlier one)."""
        self.conn.execute(sa.delete(job_logs).where(job_logs.c.job_id == job_id))
        self.conn.execute(sa.insert(job_logs).values(job_id=job_id, content=content,
                                                     media_type=media_type, uploaded_at=now))

    def log(self, job_id: int) -> dict[str, Any] | None:
        """A job's log: content, media type, when it came; None if none came."""
        row = self.conn.execute(sa.select(job_logs).where(job_logs.c.job_id == job_id)
                                ).mappings().first()
        return dict(row) if row is not None else None

    def final_counts_by_site(self, since: datetime) -> dict[int, tuple[int, int]]:
        """(finished, failed) jobs per site id, of jobs that ended since ``since``."""
        stmt = (sa.select(queues.c.site_id, jobs.c.status, sa.func.count())
                .join(queues, jobs.c.queue_id == queues.c.id)
                .where(jobs.c.status.in_([JobStatus.FINISHED, JobStatus.FAILED]),
                       jobs.c.modified_at >= since)
                .group_by(queues.c.site_id, jobs.c.status))
        out: dict[int, list[int]] = {}
        for site_id, status, n in self.conn.execute(stmt):
            out.setdefault(site_id, [0, 0])[0 if status == JobStatus.FINISHED else 1] += n
        return {k: (v[0], v[1]) for k, v in out.items()}

    def count_by_status(self, queue_id: int | None = None, label: str | None = None
                        ) -> dict[str, int]:
        """Jobs per state, of one queue or of all, of one prodSourceLabel or of all."""
        stmt = sa.select(jobs.c.status, sa.func.count()).group_by(jobs.c.status)
        stmt = where_given(stmt, {jobs.c.queue_id: queue_id, jobs.c.prod_source_label: label})
        return {str(s): n for s, n in self.conn.execute(stmt)}

    def queue_load(self, statuses: Collection[JobStatus]) -> list[tuple[int, str, int]]:
        """(queue id, status, jobs) for the jobs in these statuses, per queue and status."""
        stmt = (sa.select(jobs.c.queue_id, jobs.c.status, sa.func.count())
                .where(jobs.c.status.in_(list(statuses)))
                .group_by(jobs.c.queue_id, jobs.c.status))
        return [(q, st, n) for q, st, n in self.conn.execute(stmt)]

    def count_by_status_and_queue(self) -> list[tuple[str, str | None, int]]:
        """(state, queue name, jobs) for every state and queue with jobs; queue None for a
        job whose queue is gone."""
        rows = self.conn.execute(sa.select(jobs.c.status, queues.c.name, sa.func.count())
                                 .outerjoin(queues, jobs.c.queue_id == queues.c.id)
                                 .group_by(jobs.c.status, queues.c.name))
        return [(str(status), name, n) for status, name, n in rows]

    def state_counts(self, by: str, since: datetime | None = None, site: str | None = None,
                     user: str | None = None, task_id: int | None = None
                     ) -> list[tuple[str, str, int]]:
        """(key, state, jobs) of the jobs changed since ``since`` (all when None), keyed
        by ``by``: ``"site"`` or ``"queue"`` (its name), ``"user"``; optionally of one
        site, user or task."""
        key = {"site": sites.c.name, "queue": queues.c.name, "user": jobs.c.user_name}[by]
        stmt = (sa.select(key, jobs.c.status, sa.func.count())
                .select_from(jobs)
                .outerjoin(queues, jobs.c.queue_id == queues.c.id)
                .outerjoin(sites, queues.c.site_id == sites.c.id)
                .group_by(key, jobs.c.status))
        if since is not None:
            stmt = stmt.where(jobs.c.modified_at >= since)
        stmt = where_given(stmt, {sites.c.name: site, jobs.c.user_name: user,
                                  jobs.c.task_id: task_id})
        return [(k or "-", str(s), int(n)) for k, s, n in self.conn.execute(stmt)]

    def failures(self, since: datetime | None = None, task_id: int | None = None
                 ) -> list[dict[str, Any]]:
        """Failed jobs grouped by site, task and pilot error code: how many, the last
        one's time, one diagnostic; most frequent first."""
        stmt = (sa.select(sites.c.name.label("site"), jobs.c.task_id,
                          tasks.c.name.label("task"), jobs.c.pilot_error_code,
                          sa.func.count().label("jobs"),
                          sa.func.max(jobs.c.modified_at).label("last"),
                          sa.func.max(jobs.c.error_diag).label("example"))
                .select_from(jobs)
                .outerjoin(queues, jobs.c.queue_id == queues.c.id)
                .outerjoin(sites, queues.c.site_id == sites.c.id)
                .outerjoin(tasks, jobs.c.task_id == tasks.c.id)
                .where(jobs.c.status == JobStatus.FAILED)
                .group_by(sites.c.name, jobs.c.task_id, tasks.c.name, jobs.c.pilot_error_code)
                .order_by(sa.func.count().desc(), sites.c.name, jobs.c.task_id))
        if since is not None:
            stmt = stmt.where(jobs.c.modified_at >= since)
        stmt = where_given(stmt, {jobs.c.task_id: task_id})
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def list_jobs(self, task_id: int | None = None, status: str | None = None,
                  site: str | None = None, user: str | None = None, limit: int = 100,
                  error: int | None = None) -> list[dict[str, Any]]:
        """Jobs, newest first, with their queue and site names, optionally filtered."""
        stmt = (sa.select(jobs.c.id, jobs.c.task_id, jobs.c.name, jobs.c.status,
                          queues.c.name.label("queue"), sites.c.name.label("site"),
                          jobs.c.priority, jobs.c.attempt_nr, jobs.c.user_name,
                          jobs.c.rebrokerages, jobs.c.pilot_error_code, jobs.c.exit_code,
                          jobs.c.modified_at)
                .outerjoin(queues, jobs.c.queue_id == queues.c.id)
                .outerjoin(sites, queues.c.site_id == sites.c.id)
                .order_by(jobs.c.id.desc()).limit(limit))
        stmt = where_given(stmt, {jobs.c.task_id: task_id, jobs.c.status: status,
                                  sites.c.name: site, jobs.c.user_name: user,
                                  jobs.c.pilot_error_code: error})
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def error_summary(self, limit: int = 50) -> list[dict[str, Any]]:
        """Failed jobs per pilot error code and site (jobs, a diagnostic, the last time),
        most frequent first."""
        stmt = (sa.select(jobs.c.pilot_error_code, sites.c.name.label("site"),
                          sa.func.count().label("jobs"), sa.func.max(jobs.c.error_diag)
                          .label("example"), sa.func.max(jobs.c.modified_at).label("last"))
                .outerjoin(queues, jobs.c.queue_id == queues.c.id)
                .outerjoin(sites, queues.c.site_id == sites.c.id)
                .where(jobs.c.status == JobStatus.FAILED)
                .group_by(jobs.c.pilot_error_code, sites.c.name)
                .order_by(sa.func.count().desc()).limit(limit))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]


# The dispatcher's statements are built once (per shape; the same for every backend) with bound
# parameters: building a statement costs more than running it, and a statement
# object built once keeps its cache key, so SQLAlchemy finds it compiled.

def _appended(line: sa.ColumnElement[str]) -> sa.ColumnElement[str]:
    """``state_log`` with ``line`` appended (``||``): a state change's log, in its UPDATE."""
    return jobs.c.state_log.concat(line)


def _line(status: JobStatus, at: datetime) -> sa.ColumnElement[str]:
    """The log line of ``status`` at ``at`` (:func:`state_entry`) as a value in SQL."""
    return sa.literal(state_entry(status, at), sa.Text)


def _logged(change: sa.Update) -> sa.Update:
    """A jobs UPDATE ... RETURNING (``id`` first) that also logs its new state: the
    line ``p_log_entry`` (``JobDB._change_and_log`` makes it) appended to the
    row's ``state_log``, in the same statement, on every backend: the
    dispatcher's calls stay one round trip each and atomic outside a transaction
    (``netbroker.db.atomic_write``)."""
    return change.values(state_log=_appended(sa.bindparam("p_log_entry", type_=sa.Text)))


# What a pilot is sent of its job (both wires' answers, its files' look-up): the
# acquisition returns these, not every column; each column returned costs the
# database and the driver's conversion on every getJob.
DISPATCH_COLUMNS = ("id", "task_id", "name", "status", "queue_id", "prod_source_label",
                    "priority", "attempt_nr", "max_attempts", "retry_of", "cores", "min_ram_mb",
                    "max_disk_mb", "max_walltime_s", "transformation", "job_pars", "pilot_id",
                    "node", "owner", "user_name", "working_group", "event_service")
# Of these, what the acquisition sets (``JobDB.acquire`` fills them in from its
# parameters): the rest is what the statement returns.
_SET_BY_ACQUISITION = ("status", "queue_id", "pilot_id", "node", "owner")
_ACQUIRE_RETURNS = tuple(c for c in DISPATCH_COLUMNS if c not in _SET_BY_ACQUISITION)


@functools.cache
def _acquire_statement() -> sa.Executable:
    """Send the best fitting activated job of a queue; parameters as ``JobDB.acquire``'s."""
    pick = (sa.select(jobs.c.id)
            .where(jobs.c.queue_id == sa.bindparam("p_queue"),
                   jobs.c.status == JobStatus.ACTIVATED,
                   jobs.c.prod_source_label == sa.bindparam("p_label"),
                   jobs.c.cores <= sa.bindparam("p_cores"),
                   jobs.c.min_ram_mb <= sa.bindparam("p_memory"),
                   jobs.c.max_disk_mb <= sa.bindparam("p_disk"))
            # Both keys descending: a backward scan of ix_jobs_acquire, no sort.
            .order_by(jobs.c.priority.desc(), jobs.c.id.desc()).limit(1)
            .with_for_update(skip_locked=True)
            .scalar_subquery())
    now = sa.bindparam("p_now", type_=jobs.c.modified_at.type)
    change = (sa.update(jobs).where(jobs.c.id == pick)
              .values(status=JobStatus.SENT, pilot_id=sa.bindparam("p_pilot"),
                      node=sa.bindparam("p_node"), modified_at=now, heartbeat_at=now,
                      owner=sa.bindparam("p_owner"))
              .returning(*(jobs.c[name] for name in _ACQUIRE_RETURNS)))
    return _logged(change)


class AcquireArgs(NamedTuple):
    """One pilot's ask in :meth:`JobDB.acquire_batch` (:meth:`JobDB.acquire`'s arguments)."""

    queue_id: int
    label: str
    cores: int
    memory_mb: int
    disk_mb: int
    pilot_id: str
    node: str
    owner: str | None


@functools.cache
def _acquire_batch_statement() -> sa.Executable:
    """:func:`_acquire_statement` for arrays of asks (PostgreSQL; ``JobDB.acquire_batch``).

    ``asked`` unnests the arrays (one row an ask, ``ord`` its place);
    ``wanted`` counts the asks of each fit; ``picked`` reads each fit's best
    jobs, as many as asked, ranked; ``matched`` pairs the n-th ask of a fit
    with its n-th job. The generic plan reads ``ix_jobs_acquire`` backwards
    per fit (tests/test_acquire_plan.py).
    """
    fit = "queue_id, label, cores, memory, disk"
    returns = ", ".join(f"jobs.{name}" for name in _ACQUIRE_RETURNS)
    sql = f"""
WITH asked AS (
    SELECT * FROM unnest(CAST(:p_ord AS integer[]), CAST(:p_queue AS integer[]),
                         CAST(:p_label AS varchar[]), CAST(:p_cores AS integer[]),
                         CAST(:p_memory AS integer[]), CAST(:p_disk AS integer[]),
                         CAST(:p_pilot AS varchar[]), CAST(:p_node AS varchar[]),
                         CAST(:p_owner AS varchar[]))
        AS a(ord, queue_id, label, cores, memory, disk, pilot, node, owner)
), wanted AS (
    SELECT {fit}, count(*) AS n FROM asked GROUP BY {fit}
), picked AS (
    SELECT w.queue_id, w.label, w.cores, w.memory, w.disk, j.id,
           row_number() OVER (PARTITION BY w.queue_id, w.label, w.cores, w.memory, w.disk
                              ORDER BY j.priority DESC, j.id DESC) AS rank
    FROM wanted w CROSS JOIN LATERAL (
        SELECT jobs.id, jobs.priority FROM jobs
        WHERE jobs.queue_id = w.queue_id AND jobs.status = 'activated'
          AND jobs.prod_source_label = w.label AND jobs.cores <= w.cores
          AND jobs.min_ram_mb <= w.memory AND jobs.max_disk_mb <= w.disk
        ORDER BY jobs.priority DESC, jobs.id DESC
        LIMIT w.n FOR UPDATE OF jobs SKIP LOCKED) AS j
), matched AS (
    SELECT a.ord, a.pilot, a.node, a.owner, p.id
    FROM (SELECT asked.*, row_number() OVER (PARTITION BY {fit} ORDER BY ord) AS rank
          FROM asked) AS a
    JOIN picked AS p USING ({fit}, rank)
)
UPDATE jobs SET status = 'sent', pilot_id = m.pilot, node = m.node,
    modified_at = :p_now, heartbeat_at = :p_now, owner = m.owner,
    state_log = jobs.state_log || :p_log_entry
FROM matched AS m WHERE jobs.id = m.id
RETURNING m.ord, {returns}"""
    integers, texts = ARRAY(sa.Integer), ARRAY(sa.String)
    return (sa.text(sql)
            .bindparams(sa.bindparam("p_ord", type_=integers),
                        sa.bindparam("p_queue", type_=integers),
                        sa.bindparam("p_label", type_=texts),
                        sa.bindparam("p_cores", type_=integers),
                        sa.bindparam("p_memory", type_=integers),
                        sa.bindparam("p_disk", type_=integers),
                        sa.bindparam("p_pilot", type_=texts),
                        sa.bindparam("p_node", type_=texts),
                        sa.bindparam("p_owner", type_=texts),
                        sa.bindparam("p_now", type_=jobs.c.modified_at.type),
                        sa.bindparam("p_log_entry", type_=sa.Text))
            .columns(sa.column("ord", sa.Integer),
                     *(sa.column(name, jobs.c[name].type) for name in _ACQUIRE_RETURNS)))


@functools.lru_cache(maxsize=64)
def _set_status_batch_statement(sources: tuple[JobStatus, ...], with_owner: bool,
                                fields: tuple[str, ...]) -> sa.Executable:
    """:func:`_set_status_statement` for arrays of jobs (PostgreSQL;
    ``JobDB.set_status_batch``): ``p_job`` (and ``p_owner``, ``set_<field>``)
    are arrays of the same length, unnested side by side."""
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    given = [("p_job", "id", "bigint")]
    if with_owner:
        given.append(("p_owner", "owner", "varchar"))
    given += [(f"set_{f}", f, jobs.c[f].type.compile(dialect=dialect)) for f in fields]
    arrays = ", ".join(f"CAST(:{param} AS {kind}[])" for param, _, kind in given)
    names = ", ".join(name for _, name, _ in given)
    sets = "".join(f", {f} = r.{f}" for f in fields)
    states = ", ".join(f"'{s.value}'" for s in sources)
    owned = " AND jobs.owner = r.owner" if with_owner else ""
    sql = (f"UPDATE jobs SET status = :p_status, modified_at = :p_now, heartbeat_at = :p_now, "
           f"state_log = jobs.state_log || :p_log_entry{sets} "
           f"FROM unnest({arrays}) AS r({names}) "
           f"WHERE jobs.id = r.id{owned} AND jobs.status IN ({states}) RETURNING jobs.id")
    binds = [sa.bindparam("p_job", type_=ARRAY(sa.BigInteger)),
             sa.bindparam("p_status", type_=jobs.c.status.type),
             sa.bindparam("p_now", type_=jobs.c.modified_at.type),
             sa.bindparam("p_log_entry", type_=sa.Text)]
    if with_owner:
        binds.append(sa.bindparam("p_owner", type_=ARRAY(sa.String)))
    binds += [sa.bindparam(f"set_{f}", type_=ARRAY(jobs.c[f].type)) for f in fields]
    return sa.text(sql).bindparams(*binds).columns(sa.column("id", sa.BigInteger))


@functools.lru_cache(maxsize=64)
def _in_order(states: frozenset[JobStatus]) -> tuple[JobStatus, ...]:
    return tuple(sorted(states))


@functools.lru_cache(maxsize=256)
def _set_status_statement(sources: tuple[JobStatus, ...], with_owner: bool,
                          fields: tuple[str, ...]) -> sa.Executable:
    """Move job ``p_job`` to ``p_status`` from one of ``sources`` (and, with an owner,
    ``p_owner``'s), setting ``set_<field>`` for each of ``fields``."""
    # The sources as fixed parameters, not one expanding IN rendered again each time.
    where = [jobs.c.id == sa.bindparam("p_job"),
             jobs.c.status.in_([sa.literal(s, jobs.c.status.type) for s in sources])]
    if with_owner:
        where.append(jobs.c.owner == sa.bindparam("p_owner"))
    now = sa.bindparam("p_now", type_=jobs.c.modified_at.type)
    change = (sa.update(jobs).where(*where)
              .values(status=sa.bindparam("p_status", type_=jobs.c.status.type),
                      modified_at=now, heartbeat_at=now,
                      **{f: sa.bindparam(f"set_{f}", type_=jobs.c[f].type) for f in fields})
              .returning(jobs.c.id))
    return _logged(change)
