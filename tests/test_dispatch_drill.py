"""SIGKILL the dispatching service mid-flight, restart it: no job lost or duplicated."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from dispatcher.core import watchdog
from netbroker.common.config import DispatcherSettings
from netbroker.db.jobs import JobDB
from netbroker.ops.drill import start_service
from tests.test_dispatcher import add_jobs

pytestmark = [pytest.mark.slow, pytest.mark.reliability]
JSON = {"Accept": "application/json"}


@pytest.mark.parametrize("wire", [False, True], ids=["pilot-api", "panda-wire"])
def test_sigkill_and_restart_lose_and_duplicate_nothing(grid_engine: Engine, db_url: str,
                                                        tmp_path: Path, wire: bool) -> None:
    """Pilots on the JSON API (through the thread pool) or on the PanDA wire (on
    SQLite in write batches, on PostgreSQL on the event loop)."""
    ids = set(add_jobs(grid_engine, 600))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base, log = f"http://127.0.0.1:{port}", tmp_path / "serve.log"
    received: list[int] = []
    done = threading.Event()

    def acquire(client: httpx.Client) -> int | None:
        if wire:
            job = client.post("/server/panda/getJob", headers=JSON, data={
                "computingElement": "DESY-HH", "diskSpace": "20000"}).json()
            return int(job["PandaID"]) if job["StatusCode"] == 0 else None
        job = client.post("/api/v1/pilot/jobs/acquire",
                          json={"queue": "DESY-HH", "disk_mb": 20000}).json()["job"]
        return None if job is None else int(job["id"])

    def pilot() -> None:
        with httpx.Client(base_url=base, timeout=5) as client:
            while not done.is_set():
                try:
                    job_id = acquire(client)
                except (httpx.TransportError, ValueError):
                    time.sleep(0.05)  # the service is down: ask again, as pilots do
                    continue
                if job_id is None:
                    return
                received.append(job_id)
                while True:  # a real pilot says it started; it retries through an outage
                    try:
                        if wire:
                            answer = client.post("/server/panda/updateJob", headers=JSON, data={
                                "jobId": str(job_id), "state": "starting"})
                            assert answer.json()["StatusCode"] == 0, answer.text
                        else:
                            client.post(f"/api/v1/pilot/jobs/{job_id}/update",
                                        json={"state": "starting"}).raise_for_status()
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)

    service = start_service(db_url, port, log)
    pilots = [threading.Thread(target=pilot) for _ in range(8)]
    for p in pilots:
        p.start()
    while len(received) < 150:
        time.sleep(0.01)
    os.kill(service.pid, signal.SIGKILL)  # our own child, by PID, mid-dispatch
    service.wait()
    killed_at = len(received)
    service = start_service(db_url, port, log)
    try:
        for p in pilots:
            p.join(timeout=120)
        assert not any(p.is_alive() for p in pilots)
        # jobs sent whose answer died with the process: the watchdog gives them back
        requeued = watchdog(grid_engine, DispatcherSettings(start_timeout_minutes=1e-9))
        lost_answers = set(requeued["requeued"])
        done.clear()
        second = [threading.Thread(target=pilot) for _ in range(2)]
        for p in second:
            p.start()
        for p in second:
            p.join(timeout=60)
    finally:
        done.set()
        service.terminate()
        service.wait(timeout=30)
    taken = Counter(received)
    assert max(taken.values()) == 1, "a job reached two pilots"
    assert set(taken) == ids, "a job was lost"
    assert killed_at < len(received)  # work went on after the restart
    assert lost_answers <= ids and not lost_answers & set(received[:killed_at])
    with grid_engine.connect() as conn:
        assert JobDB(conn).count_by_status() == {"starting": 600}
