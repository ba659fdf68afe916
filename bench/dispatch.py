"""dispatch.postgresql and dispatch.sqlite: a full job cycle per second through HTTP.

For each backend: start ``netbroker serve`` (uvicorn, 2 workers) on a fresh
database holding the sample grid and N activated jobs (default 200,000) on
one queue; then drive 64 concurrent pilots (asyncio streams, keep-alive) doing getJob
and the final updateJob over the PanDA wire protocol for a fixed time, and,
with the same client and concurrency, the server's trivial ``/healthz``,
the two in turn in four slices each. Prints the best slice's jobs/s and its
ratio to the best slice's trivial request rate.

    python bench/dispatch.py [--jobs N] [--seconds S] [--only sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from _common import ROOT, emit, scratch_path

from netbroker import registry
from netbroker.auth import create_token
from netbroker.db import create_db_engine, upgrade
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.pgcluster import PostgresCluster, find_postgres_bin
from netbroker.db.schema import JobStatus, queues, utcnow

QUEUE = "DESY-HH"
PILOTS = 64
ROUNDS = 4  # each rate measured in this many slices, in turn with the other's


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


class _Connection:
    """One keep-alive HTTP/1.1 connection of a load pilot: a request out, an answer in.

    The load client shares the two cores with the server, so it is the
    leanest one that still speaks real HTTP over real sockets: requests are
    bytes made once per kind, an answer is its status line, headers and a
    ``Content-Length`` body. (aiohttp cost ~350 us of client CPU per request
    here, as much as the server's framework; httpx's async pool slowed to
    ~150 requests/s at 64 connections.)
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length = int(head[9:12]), 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


async def drive(base: str, seconds: float, cycle: bool, token: str = "") -> float:
    """Operations per second over ``seconds``: job cycles, or /healthz requests,
    by :data:`PILOTS` concurrent pilots each on its own keep-alive connection."""
    host, port = base.removeprefix("http://").split(":")
    headers = {"Host": f"{host}:{port}", "Accept": "application/json",
               "Authorization": f"Bearer {token}"}
    form = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
    health = _request("GET", "/healthz", headers)
    get_job = _request("POST", "/server/panda/getJob", form,
                       urlencode({"computingElement": QUEUE, "diskSpace": "50000",
                                  "mem": "4000"}).encode())
    done = 0
    stop_at = time.monotonic() + seconds

    async def pilot() -> None:
        nonlocal done
        connection = _Connection(*await asyncio.open_connection(host, int(port)))
        try:
            while time.monotonic() < stop_at:
                if not cycle:
                    status, _ = await connection.request(health)
                    assert status == 200, status
                    done += 1
                    continue
                status, body = await connection.request(get_job)
                job = orjson.loads(body)
                assert status == 200, (status, job)
                if job["StatusCode"] != 0:
                    return
                status, body = await connection.request(_request(
                    "POST", "/server/panda/updateJob", form, urlencode({
                        "jobId": str(job["PandaID"]), "state": "finished",
                        "transExitCode": "0"}).encode()))
                assert status == 200 and orjson.loads(body)["StatusCode"] == 0, body
                done += 1
        finally:
            connection.writer.close()

    started = time.monotonic()
    await asyncio.gather(*(pilot() for _ in range(PILOTS)))
    return done / (time.monotonic() - started)


def _run(load: Coroutine[Any, Any, float]) -> float:
    """Run the load on uvloop when it is there: the client shares the two cores
    with the server, and a cheaper client leaves more of them to it."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(load)
    return uvloop.run(load)


def measure(name: str, url: str, n: int, seconds: float) -> None:
    token = prepare(url, n)
    proc, base = serve(url)
    trivial_rates, job_rates = [], []
    try:
        # In turn, ROUNDS times: a shared host's slow spells drift over
        # seconds, and alternating exposes both rates to the same ones.
        for _ in range(ROUNDS):
            trivial_rates.append(_run(drive(base, seconds / 2 / ROUNDS, cycle=False,
                                            token=token)))
            job_rates.append(_run(drive(base, seconds / ROUNDS, cycle=True, token=token)))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"dispatch.{name}: jobs/s by round {[round(r) for r in job_rates]}, "
          f"/healthz/s {[round(r) for r in trivial_rates]}", file=sys.stderr)
    emit(f"dispatch.{name}", max(job_rates), "jobs/s", max(trivial_rates),
         ">= 0.5 (and >= 1000 jobs/s on PG)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--only", choices=["sqlite", "postgresql"])
    args = parser.parse_args()
    if args.only != "postgresql":
        measure("sqlite", f"sqlite:///{scratch_path('dispatch.db')}", args.jobs, args.seconds)
    if args.only != "sqlite":
        bin_dir = find_postgres_bin()
        if bin_dir is None:
            print("no PostgreSQL binaries: dispatch.postgresql skipped", file=sys.stderr)
            return
        with PostgresCluster(bin_dir) as pg:
            measure("postgresql", pg.url(), args.jobs, args.seconds)


if __name__ == "__main__":
    main()
