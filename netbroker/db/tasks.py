"""TaskDB: tasks, brokerage decisions, job files and rebrokerage history, on one connection."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.db.bulk import allocate_ids, insert_rows
from netbroker.db.schema import (
    JobStatus,
    ReplicaState,
    TaskStatus,
    brokerage_decisions,
    clouds,
    datasets,
    endpoints,
    files,
    job_files,
    jobs,
    queues,
    rebrokerages,
    replicas,
    sites,
    tasks,
)

__all__ = ["TaskDB"]


class TaskDB:
    """Reads and writes ``tasks``, ``brokerage_decisions``, ``job_files``, ``rebrokerages``."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # --- tasks -------------------------------------------------------------------------
    def task_id(self, name: str) -> int | None:
        return self.conn.execute(sa.select(tasks.c.id).where(tasks.c.name == name)).scalar()

    def add_task(self, row: dict[str, Any]) -> int:
        return int(self.conn.execute(sa.insert(tasks).returning(tasks.c.id), [row]).scalar_one())

    def claim_task(self, task_id: int, statuses: Collection[str], now: Any) -> bool:
        """Touch a task if it is still in ``statuses``: the row lock that makes one
        brokerage pass, of several processes, own it."""
        result = self.conn.execute(sa.update(tasks).where(
            tasks.c.id == task_id, tasks.c.status.in_(list(statuses))).values(modified_at=now))
        return result.rowcount == 1

    def ended_tasks(self) -> dict[int, int]:
        """The running tasks that have jobs, none of them in a state that is not
        final: task id -> how many of its jobs failed with no attempt after them.

        An index look-up per running task (``ix_jobs_task_id``), then, for the
        ended ones only, one per failed job (``ix_jobs_retry_of``).
        """
        retry = jobs.alias("retry")
        failed = (sa.select(sa.func.count()).select_from(jobs)
                  .where(jobs.c.task_id == tasks.c.id, jobs.c.status == JobStatus.FAILED,
                         ~sa.exists().where(retry.c.retry_of == jobs.c.id))
                  .scalar_subquery())
        stmt = (sa.select(tasks.c.id, failed)
                .where(tasks.c.status == TaskStatus.RUNNING,
                       sa.exists().where(jobs.c.task_id == tasks.c.id),
                       ~_has_job_to_end())
                .order_by(tasks.c.id))
        return {task_id: int(n) for task_id, n in self.conn.execute(stmt)}

    def close_task(self, task_id: int, status: TaskStatus, reason: str, now: Any) -> bool:
        """End a running task that has no job left to end; False if it is not such."""
        result = self.conn.execute(
            sa.update(tasks).where(tasks.c.id == task_id, tasks.c.status == TaskStatus.RUNNING,
                                   ~_has_job_to_end())
            .values(status=status, reason=reason, modified_at=now))
        return result.rowcount == 1

    def claim_tasks(self, task_ids: Collection[int], statuses: Collection[str], now: Any
                    ) -> set[int]:
        """:meth:`claim_task` for many tasks in one statement; the ids claimed."""
        if not task_ids:
            return set()
        stmt = (sa.update(tasks).where(tasks.c.id.in_(sorted(task_ids)),
                                       tasks.c.status.in_(list(statuses)))
                .values(modified_at=now).returning(tasks.c.id))
        return set(self.conn.execute(stmt).scalars())

    def set_tasks(self, rows: Sequence[dict[str, Any]]) -> None:
        """:meth:`set_task` for many tasks: rows of ``id`` and the columns to set, one
        executemany per set of columns."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(k for k in row if k != "id"), []).append(row)
        for columns, group in groups.items():
            stmt = (sa.update(tasks).where(tasks.c.id == sa.bindparam("p_task"))
                    .values({c: sa.bindparam(f"p_{c}") for c in columns}))
            self.conn.execute(stmt, [{"p_task": r["id"], **{f"p_{c}": r[c] for c in columns}}
                                     for r in group])

    def set_task(self, task_id: int, **values: Any) -> None:
        self.conn.execute(sa.update(tasks).where(tasks.c.id == task_id).values(**values))

    def _task_select(self) -> sa.Select[Any]:
        site, nucleus = sites.alias("pinned"), sites.alias("nucleus")
        return (sa.select(tasks, datasets.c.scope.label("dataset_scope"),
                          datasets.c.name.label("dataset_name"), site.c.name.label("site"),
                          clouds.c.name.label("cloud"), nucleus.c.name.label("nucleus"))
                .join(datasets, tasks.c.dataset_id == datasets.c.id)
                .outerjoin(site, tasks.c.site_id == site.c.id)
                .outerjoin(clouds, tasks.c.cloud_id == clouds.c.id)
                .outerjoin(nucleus, tasks.c.nucleus_site_id == nucleus.c.id))

    def task(self, task_id: int) -> dict[str, Any] | None:
        row = self.conn.execute(self._task_select().where(tasks.c.id == task_id)
                                ).mappings().first()
        return dict(row) if row is not None else None

    def tasks(self, statuses: Collection[str] | None = None, user: str | None = None,
              ids: Collection[int] | None = None, limit: int | None = None
              ) -> list[dict[str, Any]]:
        """Tasks, newest first, optionally of some states, one user or some ids."""
        stmt = self._task_select().order_by(tasks.c.id.desc())
        if statuses is not None:
            stmt = stmt.where(tasks.c.status.in_(list(statuses)))
        if user is not None:
            stmt = stmt.where(tasks.c.user_name == user)
        if ids is not None:
            stmt = stmt.where(tasks.c.id.in_(list(ids)))
        if limit is not None:
            stmt = stmt.limit(limit)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def job_counts(self, task_ids: Collection[int]) -> dict[int, dict[str, int]]:
        """Jobs per state of each task."""
        out: dict[int, dict[str, int]] = {t: {} for t in task_ids}
        if not task_ids:
            return out
        stmt = (sa.select(jobs.c.task_id, jobs.c.status, sa.func.count())
                .where(jobs.c.task_id.in_(list(task_ids)))
                .group_by(jobs.c.task_id, jobs.c.status))
        for task_id, status, n in self.conn.execute(stmt):
            out[task_id][str(status)] = n
        return out

    # --- datasets ----------------------------------------------------------------------
    def dataset_id(self, scope: str, name: str) -> int | None:
        return self.conn.execute(sa.select(datasets.c.id).where(
            datasets.c.scope == scope, datasets.c.name == name)).scalar()

    def dataset_files(self, dataset_ids: Collection[int]) -> dict[int, list[dict[str, Any]]]:
        """Each dataset's files, ordered by name (the order jobs take them in)."""
        out: dict[int, list[dict[str, Any]]] = {d: [] for d in dataset_ids}
        stmt = (sa.select(files.c.id, files.c.dataset_id, files.c.name, files.c.guid,
                          files.c.bytes, files.c.adler32)
                .where(files.c.dataset_id.in_(list(dataset_ids)))
                .order_by(files.c.dataset_id, files.c.name))
        for row in self.conn.execute(stmt).mappings():
            out[row["dataset_id"]].append(dict(row))
        return out

    def replica_sites(self, dataset_ids: Collection[int]) -> list[tuple[int, int, str]]:
        """(dataset id, site id, endpoint kind) of every available replica on an active
        endpoint."""
        stmt = (sa.select(replicas.c.dataset_id, endpoints.c.site_id, endpoints.c.kind)
                .join(endpoints, replicas.c.endpoint_id == endpoints.c.id)
                .where(replicas.c.dataset_id.in_(list(dataset_ids)),
                       replicas.c.state == ReplicaState.AVAILABLE, endpoints.c.active)
                .distinct())
        return [tuple(r) for r in self.conn.execute(stmt)]  # type: ignore[misc]

    # --- decisions ---------------------------------------------------------------------
    def add_decisions(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Store decisions; their ids, in order. In bulk (``netbroker.db.bulk``)."""
        ids = allocate_ids(self.conn, brokerage_decisions, len(rows))
        insert_rows(self.conn, brokerage_decisions,
                    [{**r, "id": i} for i, r in zip(ids, rows, strict=True)])
        return ids

    def decisions(self, task_id: int) -> list[dict[str, Any]]:
        """A task's decisions, oldest first."""
        t = brokerage_decisions
        stmt = sa.select(t).where(t.c.task_id == task_id).order_by(t.c.id)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    # --- job files and moves -----------------------------------------------------------
    def add_job_files(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert job file rows, in bulk (``netbroker.db.bulk``)."""
        insert_rows(self.conn, job_files, rows)

    def job_files(self, job_id: int) -> list[dict[str, Any]]:
        stmt = (sa.select(job_files).where(job_files.c.job_id == job_id)
                .order_by(job_files.c.id))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def input_sources(self, job_id: int) -> list[dict[str, Any]]:
        """Every readable copy of the job's input files: one row per (file, endpoint)
        with the endpoint's name, URL, site id and kind."""
        jf = job_files
        stmt = (sa.select(jf.c.id.label("job_file_id"), endpoints.c.name.label("endpoint"),
                          endpoints.c.url, endpoints.c.site_id, endpoints.c.kind)
                .join(files, jf.c.file_id == files.c.id)
                .join(replicas, replicas.c.dataset_id == files.c.dataset_id)
                .join(endpoints, replicas.c.endpoint_id == endpoints.c.id)
                .where(jf.c.job_id == job_id, jf.c.kind == "input",
                       replicas.c.state == ReplicaState.AVAILABLE, endpoints.c.active)
                .order_by(jf.c.id, endpoints.c.name))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def output_endpoint(self, queue_id: int) -> dict[str, Any] | None:
        """Where a job of this queue writes its outputs: its site's active disk endpoint
        with the most free space."""
        stmt = (sa.select(endpoints.c.name, endpoints.c.url)
                .join(queues, queues.c.site_id == endpoints.c.site_id)
                .where(queues.c.id == queue_id, endpoints.c.kind == "disk", endpoints.c.active)
                .order_by(endpoints.c.free_bytes.desc(), endpoints.c.name).limit(1))
        row = self.conn.execute(stmt).mappings().first()
        return dict(row) if row is not None else None

    def record_outputs(self, job_id: int, reports: Sequence[dict[str, Any]]) -> int:
        """Store the size, checksum and GUID the pilot measured for the job's outputs."""
        if not reports:
            return 0
        stmt = (sa.update(job_files)
                .where(job_files.c.job_id == job_id, job_files.c.lfn == sa.bindparam("f_lfn"),
                       job_files.c.kind != "input")
                .values(bytes=sa.bindparam("f_bytes"), adler32=sa.bindparam("f_adler32"),
                        guid=sa.bindparam("f_guid")))
        self.conn.execute(stmt, [{"f_lfn": r["lfn"], "f_bytes": r["bytes"],
                                  "f_adler32": r["adler32"], "f_guid": r.get("guid")}
                                 for r in reports])
        return len(reports)

    def add_rebrokerages(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(sa.insert(rebrokerages), list(rows))

    def rebrokerages_of(self, job_id: int) -> list[dict[str, Any]]:
        src, dst = queues.alias("src"), queues.alias("dst")
        r = rebrokerages
        stmt = (sa.select(r.c.at, src.c.name.label("from_queue"), dst.c.name.label("to_queue"),
                          r.c.decision_id, r.c.reason)
                .join(src, r.c.from_queue_id == src.c.id).join(dst, r.c.to_queue_id == dst.c.id)
                .where(r.c.job_id == job_id).order_by(r.c.id))
        return [dict(row) for row in self.conn.execute(stmt).mappings()]


def _has_job_to_end() -> sa.Exists:
    """Whether the task (``tasks`` in the enclosing statement) has a job whose state is
    not final: one of a few states, each a look-up in ``ix_jobs_task_id``."""
    ending = sorted(set(JobStatus) - {JobStatus.FINISHED, JobStatus.FAILED,
                                      JobStatus.CANCELLED, JobStatus.CLOSED})
    return sa.exists().where(jobs.c.task_id == tasks.c.id, jobs.c.status.in_(ending))
