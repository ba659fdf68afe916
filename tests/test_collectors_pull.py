"""Pull collectors against real HTTP archives on 127.0.0.1, and the cycle scheduler."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.pull import pull_all
from netbroker.common.config import CollectorSettings
from netbroker.common.enums import utcnow
from netbroker.db.cycles import CycleDB
from netbroker.db.schema import metric_samples
from netbroker.service.scheduler import Cycle, build_scheduler, run_cycle
from tests.factories import recent_fts_lines

DATA = Path(__file__).parent / "data"


class Archive(BaseHTTPRequestHandler):
    """Serves an FTS stream, an esmond archive, a flaky URL and a broken one."""

    bundle = json.loads((DATA / "perfsonar" / "esmond_bundle.json").read_text())
    fts = recent_fts_lines()
    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        Archive.hits[path] = Archive.hits.get(path, 0) + 1
        if path == "/fts.jsonl" or (path == "/flaky.jsonl" and Archive.hits[path] > 1):
            self._send(200, self.fts)
        elif path == "/esmond/perfsonar/archive/":
            self._send(200, json.dumps(self.bundle["metadata"]).encode())
        elif path in self.bundle["data"]:
            self._send(200, json.dumps(self.bundle["data"][path]).encode())
        elif path.startswith("/esmond/perfsonar/archive/"):
            self._send(200, b"[]")
        else:
            self._send(503, b"unavailable")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def archive() -> Iterator[str]:
    Archive.hits = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), Archive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_one_pull_reads_every_archive_and_survives_the_broken_ones(grid_engine: Engine,
                                                                   archive: str) -> None:
    settings = CollectorSettings(
        fts_urls=[f"{archive}/fts.jsonl", f"{archive}/flaky.jsonl", f"{archive}/down.jsonl"],
        esmond_urls=[f"{archive}/esmond/perfsonar/archive/"],
        nws_urls=["http://127.0.0.1:9/nothing-listens-here"],
        http_retries=1, http_timeout_s=5)
    results = {r.url.rsplit("/", 1)[-1]: r for r in pull_all(grid_engine, settings)}
    assert results["fts.jsonl"].report.stored == 10
    assert results["flaky.jsonl"].report.duplicates == 10  # retried, then read again
    assert Archive.hits["/flaky.jsonl"] == 2
    assert "503 Server Error" in results["down.jsonl"].error
    assert results["nothing-listens-here"].error.startswith("ConnectionError")
    esmond = results[""].report
    assert (esmond.samples > 0 and esmond.rejected == []) or esmond.samples > 0
    # the event types netbroker reads were fetched, the others were not
    assert any(p.endswith("/throughput/base") for p in Archive.hits)
    assert not any(p.endswith("/packet-retransmits/base") for p in Archive.hits)


def test_a_cycle_runs_only_under_its_lease(engine: Engine) -> None:
    ran: list[str] = []
    cycle = Cycle("collect", 60, lambda _: ran.append("x"))
    assert run_cycle(engine, cycle, "host-a:1")
    assert not run_cycle(engine, cycle, "host-b:2")  # a holds it for two periods
    assert run_cycle(engine, cycle, "host-a:1")  # the holder renews
    assert ran == ["x", "x"]
    with engine.begin() as conn:
        db = CycleDB(conn)
        later = utcnow().replace(year=utcnow().year + 1)
        assert db.try_lease("collect", "host-b:2", later, 60)  # a's lease ran out
        (row,) = db.list_cycles()
    assert (row["runs"], row["failures"], row["holder"]) == (2, 0, "host-b:2")


def test_a_failing_cycle_is_recorded_not_raised(engine: Engine) -> None:
    def broken(_: Engine) -> None:
        raise RuntimeError("archive answered nonsense")

    assert run_cycle(engine, Cycle("collect", 60, broken), "me")
    with engine.connect() as conn:
        (row,) = CycleDB(conn).list_cycles()
    assert row["failures"] == 1 and "archive answered nonsense" in row["last_error"]
    assert row["last_duration_s"] >= 0


def test_the_scheduler_runs_its_cycles(engine: Engine) -> None:
    done = threading.Event()
    scheduler = build_scheduler(engine, [Cycle("tick", 3600, lambda _: done.set())], "me")
    scheduler.start()
    try:
        assert done.wait(10), "the first run starts at once"
    finally:
        scheduler.shutdown(wait=True)
    with engine.connect() as conn:
        assert CycleDB(conn).list_cycles()[0]["runs"] == 1


# --- esmond: metadata, then each series by time range, resuming; pScheduler runs -------------

PERFSONAR = DATA / "perfsonar"
ESMOND_METADATA = json.loads((PERFSONAR / "esmond_metadata.json").read_text())
ESMOND_POINTS = {urlsplit(uri).path.rstrip("/"): points for uri, points in json.loads(
    (PERFSONAR / "esmond_summaries_bundle.json").read_text())["data"].items()}
NOW_S = 1763700000.0  # a day after the points
AVERAGES = ("/esmond/perfsonar/archive/a1b2c3d4e5f60718293a4b5c6d7e8f90/throughput/averages/"
            "86400")


class Esmond(BaseHTTPRequestHandler):
    """An esmond archive: its metadata (paged), each series' points from ``time-start``."""

    asked: ClassVar[list[tuple[str, dict[str, str]]]] = []
    points: ClassVar[dict[str, list[dict[str, object]]]] = {}

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query))
        Esmond.asked.append((url.path, params))
        if url.path == "/esmond/perfsonar/archive/":
            start, limit = int(params.get("offset", 0)), int(params.get("limit", 1000))
            self._send(ESMOND_METADATA[start:start + limit])
            return
        since = float(params.get("time-start", 0))
        self._send([p for p in Esmond.points.get(url.path.rstrip("/"), [])
                    if float(str(p["ts"])) >= since])

    def _send(self, answer: object) -> None:
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def esmond_archive() -> Iterator[str]:
    Esmond.asked = []
    Esmond.points = {path: list(points) for path, points in ESMOND_POINTS.items()}
    yield from serve(Esmond)


