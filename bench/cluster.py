"""cluster.dispatch.N: pilots' job cycles per second through HAProxy, 1, 2 and 3 servers.

The deployed shape (``netbroker.ops.cluster.LocalCluster``, ``deploy/``): N
``netbroker serve`` processes over one PostgreSQL, every cycle scheduled
on each (the leases make one server run each), behind Debian's HAProxy
with ``deploy/haproxy.cfg``. The database is ``bench/dispatch.py``'s
(the sample grid, tasks, ``--jobs`` activated jobs over ``--queues``
queues with random priorities) and the load its pilots' process
(``bench/_pilots.py``: 64 pilots on keep-alive connections, getJob then
the final updateJob, PanDA form POSTs with a token).

On a 2-core machine N servers share the same two cores with the database
and the load, so more servers cannot be faster: the point is that the
balanced shape loses no call and hands no job out twice, what the
balancer costs, and where the time goes. So for each N:

- ``cluster.dispatch.N``: jobs/s through the balancer; its baseline is
  one server reached directly (no balancer) on the same data, measured
  in the same round, alternated; the ratio is what the extra hop and the
  extra processes cost;
- ``cluster.dispatch.N.db_cpu``: the share of the CPU time spent in the
  run (servers + database) that PostgreSQL took (baseline 1): when it
  nears the whole, more servers cannot help and the database is the limit.

Any failed call, a job handed out twice, or a cycle that ran on two
servers at once (its log lines' holder and times) ends the bench with
exit 1.

    python bench/cluster.py [--jobs N] [--queues Q] [--seconds S] [--rounds R]
        [--servers 1,2,3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from _common import emit, scratch_path
from dispatch import cycle_env, duplicates, load, prepare, stop

from netbroker.db import create_db_engine
from netbroker.db.pgcluster import PostgresCluster, find_postgres_bin
from netbroker.ops.cluster import LocalCluster, free_port
from netbroker.ops.drill import start_service

CLOCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int, children: bool = True) -> float:
    """CPU seconds of process ``pid``, with those of its children that ended
    (``cutime``/``cstime``) when ``children``; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLOCK


