"""The lean reference dispatcher: the PanDA wire's getJob and updateJob, one statement each.

The dispatch benchmark's baseline, an independent minimal implementation of
the same job: a plain ASGI app (no framework), the driver itself (psycopg
or the standard library's sqlite3, one connection per worker process, no
pool, no ORM), and per call exactly one statement:

- getJob: ``UPDATE ... WHERE id = (SELECT id ... ORDER BY priority DESC, id
  DESC LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING ...`` (on SQLite the same
  UPDATE in ``BEGIN IMMEDIATE``), the best activated job of the pilot's
  queue that fits its label, cores (the queue's), memory and disk;
- updateJob: one conditional UPDATE of the job the pilot owns.

On PostgreSQL its statements are prepared and planned once (generic plans,
as netbroker's dispatch connection has them). It reads a table of the jobs
table's shape (``REF_TABLE``, a copy of the same jobs), checks the pilot's
bearer token against the pilot tokens' SHA-256 in ``api_tokens`` (read once
at start), and answers in PanDA's JSON shape. Nothing else: no state log, no
files, no cycles, no metrics.

    REF_DATABASE_URL=postgresql://... | sqlite:///PATH  REF_TABLE=ref_jobs \
        uvicorn --factory _reference_dispatcher:create_app --workers N ...
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import orjson

ACTIVE = ("sent", "starting", "running", "transferring")
COLUMNS = ("id", "task_id", "name", "prod_source_label", "attempt_nr", "cores",
           "max_walltime_s", "min_ram_mb", "max_disk_mb", "priority", "transformation",
           "job_pars")


def acquire_sql(table: str, mark: str) -> str:
    """The getJob statement; ``mark`` is the driver's placeholder style (``%s``, ``?``)."""
    lock = " FOR UPDATE SKIP LOCKED" if mark == "%s" else ""
    m = mark
    return (f"UPDATE {table} SET status = 'sent', pilot_id = {m}, node = {m}, "
            f"modified_at = {m}, heartbeat_at = {m}, owner = {m} "
            f"WHERE id = (SELECT id FROM {table} WHERE queue_id = {m} "
            f"AND status = 'activated' AND prod_source_label = {m} AND cores <= {m} "
            f"AND min_ram_mb <= {m} AND max_disk_mb <= {m} "
            f"ORDER BY priority DESC, id DESC LIMIT 1{lock}) "
            f"RETURNING {', '.join(COLUMNS)}")


def update_sql(table: str, mark: str) -> str:
    """The final-report statement: the pilot's own job, from a live state."""
    m = mark
    live = ", ".join(f"'{s}'" for s in ACTIVE)
    return (f"UPDATE {table} SET status = {m}, exit_code = {m}, cpu_time_s = {m}, "
            f"max_rss_kb = {m}, modified_at = {m}, heartbeat_at = {m} "
            f"WHERE id = {m} AND owner = {m} AND status IN ({live}) RETURNING id")


