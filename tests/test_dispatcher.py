"""The dispatcher: exactly-once acquisition, the lifecycle, the watchdog, on both backends."""

from __future__ import annotations

import json
import random
import threading
from collections import Counter, defaultdict
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dispatcher.core import AcquireRequest, UpdateRequest, acquire_job, update_job, watchdog
from netbroker.common.config import DispatcherSettings
from netbroker.common.enums import JobStatus, utcnow
from netbroker.common.errors import InvalidTransition, UnknownJob, UnknownQueue
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.schema import jobs, queues
from netbroker.workload.tasks import kill_job
from tests.conftest import LiveServer

QUEUES = ("DESY-HH", "MWT2")


def add_jobs(engine: Engine, n: int, queue: str = "DESY-HH", status: JobStatus =
             JobStatus.ACTIVATED, seed: int = 1, **over: object) -> list[int]:
    rng = random.Random(seed)
    with engine.begin() as conn:
        queue_id = GridDB(conn).ids(queues)[queue]
        rows = [{"name": f"job-{queue}-{i}", "status": status, "queue_id": queue_id,
                 "prod_source_label": "managed", "priority": rng.randint(0, 1000),
                 "cores": 1, "min_ram_mb": 2000, "max_disk_mb": 5000, "max_walltime_s": 3600,
                 "transformation": "run.sh", "job_pars": f"--event {i}", **over}
                for i in range(n)]
        return JobDB(conn).add_jobs(rows, utcnow())


def ask(queue: str = "DESY-HH", **over: object) -> AcquireRequest:
    offer: dict[str, object] = {"cores": 8, "memory_mb": 16000, "disk_mb": 20000,
                                "pilot_id": "pilot-1", "node": "wn1", **over}
    return AcquireRequest(queue=queue, **offer)  # type: ignore[arg-type]


def test_concurrent_acquirers_dispatch_each_job_once_in_priority_order(
        grid_engine: Engine) -> None:
    ids = set(add_jobs(grid_engine, 2500, QUEUES[0], seed=1))
    ids |= set(add_jobs(grid_engine, 2500, QUEUES[1], seed=2))
    got: dict[int, list[tuple[str, int, int]]] = defaultdict(list)

    def pilot(worker: int) -> None:
        rng = random.Random(worker)
        empty: set[str] = set()
        while len(empty) < len(QUEUES):
            queue = rng.choice([q for q in QUEUES if q not in empty])
            job = acquire_job(grid_engine, ask(queue, pilot_id=f"p{worker}"))
            if job is None:
                empty.add(queue)
            else:
                got[worker].append((queue, job["id"], job["priority"]))

    threads = [threading.Thread(target=pilot, args=(w,)) for w in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    taken = Counter(job_id for picks in got.values() for _, job_id, _ in picks)
    assert set(taken) == ids and max(taken.values()) == 1  # every job, exactly once
    for picks in got.values():  # what one pilot got from one queue never rises in priority
        for queue in QUEUES:
            prios = [p for q, _, p in picks if q == queue]
            assert prios == sorted(prios, reverse=True)
    with grid_engine.connect() as conn:
        assert JobDB(conn).count_by_status() == {"sent": 5000}


def test_a_job_that_does_not_fit_the_pilot_is_not_sent(grid_engine: Engine) -> None:
    (big,) = add_jobs(grid_engine, 1, cores=8, min_ram_mb=30000)
    assert acquire_job(grid_engine, ask()) is None
    assert acquire_job(grid_engine, ask(prod_source_label="user")) is None
    roomy = ask(memory_mb=32000)
    assert acquire_job(grid_engine, roomy)["id"] == big
    with pytest.raises(UnknownQueue):
        acquire_job(grid_engine, ask("NO-SUCH-QUEUE"))


def test_lifecycle_reports_and_refusals(grid_engine: Engine) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    acquire_job(grid_engine, ask())
    for state in ("starting", "running", "running", "finished"):
        assert update_job(grid_engine, job_id, UpdateRequest(state=state, exit_code=0)
                          )["command"] == "NULL"
    with pytest.raises(InvalidTransition, match="is finished: it cannot become running"):
        update_job(grid_engine, job_id, UpdateRequest(state="running"))
    with pytest.raises(UnknownJob):
        update_job(grid_engine, 10**9, UpdateRequest(state="running"))
    with grid_engine.connect() as conn:
        db = JobDB(conn)
        assert db.get(job_id)["exit_code"] == 0
        assert [t["status"] for t in db.timeline(job_id)] == [
            "activated", "sent", "starting", "running", "running", "finished"]


def test_a_cancelled_job_tells_its_pilot_to_kill_it(grid_engine: Engine) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    acquire_job(grid_engine, ask())
    update_job(grid_engine, job_id, UpdateRequest(state="running"))
    kill_job(grid_engine, job_id)  # as a user cancels it
    answer = update_job(grid_engine, job_id, UpdateRequest(state="running"))
    assert answer == {"job_id": job_id, "status": "cancelled", "command": "tobekilled"}
    # Its pilot then reports it failed: acknowledged, the job stays cancelled.
    answer = update_job(grid_engine, job_id, UpdateRequest(state="failed", exit_code=137))
    assert answer == {"job_id": job_id, "status": "cancelled", "command": "NULL"}
    with grid_engine.connect() as conn:
        assert JobDB(conn).get(job_id)["status"] == "cancelled"


@pytest.mark.parametrize("state", ["activated", "assigned", "defined", "cancelled", "closed",
                                   "sent"])
def test_a_pilot_cannot_move_its_job_through_the_servers_states(grid_engine: Engine,
                                                                 state: str) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    acquire_job(grid_engine, ask())
    with pytest.raises(InvalidTransition, match=f"job {job_id} is sent: it cannot become "
                                                f"{state}"):
        update_job(grid_engine, job_id, UpdateRequest(state=state))
    with grid_engine.connect() as conn:
        assert JobDB(conn).get(job_id)["status"] == "sent"
    update_job(grid_engine, job_id, UpdateRequest(state="finished", exit_code=0))
    with pytest.raises(InvalidTransition, match="is finished: it cannot become closed"):
        update_job(grid_engine, job_id, UpdateRequest(state="closed"))


def test_watchdog_requeues_never_started_and_fails_silent_jobs(grid_engine: Engine) -> None:
    sent, running, alive = add_jobs(grid_engine, 3)
    for _ in range(3):
        acquire_job(grid_engine, ask())
    update_job(grid_engine, running, UpdateRequest(state="running"))
    update_job(grid_engine, alive, UpdateRequest(state="running"))
    long_ago = utcnow() - timedelta(hours=3)
    with grid_engine.begin() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id.in_([sent, running]))
                     .values(heartbeat_at=long_ago))
    result = watchdog(grid_engine, DispatcherSettings())
    assert result == {"requeued": [sent], "lost": [running]}
    with grid_engine.connect() as conn:
        db = JobDB(conn)
        assert db.get(sent)["status"] == "activated" and db.get(sent)["pilot_id"] is None
        lost = db.get(running)
        assert (lost["status"], lost["pilot_error_code"]) == ("failed", 1144)
        assert "lost heartbeat" in lost["error_diag"]
        assert db.get(alive)["status"] == "running"
    assert watchdog(grid_engine, DispatcherSettings()) == {"requeued": [], "lost": []}


