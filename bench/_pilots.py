"""The dispatch benchmark's load: pilots on the PanDA wire, in a process of their own.

``N`` pilots, each on its own keep-alive HTTP/1.1 connection, loop until the
time is up: getJob for a queue drawn at random from the list (a form POST
with the pilot's bearer token, as Pilot 3.7 sends it), then, for a job, the
final updateJob (``state=finished``). A queue found empty is left out of
that pilot's draws. The first ``--warmup`` seconds are not counted. At the
end one JSON line goes to stdout: full job cycles, seconds, getJob and
updateJob latencies (p50 and p99, ms), empty answers and errors; every
PandaID handed out (warm-up included) is appended to ``--ids`` as 64-bit
integers, so the caller can check that no job went to two pilots.

The client shares the two cores with the server, so it is the leanest one
that still speaks real HTTP over real sockets: each request's bytes made
once per queue, an answer read by its ``Content-Length``, on uvloop when
it is there. Both servers of a comparison meet the same client.

    python bench/_pilots.py --base http://127.0.0.1:PORT --token T --queues Q1,Q2 \
        [--pilots 64] [--seconds 15] [--warmup 1] [--ids FILE] [--seed 0]
"""

from __future__ import annotations

import argparse
import array
import asyncio
import json
import random
import sys
import time
from urllib.parse import urlencode


class Connection:
    """One keep-alive HTTP/1.1 connection: a request's bytes out, (status, body) in."""

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


def http_request(path: str, headers: dict[str, str], body: bytes) -> bytes:
    """A POST's bytes: request line, headers, ``Content-Length``, body."""
    lines = [f"POST {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()),
             f"Content-Length: {len(body)}", "", ""]
    return "\r\n".join(lines).encode() + body


def percentile_ms(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (seconds), in ms; 0 for none.

    >>> percentile_ms([0.001, 0.002, 0.003, 0.004], 0.5)
    3.0
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Load:
    """The pilots' shared counters and the requests they send."""

    def __init__(self, base: str, token: str, queues: list[str]) -> None:
        self.host, port = base.removeprefix("http://").split(":")
        self.port = int(port)
        self.headers = {"Host": f"{self.host}:{port}", "Accept": "application/json",
                        "Authorization": f"Bearer {token}",
                        "Content-Type": "application/x-www-form-urlencoded",
                        "User-Agent": "pilot/3.7.0 (bench)"}
        self.queues = queues
        self.get_job = {q: http_request("/server/panda/getJob", self.headers, urlencode({
            "siteName": q, "computingElement": q, "prodSourceLabel": "managed",
            "diskSpace": "50000", "mem": "4000", "node": "wn001.bench.example",
            "pilotID": "bench-pilot", "workingGroup": "", "getProxyKey": "False"}).encode())
            for q in queues}
        self.counting = False
        self.jobs = self.empty = self.errors = 0
        self.get_s: list[float] = []
        self.update_s: list[float] = []
        self.ids = array.array("q")
        self.first_error = ""
        self.trace: list[tuple[float, float, float]] | None = None

    def report(self, raw: bytes) -> bytes:
        fields = raw.decode()
        return http_request("/server/panda/updateJob", self.headers, fields.encode())

    def error(self, what: str) -> None:
        self.errors += 1
        self.first_error = self.first_error or what[:300]


async def pilot(load: Load, stop_at: float, seed: int) -> None:
    """Take and finish jobs until ``stop_at`` (monotonic s) or every queue is empty."""
    rng = random.Random(seed)
    queues = list(load.queues)
    connection = Connection(*await asyncio.open_connection(load.host, load.port))
    try:
        while queues and time.monotonic() < stop_at:
            queue = queues[rng.randrange(len(queues))]
            started = time.perf_counter()
            status, body = await connection.request(load.get_job[queue])
            got = time.perf_counter()
            if status != 200:
                load.error(f"getJob {status}: {body[:200]!r}")
                continue
            job = json.loads(body)
            if job["StatusCode"] != 0:
                if load.counting:
                    load.empty += 1
                queues.remove(queue)
                continue
            job_id = int(job["PandaID"])
            load.ids.append(job_id)
            status, body = await connection.request(load.report(urlencode({
                "jobId": str(job_id), "state": "finished", "transExitCode": "0",
                "pilotErrorCode": "0", "cpuConsumptionTime": "12", "maxRSS": "123456",
                "node": "wn001.bench.example", "siteName": queue}).encode()))
            done = time.perf_counter()
            if status != 200 or json.loads(body)["StatusCode"] != 0:
                load.error(f"updateJob {status}: {body[:200]!r}")
                continue
            if load.counting and time.monotonic() < stop_at:
                load.jobs += 1
                load.get_s.append(got - started)
                load.update_s.append(done - got)
                if load.trace is not None:
                    load.trace.append((time.time(), got - started, done - got))
    finally:
        connection.writer.close()


async def run(load: Load, pilots: int, seconds: float, warmup: float, seed: int) -> float:
    """Drive ``pilots`` pilots for ``warmup`` + ``seconds``; the counted seconds."""
    stop_at = time.monotonic() + warmup + seconds

    async def count() -> float:
        await asyncio.sleep(warmup)
        load.counting = True
        return time.monotonic()

    counter = asyncio.ensure_future(count())
    await asyncio.gather(*(pilot(load, stop_at, seed * 1000 + k) for k in range(pilots)))
    started = await counter
    return max(1e-9, min(time.monotonic(), stop_at) - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--queues", required=True, help="comma-separated queue names")
    parser.add_argument("--pilots", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--ids", help="append every PandaID handed out to this file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trace", help="write each counted job's time and latencies here")
    args = parser.parse_args()
    load = Load(args.base, args.token, args.queues.split(","))
    load.trace = [] if args.trace else None
    coroutine = run(load, args.pilots, args.seconds, args.warmup, args.seed)
    try:
        import uvloop
    except ImportError:
        seconds = asyncio.run(coroutine)
    else:
        seconds = uvloop.run(coroutine)
    if args.trace and load.trace is not None:
        with open(args.trace, "w") as out:
            out.writelines(f"{t:.4f} {g * 1000:.2f} {u * 1000:.2f}\n" for t, g, u in load.trace)
    if args.ids:
        with open(args.ids, "ab") as out:
            load.ids.tofile(out)
    print(json.dumps({
        "jobs": load.jobs, "seconds": round(seconds, 3), "jobs_per_s": load.jobs / seconds,
        "get_p50_ms": percentile_ms(load.get_s, 0.5), "get_p99_ms": percentile_ms(load.get_s, 0.99),
        "update_p50_ms": percentile_ms(load.update_s, 0.5),
        "update_p99_ms": percentile_ms(load.update_s, 0.99),
        "handed_out": len(load.ids), "empty": load.empty, "errors": load.errors,
        "first_error": load.first_error}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
