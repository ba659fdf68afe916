"""``netbroker drill``: the reliability drill (``make drill``), with bounded sizes.

Under a steady load of pilots (threads speaking the JSON dispatcher API:
acquire, starting, finished) and of metric batches (FTS messages), the drill

1. SIGKILLs the service mid-dispatch and starts it again;
2. restarts PostgreSQL under it (when PostgreSQL is available: a throwaway
   cluster, as in the tests; otherwise the drill runs on SQLite and says so);
3. pushes a burst of malformed metric records among valid ones;

then lets the work finish (the watchdog gives back the jobs whose answers
died with the service) and accounts for everything: every job finished
exactly once, no job handed to two pilots outside a watchdog requeue, every
valid metric record stored once and every malformed one rejected. It prints
the counts and exits 1 if anything is unaccounted for.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dispatcher.core import watchdog
from netbroker.common.config import DispatcherSettings
from netbroker.common.enums import JobStatus, utcnow
from netbroker.db import create_db_engine, upgrade
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.pgcluster import PostgresCluster, find_postgres_bin
from netbroker.db.schema import metric_samples
from netbroker.registry import registry

__all__ = ["DrillReport", "run_drill", "start_service"]

QUEUES = ("DESY-HH", "MWT2")


@dataclass
class DrillReport:
    """The drill's accounting."""

    backend: str
    jobs: int = 0
    finished: int = 0
    sent_twice: int = 0
    finished_twice: int = 0
    requeued_by_watchdog: int = 0
    service_kills: int = 0
    database_restarts: int = 0
    records_valid: int = 0
    records_malformed: int = 0
    samples_stored: int = 0
    records_rejected: int = 0
    http_errors: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


class _Load:
    """Pilot and collector threads that keep going through outages, as real ones do."""

    def __init__(self, base: str) -> None:
        self.base, self.stop = base, threading.Event()
        self.received: list[int] = []
        self.finished: list[int] = []
        self.valid = self.malformed = self.rejected = self.errors = 0
        self.lock = threading.Lock()

    def _retry(self, client: httpx.Client, method: str, url: str, **kw: Any) -> httpx.Response:
        while not self.stop.is_set():
            try:
                answer = client.request(method, url, **kw)
                if answer.status_code < 500:
                    return answer
            except httpx.TransportError:
                pass
            with self.lock:
                self.errors += 1
            time.sleep(0.1)
        raise RuntimeError("stopped")

    def pilot(self, queue: str) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self.stop.is_set():
                try:
                    answer = self._retry(client, "POST", "/api/v1/pilot/jobs/acquire",
                                         json={"queue": queue, "disk_mb": 20000})
                except RuntimeError:
                    return
                job = answer.json()["job"]
                if job is None:
                    return
                with self.lock:
                    self.received.append(job["id"])
                try:
                    for state in ("starting", "finished"):
                        self._retry(client, "POST", f"/api/v1/pilot/jobs/{job['id']}/update",
                                    json={"state": state, "exit_code": 0}
                                    if state == "finished" else {"state": state})
                except RuntimeError:
                    return
                with self.lock:
                    self.finished.append(job["id"])

    def collector(self, tag: str, batches: int, malformed_every: int = 0) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            for b in range(batches):
                if self.stop.is_set():
                    return
                lines, valid, bad = _fts_batch(f"{tag}-{b}", 40, malformed_every)
                try:  # a batch is sent until it is answered: re-ingest is idempotent
                    answer = self._retry(client, "POST", "/api/v1/metrics/fts",
                                         content=lines.encode())
                except RuntimeError:
                    return
                answer.raise_for_status()
                with self.lock:
                    self.valid += valid
                    self.malformed += bad
                    self.rejected += answer.json()["rejected"]
                time.sleep(0.05)


