"""Priorities on both backends: fair share, aging, boosts, failures; what the dispatcher sees."""

from __future__ import annotations

from datetime import timedelta

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from dispatcher.core import AcquireRequest, acquire_job
from netbroker.common.config import PrioritySettings, Settings
from netbroker.common.enums import JobStatus, utcnow
from netbroker.common.errors import InvalidBoost, UnknownBoost, UnknownSite
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.schema import jobs, queues
from netbroker.registry import registry
from netbroker.workload import priority, tasks
from tests.conftest import LiveServer
from tests.factories import mini_grid, task_spec

NO_AGING = PrioritySettings(aging_per_hour=0)


@pytest.fixture
def mini(engine: Engine) -> Engine:
    registry.import_grid_document(engine, mini_grid())
    return engine


def add(engine: Engine, queue: str, user: str = "alice", base: int = 1000,
        status: JobStatus = JobStatus.ACTIVATED, **over: object) -> int:
    with engine.begin() as conn:
        queue_id = GridDB(conn).ids(queues)[queue]
        (job_id,) = JobDB(conn).add_jobs([{
            "name": f"{user}-{queue}-{base}", "status": status, "queue_id": queue_id,
            "prod_source_label": "managed", "priority": base, "cores": 1,
            "min_ram_mb": 1000, "max_disk_mb": 1000, "max_walltime_s": 3600,
            "transformation": "run.sh", "user_name": user, **over}], utcnow())
    return job_id


def priorities(engine: Engine) -> dict[int, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(jobs.c.id, jobs.c.priority)).all())


def take(engine: Engine, queue: str = "DESY_UCORE") -> int:
    job = acquire_job(engine, AcquireRequest(queue=queue, memory_mb=64000, disk_mb=10**6))
    assert job is not None
    return int(job["id"])


def test_a_heavy_users_new_jobs_rank_below_a_light_users(mini: Engine) -> None:
    # heavy used 2,000 CPU-hours today, twice the share of 1,000: a penalty of 100.
    add(mini, "DESY_UCORE", user="heavy", status=JobStatus.FINISHED, cpu_time_s=2000 * 3600)
    heavy = tasks.submit(mini, tasks.parse_task(task_spec("heavy.t", user="heavy")), Settings())
    light = tasks.submit(mini, tasks.parse_task(task_spec("light.t", user="light")), Settings())
    jobs_of = {t["id"]: {j["priority"] for j in tasks.list_jobs(mini, task_id=t["id"])}
               for t in (heavy, light)}
    assert jobs_of == {heavy["id"]: {900}, light["id"]: {1000}}
    first = tasks.explain_job(mini, take(mini))["job"]
    assert first["name"].startswith("light.t")


def test_aging_lets_an_old_low_priority_job_overtake(mini: Engine) -> None:
    old = add(mini, "DESY_UCORE", base=900, waiting_since=utcnow() - timedelta(hours=20))
    new = add(mini, "DESY_UCORE", base=1000)
    assert take(mini) == new  # before the recomputation the newer, higher one leads
    old_2 = add(mini, "DESY_UCORE", base=900, waiting_since=utcnow() - timedelta(hours=20))
    add(mini, "DESY_UCORE", base=1000)
    assert priority.recompute(mini, PrioritySettings()) == 2  # both old ones gained
    assert priorities(mini)[old] == 900 + 200 == priorities(mini)[old_2]
    assert take(mini) in (old, old_2)
    forever = add(mini, "DESY_UCORE", base=0, waiting_since=utcnow() - timedelta(days=30))
    priority.recompute(mini, PrioritySettings())
    assert priorities(mini)[forever] == 300  # the cap


def test_a_boost_applies_only_where_and_while_it_should(mini: Engine) -> None:
    at_desy = add(mini, "DESY_UCORE", user="alice")
    at_lrz = add(mini, "LRZ_UCORE", user="alice")
    bob = add(mini, "DESY_UCORE", user="bob")
    group_de = add(mini, "LRZ_UCORE", user="carol", working_group="AP_TOP")
    group_uk = add(mini, "MAN_UCORE", user="carol", working_group="AP_TOP")
    priority.add_boost(mini, 500, hours=1, user="alice", site="DESY")
    priority.add_boost(mini, 50, hours=1, group="AP_TOP", cloud="DE")
    priority.recompute(mini, NO_AGING)
    assert priorities(mini) == {at_desy: 1500, at_lrz: 1000, bob: 1000, group_de: 1050,
                                group_uk: 1000}
    priority.recompute(mini, NO_AGING, now=utcnow() + timedelta(hours=2))  # both expired
    assert set(priorities(mini).values()) == {1000}


def test_failed_attempts_lower_a_jobs_priority(mini: Engine) -> None:
    third = add(mini, "DESY_UCORE", attempt_nr=3)
    priority.recompute(mini, NO_AGING)
    assert priorities(mini)[third] == 1000 - 2 * 50


def test_recompute_touches_only_waiting_jobs(mini: Engine) -> None:
    running = add(mini, "DESY_UCORE", base=10, status=JobStatus.RUNNING,
                  waiting_since=utcnow() - timedelta(hours=5))
    assert priority.recompute(mini, PrioritySettings()) == 0
    assert priorities(mini)[running] == 10