def test_an_esmond_pull_reads_metadata_then_every_series_read_base_and_summaries(
        grid_engine: Engine, esmond_archive: str) -> None:
    settings = CollectorSettings(esmond_urls=[f"{esmond_archive}/esmond/perfsonar/archive/"],
                                 esmond_time_range_s=7 * 86400, http_retries=0)
    (result,) = pull_all(grid_engine, settings, now_s=NOW_S)
    assert result.error is None and result.errors == ()
    paths = [path for path, _ in Esmond.asked]
    # 1 metadata page, then the series of the event types read, as the metadata lists
    # them: throughput 2 (base, averages; not its aggregations, sums of rates) + 1 (the
    # unregistered host's), histogram-owdelay 4, packet-loss-rate 2, packet-count-lost 2
    # and -sent 2, rtt 1
    assert result.requests == len(paths) == 1 + 14
    assert not any("/failures/" in p or "/histogram-ttl/" in p or "-bidir" in p
                   or "/throughput/aggregations/" in p for p in paths)
    first_series = dict(Esmond.asked[1:])
    averages = AVERAGES
    assert first_series[averages] == {"time-start": str(int(NOW_S - 7 * 86400))}
    records = result.report.records
    # what the bundle of these answers holds (tests/test_ingest_accounting.py), but for the
    # series never asked for: the throughput aggregations, histogram-ttl's, the key no
    # metadata has
    assert (records.read, records.stored, records.unmapped, records.rejected,
            records.not_a_link) == (16, 10, 2, 3, 1)


def test_the_next_esmond_pull_asks_each_series_from_where_the_last_stopped(
        grid_engine: Engine, esmond_archive: str) -> None:
    settings = CollectorSettings(esmond_urls=[f"{esmond_archive}/esmond/perfsonar/archive/"],
                                 esmond_time_range_s=7 * 86400, http_retries=0)
    pull_all(grid_engine, settings, now_s=NOW_S)
    averages = AVERAGES
    Esmond.points[averages].append({"ts": 1763683200, "val": 7.2e9})  # a new day's average
    Esmond.asked = []
    (again,) = pull_all(grid_engine, settings, now_s=NOW_S + 3600)
    asked = dict(Esmond.asked)
    assert asked["/esmond/perfsonar/archive/"]["time-start"] == str(int(NOW_S) + 1)
    assert asked[averages] == {"time-start": str(1763596800 + 1)}  # after the newest point read
    # a series that had no points is asked for the configured range again
    rtt_base = "/esmond/perfsonar/archive/c3d4e5f60718293a4b5c6d7e8f90a1b2/histogram-rtt/base"
    assert asked[rtt_base] == {"time-start": str(1763632900 + 1)}
    loss_base = ("/esmond/perfsonar/archive/b2c3d4e5f60718293a4b5c6d7e8f90a1/"
                 "packet-loss-rate/base")
    assert asked[loss_base] == {"time-start": str(int(NOW_S + 3600 - 7 * 86400))}
    records = again.report.records
    assert (records.read, records.stored) == (1, 1)  # only the new average: 7.2e9 bits/s
    with grid_engine.connect() as conn:
        (value,) = conn.execute(sa.select(metric_samples.c.value).where(
            metric_samples.c.origin_id.like("%:average/86400:1763683200"))).scalars()
    assert value == 900.0


def test_a_backfill_pull_asks_every_series_from_its_start(grid_engine: Engine,
                                                          esmond_archive: str) -> None:
    settings = CollectorSettings(esmond_urls=[f"{esmond_archive}/esmond/perfsonar/archive/"],
                                 esmond_time_range_s=7 * 86400, http_retries=0)
    pull_all(grid_engine, settings, now_s=NOW_S)
    Esmond.asked = []
    (again,) = pull_all(grid_engine, settings, since_s=1763000000, now_s=NOW_S + 10 * 86400)
    assert {params["time-start"] for _, params in Esmond.asked} == {"1763000000"}
    assert again.report.kept_from_s == 1763000000
    # everything again: the 10 stored before are duplicates now
    assert again.report.records.duplicate == 10


