"""dispatch.postgresql, dispatch.sqlite: job cycles per second as a deployed grid sees them.

For each backend, one database holding the sample grid (queues added when
more are asked for than it has), a day of FTS transfers from the Tier-1s,
running tasks brokered through the real brokerage (their jobs and files),
tasks waiting to be brokered, and N activated jobs (default 200,000)
spread over Q queues (default 100) with random base priorities, users and
waiting times (the priorities then as the priority cycle computes them),
plus silent jobs for the watchdog. A table of the jobs table's shape,
``ref_jobs``, holds a copy of the same jobs for the reference.

Then, alternated, best of ``--rounds``:

- netbroker exactly as ``netbroker serve --workers 2`` runs it (as many
  worker processes as the reference has; ``--workers``), auth required,
  every cycle scheduled (brokerage, rebrokerage, priority, watchdog,
  clouds, pd2p, aggregate) with a period
  of a quarter of the measure, so each runs at least twice in it; new
  tasks registered before each run for the brokerage cycle, and the
  priorities brought up to date, as a service running all along leaves
  them (the jobs aged during the reference's run);
- the lean reference dispatcher (``bench/_reference_dispatcher.py``: plain
  ASGI, the driver, one statement per call) under uvicorn, on ``ref_jobs``.

Both meet the same load, ``bench/_pilots.py`` in a process of its own: 64
pilots on keep-alive connections, each getJob (a PanDA form POST with a
pilot token) for a random queue of the Q, then the final updateJob, for
``--seconds`` after a second of warm-up. Prints the best run's jobs/s
against the reference's (``dispatch.<backend>``) and the best getJob p99
against the reference's (``dispatch.<backend>.p99_ms``). ``--grid-scale``
adds ``dispatch.postgresql.1m``: the same on 1,000,000 jobs over 1,000
queues, against the 200,000-job rate of the same run.

Every PandaID handed out is checked: none went to two pilots (exit 1
otherwise), and every cycle ran at least twice (``--min-cycle-runs``) in each measured run.

    python bench/dispatch.py [--jobs N] [--queues Q] [--seconds S] [--rounds R]
        [--workers W] [--ref-workers W] [--only sqlite|postgresql] [--grid-scale]
        [--min-cycle-runs N]
"""

from __future__ import annotations

import argparse
import array
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa
from _common import ROOT, emit, scratch_path
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.accounts.auth import create_token
from netbroker.common.config import Settings
from netbroker.common.enums import JobStatus, ProcessingType, TaskStatus, utcnow
from netbroker.db import create_db_engine, upgrade
from netbroker.db.grid import GridDB
from netbroker.db.jobs import state_entry
from netbroker.db.pgcluster import PostgresCluster, find_postgres_bin
from netbroker.db.schema import cycles, jobs, queues
from netbroker.db.tasks import TaskDB
from netbroker.demo.stream import fts_lines
from netbroker.registry import registry
from netbroker.workload.priority import recompute
from netbroker.workload.tasks import broker_tasks

BENCH = Path(__file__).resolve().parent
PILOTS = 64
CYCLES = ("aggregate", "clouds", "heartbeat_watchdog", "brokerage", "rebrokerage", "priority",
          "pd2p")
DATASETS, FILES_PER_DATASET = 60, 100  # the bench's own, beside the sample grid's 40
RUNNING_TASKS, NEW_TASKS = 30, 8  # brokered at the start; registered before each run
GB = 1_000_000_000


# -- the data ------------------------------------------------------------------------