def test_pilot_api_over_http(grid_engine: Engine) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    with LiveServer(grid_engine) as server, httpx.Client(base_url=server.url) as client:
        body = {"queue": "DESY-HH", "cores": 8, "memory_mb": 16000, "disk_mb": 20000}
        got = client.post("/api/v1/pilot/jobs/acquire", json=body).raise_for_status().json()
        assert got["job"]["id"] == job_id and got["job"]["status"] == "sent"
        none = client.post("/api/v1/pilot/jobs/acquire", json=body).json()
        assert none["job"] is None and "no activated job" in none["reason"]
        done = client.post(f"/api/v1/pilot/jobs/{job_id}/update",
                           json={"state": "finished", "exit_code": 0})
        assert done.json()["command"] == "NULL"
        again = client.post(f"/api/v1/pilot/jobs/{job_id}/update", json={"state": "running"})
        assert again.status_code == 409 and again.json()["current"] == "finished"
        bad = client.post("/api/v1/pilot/jobs/acquire", json={"queue": "DESY-HH", "cores": 0})
        assert bad.status_code == 422
        typo = client.post(f"/api/v1/pilot/jobs/{job_id}/update", json={"state": "runnin"})
        assert typo.status_code == 422
        assert client.post("/api/v1/pilot/jobs/acquire",
                           json={**body, "queue": "NOPE"}).status_code == 404
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        assert [t["status"] for t in job["timeline"]] == ["activated", "sent", "finished"]
        assert client.get("/api/v1/jobs/999999").status_code == 404


def test_a_failed_job_is_retried_as_a_new_attempt_until_its_last(grid_engine: Engine) -> None:
    (first,) = add_jobs(grid_engine, 1, max_attempts=2)
    acquire_job(grid_engine, ask())
    update_job(grid_engine, first, UpdateRequest(state="failed", exit_code=3))
    second = acquire_job(grid_engine, ask())
    assert second is not None and second["id"] != first
    assert (second["attempt_nr"], second["retry_of"], second["name"]) == (2, first, "job-DESY-HH-0")
    update_job(grid_engine, second["id"], UpdateRequest(state="failed", exit_code=3))
    assert acquire_job(grid_engine, ask()) is None  # two attempts were all it had
    with grid_engine.connect() as conn:
        assert JobDB(conn).count_by_status() == {"failed": 2}


def test_pilot_demand_counts_waiting_jobs_within_free_slots(grid_engine: Engine) -> None:
    from dispatcher.core import pilot_demand

    add_jobs(grid_engine, 30)
    for _ in range(4):
        acquire_job(grid_engine, ask())
    demand = pilot_demand(grid_engine, "DESY-HH", pending=6)
    slots = demand["pilot_slots"]  # 1278 in the sample grid: not the limit here
    assert (demand["activated"], demand["sent"], demand["demand"]) == (26, 4, 20)
    assert slots == 1278
    with LiveServer(grid_engine) as server:
        answer = httpx.get(f"{server.url}/api/v1/queues/DESY-HH/pilot-demand",
                           params={"pending": 30}, timeout=10).json()
        assert answer["demand"] == 0
        assert httpx.get(f"{server.url}/api/v1/queues/NOPE/pilot-demand",
                         timeout=10).status_code == 404
    # a small queue: its free slots, not its waiting jobs, bound the demand
    from netbroker.registry import registry

    registry.import_grid_document(grid_engine, json.dumps({"pandaqueue": {"DESY-HH_SMALL": {
        "atlas_site": "DESY-HH", "status": "online", "maxrss": 4000, "maxtime": 3600,
        "pilot_slots": 10}}}))
    add_jobs(grid_engine, 30, queue="DESY-HH_SMALL")
    for _ in range(3):
        acquire_job(grid_engine, ask("DESY-HH_SMALL"))
    small = pilot_demand(grid_engine, "DESY-HH_SMALL", pending=2)
    assert (small["activated"], small["demand"]) == (27, 10 - 3 - 2)