def test_boost_rules_are_validated(mini: Engine) -> None:
    with pytest.raises(InvalidBoost, match="needs a user or a working group"):
        priority.add_boost(mini, 10, hours=1)
    with pytest.raises(InvalidBoost, match="not both"):
        priority.add_boost(mini, 10, hours=1, user="a", site="DESY", cloud="DE")
    with pytest.raises(UnknownSite):
        priority.add_boost(mini, 10, hours=1, user="a", site="NOWHERE")
    with pytest.raises(UnknownBoost):
        priority.remove_boost(mini, 42)
    assert priority.list_boosts(mini) == []


def test_boost_api_adds_lists_and_removes(mini: Engine) -> None:
    with LiveServer(mini) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        made = http.post("/api/v1/priority/boosts", json={"value": 200, "hours": 2,
                                                          "user": "alice", "cloud": "DE"})
        assert made.status_code == 201, made.text
        assert made.json()["cloud"] == "DE"
        assert http.post("/api/v1/priority/boosts", json={"value": 1, "hours": 1}
                         ).status_code == 400
        assert http.post("/api/v1/priority/boosts", json={"value": 1, "hours": -1,
                                                          "user": "a"}).status_code == 422
        assert [b["id"] for b in http.get("/api/v1/priority/boosts",
                                          params={"active": True}).json()] == [made.json()["id"]]
        assert http.delete(f"/api/v1/priority/boosts/{made.json()['id']}").status_code == 204
        assert http.delete(f"/api/v1/priority/boosts/{made.json()['id']}").status_code == 404


@given(base=st.integers(-1000, 5000), waited=st.floats(0, 1e4), attempt=st.integers(1, 20),
       usage=st.floats(0, 1e6))
def test_priority_parts_are_bounded(base: int, waited: float, attempt: int,
                                    usage: float) -> None:
    s = PrioritySettings()
    p = priority.compute_priorities(np.array([base]), np.array([0]), np.array([waited]),
                                    np.array([attempt]), np.array([usage]), s)[0]
    assert base - s.fairshare_max_penalty - s.failure_penalty * (attempt - 1) <= p
    assert p <= base + s.aging_cap


def test_recompute_matches_compute_priorities_for_every_kind_of_job(mini: Engine) -> None:
    """Jobs with no waiting time, some waited past the cap, some not at all yet (a
    clock skew), retried ones, a user over the fair share, a boosted user and a
    boosted group: after one recompute every waiting job's priority is what
    ``compute_priorities`` gives for it, whether the database computed it (its own
    priority) or numpy did (boosts and fair share)."""
    rng = np.random.default_rng(3)
    now = utcnow()
    add(mini, "DESY_UCORE", user="heavy", status=JobStatus.FINISHED, cpu_time_s=3000 * 3600)
    queue_site = {"DESY_UCORE": 0, "LRZ_UCORE": 1, "MAN_UCORE": 2}
    users = ["alice", "bob", "heavy", "carol"]
    made = []
    for i in range(240):
        queue = list(queue_site)[i % 3]
        waited_h = [None, 0.0, 0.05, 1.234, 29.99, 31.0, 400.0, -2.0][i % 8]
        made.append((add(mini, queue, user=users[i % 4], base=int(rng.integers(-500, 3000)),
                         attempt_nr=1 + i % 3, working_group="AP_TOP" if i % 5 == 0 else "",
                         waiting_since=None if waited_h is None
                         else now - timedelta(hours=waited_h)), queue, users[i % 4],
                     i % 5 == 0, waited_h, 1 + i % 3))
    priority.add_boost(mini, 70, hours=1, user="bob", site="LRZ")
    priority.add_boost(mini, 30, hours=1, group="AP_TOP")
    with mini.connect() as conn:
        base = dict(conn.execute(sa.select(jobs.c.id, jobs.c.base_priority)).all())
    s = PrioritySettings(user_cpu_hours_per_day=1000)
    assert priority.recompute(mini, s, now=now) > 0
    got = priorities(mini)
    for job_id, queue, user, in_group, waited_h, attempt in made:
        boost = (70 if user == "bob" and queue == "LRZ_UCORE" else 0) + (30 if in_group else 0)
        usage = 3000.0 if user == "heavy" else 0.0
        want = priority.compute_priorities(
            np.array([base[job_id]]), np.array([boost]), np.array([waited_h or 0.0]),
            np.array([attempt]), np.array([usage]), s)[0]
        assert got[job_id] == want, (job_id, queue, user, in_group, waited_h, attempt)
    assert priority.recompute(mini, s, now=now) == 0  # nothing changed since


def test_recompute_writes_its_changes_in_short_batches(mini: Engine) -> None:
    """2,500 changed priorities are written in three write transactions of at most
    ``WRITE_BATCH`` jobs, not one transaction over all of them."""
    now = utcnow()
    with mini.begin() as conn:
        queue_id = GridDB(conn).ids(queues)["DESY_UCORE"]
        JobDB(conn).add_jobs([{
            "name": f"old-{i}", "status": JobStatus.ACTIVATED, "queue_id": queue_id,
            "prod_source_label": "managed", "priority": 10, "cores": 1, "min_ram_mb": 1000,
            "max_disk_mb": 1000, "max_walltime_s": 3600, "transformation": "run.sh",
            "waiting_since": now - timedelta(hours=2)} for i in range(2500)], now)
    writes: list[int] = []

    def count_writes(conn: sa.Connection) -> None:
        writes.append(1)

    sa.event.listen(mini, "begin", count_writes)
    try:
        assert priority.recompute(mini, PrioritySettings(), now=now) == 2500
    finally:
        sa.event.remove(mini, "begin", count_writes)
    assert priority.WRITE_BATCH == 1000
    assert len(writes) == 1 + 3  # the read, then three batches
    assert set(priorities(mini).values()) == {10 + 20}