def grid_document(n_queues: int, rng: np.random.Generator) -> tuple[str, list[str]]:
    """The sample grid with the bench's datasets (and queues, past its 226); returns
    the document and the names of the ``n_queues`` queues the pilots ask for."""
    doc = json.loads(registry.sample_grid_path().read_text())
    names = sorted(doc["pandaqueue"])
    originals = list(names)
    k = 0
    while len(names) < n_queues:  # more queues at the same sites, as big grids have
        base = originals[k % len(originals)]
        name = f"{base}_B{k // len(originals):02d}"
        doc["pandaqueue"][name] = {**doc["pandaqueue"][base], "nickname": name,
                                   "panda_resource": name}
        names.append(name)
        k += 1
    disks = sorted(e for e, v in doc["ddmendpoint"].items() if v["type"] == "DATADISK")
    for d in range(DATASETS):
        name = f"bench.dispatch.ds{d:03d}"
        holders = rng.choice(len(disks), 2, replace=False)
        doc["dataset"].append({
            "scope": "bench", "name": name,
            "files": [{"name": f"{name}._{i:06d}.root", "bytes": int(rng.uniform(0.5, 3) * GB),
                       "guid": f"00000000-0000-4000-8000-{d:04d}{i:08d}", "adler32": "0a0b0c0d"}
                      for i in range(FILES_PER_DATASET)],
            "replicas": [{"rse": disks[h], "state": "AVAILABLE"} for h in holders]})
    return json.dumps(doc), names[:n_queues]


def ingest_transfers(engine: Engine, rng: np.random.Generator) -> None:
    """A day of FTS transfers from each Tier-1's DATADISK to every DATADISK."""
    doc = json.loads(registry.sample_grid_path().read_text())
    tier1 = {c["tier1"] for c in doc["cloud"].values()}
    disks = [e for e, v in doc["ddmendpoint"].items() if v["type"] == "DATADISK"]
    links = [(src, dst, float(rng.uniform(5, 300))) for src in disks for dst in disks
             if src != dst and doc["ddmendpoint"][src]["site"] in tier1]
    now = time.time()
    ingest(engine, "fts", fts_lines(links, 6, now - 86400, now - 60, rng, "bench"))


def add_tasks(engine: Engine, n: int, tag: str, rng: np.random.Generator) -> None:
    """``n`` registered tasks, one job a file of one of the bench's datasets."""
    now = utcnow()
    with engine.begin() as conn:
        db = TaskDB(conn)
        for t in range(n):
            dataset = db.dataset_id("bench", f"bench.dispatch.ds{rng.integers(DATASETS):03d}")
            db.add_task({"name": f"bench.{tag}.{t:04d}", "user_name": f"user{t % 50:02d}",
                         "processing_type": ProcessingType.PRODUCTION, "dataset_id": dataset,
                         "transformation": "run.sh", "job_pars": "--in $IN --out $OUT",
                         "cores": 1, "memory_mb": 2000, "walltime_s": 3600,
                         "files_per_job": 1, "priority": int(rng.integers(0, 1000)),
                         "max_attempts": 3, "status": TaskStatus.REGISTERED,
                         "created_at": now, "modified_at": now})


def add_jobs(engine: Engine, names: list[str], n: int, rng: np.random.Generator) -> None:
    """``n`` activated jobs over the queues ``names``, random base priorities, users and
    waiting times (up to a day), their state logged; and silent ones for the watchdog."""
    now = utcnow()
    activated = state_entry(JobStatus.ACTIVATED, now)
    with engine.begin() as conn:
        ids = GridDB(conn).ids(queues)
        queue_ids = np.array([ids[q] for q in names])
        chunk = 50_000
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            queue = queue_ids[rng.integers(0, len(queue_ids), m)]
            base = rng.integers(0, 1000, m)
            waited = rng.uniform(0, 86400, m)
            memory = rng.choice([1000, 2000, 4000], m)
            disk = rng.integers(1000, 20000, m)
            conn.execute(sa.insert(jobs), [{
                "name": f"bench.job.{start + i}", "status": JobStatus.ACTIVATED,
                "queue_id": int(queue[i]), "prod_source_label": "managed",
                "priority": int(base[i]), "base_priority": int(base[i]), "cores": 1,
                "min_ram_mb": int(memory[i]), "max_disk_mb": int(disk[i]),
                "max_walltime_s": 3600, "transformation": "run.sh", "job_pars": "--events 1000",
                "user_name": f"user{(start + i) % 50:02d}", "working_group": "",
                "waiting_since": now - _seconds(waited[i]), "created_at": now,
                "modified_at": now, "state_log": activated} for i in range(m)])
        for status, silent_s in ((JobStatus.SENT, 2400), (JobStatus.RUNNING, 7200)):
            at = now - _seconds(silent_s)
            conn.execute(sa.insert(jobs), [{
                "name": f"bench.silent.{status}.{i}", "status": status,
                "queue_id": int(queue_ids[i % len(queue_ids)]), "prod_source_label": "managed",
                "priority": 500, "base_priority": 500, "cores": 1, "min_ram_mb": 1000,
                "max_disk_mb": 1000, "max_walltime_s": 3600, "transformation": "run.sh",
                "user_name": "user00", "created_at": at, "modified_at": at,
                "heartbeat_at": at, "owner": "bench-pilots",
                "state_log": state_entry(status, at)} for i in range(200)])


