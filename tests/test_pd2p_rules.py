"""Every documented PD2P rule at its boundary, on both backends.

The fixture (:func:`hot`): the mini grid with the ESD (10 files of 10 GB,
100 GB) on disk at LRZ only and an analysis task whose 10 jobs wait for it
at LRZ (10 accesses recorded). Targets are ranked by
``weight_network / (1 + seconds / 3600) + weight_capacity * free slots
(relative to the best) + weight_tier * tier`` (defaults 1, 0.3, 0.2; tier 1
weighs 1.0, tier 2 0.7); an unmeasured link counts as 1 MB/s. Each test
measures or removes what it needs, so the numbers in the comments are
worked out by hand.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.common.config import Settings
from netbroker.common.enums import utcnow
from netbroker.db import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.pd2p import Pd2pDB
from netbroker.db.schema import datasets, endpoints, jobs
from netbroker.placement import pd2p
from netbroker.registry import registry
from netbroker.workload import tasks
from tests.factories import GB, fts_transfers, mini_grid, task_spec

ESD = "data23:data23.ESD"
NOW = utcnow().replace(microsecond=0)


def settings(**pd2p_settings: object) -> Settings:
    return Settings.model_validate({"pd2p": {"min_waiting_jobs": 10, **pd2p_settings}})


def hot(engine: Engine, replicas: list[str] | None = None, **grid: Any) -> Engine:
    """The ESD at LRZ (and ``replicas``), 10 analysis jobs waiting for it at LRZ."""
    registry.import_grid_document(engine, mini_grid(
        {"data23.ESD": ["LRZ_DATADISK", *(replicas or [])], "data23.AOD": ["DESY_DATADISK"]},
        extra_dataset="data23.ESD", files=10, **grid))
    made = tasks.submit(engine, tasks.parse_task(task_spec(
        "ana.esd", processing_type="analysis", input_dataset=ESD, user="bob")), Settings())
    assert made["jobs"] == {"activated": 10}
    return engine


def measure(engine: Engine, src: str, dst: str, mbytes_per_s: float) -> None:
    end = time.time() - 60
    assert ingest(engine, "fts", fts_transfers(src, dst, mbytes_per_s, 4, end),
                  now_s=end + 60).stored == 8


def decide(engine: Engine, s: Settings, now: datetime = NOW) -> list[dict[str, Any]]:
    return pd2p.run_cycle(engine, s, now=now)["decisions"]


def dataset_id(engine: Engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(datasets.c.id).where(datasets.c.name == name))
                   .scalar_one())


def open_decision(engine: Engine, dataset: str, target: str, nbytes: int,
                  state: str = "new") -> None:
    with begin_immediate(engine) as conn:
        ep = GridDB(conn).ids(endpoints)[target]
        Pd2pDB(conn).add_decisions([{
            "dataset_id": dataset_id(engine, dataset), "bytes": nbytes,
            "target_endpoint_id": ep, "sources": "[]", "candidates": "{}", "reason": "earlier",
            "state": state, "lifetime_days": 1.0, "created_at": NOW - timedelta(hours=2),
            "expires_at": NOW + timedelta(days=1), "updated_at": NOW - timedelta(hours=2)}])


@pytest.mark.parametrize(("least", "decided"), [(10, True), (11, False)])
def test_a_dataset_with_min_waiting_jobs_is_replicated(engine: Engine, least: int,
                                                       decided: bool) -> None:
    hot(engine)
    got = decide(engine, settings(min_waiting_jobs=least))
    assert bool(got) is decided
    if decided:
        (d,) = got
        assert d["dataset"] == ESD
        assert d["reason"].startswith(
            "10 waiting jobs >= 10; 10 accesses in 7 days; 1 disk replicas < 5; to ")


def test_only_waiting_jobs_count_toward_the_trigger(engine: Engine) -> None:
    hot(engine)
    with engine.begin() as conn:  # one of the ten starts running
        conn.execute(sa.update(jobs).where(jobs.c.id == 1).values(status="running"))
    assert decide(engine, settings()) == []


@pytest.mark.parametrize(("least", "decided"), [(10, True), (11, False)])
def test_a_dataset_with_min_accesses_per_week_is_replicated(engine: Engine, least: int,
                                                            decided: bool) -> None:
    hot(engine)
    got = decide(engine, settings(min_waiting_jobs=1000, min_accesses_per_week=least))
    assert bool(got) is decided
    if decided:
        assert "10 waiting jobs; 10 accesses in 7 days >= 10;" in got[0]["reason"]


@pytest.mark.parametrize(("ago", "decided"), [(timedelta(days=7), True),
                                              (timedelta(days=7, seconds=1), False)])
def test_accesses_count_over_the_last_7_days(engine: Engine, ago: timedelta,
                                             decided: bool) -> None:
    registry.import_grid_document(engine, mini_grid(
        {"data23.ESD": ["LRZ_DATADISK"]}, extra_dataset="data23.ESD", files=10))
    with begin_immediate(engine) as conn:
        Pd2pDB(conn).record_accesses([{"dataset_id": dataset_id(engine, "data23.ESD"),
                                       "task_id": None, "user_name": "bob", "jobs": 200,
                                       "at": NOW - ago}])
    assert bool(decide(engine, settings(min_waiting_jobs=1000))) is decided


@pytest.mark.parametrize(("others", "limit", "reason"), [
    (["FZK_TAPE"], 2, "1 disk replicas < 2"),   # tape does not count
    (["DESY_DATADISK"], 2, None),              # 2 disk replicas: the cap
    (["DESY_DATADISK"], 3, "2 disk replicas < 3"),
])
def test_a_dataset_is_replicated_only_below_max_replicas_on_disk(
        engine: Engine, others: list[str], limit: int, reason: str | None) -> None:
    hot(engine, others)
    got = decide(engine, settings(max_replicas=limit))
    assert [reason in d["reason"] for d in got] == ([True] if reason else [])


def test_at_most_max_decisions_per_hour_most_waiting_first(engine: Engine) -> None:
    hot(engine)
    aod = tasks.submit(engine, tasks.parse_task(task_spec(
        "ana.aod", processing_type="analysis", user="carol", files_per_job=2,
        walltime_s=4 * 3600)), Settings())
    assert aod["jobs"] == {"activated": 5}  # the AOD: 5 waiting, the ESD 10
    one = settings(min_waiting_jobs=5, max_decisions_per_hour=1)
    (first,) = decide(engine, one)
    assert first["dataset"] == ESD
    assert decide(engine, one, now=NOW + timedelta(minutes=30)) == []
    assert decide(engine, one, now=NOW + timedelta(hours=1)) == []  # the hour's first instant
    (second,) = decide(engine, one, now=NOW + timedelta(hours=1, seconds=1))
    assert second["dataset"] == "data23:data23.AOD"


# Endpoints without room for the 100 GB (FZK keeps 60 GB, room for the task's 50 GB of
# output): DESY is the only target.
FULL = {"FZK": 60 * GB, "RAL": 1, "CC": 1, "MAN": 1}


@pytest.mark.parametrize(("reserved", "target"), [(60 * GB, "DESY_DATADISK"),
                                                  (60 * GB + 1, None)])
def test_bytes_reserved_by_open_decisions_count_against_the_room(
        engine: Engine, reserved: int, target: str | None) -> None:
    # DESY has 160 GB free; an open decision already promised it `reserved` bytes:
    # 160 - 60 = 100 GB is room for the 100 GB ESD, one byte more is not.
    hot(engine, free_bytes={**FULL, "DESY": 160 * GB})
    open_decision(engine, "data23.AOD", "DESY_DATADISK", reserved)
    got = decide(engine, settings())
    assert [d["target"] for d in got] == ([target] if target else [])


def test_a_done_or_failed_decision_reserves_nothing(engine: Engine) -> None:
    hot(engine, free_bytes={**FULL, "DESY": 160 * GB})
    open_decision(engine, "data23.AOD", "DESY_DATADISK", 100 * GB, state="failed")
    (d,) = decide(engine, settings())
    assert d["target"] == "DESY_DATADISK"


@pytest.mark.parametrize(("quota", "target"), [(100 * GB, "DESY_DATADISK"),
                                               (100 * GB - 1, None)])
def test_a_site_receives_at_most_its_daily_quota(engine: Engine, quota: float,
                                                 target: str | None) -> None:
    hot(engine, free_bytes=FULL)
    got = decide(engine, settings(site_quota_bytes_per_day=quota))
    assert [d["target"] for d in got] == ([target] if target else [])
    if target is None:
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(
                sa.table("replication_decisions"))).scalar_one() == 0


def test_an_unmeasured_link_ranks_below_a_slow_measured_one(engine: Engine) -> None:
    # Only DESY and MAN have room, both Tier-2s with 100 free slots. MAN is measured at
    # 1.5 MB/s: 100 GB in 66,667 s, 1 / (1 + 18.52) + 0.3 + 0.14 = 0.4912; DESY is not
    # measured, so 1 MB/s: 100,000 s, 1 / (1 + 27.78) + 0.3 + 0.14 = 0.4747.
    hot(engine, free_bytes={"FZK": 60 * GB, "RAL": 1, "CC": 1})
    measure(engine, "LRZ_DATADISK", "MAN_DATADISK", 1.5)
    (d,) = decide(engine, settings())
    assert d["target"] == "MAN_DATADISK"
    ranked = pd2p.get_decision(engine, d["id"])["candidates"]["ranked"]
    assert [(c["endpoint"], c["score"]) for c in ranked] == [
        ("MAN_DATADISK", 0.4912), ("DESY_DATADISK", 0.4747)]
    assert ranked[1]["mbytes_per_s"] == 1.0


def test_the_target_weighs_transfer_time_free_slots_and_tier(engine: Engine) -> None:
    # Every link unmeasured (1 MB/s, 100,000 s: 0.0347). Free slots: 100 everywhere but
    # LRZ (holding the data anyway). Tier-1s FZK, RAL, CC: 0.0347 + 0.3 + 0.2 = 0.5347,
    # the first listed wins a tie: FZK_DATADISK. Tier-2s: 0.0347 + 0.3 + 0.14 = 0.4747.
    hot(engine)
    (d,) = decide(engine, settings())
    ranked = pd2p.get_decision(engine, d["id"])["candidates"]["ranked"]
    assert d["target"] == "FZK_DATADISK"
    assert {c["endpoint"]: c["score"] for c in ranked} == {
        "FZK_DATADISK": 0.5347, "RAL_DATADISK": 0.5347, "CC_DATADISK": 0.5347,
        "DESY_DATADISK": 0.4747, "MAN_DATADISK": 0.4747}
    heavy_tier = settings(weight_tier=2.0, weight_capacity=0.0)
    with engine.begin() as conn:
        conn.execute(sa.delete(sa.table("replication_decisions")))
    (again,) = decide(engine, heavy_tier)
    ranked = pd2p.get_decision(engine, again["id"])["candidates"]["ranked"]
    assert ranked[0]["score"] == 2.0347 and ranked[-1]["score"] == 1.4347


def test_the_cooldown_runs_from_the_failure(engine: Engine) -> None:
    hot(engine)
    (first,) = decide(engine, settings())
    failed = pd2p.mark_failed(engine, first["id"], "no space after all")
    at = failed["updated_at"]
    assert decide(engine, settings(), now=at + timedelta(hours=6)) == []  # still cooling
    (second,) = decide(engine, settings(), now=at + timedelta(hours=6, seconds=1))
    assert second["target"] != first["target"]  # never where it failed


def test_an_open_decision_expires_after_its_expiry_hours(engine: Engine) -> None:
    hot(engine)
    (d,) = decide(engine, settings(decision_expiry_hours=2.0))
    due = pd2p.get_decision(engine, d["id"])["expires_at"]
    assert due == NOW + timedelta(hours=2)
    assert pd2p.run_cycle(engine, settings(), now=due)["expired"] == []
    assert pd2p.run_cycle(engine, settings(), now=due + timedelta(seconds=1))["expired"] == [
        d["id"]]


def test_an_unpopular_pd2p_replica_is_proposed_for_clean_up(engine: Engine) -> None:
    hot(engine)
    (d,) = decide(engine, settings())
    pd2p.mark_done(engine, d["id"], settings())
    assert pd2p.cleanup_proposals(engine, settings().pd2p) == []  # 10 jobs still wait
    tasks.kill_task(engine, 1)
    (proposal,) = pd2p.cleanup_proposals(engine, settings().pd2p)
    assert proposal["reason"] == "no longer popular: 10 accesses in 7 days, no waiting job"
    assert pd2p.cleanup_proposals(engine, settings(min_accesses_per_week=10).pd2p) == []
