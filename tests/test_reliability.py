"""Reliability with real processes: the embedded SQLite shared by a service and the
CLI loses no committed write; every cycle runs beside pilot load; a gzip bomb
costs the service its bound, not what it inflates to.

Every test starts ``netbroker serve`` as a process of its own (the deployed
shape) and talks to it over 127.0.0.1; the CLI runs as separate processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

from netbroker.common.enums import JobStatus, utcnow
from netbroker.db import create_db_engine, upgrade
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.schema import queues
from netbroker.ops.drill import start_service
from netbroker.registry import registry
from tests.factories import fts_transfers, mini_grid, task_spec
from tests.test_cli import netbroker

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
FORM = {"Accept": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(service: subprocess.Popen[bytes]) -> None:
    service.send_signal(signal.SIGTERM)  # our own child, by PID
    service.wait(timeout=60)


def deleted_database_files(pid: int) -> list[str]:
    """The database files ``pid`` still holds open that were deleted under it."""
    out = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if "netbroker.db" in target and target.endswith("(deleted)"):
            out.append(target)
    return out


def test_service_and_cli_processes_on_one_sqlite_file_keep_every_committed_write(
        tmp_path: Path) -> None:
    """The sequence that lost writes: the service reads the matrix, another process
    opens and closes the file, both sides write; then the service restarts. Every
    write is seen by both sides, before and after, with ids never given twice."""
    url = f"sqlite:///{tmp_path / 'netbroker.db'}"
    engine = create_db_engine(url)
    upgrade(engine)
    registry.import_grid_document(engine, mini_grid())
    engine.dispose()
    fts = tmp_path / "fts.jsonl"
    fts.write_text(fts_transfers("FZK_DATADISK", "DESY_DATADISK", 80.0, 12, time.time() - 60))
    assert netbroker("ingest", "fts", str(fts), url=url).returncode == 0
    port, log = free_port(), tmp_path / "serve.log"
    service = start_service(url, port, log)
    base = f"http://127.0.0.1:{port}"
    written: list[str] = []
    try:
        with httpx.Client(base_url=base, timeout=30) as api:
            matrix = api.get("/api/v1/network/matrix", params={"kind": "throughput",
                                                              "window": "1d"})
            assert matrix.status_code == 200, matrix.text
            body = matrix.json()
            assert (body["sources"], body["destinations"]) == (["DESY", "FZK"], ["DESY", "FZK"])
            assert body["values"] == [[None, None], [80.0, None]]  # FZK -> DESY, 80 MB/s
            assert api.get("/api/v1/network/nws").status_code == 200
            assert netbroker("token", "list", url=url).returncode == 0  # opens, closes
            for i in range(5):
                made = api.post("/api/v1/priority/boosts",
                                json={"value": 5, "hours": 2, "user": f"api-{i}"})
                assert made.status_code == 201, made.text
                written.append(f"api-{i}")
                cli = netbroker("priority", "boost", "add", "--value", "3", "--hours", "1",
                                "--user", f"cli-{i}", url=url)
                assert cli.returncode == 0, cli.stderr
                written.append(f"cli-{i}")
                assert netbroker("token", "list", url=url).returncode == 0
            assert deleted_database_files(service.pid) == []
            seen_by_service = {b["user_name"]: b["id"]
                               for b in api.get("/api/v1/priority/boosts").json()}
        seen_by_cli = {b["user_name"]: b["id"] for b in json.loads(
            netbroker("priority", "boost", "list", "--json", url=url).stdout)}
        assert seen_by_service == seen_by_cli
        assert sorted(seen_by_service) == sorted(written)
        assert len(set(seen_by_service.values())) == len(written)  # no id given twice
    finally:
        stop(service)
    service = start_service(url, port, log)
    try:
        after = {b["user_name"]: b["id"]
                 for b in httpx.get(f"{base}/api/v1/priority/boosts", timeout=30).json()}
        assert after == seen_by_service
    finally:
        stop(service)
    engine = create_db_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar_one() == "ok"
    engine.dispose()


def _pilot(base: str, queue_names: list[str], stop_at: threading.Event,
           done: list[int], errors: list[str]) -> None:
    """A pilot on the PanDA wire, round the queues: getJob, starting, running, finished."""
    with httpx.Client(base_url=base, timeout=30) as client:
        while not stop_at.is_set():
            got_one = False
            for queue in queue_names:
                answer = client.post("/server/panda/getJob", headers=FORM,
                                     data={"computingElement": queue, "diskSpace": "500000"})
                if answer.status_code >= 500:
                    errors.append(f"getJob {answer.status_code}: {answer.text[:200]}")
                job = answer.json()
                if job["StatusCode"] != 0:
                    continue
                got_one = True
                for state in ("starting", "running", "finished"):
                    report = client.post("/server/panda/updateJob", headers=FORM, data={
                        "jobId": str(job["PandaID"]), "state": state, "transExitCode": "0"})
                    if report.status_code != 200:
                        errors.append(f"updateJob {report.status_code}: {report.text[:200]}")
                done.append(int(job["PandaID"]))
            if not got_one:
                time.sleep(0.2)


def test_every_cycle_due_at_once_beside_pilot_load_runs_and_none_fails(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    """The service with every periodic cycle due at its start and every few seconds
    after, while pilots take and finish jobs: every cycle runs more than once,
    none fails, and the task whose jobs all ended is finished by the brokerage
    cycle."""
    url = db_url
    registry.import_grid_document(engine, mini_grid())
    with engine.begin() as conn:  # the pilots' other work: 600 activated jobs
        ids = GridDB(conn).ids(queues)
        JobDB(conn).add_jobs([{
            "name": f"filler-{i}", "status": JobStatus.ACTIVATED,
            "queue_id": ids[("LRZ_UCORE", "MAN_UCORE", "CC_UCORE")[i % 3]],
            "prod_source_label": "managed", "priority": i % 50, "cores": 1,
            "min_ram_mb": 1000, "max_disk_mb": 1000, "max_walltime_s": 600,
            "transformation": "run.sh"} for i in range(600)], utcnow())
    every = {f"NETBROKER_{key}": "0.05" for key in (  # 3 s
        "CLOUDS_RECOMPUTE_MINUTES", "BROKERAGE_CYCLE_MINUTES", "REBROKERAGE_CYCLE_MINUTES",
        "PRIORITY_CYCLE_MINUTES", "PD2P_CYCLE_MINUTES", "DISPATCHER_WATCHDOG_MINUTES")}
    every["NETBROKER_METRICS_BUCKET_MINUTES"] = "1"  # the aggregate cycle: every 60 s
    port, log = free_port(), tmp_path / "serve.log"
    service = start_service(url, port, log, cycles=True, settings=every)
    base = f"http://127.0.0.1:{port}"
    stop_at, done, errors = threading.Event(), [], []
    names = [f"{s}_UCORE" for s in ("FZK", "DESY", "LRZ", "RAL", "MAN", "CC")]
    pilots = [threading.Thread(target=_pilot, args=(base, names, stop_at, done, errors))
              for _ in range(4)]
    try:
        with httpx.Client(base_url=base, timeout=30) as api:
            made = api.post("/api/v1/tasks", json=task_spec(cores=1, memory_mb=2000))
            assert made.status_code == 201, made.text
            task_id = made.json()["id"]
            for p in pilots:
                p.start()
            task: dict[str, Any] = {}
            deadline = time.monotonic() + 150
            while time.monotonic() < deadline:
                task = api.get(f"/api/v1/tasks/{task_id}").json()
                cycles = {c["name"]: c for c in json.loads(
                    netbroker("cycles", "--json", url=url).stdout)}
                if task["status"] == "done" and all(
                        c["runs"] >= 2 for name, c in cycles.items() if name != "prune_samples"
                        and name != "aggregate"):
                    break
                time.sleep(1)
        stop_at.set()
        for p in pilots:
            p.join(timeout=60)
    finally:
        stop_at.set()
        stop(service)
    assert errors == []
    assert task["status"] == "done", task
    expected = {"prune_samples", "aggregate", "clouds", "heartbeat_watchdog", "brokerage",
                "rebrokerage", "priority", "pd2p"}
    assert set(cycles) == expected
    assert {n: c["failures"] for n, c in cycles.items()} == dict.fromkeys(expected, 0), \
        {n: c["last_failure"] for n, c in cycles.items()}
    assert all(cycles[n]["runs"] >= 2 for n in expected - {"prune_samples", "aggregate"})
    assert cycles["aggregate"]["runs"] >= 1 and cycles["prune_samples"]["runs"] >= 1
    assert "Traceback" not in log.read_text()
    assert len(done) == len(set(done))  # no job ran twice


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_gzip_bomb_costs_the_service_its_bound_not_what_it_inflates_to(
        engine: Engine, db_url: str, tmp_path: Path) -> None:
    """0.2 MiB that would inflate to 200 MiB: refused with 413 once the inflated body
    passes ``dispatcher.max_inflated_bytes`` (64 MiB here, the default); the
    service's peak memory grows by less than what the bomb would become."""
    url = db_url
    registry.import_grid_document(engine, mini_grid())
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    bomb = b"".join(packer.compress(bytes(2**20)) for _ in range(200)) + packer.flush()
    assert len(bomb) < 2**20
    port, log = free_port(), tmp_path / "serve.log"
    service = start_service(url, port, log)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as pilot:
            pilot.post("/server/panda/getJob", headers=FORM,
                       data={"computingElement": "DESY_UCORE"}).raise_for_status()
            before = _peak_rss_kib(service.pid)
            for _ in range(3):
                answer = pilot.post("/server/panda/getJob", content=bomb,
                                    headers={**FORM, "Content-Type": "application/json"})
                assert answer.status_code == 413
                assert "inflates past the 67108864 bytes" in answer.json()["errorDialog"]
            grew_mib = (_peak_rss_kib(service.pid) - before) / 1024
            again = pilot.post("/server/panda/getJob", headers=FORM,
                               data={"computingElement": "DESY_UCORE"})
            assert again.status_code == 200
    finally:
        stop(service)
    assert grew_mib < 160, grew_mib  # the bound and a copy of it, never the 200 MiB
