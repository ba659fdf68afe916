"""The netbroker pilot staging real files over HTTP from and to a storage server on 127.0.0.1
(the demo's GET/PUT server).

A task over a dataset whose files sit on a WebDAV-like HTTP server (GET and
PUT, Rucio's deterministic paths) is brokered, and a real pilot process runs
its jobs: inputs staged in and verified by Adler-32 (a corrupt copy is
skipped for the next source), payloads run with heartbeats, outputs and log
tarballs staged out, measured, and recorded by the dispatcher.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.config import Settings
from netbroker.db.jobs import JobDB
from netbroker.db.schema import event_ranges, job_files, jobs
from netbroker.demo.storage import Storage
from netbroker.registry import registry
from netbroker.workload import tasks
from tests.conftest import LiveServer
from tests.factories import mini_grid, task_spec


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    store = Storage(tmp_path / "storage")  # the demo's: GET and PUT at Rucio's paths
    yield store
    store.close()


CONTENTS = [f"event data of file {i}\n".encode() * (100 * i) for i in range(1, 5)]
LFNS = [f"data23.AOD._{i:06d}.pool.root.1" for i in range(1, 5)]


def test_pilot_stages_in_runs_and_stages_out_real_files(
        engine: Engine, storage: Storage, tmp_path: Path) -> None:
    se_urls = {s: storage.endpoint_url(f"{s}_DATADISK") for s in ("DESY", "LRZ")}
    registry.import_grid_document(engine, mini_grid(
        {"data23.AOD": ["DESY_DATADISK", "LRZ_DATADISK"]}, se_urls=se_urls, contents=CONTENTS,
        queue_status={"LRZ": "offline", "FZK": "offline"}))
    for lfn, data in zip(LFNS, CONTENTS, strict=True):
        storage.put("DESY_DATADISK", "data23", lfn, data)
        storage.put("LRZ_DATADISK", "data23", lfn, data)
    storage.put("DESY_DATADISK", "data23", LFNS[0], b"corrupted" + CONTENTS[0][9:])  # same size
    storage.path("LRZ_DATADISK", "data23", LFNS[3]).unlink()
    storage.path("DESY_DATADISK", "data23", LFNS[3]).unlink()  # lost everywhere
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
        produced = storage.read("DESY_DATADISK", "data23", f"{name}.root.1")
        assert produced == CONTENTS[i].upper()
        out = next(o for o in outputs if o["lfn"] == f"{name}.root.1")
        assert (out["bytes"], out["adler32"]) == (len(produced),
                                                  f"{zlib.adler32(produced):08x}")
        log_path = storage.path("DESY_DATADISK", "data23", f"{name}.log.tgz.1")
        with tarfile.open(log_path) as tar:
            stdout = tar.extractfile("payload.stdout")
            assert stdout is not None
            assert stdout.read().decode() == f"converted {LFNS[i]}\n"
    assert list(workdir.iterdir()) == []  # every job directory removed
    with engine.connect() as conn:  # each job's log came back to the service
        logs = {name: JobDB(conn).log(rows[name].id) for name in names}
    first = logs[names[0]]["content"].decode()  # type: ignore[index]
    assert f"job {rows[names[0]].id}: staged in 1 files" in first
    assert f"==> payload.stdout <==\nconverted {LFNS[0]}" in first
    assert "stage-in of data23.AOD._000004.pool.root.1 failed" in logs[lost]["content"].decode()  # type: ignore[index]


def test_getjob_over_the_panda_wire_names_the_files(engine: Engine, storage: Storage) -> None:
    registry.import_grid_document(engine, mini_grid(
        {"data23.AOD": ["DESY_DATADISK"]}, se_urls={"DESY": storage.endpoint_url("DESY_DATADISK")},
        contents=CONTENTS[:2]))
    tasks.submit(engine, tasks.parse_task(task_spec(files_per_job=2)), Settings())
    json_accept = {"Accept": "application/json"}
    with LiveServer(engine) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        answer = http.post("/server/panda/getJob", headers=json_accept,
                           data={"siteName": "DESY_UCORE", "computingElement": "DESY_UCORE",
                                 "prodSourceLabel": "managed", "diskSpace": "100000",
                                 "mem": "64000", "node": "wn1"}).json()
        final = {"jobId": answer["PandaID"], "state": "finished", "transExitCode": "0",
                 "cpuConsumptionTime": "12", "maxRSS": "2048"}
        bad = http.post("/server/panda/updateJob", headers=json_accept,
                        data={**final, "xml": '{"task.001._000001.root.1": {"fsize": 1}}'})
        assert bad.status_code == 400 and "adler32" in bad.json()["errorDialog"]
        written = {"task.001._000001.root.1": {"guid": "9c3d4e1a-0000-4000-8000-000000000001",
                                               "fsize": "1234", "adler32": "1a2b3c",
                                               "surl": "davs://se/x"}}
        done = http.post("/server/panda/updateJob", headers=json_accept,
                         data={**final, "xml": json.dumps(written)})
        assert done.json() == {"StatusCode": 0, "command": "NULL"}
    with engine.connect() as conn:
        out = conn.execute(sa.select(job_files).where(
            job_files.c.lfn == "task.001._000001.root.1")).mappings().one()
        job = JobDB(conn).get(answer["PandaID"])
    assert (out["bytes"], out["adler32"], out["guid"]) == (
        1234, "001a2b3c", "9c3d4e1a-0000-4000-8000-000000000001")
    assert job is not None and (job["status"], job["cpu_time_s"], job["max_rss_kb"]) == (
        "finished", 12.0, 2048)
    assert answer["StatusCode"] == 0
    assert answer["inFiles"] == ",".join(LFNS[:2])
    assert answer["fsize"] == ",".join(str(len(c)) for c in CONTENTS[:2])
    assert answer["checksum"] == ",".join(f"ad:{zlib.adler32(c):08x}" for c in CONTENTS[:2])
    assert answer["ddmEndPointIn"] == "DESY_DATADISK,DESY_DATADISK"
    assert answer["outFiles"] == "task.001._000001.root.1,task.001._000001.log.tgz.1"
    assert answer["logFile"] == "task.001._000001.log.tgz.1"
    assert answer["destinationSE"] == "DESY_DATADISK"


def test_event_service_pilot_runs_range_by_range_and_retries_a_failed_one(
        engine: Engine, storage: Storage, tmp_path: Path) -> None:
    registry.import_grid_document(engine, mini_grid(
        {"data23.AOD": ["DESY_DATADISK"]}, se_urls={"DESY": storage.endpoint_url("DESY_DATADISK")},
        contents=CONTENTS[:1]))
    storage.put("DESY_DATADISK", "data23", LFNS[0], CONTENTS[0])
    # The range starting at event 10 fails once (its first attempt), then succeeds.
    script = ('test "$NETBROKER_FIRST_EVENT" = 10 -a ! -e failed.once '
              '&& { touch failed.once; exit 4; }; '
              'echo "$NETBROKER_FIRST_EVENT-$NETBROKER_LAST_EVENT" >> $OUT')
    task = tasks.submit(engine, tasks.parse_task(task_spec(
        transformation="/bin/sh", cores=1, memory_mb=1000, walltime_s=300, event_service=True,
        events_per_job=30, events_per_file=30, events_per_range=10,
        parameters=f"-c '{script}'")), Settings())
    assert task["jobs"] == {"activated": 1}
    with LiveServer(engine) as server:
        run = subprocess.run(
            [sys.executable, "-m", "pilot.main", "run", "--server", server.url, "--queue",
             "DESY_UCORE", "--workdir", str(tmp_path), "--heartbeat-s", "0.1"],
            capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    with engine.connect() as conn:
        job = JobDB(conn).get(1)
        ranges = conn.execute(sa.select(event_ranges.c.first_event, event_ranges.c.status,
                                        event_ranges.c.attempt)
                              .order_by(event_ranges.c.first_event)).all()
    assert job is not None and job["status"] == "finished", job
    assert [tuple(r) for r in ranges] == [(0, "finished", 1), (10, "finished", 2),
                                          (20, "finished", 1)]
    produced = storage.read("DESY_DATADISK", "data23", "task.001._000001.root.1").decode()
    assert produced.splitlines() == ["0-9", "10-19", "20-29"]  # retried at once, in order


def test_a_killed_event_service_pilot_gives_its_range_back(
        engine: Engine, storage: Storage, tmp_path: Path) -> None:
    registry.import_grid_document(engine, mini_grid(
        {"data23.AOD": ["DESY_DATADISK"]}, se_urls={"DESY": storage.endpoint_url("DESY_DATADISK")},
        contents=CONTENTS[:1]))
    storage.put("DESY_DATADISK", "data23", LFNS[0], CONTENTS[0])
    tasks.submit(engine, tasks.parse_task(task_spec(
        transformation="/bin/sh", cores=1, memory_mb=1000, walltime_s=300, event_service=True,
        events_per_job=20, events_per_file=20, events_per_range=10, max_attempts=2,
        parameters="-c 'sleep 60'")), Settings())
    with LiveServer(engine) as server:
        run = subprocess.Popen(
            [sys.executable, "-m", "pilot.main", "run", "--server", server.url, "--queue",
             "DESY_UCORE", "--workdir", str(tmp_path), "--heartbeat-s", "0.1"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as conn:
                held = conn.execute(sa.select(event_ranges.c.id).where(
                    event_ranges.c.status == "running")).all()
            if held:
                break
            assert time.monotonic() < deadline and run.poll() is None
            time.sleep(0.1)
        os.kill(run.pid, signal.SIGTERM)  # our own child, by its PID
        output, _ = run.communicate(timeout=60)
    with engine.connect() as conn:
        job, retry = JobDB(conn).get(1), JobDB(conn).get(2)
        ranges = conn.execute(sa.select(event_ranges.c.job_id, event_ranges.c.status,
                                        event_ranges.c.attempt, event_ranges.c.pilot_id)).all()
    assert job is not None and (job["status"], job["pilot_error_code"]) == ("failed", 1201)
    # The next attempt takes the ranges over, none lost or consumed by the kill.
    assert retry is not None and (retry["retry_of"], retry["event_service"]) == (1, True)
    assert sorted(tuple(r) for r in ranges) == [(2, "ready", 1, None)] * 2, output