def _fts_batch(batch: str, n: int, malformed_every: int) -> tuple[str, int, int]:
    """``n`` FTS completion messages, every ``malformed_every``-th one broken."""
    end_ms = int(time.time() * 1000) - 60_000
    lines, valid, bad = [], 0, 0
    for i in range(n):
        msg: dict[str, Any] = {
            "tr_id": f"drill-{batch}-{i}", "vo": "atlas", "t_final_transfer_state": "Ok",
            "file_metadata": {"src_rse": "FZK-LCG2_DATADISK", "dst_rse": "DESY-HH_DATADISK"},
            "timestamp_tr_st": end_ms - 20_000, "timestamp_tr_comp": end_ms - i,
            "file_size": 2_000_000_000, "tr_bt_transfered": 2_000_000_000}
        if malformed_every and i % malformed_every == 0:
            kind = (i // malformed_every) % 3
            if kind == 0:
                del msg["file_size"]
            elif kind == 1:
                msg["tr_bt_transfered"] = -5
            else:
                msg["timestamp_tr_comp"] = msg["timestamp_tr_st"] - 1000
            bad += 1
        else:
            valid += 1
        lines.append(json.dumps(msg))
    return "\n".join(lines), valid, bad


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(url: str, port: int, log: Path, cycles: bool = False,
                  settings: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """``netbroker serve`` on ``url`` and 127.0.0.1:``port``, without tokens, logging to
    ``log``; returned once it answers. Its cycles run only with ``cycles``;
    ``settings`` are more ``NETBROKER_<GROUP>_<KEY>`` variables for it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETBROKER_")}
    # Tokens are not what this drills: the service runs without them.
    env.update({"NETBROKER_DATABASE_URL": url,
                "NETBROKER_SERVICE_RUN_CYCLES": str(cycles).lower(),
                "NETBROKER_SERVICE_AUTH": "off", "NETBROKER_SERVICE_LOG_LEVEL": "warning"})
    env.update(settings or {})  # the caller's settings win
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "netbroker", "serve", "--port",
                                    str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the service did not start: " + log.read_text()[-2000:])


def _wait_for(predicate: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def run_drill(jobs: int = 1500, pilots: int = 8, backend: str = "auto",
              log_dir: Path | None = None) -> DrillReport:
    """Run the drill (see the module docstring); returns its accounting."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="netbroker-drill-"))
    bin_dir = find_postgres_bin() if backend in ("auto", "postgresql") else None
    if backend == "postgresql" and bin_dir is None:
        raise RuntimeError("--backend postgresql but no PostgreSQL binaries were found")
    cluster = PostgresCluster(bin_dir).start() if bin_dir else None
    report = DrillReport("postgresql" if cluster else "sqlite")
    service = None
    try:
        url = _drill_database(cluster, log_dir)
        engine = create_db_engine(url)
        upgrade(engine)
        registry.import_grid_file(engine, registry.sample_grid_path())
        ids = _add_jobs(engine, jobs)
        report.jobs = len(ids)
        port = _free_port()
        log = log_dir / "service.log"
        service = start_service(url, port, log)
        load = _Load(f"http://127.0.0.1:{port}")
        threads = [threading.Thread(target=load.pilot, args=(QUEUES[i % 2],))
                   for i in range(pilots)]
        threads.append(threading.Thread(target=load.collector, args=("steady", 30)))
        for t in threads:
            t.start()
        _wait_for(lambda: len(load.finished) >= len(ids) // 4, 120)
        os.kill(service.pid, signal.SIGKILL)  # our own child, by PID, mid-dispatch
        service.wait()
        report.service_kills += 1
        service = start_service(url, port, log)
        _wait_for(lambda: len(load.finished) >= len(ids) // 2, 120)
        if cluster:
            cluster.restart()
            report.database_restarts += 1
        burst = threading.Thread(target=load.collector, args=("burst", 5, 3))
        burst.start()
        threads.append(burst)
        for t in threads:
            t.join(timeout=300)
        _finish_the_rest(engine, load, report)
        _account(engine, ids, load, report)
        engine.dispose()
    finally:
        if service is not None and service.poll() is None:
            service.terminate()
            service.wait(timeout=30)
        if cluster:
            cluster.stop()
    return report


def _drill_database(cluster: PostgresCluster | None, log_dir: Path) -> str:
    """The URL of a new, empty database for the drill: on the cluster, else a SQLite file."""
    if cluster is None:
        return f"sqlite:///{log_dir / 'drill.db'}"
    admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("CREATE DATABASE drill")
    admin.dispose()
    return cluster.url("drill")


def _finish_the_rest(engine: Engine, load: _Load, report: DrillReport) -> None:
    """Give back the jobs sent whose answer died with the killed service (the watchdog),
    then let a pilot per queue finish them; stop the load."""
    requeued = watchdog(engine, DispatcherSettings(start_timeout_minutes=1e-9))
    report.requeued_by_watchdog = len(requeued["requeued"])
    second = [threading.Thread(target=load.pilot, args=(q,)) for q in QUEUES]
    for t in second:
        t.start()
    for t in second:
        t.join(timeout=120)
    load.stop.set()


def _add_jobs(engine: sa.engine.Engine, n: int) -> list[int]:
    with engine.begin() as conn:
        queue_ids = GridDB(conn).queue_ids()
        return JobDB(conn).add_jobs([{
            "name": f"drill-{i}", "status": JobStatus.ACTIVATED,
            "queue_id": queue_ids[QUEUES[i % 2]], "prod_source_label": "managed",
            "priority": i % 100, "cores": 1, "min_ram_mb": 1000, "max_disk_mb": 1000,
            "max_walltime_s": 600, "transformation": "run.sh"} for i in range(n)], utcnow())


def _account(engine: sa.engine.Engine, ids: list[int], load: _Load,
             report: DrillReport) -> None:
    with engine.connect() as conn:
        states = JobDB(conn).count_by_status()
        finishes = Counter(job for job, status, _ in JobDB(conn).state_changes()
                           if status == JobStatus.FINISHED)
        stored = conn.execute(sa.select(sa.func.count()).select_from(metric_samples).where(
            metric_samples.c.source == "fts", metric_samples.c.origin_id.like("drill-%"))
        ).scalar_one()
    sent = Counter(load.received)
    report.finished = states.get("finished", 0)
    report.sent_twice = sum(1 for n in sent.values() if n > 1)
    report.finished_twice = sum(1 for n in finishes.values() if n > 1)
    report.records_valid, report.records_malformed = load.valid, load.malformed
    report.records_rejected, report.samples_stored = load.rejected, int(stored)
    report.http_errors = load.errors
    if report.finished != len(ids) or set(finishes) != set(ids):
        report.problems.append(f"{len(ids) - report.finished} jobs not finished: {dict(states)}")
    if report.finished_twice:
        report.problems.append(f"{report.finished_twice} jobs finished twice")
    if report.sent_twice > report.requeued_by_watchdog:
        report.problems.append(f"{report.sent_twice} jobs reached two pilots, only "
                               f"{report.requeued_by_watchdog} were requeued by the watchdog")
    if report.records_rejected != report.records_malformed:
        report.problems.append(f"{report.records_malformed} malformed records sent, "
                               f"{report.records_rejected} rejected")
    per_record = 2  # an FTS transfer gives a throughput and a success sample
    if report.samples_stored != per_record * report.records_valid:
        report.problems.append(f"{report.records_valid} valid records sent, "
                               f"{report.samples_stored} samples stored (expected "
                               f"{per_record * report.records_valid})")
