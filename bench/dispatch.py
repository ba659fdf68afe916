"""dispatch.postgresql and dispatch.sqlite: a full job cycle per second through HTTP.

For each backend: start ``netbroker serve`` (uvicorn, 2 workers) on a fresh
database holding the sample grid and N activated jobs (default 200,000) on
one queue; then drive 64 concurrent pilots (asyncio + aiohttp) doing getJob
and the final updateJob over the PanDA wire protocol for a fixed time, and,
with the same client and concurrency, the server's trivial ``/healthz``.
Prints jobs/s and its ratio to the trivial request rate.

    python bench/dispatch.py [--jobs N] [--seconds S] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx
from _common import ROOT, emit

from netbroker import registry
from netbroker.auth import create_token
from netbroker.db import create_db_engine, upgrade
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.pgcluster import PostgresCluster, find_postgres_bin
from netbroker.db.schema import JobStatus, queues, utcnow

QUEUE = "DESY-HH"
PILOTS = 64


def prepare(url: str, n: int) -> str:
    """The database with ``n`` activated jobs; returns a pilot token for the load."""
    engine = create_db_engine(url)
    upgrade(engine)
    registry.import_grid_file(engine, registry.sample_grid_path())
    token = create_token(engine, "bench-pilots", "pilot")
    with engine.begin() as conn:
        queue_id = GridDB(conn).ids(queues)[QUEUE]
        for start in range(0, n, 20_000):
            JobDB(conn).add_jobs([
                {"name": f"bench-{i}", "status": JobStatus.ACTIVATED, "queue_id": queue_id,
                 "prod_source_label": "managed", "priority": i % 1000, "cores": 1,
                 "min_ram_mb": 1000, "max_disk_mb": 1000, "max_walltime_s": 3600,
                 "transformation": "run.sh", "job_pars": ""}
                for i in range(start, min(n, start + 20_000))], utcnow())
    engine.dispose()
    return token


def serve(url: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "NETBROKER_DATABASE_URL": url, "NETBROKER_SERVICE_RUN_CYCLES": "0",
           "NETBROKER_SERVICE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "netbroker", "serve", "--port", str(port),
                             "--workers", "2"], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("netbroker serve did not come up")


async def drive(base: str, seconds: float, cycle: bool, token: str = "") -> float:
    """Operations per second over ``seconds``: job cycles, or /healthz requests.

    The client is aiohttp: httpx's async pool slows to ~150 requests/s at 64
    connections on this machine, which would measure the client, not us.
    """
    done = 0
    stop_at = time.monotonic() + seconds
    headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=PILOTS)
    async with aiohttp.ClientSession(base, connector=connector, headers=headers) as client:

        async def pilot() -> None:
            nonlocal done
            while time.monotonic() < stop_at:
                if not cycle:
                    async with client.get("/healthz") as answer:
                        answer.raise_for_status()
                    done += 1
                    continue
                async with client.post("/server/panda/getJob", data={
                        "computingElement": QUEUE, "diskSpace": "50000", "mem": "4000"}) as got:
                    job = await got.json()
                if job["StatusCode"] != 0:
                    return
                async with client.post("/server/panda/updateJob", data={
                        "jobId": str(job["PandaID"]), "state": "finished",
                        "transExitCode": "0"}) as answer:
                    answer.raise_for_status()
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(pilot() for _ in range(PILOTS)))
        return done / (time.monotonic() - started)


def measure(name: str, url: str, n: int, seconds: float) -> None:
    token = prepare(url, n)
    proc, base = serve(url)
    try:
        trivial = asyncio.run(drive(base, seconds / 2, cycle=False, token=token))
        jobs = asyncio.run(drive(base, seconds, cycle=True, token=token))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    emit(f"dispatch.{name}", jobs, "jobs/s", trivial, ">= 0.5 (and >= 1000 jobs/s on PG)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    if args.only != "postgresql":
        path = Path(tempfile.mkdtemp(prefix="netbroker-dispatch-")) / "dispatch.db"
        measure("sqlite", f"sqlite:///{path}", args.jobs, args.seconds)
    if args.only != "sqlite":
        bin_dir = find_postgres_bin()
        if bin_dir is None:
            print("no PostgreSQL binaries: dispatch.postgresql skipped", file=sys.stderr)
            return
        with PostgresCluster(bin_dir) as pg:
            measure("postgresql", pg.url(), args.jobs, args.seconds)


if __name__ == "__main__":
    main()