def _seconds(s: float) -> Any:
    from datetime import timedelta
    return timedelta(seconds=float(s))


def copy_for_reference(engine: Engine) -> None:
    """``ref_jobs``: a table of the jobs table's shape (columns, keys, indexes) holding
    the same jobs."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("CREATE TABLE ref_jobs (LIKE jobs INCLUDING ALL)")
        else:
            ddl = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'jobs'").scalar()
            conn.exec_driver_sql(re.sub(r'^CREATE TABLE "?jobs"?', "CREATE TABLE ref_jobs", ddl))
            for (sql,) in conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'jobs' "
                    "AND sql IS NOT NULL").all():
                conn.exec_driver_sql(re.sub(r' ON "?jobs"? ', " ON ref_jobs ",
                                            sql.replace("ix_jobs_", "ref_ix_jobs_", 1), count=1))
        conn.exec_driver_sql("INSERT INTO ref_jobs SELECT * FROM jobs")
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")


def prepare(url: str, n_jobs: int, n_queues: int, seed: int = 1) -> tuple[str, list[str]]:
    """The database described in the module docstring; returns a pilot token and the
    pilots' queues."""
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    engine = create_db_engine(url)
    upgrade(engine)
    document, names = grid_document(n_queues, rng)
    registry.import_grid_document(engine, document)
    token = create_token(engine, "bench-pilots", "pilot")
    ingest_transfers(engine, rng)
    add_tasks(engine, RUNNING_TASKS, "running", rng)
    broker_tasks(engine, Settings())
    add_jobs(engine, names, n_jobs, rng)
    recompute(engine, Settings().priority)  # priorities as the cycle keeps them
    copy_for_reference(engine)
    engine.dispose()
    print(f"  prepared {n_jobs} jobs over {n_queues} queues in "
          f"{time.monotonic() - started:.0f} s", file=sys.stderr)
    return token, names


# -- the servers ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_up(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        try:
            httpx.post(url, timeout=2)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError("the server did not come up")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM our own server (by its pid), as an operator stops it; kill after 60 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cycle_env(period_s: float) -> dict[str, str]:
    """Every cycle's period at ``period_s`` (the settings are in minutes)."""
    minutes = f"{period_s / 60:.6f}"
    return {f"NETBROKER_{key}": minutes for key in (
        "CLOUDS_RECOMPUTE_MINUTES", "BROKERAGE_CYCLE_MINUTES", "REBROKERAGE_CYCLE_MINUTES",
        "PRIORITY_CYCLE_MINUTES", "PD2P_CYCLE_MINUTES", "DISPATCHER_WATCHDOG_MINUTES",
        "METRICS_AGGREGATE_MINUTES")}


def start_netbroker(url: str, port: int, workers: int | None, period_s: float,
                    log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETBROKER_")}
    env.update(NETBROKER_DATABASE_URL=url,
               NETBROKER_SERVICE_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "warning"),
               NETBROKER_SERVICE_RUN_CYCLES=os.environ.get("BENCH_RUN_CYCLES", "true"),
               NETBROKER_SERVICE_AUTH="required",
               **cycle_env(period_s))
    args = [sys.executable, "-m", "netbroker", "serve", "--port", str(port)]
    if workers is not None:
        args += ["--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    wait_until_up(proc, f"http://127.0.0.1:{port}/healthz")
    return proc


def start_reference(url: str, port: int, workers: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "REF_DATABASE_URL": url, "REF_TABLE": "ref_jobs"}
    args = [sys.executable, "-m", "uvicorn", "--factory", "_reference_dispatcher:create_app",
            "--port", str(port), "--workers", str(workers), "--log-level", "warning",
            "--no-access-log", "--app-dir", str(BENCH)]
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, cwd=BENCH, stdout=out,
                                stderr=subprocess.STDOUT)
    wait_until_up(proc, f"http://127.0.0.1:{port}/server/panda/getJob")
    return proc


