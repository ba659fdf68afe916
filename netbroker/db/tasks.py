"""TaskDB: tasks, brokerage decisions, job files and rebrokerage history, on one connection."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from netbroker.common.enums import JobStatus, ReplicaState, TaskStatus
from netbroker.db.bulk import allocate_ids, insert_columns, insert_rows
from netbroker.db.engine import insert_for
from netbroker.db.schema import (
    brokerage_decisions,
    clouds,
    datasets,
    endpoint_protocols,
    endpoints,
    file_replicas,
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

    def tasks_reading(self, dataset_id: int) -> set[int]:
        """The ids of the tasks whose input is this dataset."""
        return set(self.conn.execute(sa.select(tasks.c.id).where(
            tasks.c.dataset_id == dataset_id)).scalars())

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

    def dataset_file_bytes(self, dataset_ids: Collection[int]) -> dict[int, np.ndarray]:
        """Each dataset's file sizes in bytes (int64), in :meth:`dataset_files`' order:
        what brokerage weighs of the files, two columns read instead of six (the
        rebrokerage pass reads them for every dataset a movable job waits for)."""
        out = {d: np.zeros(0, np.int64) for d in dataset_ids}
        stmt = (sa.select(files.c.dataset_id, files.c.bytes)
                .where(files.c.dataset_id.in_(list(dataset_ids)))
                .order_by(files.c.dataset_id, files.c.name))
        # Each row's two values straight into one array (np.array over Row objects
        # probes every row for the array protocol first, which costs more than the read).
        rows = np.fromiter(chain.from_iterable(self.conn.execute(stmt)),
                           dtype=np.int64).reshape(-1, 2)
        if len(rows):
            ids, starts = np.unique(rows[:, 0], return_index=True)
            for d, sizes in zip(ids.tolist(), np.split(rows[:, 1], starts[1:]), strict=True):
                out[d] = sizes
        return out

    def replica_sites(self, dataset_ids: Collection[int]
                      ) -> list[tuple[int, int, str, bool]]:
        """(dataset id, site id, endpoint kind, whole) of every replica on an active
        endpoint that can be read from: the available ones (whole), and the pieces
        that jobs wrote there (a pending replica made of file copies, not whole)."""
        readable = sa.or_(replicas.c.state == ReplicaState.AVAILABLE, replicas.c.origin == "job")
        stmt = (sa.select(replicas.c.dataset_id, endpoints.c.site_id, endpoints.c.kind,
                          replicas.c.state == ReplicaState.AVAILABLE)
                .join(endpoints, replicas.c.endpoint_id == endpoints.c.id)
                .where(replicas.c.dataset_id.in_(list(dataset_ids)), readable,
                       endpoints.c.active)
                .distinct())
        return [(d, s, k, bool(whole)) for d, s, k, whole in self.conn.execute(stmt)]

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
    def add_job_files(self, chunks: Iterable[Mapping[str, list[Any]]]) -> int:
        """Insert job file rows given as chunks of columns, consumed as they are sent
        (``netbroker.db.bulk.insert_columns``); returns how many."""
        return insert_columns(self.conn, job_files, chunks)

    def job_files(self, job_id: int) -> list[dict[str, Any]]:
        stmt = (sa.select(job_files).where(job_files.c.job_id == job_id)
                .order_by(job_files.c.id))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def output_datasets(self, task_id: int) -> list[dict[str, Any]]:
        """The datasets a task's jobs write (outputs, logs): kind, scope, dataset, the
        distinct files named and the bytes reported so far."""
        jf = job_files
        stmt = (sa.select(jf.c.kind, jf.c.scope, jf.c.dataset,
                          sa.func.count(sa.distinct(jf.c.lfn)).label("files"),
                          sa.cast(sa.func.coalesce(sa.func.sum(jf.c.bytes), 0),
                                  sa.BigInteger).label("bytes"))
                .join(jobs, jf.c.job_id == jobs.c.id)
                .where(jobs.c.task_id == task_id, jf.c.kind != "input")
                .group_by(jf.c.kind, jf.c.scope, jf.c.dataset).order_by(jf.c.kind))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def input_sources(self, job_id: int) -> list[dict[str, Any]]:
        """Every readable copy of the job's input files: one row per (file, endpoint)
        with the endpoint's name, URL, site id and kind. A copy is the file's
        dataset available there, or the file itself reported written there (a
        dataset that earlier jobs made in pieces)."""
        jf = job_files
        columns = (jf.c.id.label("job_file_id"), endpoints.c.name.label("endpoint"),
                   endpoints.c.url, endpoints.c.site_id, endpoints.c.kind)
        whole = (sa.select(*columns)
                 .join(files, jf.c.file_id == files.c.id)
                 .join(replicas, replicas.c.dataset_id == files.c.dataset_id)
                 .join(endpoints, replicas.c.endpoint_id == endpoints.c.id)
                 .where(jf.c.job_id == job_id, jf.c.kind == "input",
                        replicas.c.state == ReplicaState.AVAILABLE, endpoints.c.active))
        single = (sa.select(*columns)
                  .join(file_replicas, file_replicas.c.file_id == jf.c.file_id)
                  .join(endpoints, file_replicas.c.endpoint_id == endpoints.c.id)
                  .where(jf.c.job_id == job_id, jf.c.kind == "input", endpoints.c.active))
        union = sa.union(whole, single).subquery()
        stmt = sa.select(union).order_by(union.c.job_file_id, union.c.endpoint)
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def output_endpoint(self, queue_id: int) -> dict[str, Any] | None:
        """Where a job of this queue writes its outputs: its site's active disk endpoint
        with the most free space (endpoints of unknown space after those of known)."""
        stmt = (sa.select(endpoints.c.name, endpoints.c.url)
                .join(queues, queues.c.site_id == endpoints.c.site_id)
                .where(queues.c.id == queue_id, endpoints.c.kind == "disk", endpoints.c.active)
                .order_by(endpoints.c.free_bytes.desc().nulls_last(), endpoints.c.name)
                .limit(1))
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

    # --- outputs as replicas ------------------------------------------------------------
    def output_files(self, job_id: int) -> list[dict[str, Any]]:
        """A job's output and log files: id, kind, lfn, scope, dataset, file id."""
        jf = job_files
        stmt = (sa.select(jf.c.id, jf.c.kind, jf.c.lfn, jf.c.scope, jf.c.dataset, jf.c.file_id)
                .where(jf.c.job_id == job_id, jf.c.kind != "input").order_by(jf.c.id))
        return [dict(r) for r in self.conn.execute(stmt).mappings()]

    def add_output_file(self, scope: str, dataset: str, lfn: str, guid: str, nbytes: int,
                        adler32: str, now: Any) -> tuple[int, int]:
        """The dataset (made if new) and its file ``lfn`` (added if new: a file once
        registered keeps its first size and checksum); returns (dataset id, file id)."""
        self.conn.execute(insert_for(self.conn, datasets).values(
            scope=scope, name=dataset, created_at=now).on_conflict_do_nothing())
        dataset_id = self.conn.execute(sa.select(datasets.c.id).where(
            datasets.c.scope == scope, datasets.c.name == dataset)).scalar_one()
        self.conn.execute(insert_for(self.conn, files).values(
            dataset_id=dataset_id, name=lfn, guid=guid, bytes=nbytes, adler32=adler32
        ).on_conflict_do_nothing())
        file_id = self.conn.execute(sa.select(files.c.id).where(
            files.c.dataset_id == dataset_id, files.c.name == lfn)).scalar_one()
        return int(dataset_id), int(file_id)

    def file_copies(self, file_ids: Collection[int]) -> dict[int, list[tuple[str, str]]]:
        """Per file, the (endpoint, URL) of each copy reported written."""
        stmt = (sa.select(file_replicas.c.file_id, endpoints.c.name, file_replicas.c.url)
                .join(endpoints, endpoints.c.id == file_replicas.c.endpoint_id)
                .where(file_replicas.c.file_id.in_(list(file_ids)))
                .order_by(file_replicas.c.file_id, endpoints.c.name))
        out: dict[int, list[tuple[str, str]]] = {}
        for file_id, endpoint, url in self.conn.execute(stmt):
            out.setdefault(file_id, []).append((endpoint, url))
        return out

    def link_job_file(self, job_file_id: int, file_id: int) -> None:
        self.conn.execute(sa.update(job_files).where(job_files.c.id == job_file_id)
                          .values(file_id=file_id))

    def storage_prefixes(self, site_id: int | None = None) -> dict[str, list[str]]:
        """Per endpoint (of one site, or all), the URL prefixes its files are written
        under: each protocol's URL and path joined as the pilot joins them, and the
        endpoint's own base URL."""
        ep, proto = endpoints, endpoint_protocols
        stmt = (sa.select(ep.c.name, proto.c.url, proto.c.path).select_from(ep)
                .outerjoin(proto, proto.c.endpoint_id == ep.c.id))
        base = sa.select(ep.c.name, ep.c.url)
        if site_id is not None:
            stmt, base = stmt.where(ep.c.site_id == site_id), base.where(ep.c.site_id == site_id)
        out: dict[str, list[str]] = {}
        for name, url, path in self.conn.execute(stmt):
            if url is not None:
                out.setdefault(name, []).append(url + path)
        for name, url in self.conn.execute(base):
            if url:
                out.setdefault(name, []).append(url)
        return out

    def add_file_replica(self, dataset_id: int, file_id: int, endpoint: str, url: str,
                         now: Any) -> None:
        """A file's copy at ``endpoint``; then the dataset's replicas made of such copies:
        available where every file of the dataset has a copy, pending elsewhere (a
        new file makes the other endpoints' copies of the dataset incomplete)."""
        endpoint_id = self.conn.execute(sa.select(endpoints.c.id).where(
            endpoints.c.name == endpoint)).scalar_one()
        self.conn.execute(insert_for(self.conn, file_replicas).values(
            file_id=file_id, endpoint_id=endpoint_id, url=url[:2048], created_at=now
        ).on_conflict_do_nothing())
        total = self.conn.execute(sa.select(sa.func.count()).where(
            files.c.dataset_id == dataset_id)).scalar_one()
        held = self.conn.execute(
            sa.select(file_replicas.c.endpoint_id, sa.func.count())
            .join(files, files.c.id == file_replicas.c.file_id)
            .where(files.c.dataset_id == dataset_id).group_by(file_replicas.c.endpoint_id)).all()
        for where, count in held:
            state = ReplicaState.AVAILABLE if count == total else ReplicaState.PENDING
            ins = insert_for(self.conn, replicas).values(
                dataset_id=dataset_id, endpoint_id=where, state=state, updated_at=now,
                origin="job")
            # A replica the catalog or PD2P made says the whole dataset is there: as is.
            self.conn.execute(ins.on_conflict_do_update(
                index_elements=[replicas.c.dataset_id, replicas.c.endpoint_id],
                set_={"state": state, "updated_at": now}, where=replicas.c.origin == "job"))

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
