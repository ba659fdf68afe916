"""The netbroker pilot staging real files over HTTP from and to a storage server on 127.0.0.1.

A task over a dataset whose files sit on a WebDAV-like HTTP server (GET and
PUT, Rucio's deterministic paths) is brokered, and a real pilot process runs
its jobs: inputs staged in and verified by Adler-32 (a corrupt copy is
skipped for the next source), payloads run with heartbeats, outputs and log
tarballs staged out, measured, and recorded by the dispatcher.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker import registry, tasks
from netbroker.config import Settings
from netbroker.datasets import rucio_path
from netbroker.db.jobs import JobDB
from netbroker.db.schema import job_files, jobs
from tests.conftest import LiveServer
from tests.factories import mini_grid, task_spec


class Storage:
    """A tiny HTTP storage element: GET and PUT of files under a root, PUTs counted."""

    def __init__(self, root: Path) -> None:
        self.root, self.puts = root, []
        storage = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = storage.root / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_PUT(self) -> None:
                path = storage.root / self.path.lstrip("/")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.rfile.read(int(self.headers["Content-Length"])))
                storage.puts.append(self.path)
                self.send_response(201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def put_file(self, site: str, scope: str, lfn: str, data: bytes) -> None:
        path = self.root / site.lower() / rucio_path(scope, lfn)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def read(self, site: str, scope: str, lfn: str) -> bytes:
        return (self.root / site.lower() / rucio_path(scope, lfn)).read_bytes()


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(tmp_path / "storage")
    yield store
    store.server.shutdown()
    store.server.server_close()


CONTENTS = [f"event data of file {i}\n".encode() * (100 * i) for i in range(1, 5)]
LFNS = [f"data23.AOD._{i:06d}.pool.root.1" for i in range(1, 5)]


def test_pilot_stages_in_runs_and_stages_out_real_files(
        engine: Engine, storage: Storage, tmp_path: Path) -> None:
    se_urls = {s: f"{storage.url}/{s.lower()}" for s in ("DESY", "LRZ")}
    registry.import_grid_document(engine, mini_grid(
        {"data23.AOD": ["DESY_DATADISK", "LRZ_DATADISK"]}, se_urls=se_urls, contents=CONTENTS,
        queue_status={"LRZ": "offline", "FZK": "offline"}))
    for lfn, data in zip(LFNS, CONTENTS, strict=True):
        storage.put_file("DESY", "data23", lfn, data)
        storage.put_file("LRZ", "data23", lfn, data)
    storage.put_file("DESY", "data23", LFNS[0], b"corrupted" + CONTENTS[0][9:])  # same size
    (storage.root / "lrz" / rucio_path("data23", LFNS[3])).unlink()
    (storage.root / "desy" / rucio_path("data23", LFNS[3])).unlink()  # lost everywhere
    task = tasks.submit(engine, tasks.parse_task(task_spec(
        transformation="/bin/sh", max_attempts=1, cores=1, memory_mb=1000,
        parameters="-c 'sleep 0.5; tr a-z A-Z < $IN > $OUT; echo converted $IN'")), Settings())
    assert task["jobs"] == {"activated": 4}
    workdir = tmp_path / "work"
    workdir.mkdir()
    with LiveServer(engine) as server:
        run = subprocess.run(
            [sys.executable, "-m", "pilot.main", "run", "--server", server.url, "--queue",
             "DESY_UCORE", "--workdir", str(workdir), "--heartbeat-s", "0.1",
             "--max-jobs", "10"], capture_output=True, text=True, timeout=180, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    with engine.connect() as conn:
        rows = {r.name: r for r in conn.execute(sa.select(jobs).order_by(jobs.c.id))}
        timelines = {name: [str(t["status"]) for t in JobDB(conn).timeline(r.id)]
                     for name, r in rows.items()}
        outputs = conn.execute(sa.select(job_files).where(job_files.c.kind != "input")
                               .order_by(job_files.c.id)).mappings().all()
    names = sorted(rows)
    lost = names[3]
    assert (rows[lost].status, rows[lost].pilot_error_code) == ("failed", 1099), output
    assert LFNS[3] in rows[lost].error_diag and "404" in rows[lost].error_diag
    for name in names[:3]:
        assert rows[name].status == "finished", (name, rows[name].error_diag, output)
        assert timelines[name][-3:] == ["running", "transferring", "finished"], timelines[name]
    # The corrupt copy at DESY was refused and LRZ's used: the output is the real data upper-cased.
    for i, name in enumerate(names[:3]):
        produced = storage.read("DESY", "data23", f"{name}.root.1")
        assert produced == CONTENTS[i].upper()
        out = next(o for o in outputs if o["lfn"] == f"{name}.root.1")
        assert (out["bytes"], out["adler32"]) == (len(produced),
                                                  f"{zlib.adler32(produced):08x}")
        log_path = storage.root / "desy" / rucio_path("data23", f"{name}.log.tgz.1")
        with tarfile.open(log_path) as tar:
            stdout = tar.extractfile("payload.stdout")
            assert stdout is not None
            assert stdout.read().decode() == f"converted {LFNS[i]}\n"
    assert list(workdir.iterdir()) == []  # every job directory removed


def test_getjob_over_the_panda_wire_names_the_files(engine: Engine, storage: Storage) -> None:
    registry.import_grid_document(engine, mini_grid(
        {"data23.AOD": ["DESY_DATADISK"]}, se_urls={"DESY": f"{storage.url}/desy"},
        contents=CONTENTS[:2]))
    tasks.submit(engine, tasks.parse_task(task_spec(files_per_job=2)), Settings())
    with LiveServer(engine) as server:
        answer = httpx.post(f"{server.url}/server/panda/getJob",
                            data={"siteName": "DESY_UCORE", "computingElement": "DESY_UCORE",
                                  "prodSourceLabel": "managed", "diskSpace": "100000",
                                  "mem": "64000", "node": "wn1"},
                            headers={"Accept": "application/json"}, timeout=10).json()
    assert answer["StatusCode"] == 0
    assert answer["inFiles"] == ",".join(LFNS[:2])
    assert answer["fsize"] == ",".join(str(len(c)) for c in CONTENTS[:2])
    assert answer["checksum"] == ",".join(f"ad:{zlib.adler32(c):08x}" for c in CONTENTS[:2])
    assert answer["ddmEndPointIn"] == "DESY_DATADISK,DESY_DATADISK"
    assert answer["outFiles"] == "task.001._000001.root.1,task.001._000001.log.tgz.1"
    assert answer["logFile"] == "task.001._000001.log.tgz.1"
    assert answer["destinationSE"] == "DESY_DATADISK"