RUN_BASE = "/pscheduler/tasks/1f0c0001-aaaa-4bbb-8ccc-000000000001"
TASK = {"schema": 1, "test": {"type": "throughput", "spec": {
    "source": "perfsonar-bw.desy.de", "dest": "ps-bandwidth.cern.ch", "duration": "PT30S"}},
    "tool": "iperf3"}


def _run(n: int, start: str, end: str, state: str, bits: float | None) -> dict[str, object]:
    return {"start-time": start, "end-time": end, "state": state,
            "participants": ["perfsonar-bw.desy.de", "ps-bandwidth.cern.ch"],
            "result-merged": None if bits is None else {
                "succeeded": True, "summary": {"summary": {"throughput-bits": bits}}},
            "run": n}


class PScheduler(BaseHTTPRequestHandler):
    """A pScheduler server: a task's runs listing (from ``start``), each run, the task."""

    asked: ClassVar[list[tuple[str, dict[str, str]]]] = []
    runs: ClassVar[dict[str, dict[str, object]]] = {}

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = dict(parse_qsl(url.query))
        PScheduler.asked.append((url.path, params))
        root = f"http://{self.headers['Host']}"
        if url.path == f"{RUN_BASE}/runs":
            since = params.get("start")
            self._send([f"{root}{RUN_BASE}/runs/{rid}" for rid, run in PScheduler.runs.items()
                        if since is None or _iso_s(str(run["start-time"])) >= _iso_s(since)])
        elif url.path == RUN_BASE:
            self._send(TASK)
        else:
            rid = url.path.rsplit("/", 1)[-1]
            self._send({**PScheduler.runs[rid], "href": f"{root}{url.path}",
                        "task-href": f"{root}{RUN_BASE}"})

    _send = Esmond._send
    log_message = Esmond.log_message


def _iso_s(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture
def pscheduler_archive() -> Iterator[str]:
    PScheduler.asked = []
    PScheduler.runs = {
        "r1": _run(1, "2025-11-20T10:00:05Z", "2025-11-20T10:00:36Z", "finished", 9.6e9),
        "r2": _run(2, "2025-11-20T16:00:05Z", "2025-11-20T16:00:36Z", "finished", 4.8e9),
        "r3": _run(3, "2025-11-20T22:00:05Z", "2025-11-20T22:00:36Z", "pending", None)}
    yield from serve(PScheduler)


def test_a_pscheduler_pull_reads_each_run_with_its_task_and_resumes_at_the_open_one(
        grid_engine: Engine, pscheduler_archive: str) -> None:
    settings = CollectorSettings(pscheduler_urls=[f"{pscheduler_archive}{RUN_BASE}/runs"],
                                 http_retries=0)
    (first,) = pull_all(grid_engine, settings, now_s=NOW_S)
    # the listing, 3 runs, the task once
    assert [p for p, _ in PScheduler.asked].count(RUN_BASE) == 1
    assert first.requests == 5
    r = first.report.records
    assert (r.read, r.stored, r.rejected) == (3, 2, 1)  # r3 is pending: no result yet
    with grid_engine.connect() as conn:
        values = sorted(conn.execute(sa.select(metric_samples.c.value)).scalars())
    assert values == [600.0, 1200.0]  # 4.8e9 and 9.6e9 bits/s
    PScheduler.runs["r3"].update(state="finished", **{"result-merged": {
        "succeeded": True, "summary": {"summary": {"throughput-bits": 2.4e9}}}})
    PScheduler.asked = []
    (second,) = pull_all(grid_engine, settings, now_s=NOW_S + 600)
    listing = PScheduler.asked[0]
    assert listing == (f"{RUN_BASE}/runs", {"start": "2025-11-20T22:00:05+00:00"})
    assert (second.report.records.read, second.report.records.stored) == (1, 1)
    PScheduler.asked = []
    pull_all(grid_engine, settings, now_s=NOW_S + 1200)
    assert PScheduler.asked[0][1] == {"start": "2025-11-20T22:00:06+00:00"}  # after r3


def test_cycles_run_two_at_a_time_on_niced_threads(engine: Engine) -> None:
    """Three cycles due at once: never more than two run together, and each runs on
    a thread niced below the service's (Linux: nice is per thread)."""
    import os

    from netbroker.service.scheduler import CONCURRENT_CYCLES, CYCLE_NICENESS

    lock, running, most, nice = threading.Lock(), [0], [0], []
    finished = threading.Semaphore(0)

    def job(_: Engine) -> None:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
            nice.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        threading.Event().wait(0.3)
        with lock:
            running[0] -= 1
        finished.release()

    scheduler = build_scheduler(engine, [Cycle(f"c{k}", 3600, job) for k in range(3)], "me")
    scheduler.start()
    try:
        for _ in range(3):
            assert finished.acquire(timeout=30)
    finally:
        scheduler.shutdown(wait=True)
    assert most[0] == CONCURRENT_CYCLES == 2
    assert set(nice) == {min(19, os.getpriority(os.PRIO_PROCESS, 0) + CYCLE_NICENESS)}