class Store:
    """One worker's connection and the two statements."""

    def __init__(self, url: str, table: str) -> None:
        self.sqlite = url.startswith("sqlite:")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(url.removeprefix("sqlite:///"),
                                             isolation_level=None, check_same_thread=False)
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL",
                           "busy_timeout = 10000", "cache_size = -65536"):
                self.conn.execute(f"PRAGMA {pragma}")
            mark = "?"
        else:
            import psycopg

            # The session settings of netbroker's own dispatch connection
            # (dispatcher.fastpath): generic plans, so that neither side is measured
            # re-planning its statements at every call.
            self.conn = psycopg.connect(_libpq_url(url), autocommit=True,
                                        options="-c plan_cache_mode=force_generic_plan")
            mark = "%s"
        self.acquire_sql, self.update_sql = acquire_sql(table, mark), update_sql(table, mark)
        self.queues = {name: (qid, cores) for qid, name, cores in self._all(
            "SELECT id, name, cores FROM queues")}
        self.tokens = {digest: name for digest, name in self._all(
            "SELECT token_sha256, name FROM api_tokens WHERE role = 'pilot' "
            "AND revoked_at IS NULL")}

    def _all(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        cur = self.conn.execute(sql, args)
        return list(cur.fetchall())

    def _one(self, sql: str, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
        if not self.sqlite:
            return self.conn.execute(sql, args, prepare=True).fetchone()
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            row = self.conn.execute(sql, args).fetchone()
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        return row

    def now(self) -> Any:
        now = datetime.now(UTC)
        return now.replace(tzinfo=None).isoformat(" ") if self.sqlite else now

    def acquire(self, queue_id: int, label: str, cores: int, memory: int, disk: int,
                pilot: str, node: str, owner: str) -> tuple[Any, ...] | None:
        now = self.now()
        return self._one(self.acquire_sql, (pilot, node, now, now, owner, queue_id, label,
                                            cores, memory, disk))

    def finish(self, job_id: int, state: str, exit_code: int | None, cpu: float | None,
               rss: int | None, owner: str) -> bool:
        now = self.now()
        return self._one(self.update_sql, (state, exit_code, cpu, rss, now, now, job_id,
                                           owner)) is not None


def _libpq_url(url: str) -> str:
    """A SQLAlchemy URL as libpq takes it (``postgresql+psycopg://`` -> ``postgresql://``)."""
    parts = urlsplit(url)
    return parts._replace(scheme="postgresql").geturl()


def _number(fields: dict[str, str], key: str, kind: type) -> Any:
    value = fields.get(key)
    return None if value in (None, "") else kind(float(value)) if kind is int else kind(value)


class App:
    """The ASGI app: POST /server/panda/getJob and /server/panda/updateJob."""

    def __init__(self, url: str, table: str) -> None:
        self.url, self.table = url, table
        self.store: Store | None = None
        self.owners: dict[bytes, str | None] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.store = Store(self.url, self.table)
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, payload = self.handle(scope, body)
        answer = orjson.dumps(payload)
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    def owner(self, scope: dict[str, Any]) -> str | None:
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
        if header not in self.owners:
            token = header.decode("latin-1").partition(" ")[2].strip()
            assert self.store is not None
            self.owners[header] = self.store.tokens.get(
                hashlib.sha256(token.encode()).hexdigest())
        return self.owners[header]

    def handle(self, scope: dict[str, Any], body: bytes) -> tuple[int, dict[str, Any]]:
        store = self.store
        assert store is not None
        path = scope["path"]
        if scope["method"] != "POST" or path not in ("/server/panda/getJob",
                                                     "/server/panda/updateJob"):
            return 404, {"detail": "not found"}
        owner = self.owner(scope)
        if owner is None:
            return 401, {"StatusCode": 50, "errorDialog": "no valid token"}
        fields = dict(parse_qsl(body.decode()))
        if path == "/server/panda/getJob":
            queue = store.queues.get(unquote(fields.get("computingElement", "")))
            if queue is None:
                return 404, {"StatusCode": 30, "errorDialog": "unknown queue"}
            row = store.acquire(queue[0], fields.get("prodSourceLabel", "managed"), queue[1],
                                int(float(fields.get("mem", "0"))),
                                int(float(fields.get("diskSpace", "0"))),
                                fields.get("pilotID", "")[:255], fields.get("node", "")[:255],
                                owner)
            if row is None:
                return 200, {"StatusCode": 20, "errorDialog": "no jobs"}
            return 200, {"StatusCode": 0, **panda_job(dict(zip(COLUMNS, row, strict=True)))}
        done = store.finish(int(fields["jobId"]), fields["state"],
                            _number(fields, "transExitCode", int),
                            _number(fields, "cpuConsumptionTime", float),
                            _number(fields, "maxRSS", int), owner)
        if not done:
            return 409, {"StatusCode": 30, "errorDialog": "not your live job"}
        return 200, {"StatusCode": 0, "command": "NULL"}


def panda_job(job: dict[str, Any]) -> dict[str, Any]:
    """The getJob answer's fields, as PanDA names them."""
    empty = ("inFiles", "GUID", "fsize", "checksum", "scopeIn", "realDatasetsIn",
             "prodDBlocks", "prodDBlockToken", "ddmEndPointIn", "outFiles", "scopeOut",
             "realDatasets", "destinationDblock", "ddmEndPointOut", "destinationSE",
             "logFile", "logGUID", "scopeLog", "cmtConfig", "transferType")
    return {"PandaID": job["id"], "jobsetID": 0, "taskID": job["task_id"] or 0,
            "jobDefinitionID": 0, "jobName": job["name"],
            "prodSourceLabel": job["prod_source_label"], "attemptNr": job["attempt_nr"],
            "coreCount": job["cores"], "maxWalltime": job["max_walltime_s"],
            "maxCpuCount": job["max_walltime_s"], "minRamCount": job["min_ram_mb"],
            "maxDiskCount": job["max_disk_mb"], "currentPriority": job["priority"],
            "processingType": "reference", "swRelease": "NULL",
            "transformation": job["transformation"], "jobPars": job["job_pars"],
            **dict.fromkeys(empty, "")}


def create_app() -> App:
    """uvicorn's factory: the database and table from ``REF_DATABASE_URL``, ``REF_TABLE``."""
    return App(os.environ["REF_DATABASE_URL"], os.environ.get("REF_TABLE", "ref_jobs"))
