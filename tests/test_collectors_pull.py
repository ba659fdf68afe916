"""Pull collectors against real HTTP archives on 127.0.0.1, and the cycle scheduler."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

import pytest
from sqlalchemy.engine import Engine

from collectors.pull import pull_all
from netbroker.config import CollectorSettings
from netbroker.db.cycles import CycleDB
from netbroker.db.schema import utcnow
from netbroker.scheduler import Cycle, build_scheduler, run_cycle
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


def test_cycles_run_two_at_a_time_on_niced_threads(engine: Engine) -> None:
    """Three cycles due at once: never more than two run together, and each runs on
    a thread niced below the service's (Linux: nice is per thread)."""
    import os

    from netbroker.scheduler import CONCURRENT_CYCLES, CYCLE_NICENESS

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
