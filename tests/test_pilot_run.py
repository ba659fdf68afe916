"""The netbroker pilot running real payloads against a real dispatcher on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from netbroker.db.jobs import JobDB
from tests.conftest import LiveServer
from tests.test_dispatcher import add_jobs


def pilot(url: str, workdir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "pilot.main", "run", "--server", url,
                             "--queue", "DESY-HH", "--workdir", str(workdir),
                             "--heartbeat-s", "0.2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def job_of(engine: Engine, job_id: int) -> tuple[dict[str, object], list[str]]:
    with engine.connect() as conn:
        db = JobDB(conn)
        return db.get(job_id) or {}, [str(t["status"]) for t in db.timeline(job_id)]


@pytest.fixture
def trf_server(tmp_path: Path) -> Iterator[str]:
    """A local web server holding a transformation script."""
    root = tmp_path / "trf"
    root.mkdir()
    (root / "echo_arg.sh").write_text("#!/bin/sh\necho \"$1\" > arg.txt\ncat arg.txt\n")
    handler = lambda *a: SimpleHTTPRequestHandler(*a, directory=str(root))  # noqa: E731
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.RequestHandlerClass.log_message = lambda *a: None  # type: ignore[method-assign]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_pilot_runs_payloads_reports_outcomes_and_cleans_up(
        grid_engine: Engine, tmp_path: Path, trf_server: str) -> None:
    ok = add_jobs(grid_engine, 1, transformation="/bin/sh", priority=40,
                  job_pars="-c 'echo hello > out.txt; sleep 0.7'")[0]
    # one attempt each: a retry would be another job for this pilot to take
    failing = add_jobs(grid_engine, 1, transformation="/bin/sh", priority=30,
                       job_pars="-c 'exit 3'", max_attempts=1)[0]
    slow = add_jobs(grid_engine, 1, transformation="/bin/sh", priority=20,
                    max_walltime_s=1, job_pars="-c 'sleep 30'", max_attempts=1)[0]
    fetched = add_jobs(grid_engine, 1, transformation=f"{trf_server}/echo_arg.sh",
                       priority=10, job_pars="netbroker")[0]
    workdir = tmp_path / "work"
    workdir.mkdir()
    with LiveServer(grid_engine) as server:
        run = pilot(server.url, workdir, "--max-jobs", "5")
        output, _ = run.communicate(timeout=120)
    assert run.returncode == 0, output
    job, timeline = job_of(grid_engine, ok)
    assert (job["status"], job["exit_code"]) == ("finished", 0)
    assert timeline[:3] == ["activated", "sent", "starting"] and "running" in timeline
    assert job["cpu_time_s"] is not None
    job, _ = job_of(grid_engine, failing)
    assert (job["status"], job["exit_code"], job["pilot_error_code"]) == ("failed", 3, 1305)
    job, _ = job_of(grid_engine, slow)
    assert (job["status"], job["pilot_error_code"]) == ("failed", 1213)
    assert "walltime of 1 s exceeded" in job["error_diag"]
    job, _ = job_of(grid_engine, fetched)
    assert (job["status"], job["exit_code"]) == ("finished", 0), output
    assert "no job for queue DESY-HH" in output
    assert list(workdir.iterdir()) == []  # every job directory removed


def test_sigterm_kills_the_payload_and_reports_it_failed(grid_engine: Engine,
                                                         tmp_path: Path) -> None:
    (job_id,) = add_jobs(grid_engine, 1, transformation="/bin/sh", job_pars="-c 'sleep 60'",
                         max_attempts=1)
    with LiveServer(grid_engine) as server:
        run = pilot(server.url, tmp_path)
        deadline = time.monotonic() + 30
        while job_of(grid_engine, job_id)[0].get("status") != "running":
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.1)
        os.kill(run.pid, signal.SIGTERM)  # our own child, by its PID
        output, _ = run.communicate(timeout=60)
    job, _ = job_of(grid_engine, job_id)
    assert (job["status"], job["pilot_error_code"]) == ("failed", 1201), output
    assert run.returncode == 1