# -- a run ---------------------------------------------------------------------------

@dataclass
class Run:
    jobs_per_s: float
    get_p50_ms: float
    get_p99_ms: float
    update_p99_ms: float
    cycle_runs: dict[str, int]

    def line(self) -> str:
        runs = (f", cycle runs {min(self.cycle_runs.values())}-{max(self.cycle_runs.values())}"
                if self.cycle_runs else "")
        return (f"{self.jobs_per_s:7.0f} jobs/s, getJob p50 {self.get_p50_ms:5.1f} ms, "
                f"p99 {self.get_p99_ms:6.1f} ms, updateJob p99 {self.update_p99_ms:6.1f} ms"
                + runs)


def cycle_runs(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {name: runs for name, runs in conn.execute(sa.select(cycles.c.name,
                                                                    cycles.c.runs))}


def load(port: int, token: str, names: list[str], seconds: float, ids: Path,
         seed: int) -> dict[str, Any]:
    """Run the pilots' process against 127.0.0.1:``port``; its JSON report."""
    done = subprocess.run(
        [sys.executable, str(BENCH / "_pilots.py"), "--base", f"http://127.0.0.1:{port}",
         "--token", token, "--queues", ",".join(names), "--pilots", str(PILOTS),
         "--seconds", str(seconds), "--ids", str(ids), "--seed", str(seed)],
        capture_output=True, text=True, timeout=seconds + 120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the pilots failed: {done.stderr[-2000:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    if report["errors"]:
        raise RuntimeError(f"{report['errors']} failed calls, first: {report['first_error']}")
    return report


def run_netbroker(url: str, token: str, names: list[str], args: argparse.Namespace,
                  log: Path, ids: Path, seed: int) -> Run:
    engine = create_db_engine(url)
    add_tasks(engine, NEW_TASKS, f"new{seed}", np.random.default_rng(seed))
    with engine.begin() as conn:  # the last server is gone: its leases with it
        conn.execute(sa.update(cycles).values(holder=None, lease_expires_at=None))
    # The priorities as a service running all along keeps them: its last pass a moment
    # ago, not before the reference's run (the jobs aged meanwhile; a first pass would
    # rewrite tens of thousands of rows that no steady state rewrites at once).
    recompute(engine, Settings().priority)
    port = free_port()
    proc = start_netbroker(url, port, args.workers, args.seconds / 4, log)
    try:
        before = cycle_runs(engine)
        report = load(port, token, names, args.seconds, ids, seed)
        after = cycle_runs(engine)
    finally:
        stop(proc)
        engine.dispose()
    runs = {name: after.get(name, 0) - before.get(name, 0) for name in CYCLES}
    return Run(report["jobs_per_s"], report["get_p50_ms"], report["get_p99_ms"],
               report["update_p99_ms"], runs)


def run_reference(url: str, token: str, names: list[str], args: argparse.Namespace,
                  log: Path, ids: Path, seed: int) -> Run:
    port = free_port()
    proc = start_reference(url, port, args.ref_workers, log)
    try:
        report = load(port, token, names, args.seconds, ids, seed)
    finally:
        stop(proc)
    return Run(report["jobs_per_s"], report["get_p50_ms"], report["get_p99_ms"],
               report["update_p99_ms"], {})


def duplicates(ids: Path) -> int:
    """PandaIDs in ``ids`` handed out more than once."""
    got = array.array("q")
    if ids.exists():
        got.frombytes(ids.read_bytes())
    values = np.frombuffer(got, dtype=np.int64) if len(got) else np.zeros(0, np.int64)
    return int(len(values) - len(np.unique(values)))


def measure(backend: str, url: str, n_jobs: int, n_queues: int, args: argparse.Namespace
            ) -> tuple[list[Run], list[Run]]:
    """Prepare, then alternate netbroker and the reference ``args.rounds`` times each."""
    print(f"dispatch.{backend}: {n_jobs} jobs, {n_queues} queues", file=sys.stderr)
    token, names = prepare(url, n_jobs, n_queues)
    folder = scratch_path("logs")
    folder.mkdir()
    ours, theirs = [], []
    for r in range(args.rounds):
        # ABBA: a drift over the rounds meets both sides alike.
        order = ("netbroker", "reference") if r % 2 == 0 else ("reference", "netbroker")
        for side in order:
            if side == "netbroker":
                run = run_netbroker(url, token, names, args, folder / "netbroker.log",
                                    folder / "netbroker.ids", 100 + r)
                ours.append(run)
            else:
                run = run_reference(url, token, names, args, folder / "reference.log",
                                    folder / "reference.ids", 200 + r)
                theirs.append(run)
            print(f"  {side:9s} {run.line()}", file=sys.stderr)
    twice = [{name: n for name, n in r.cycle_runs.items() if n < args.min_cycle_runs}
             for r in ours]  # per run, the cycles that ran too few times
    lost = {side: duplicates(folder / f"{side}.ids") for side in ("netbroker", "reference")}
    if any(lost.values()):
        sys.exit(f"dispatch.{backend}: jobs handed out twice: {lost}")
    if any(min(r.cycle_runs.values()) < args.min_cycle_runs for r in ours):
        log_tail = (folder / "netbroker.log").read_text(errors="replace")[-3000:]
        sys.exit(f"dispatch.{backend}: a cycle ran fewer than twice in a run: {twice}\n"
                 f"{log_tail}")
    return ours, theirs


def emit_pair(name: str, ours: list[Run], theirs: list[Run], p99: bool = True) -> None:
    if min(max(r.jobs_per_s for r in ours), max(r.jobs_per_s for r in theirs)) <= 0:
        sys.exit(f"{name}: a side handed out no job after its warm-up (the queues ran dry): "
                 "raise --jobs")
    emit(name, max(r.jobs_per_s for r in ours), "jobs/s",
         max(r.jobs_per_s for r in theirs), ">= 0.7 of the lean reference")
    if p99:
        emit(f"{name}.p99_ms", min(r.get_p99_ms for r in ours), "ms",
             min(r.get_p99_ms for r in theirs), "<= 2 x the reference's getJob p99")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2,
                        help="netbroker serve --workers (default 2: the reference's, and "
                        "the issue's deployed shape on two cores)")
    parser.add_argument("--ref-workers", type=int, default=2)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    parser.add_argument("--min-cycle-runs", type=int, default=2,
                        help="fail when a cycle ran fewer times in a measured run (the "
                        "smoke test's tiny runs: 0)")
    parser.add_argument("--grid-scale", action="store_true",
                        help="also dispatch.postgresql.1m: 1,000,000 jobs over 1,000 queues")
    args = parser.parse_args()
    if args.only != "postgresql":
        ours, theirs = measure("sqlite", f"sqlite:///{scratch_path('dispatch.db')}",
                               args.jobs, args.queues, args)
        emit_pair("dispatch.sqlite", ours, theirs)
    if args.only == "sqlite":
        return
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        print("no PostgreSQL binaries: dispatch.postgresql skipped", file=sys.stderr)
        return
    with PostgresCluster(bin_dir) as pg:
        ours, theirs = measure("postgresql", pg.url(), args.jobs, args.queues, args)
        emit_pair("dispatch.postgresql", ours, theirs)
    if args.grid_scale:
        with PostgresCluster(bin_dir) as pg:
            big, big_ref = measure("postgresql.1m", pg.url(), 1_000_000, 1_000, args)
        emit("dispatch.postgresql.1m", max(r.jobs_per_s for r in big), "jobs/s",
             max(r.jobs_per_s for r in ours), ">= 0.8 of the 200k rate (reference at 1m: "
             f"{max(r.jobs_per_s for r in big_ref):.0f} jobs/s)")


if __name__ == "__main__":
    main()