def tree_cpu_s(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant (ended ones through their
    parents' ``cutime``). O(number of processes on the machine)."""
    parent_of: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                stat = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat[1])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parent_of.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(cpu_s(pid) for pid in tree)


def postmaster_pid(pg: PostgresCluster) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


def overlapping_cycles(logs: list[Path]) -> list[str]:
    """Cycle runs (from the servers' JSON log lines) that overlapped another run of the
    same cycle on another server; empty when each cycle ran on one server at a time."""
    runs: dict[str, list[tuple[float, float, str]]] = {}
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if "holder" in entry and str(entry.get("message", "")).endswith(" ran"):
                runs.setdefault(entry["cycle"], []).append(
                    (datetime.fromisoformat(entry["started"]).timestamp(),
                     datetime.fromisoformat(entry["finished"]).timestamp(),
                     str(entry["holder"])))
    found = []
    for cycle, spans in runs.items():
        spans.sort()
        for (_, a1, ha), (b0, _, hb) in itertools.pairwise(spans):
            if b0 < a1 and ha != hb:
                found.append(f"{cycle}: {ha} until {a1:.3f}, {hb} from {b0:.3f}")
    return found


def run_cluster(url: str, pg: PostgresCluster, n: int, token: str, names: list[str],
                args: argparse.Namespace, ids: Path, seed: int) -> tuple[dict[str, Any], float]:
    """One measured run through HAProxy with ``n`` servers; the load's report and the
    database's share of the CPU."""
    work = scratch_path(f"cluster{n}")
    work.mkdir()
    settings = {**cycle_env(args.seconds / 4), "NETBROKER_SERVICE_LOG_FORMAT": "json",
                "NETBROKER_SERVICE_LOG_LEVEL": "info"}
    with LocalCluster(url, work, n=n, settings=settings) as cluster:
        servers = [p.pid for p in cluster.processes.values()]
        db_before = tree_cpu_s(postmaster_pid(pg))
        ours_before = sum(tree_cpu_s(pid) for pid in servers)
        report = load(cluster.front_port, token, names, args.seconds, ids, seed)
        db = tree_cpu_s(postmaster_pid(pg)) - db_before
        ours = sum(tree_cpu_s(pid) for pid in servers) - ours_before
        logs = [cluster.log_of(name) for name in cluster.servers]
    overlaps = overlapping_cycles(logs)
    if overlaps:
        sys.exit(f"cluster.dispatch.{n}: a cycle ran on two servers at once: {overlaps[:3]}")
    return report, db / max(1e-9, db + ours)


def print_sizes(url: str, n_jobs: int) -> None:
    """The jobs' bytes on disk per job (table and indexes), for docs/scaling.md."""
    engine = create_db_engine(url)
    with engine.connect() as conn:
        for table in ("jobs", "job_files"):
            total, heap = conn.execute(sa.text(
                "SELECT pg_total_relation_size(:t), pg_relation_size(:t)"), {"t": table}).one()
            print(f"  {table}: {total / n_jobs:.0f} bytes per activated job "
                  f"({heap / n_jobs:.0f} of them the table's own)", file=sys.stderr)
    engine.dispose()


def run_direct(url: str, token: str, names: list[str], args: argparse.Namespace, ids: Path,
               seed: int) -> dict[str, Any]:
    """One measured run against a single server, no balancer."""
    work = scratch_path("direct")
    work.mkdir()
    port = free_port()
    process = start_service(url, port, work / "server.log", cycles=True,
                            settings=cycle_env(args.seconds / 4))
    try:
        return load(port, token, names, args.seconds, ids, seed)
    finally:
        stop(process)


def dry(report: dict[str, Any], what: str) -> None:
    """Say when a run's pilots found queues empty: its rate then counts the pilots'
    idle asks, not dispatch (the jobs of the runs before it are gone)."""
    if report["empty"]:
        print(f"  ({what}: {report['empty']} getJob calls found their queue empty; "
              f"raise --jobs for a fair rate)", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=250_000)
    parser.add_argument("--queues", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--servers", default="1,2,3")
    args = parser.parse_args()
    bin_dir = find_postgres_bin()
    if bin_dir is None or shutil.which("haproxy") is None:
        sys.exit("cluster: needs PostgreSQL's binaries and haproxy (Debian: apt-get install "
                 "postgresql haproxy)")
    counts = [int(n) for n in args.servers.split(",")]
    with PostgresCluster(bin_dir) as pg:
        url = pg.url()
        token, names = prepare(url, args.jobs, args.queues)
        print_sizes(url, args.jobs)
        ids = scratch_path("handed-out.ids")
        best: dict[int, float] = {}
        share: dict[int, float] = {}
        direct = 0.0
        seed = 0
        for r in range(args.rounds):
            seed += 1  # the baseline first: every run of a round meets a full table
            report = run_direct(url, token, names, args, ids, seed)
            dry(report, "1 server, direct")
            print(f"  1 server, direct:     {report['jobs_per_s']:7.0f} jobs/s, getJob p99 "
                  f"{report['get_p99_ms']:6.1f} ms", file=sys.stderr)
            direct = max(direct, report["jobs_per_s"])
            for n in counts if r % 2 == 0 else reversed(counts):
                seed += 1
                report, db_share = run_cluster(url, pg, n, token, names, args, ids, seed)
                dry(report, f"{n} server(s)")
                print(f"  {n} server(s) via haproxy: {report['jobs_per_s']:7.0f} jobs/s, "
                      f"getJob p99 {report['get_p99_ms']:6.1f} ms, database "
                      f"{db_share:.0%} of the CPU", file=sys.stderr)
                if report["jobs_per_s"] > best.get(n, 0.0):
                    best[n], share[n] = report["jobs_per_s"], db_share
            time.sleep(0.5)
        if direct <= 0 or min(best.values()) <= 0:
            sys.exit("cluster: a run handed out no job (the queues ran dry): raise --jobs")
        twice = duplicates(ids)
        if twice:
            sys.exit(f"cluster: {twice} jobs handed out twice")
    for n in counts:
        emit(f"cluster.dispatch.{n}", best[n], "jobs/s", direct,
             "no failed call, no job twice (2 cores: no speed-up expected)")
        emit(f"cluster.dispatch.{n}.db_cpu", share[n], "share of CPU", 1.0,
             "informational: near 1, the database is the limit")


if __name__ == "__main__":
    main()
