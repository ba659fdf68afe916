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

import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.common.config import Pd2pSettings, Settings
from netbroker.common.enums import utcnow
from netbroker.common.errors import DecisionConflict
from netbroker.db import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.pd2p import Pd2pDB
from netbroker.db.schema import (
    datasets,
    endpoints,
    jobs,
    queues,
    replicas,
    replication_decisions,
)
from netbroker.placement import pd2p
from netbroker.registry import registry
from netbroker.workload import tasks
from tests.factories import GB, fts_transfers, mini_grid, perfsonar_documents, task_spec

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


# --- clean-up proposals and a done decision, with replicas made where the test says -----

E = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # a PD2P replica's end of lifetime


def pd2p_replica(engine: Engine, dataset: str, endpoint: str, expires_at: datetime) -> None:
    """A replica PD2P made (as a done decision makes it), ending at ``expires_at``."""
    with begin_immediate(engine) as conn:
        ep = GridDB(conn).ids(endpoints)[endpoint]
        Pd2pDB(conn).add_replica(dataset_id(engine, dataset), ep, expires_at, NOW)


def proposal(dataset: str, endpoint: str, expires_at: datetime, reason: str
             ) -> dict[str, object]:
    return {"dataset": dataset, "endpoint": endpoint, "expires_at": expires_at,
            "reason": reason}


def test_a_pd2p_replica_is_proposed_when_its_lifetime_ends_not_before(engine: Engine) -> None:
    hot(engine)  # the ESD is popular: 10 jobs wait for it
    pd2p_replica(engine, "data23.ESD", "DESY_DATADISK", E)
    p = settings().pd2p
    assert pd2p.cleanup_proposals(engine, p, now=E - timedelta(seconds=1)) == []
    assert pd2p.cleanup_proposals(engine, p, now=E) == [
        proposal(ESD, "DESY_DATADISK", E, "lifetime ended 2026-12-01T12:00:00Z")]


def test_clean_up_proposals_are_in_lifetime_order_and_a_kept_one_does_not_end_them(
        engine: Engine) -> None:
    hot(engine)
    # made in this order: the AOD's (dataset 1) first, ending a day after the ESD's
    pd2p_replica(engine, "data23.AOD", "MAN_DATADISK", E + timedelta(days=1))
    pd2p_replica(engine, "data23.ESD", "RAL_DATADISK", E)
    p = settings().pd2p
    # before both ends: the ESD's (first by lifetime) is kept, the AOD's (no job waits
    # for it, no access) proposed as unpopular
    assert pd2p.cleanup_proposals(engine, p, now=E - timedelta(days=1)) == [
        proposal("data23:data23.AOD", "MAN_DATADISK", E + timedelta(days=1),
                 "no longer popular: 0 accesses in 7 days, no waiting job")]
    # after both ends: the ESD's first, it ends first
    assert [(r["dataset"], r["reason"]) for r in pd2p.cleanup_proposals(
        engine, p, now=E + timedelta(days=2))] == [
        (ESD, "lifetime ended 2026-12-01T12:00:00Z"),
        ("data23:data23.AOD", "lifetime ended 2026-12-02T12:00:00Z")]


@pytest.mark.parametrize(("ago", "accesses", "least", "proposed"), [
    (None, 0, 1, True),                             # no access at all: 0 < 1
    (timedelta(days=7), 200, 200, False),           # the week's first instant counts
    (timedelta(days=7, seconds=1), 200, 200, True),  # a second before it does not
    (timedelta(days=1), 199, 200, True),
])
def test_a_pd2p_replica_is_unpopular_under_min_accesses_over_7_days(
        engine: Engine, ago: timedelta | None, accesses: int, least: int,
        proposed: bool) -> None:
    hot(engine)  # no job waits for the AOD
    pd2p_replica(engine, "data23.AOD", "MAN_DATADISK", NOW + timedelta(days=14))
    if ago is not None:
        with begin_immediate(engine) as conn:
            Pd2pDB(conn).record_accesses([{
                "dataset_id": dataset_id(engine, "data23.AOD"), "task_id": None,
                "user_name": "bob", "jobs": accesses, "at": NOW - ago}])
    got = pd2p.cleanup_proposals(engine, settings(min_accesses_per_week=least).pd2p, now=NOW)
    counted = accesses if ago is not None and ago <= timedelta(days=7) else 0
    assert got == ([proposal("data23:data23.AOD", "MAN_DATADISK", NOW + timedelta(days=14),
                             f"no longer popular: {counted} accesses in 7 days, "
                             "no waiting job")] if proposed else [])


def replica_rows(engine: Engine) -> dict[tuple[str, str], tuple[str, str, datetime | None]]:
    """(dataset, endpoint) -> (state, origin, expires_at) of every replica."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(datasets.c.name, endpoints.c.name, replicas.c.state,
                                      replicas.c.origin, replicas.c.expires_at)
                            .join(datasets, replicas.c.dataset_id == datasets.c.id)
                            .join(endpoints, replicas.c.endpoint_id == endpoints.c.id)).all()
    return {(d, e): (s, o, x) for d, e, s, o, x in rows}


def free_space(engine: Engine) -> dict[str, int | None]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(endpoints.c.name, endpoints.c.free_bytes)).all())


def decision_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.max(replication_decisions.c.id)))
                   .scalar_one())


@pytest.mark.parametrize(("target", "free", "pending"), [
    ("LRZ_DATADISK", 500 * GB, False),   # no row of the AOD there (the ESD's is)
    ("MAN_DATADISK", 500 * GB, True),    # DDM registered it pending meanwhile
    ("LRZ_DATADISK", 50 * GB, False),    # less free than the 60 GB: none left, not less
    ("LRZ_DATADISK", None, False),       # free space not reported: it stays unknown
])
def test_done_makes_the_replica_available_at_its_target_and_takes_its_space(
        engine: Engine, target: str, free: int | None, pending: bool) -> None:
    site = target.removesuffix("_DATADISK")
    hot(engine, ["MAN_DATADISK"], free_bytes={site: free or 0})  # the ESD also at MAN
    if free is None:
        with engine.begin() as conn:
            conn.execute(sa.update(endpoints).where(endpoints.c.name == target)
                         .values(free_bytes=None))
    if pending:
        with engine.begin() as conn:
            conn.execute(sa.insert(replicas).values(
                dataset_id=dataset_id(engine, "data23.AOD"),
                endpoint_id=GridDB(conn).ids(endpoints)[target], state="pending",
                updated_at=NOW))
    open_decision(engine, "data23.AOD", target, 60 * GB)
    before, space = replica_rows(engine), free_space(engine)
    done = pd2p.mark_done(engine, decision_id(engine), settings(), now=NOW)
    # no task reads the AOD: nothing to rebroker
    assert (done["state"], done["rebrokered"]) == ("done", {"activated": 0, "moved": []})
    assert replica_rows(engine) == {
        **before, ("data23.AOD", target): ("available", "pd2p", NOW + timedelta(days=1))}
    assert free_space(engine) == {**space,
                                  target: None if free is None else max(free - 60 * GB, 0)}


def test_only_an_open_decision_can_be_done(engine: Engine) -> None:
    hot(engine)
    open_decision(engine, "data23.AOD", "MAN_DATADISK", GB)
    d = decision_id(engine)
    pd2p.mark_failed(engine, d, "no space")
    with pytest.raises(DecisionConflict) as refused:
        pd2p.mark_done(engine, d, settings(), now=NOW)
    assert str(refused.value) == (f"decision {d} is failed: only a new or acknowledged "
                                  "decision can be done")


def test_an_endpoint_where_the_dataset_failed_is_left_out_and_counted(engine: Engine) -> None:
    # FZK_TAPE is no disk, LRZ holds the ESD; the first of the equal Tier-1s (FZK) wins.
    hot(engine)
    (first,) = decide(engine, settings())
    assert first["target"] == "FZK_DATADISK"
    assert pd2p.get_decision(engine, first["id"])["candidates"]["rejected"] == {
        "not a disk endpoint at an online site": 1, "holds the dataset": 1,
        "not enough free space": 0, "site over its daily quota": 0}  # no failure: no filter
    failed = pd2p.mark_failed(engine, first["id"], "no space after all")
    (second,) = decide(engine, settings(), now=failed["updated_at"] + timedelta(hours=6,
                                                                                seconds=1))
    assert second["target"] == "RAL_DATADISK"  # the next of the equal Tier-1s
    stored = pd2p.get_decision(engine, second["id"])["candidates"]
    assert [c["endpoint"] for c in stored["ranked"]] == [
        "RAL_DATADISK", "CC_DATADISK", "DESY_DATADISK", "MAN_DATADISK"]
    assert stored["rejected"] == {
        "not a disk endpoint at an online site": 1, "holds the dataset": 1,
        "failed there before": 1, "not enough free space": 0, "site over its daily quota": 0}


def test_without_a_target_the_placement_says_only_why() -> None:
    """Two endpoints at two sites: A holds the dataset, B has 5 of the 10 bytes free."""
    placement = pd2p.choose_target(
        10.0, np.array([0]), np.array([True]), np.array([0, 1]), np.array([True, True]),
        np.array([100.0, 5.0]), np.array([100.0, 100.0]), np.array([1.0, 1.0]),
        np.array([1.0, 1.0]), np.full((2, 2), np.nan), 1.0, 3600.0, Pd2pSettings(),
        ["A", "B"])
    assert placement == pd2p.Placement(None, math.inf, [], [], {
        "not a disk endpoint at an online site": 0, "holds the dataset": 1,
        "not enough free space": 1, "site over its daily quota": 0})


def test_of_equal_scores_the_first_endpoint_listed_wins_among_many() -> None:
    """18 endpoints, one a site: E0 holds the dataset, E1..E17 differ only in their
    site's tier (E5, E6 and E16 at Tier-1 weight 1.0). 10 bytes over an unmeasured
    link (1 MB/s) take 1e-5 s: 1 / (1 + 1e-5 / 3600) + 0.3 * 1 (each site's one free
    slot is the best's) + 0.2 * 1.0 = 1.5 for the Tier-1s; E5 is listed first. More
    than 16 candidates: a sort that keeps ties in order only by chance does not here."""
    tiers = [0.7, 0.7, 0.7, 0.7, 1.0, 1.0, 0.4, 0.4, 0.4, 0.4, 0.4, 0.7, 0.4, 0.4, 0.7, 1.0,
             0.7]
    n = 1 + len(tiers)
    placement = pd2p.choose_target(
        10.0, np.array([0]), np.array([True]), np.arange(n), np.ones(n, bool),
        np.full(n, 100.0), np.full(n, 100.0), np.ones(n), np.array([1.0, *tiers]),
        np.full((n, n), np.nan), 1.0, 3600.0, Pd2pSettings(), [f"E{k}" for k in range(n)])
    assert placement.target == 5
    assert [c["endpoint"] for c in placement.candidates] == [
        "E5", "E6", "E16", "E1", "E2", "E3", "E4", "E12", "E15", "E17"]
    assert [c["score"] for c in placement.candidates[:4]] == [1.5, 1.5, 1.5, 1.44]


def test_the_sources_are_ranked_by_their_throughput_to_the_target_ties_in_order() -> None:
    """17 replicas E0..E16 (one a site) and one target E17: each source's link to it at
    40, 70 or 123.456 MB/s; best first, equal ones in the order listed. 308.64 MB at
    123.456 MB/s take 2.5 s: 1 / (1 + 2.5 / 3600) + 0.3 + 0.2 = 1.49931."""
    best = 123.456
    rates = [70.0, 70.0, 70.0, 70.0, best, best, 40.0, 40.0, 40.0, 40.0, 40.0, 70.0, 40.0,
             40.0, 70.0, best, 70.0]
    n = len(rates) + 1
    throughput = np.full((n, n), np.nan)
    throughput[:-1, -1] = rates
    placement = pd2p.choose_target(
        308.64e6, np.arange(n - 1), np.ones(n - 1, bool), np.arange(n), np.ones(n, bool),
        np.full(n, 1e9), np.full(n, 1e9), np.ones(n), np.ones(n), throughput, 1.0, 3600.0,
        Pd2pSettings(), [f"E{k}" for k in range(n)])
    assert placement.target == n - 1
    assert placement.sources == [4, 5, 15, 0, 1, 2, 3, 11, 14, 16, 6, 7, 8, 9, 10, 12, 13]
    assert placement.candidates == [{"endpoint": "E17", "score": 1.4993, "transfer_s": 2.5,
                                     "mbytes_per_s": 123.46, "free_slots": 1,
                                     "tier_weight": 1.0}]


@pytest.mark.parametrize(("metrics", "window_end_s", "target"), [
    ({}, 0.0, "MAN_DATADISK"),                     # the measured link, as above
    ({"min_samples": 5}, 0.0, "DESY_DATADISK"),    # 4 samples: no measurement
    ({}, 3 * 86400.0, "DESY_DATADISK"),           # a window ending 3 days on: none in it
])
def test_the_links_are_read_with_the_metrics_settings_and_window_end_given(
        engine: Engine, metrics: dict[str, int], window_end_s: float, target: str) -> None:
    # As in the test above: MAN measured at 1.5 MB/s wins; unmeasured, MAN and DESY
    # tie at 0.4747 and DESY, listed first, wins.
    hot(engine, free_bytes={"FZK": 60 * GB, "RAL": 1, "CC": 1})
    measure(engine, "LRZ_DATADISK", "MAN_DATADISK", 1.5)
    s = Settings.model_validate({"pd2p": {"min_waiting_jobs": 10}, "metrics": metrics})
    (d,) = pd2p.run_cycle(engine, s, now=NOW, now_s=time.time() + window_end_s)["decisions"]
    assert d["target"] == target


def test_a_link_to_a_site_without_an_endpoint_is_no_target(engine: Engine) -> None:
    """NEW (a DE Tier-2 with no storage endpoint) is measured from LRZ by perfSONAR at
    500 MB/s: it is no row of the endpoints, so its link is left out, and the ESD goes
    where it would without it (FZK, the first of the equal Tier-1s)."""
    doc = json.loads(mini_grid({"data23.ESD": ["LRZ_DATADISK"],
                                "data23.AOD": ["DESY_DATADISK"]},
                               extra_dataset="data23.ESD", files=10))
    doc["site"]["NEW"] = {"cloud": "DE", "tier_level": 2, "country": "DE", "status": "online",
                          "datapolicies": [], "domains": ["new.example"]}
    registry.import_grid_document(engine, json.dumps(doc))
    tasks.submit(engine, tasks.parse_task(task_spec(
        "ana.esd", processing_type="analysis", input_dataset=ESD, user="bob")), Settings())
    end = time.time() - 60
    assert ingest(engine, "perfsonar", perfsonar_documents("LRZ", "NEW", 4, end,
                                                           mbytes_per_s=500.0),
                  now_s=end + 60).stored == 4
    (d,) = decide(engine, settings())
    assert d["target"] == "FZK_DATADISK"


@pytest.mark.parametrize(("desy_slots", "free"), [(100, 96), (4, 0)])
def test_a_sites_free_slots_are_its_queues_slots_less_its_own_busy_jobs(
        engine: Engine, desy_slots: int, free: int) -> None:
    """The ESD's 10 jobs wait at LRZ (holding it, no target); the AOD's 5 at DESY, one
    of them finished: DESY has its slots less 4 free (none below zero), every other
    candidate its 100."""
    hot(engine, pilot_slots={"DESY": desy_slots})
    aod = tasks.submit(engine, tasks.parse_task(task_spec(
        "ana.aod", processing_type="analysis", user="carol", files_per_job=2,
        walltime_s=4 * 3600)), Settings())
    assert aod["jobs"] == {"activated": 5}
    with engine.begin() as conn:
        desy = GridDB(conn).ids(queues)["DESY_UCORE"]
        assert conn.execute(sa.select(sa.func.count()).where(
            jobs.c.task_id == aod["id"], jobs.c.queue_id == desy)).scalar_one() == 5
        first = conn.execute(sa.select(sa.func.min(jobs.c.id)).where(
            jobs.c.task_id == aod["id"])).scalar_one()
        conn.execute(sa.update(jobs).where(jobs.c.id == first).values(status="finished"))
    (d,) = decide(engine, settings())
    ranked = pd2p.get_decision(engine, d["id"])["candidates"]["ranked"]
    assert {c["endpoint"]: c["free_slots"] for c in ranked} == {
        "FZK_DATADISK": 100, "RAL_DATADISK": 100, "CC_DATADISK": 100, "DESY_DATADISK": free,
        "MAN_DATADISK": 100}


def sent(engine: Engine, target: str, nbytes: int, created: datetime, state: str) -> None:
    """An earlier decision of ``nbytes`` to ``target``, created at ``created``."""
    with begin_immediate(engine) as conn:
        ep = GridDB(conn).ids(endpoints)[target]
        Pd2pDB(conn).add_decisions([{
            "dataset_id": dataset_id(engine, "data23.AOD"), "bytes": nbytes,
            "target_endpoint_id": ep, "sources": "[]", "candidates": "{}",
            "reason": "earlier", "state": state, "lifetime_days": 1.0, "created_at": created,
            "expires_at": created + timedelta(days=1), "updated_at": created}])


@pytest.mark.parametrize(("ago", "state", "target"), [
    (timedelta(days=1), "done", None),                         # the day's first instant
    (timedelta(days=1, seconds=1), "done", "DESY_DATADISK"),   # a second before it
    (timedelta(hours=1), "acknowledged", None),
    (timedelta(hours=1), "failed", "DESY_DATADISK"),           # a failure sent nothing
])
def test_the_daily_quota_counts_the_decisions_of_the_last_24_hours_not_failed(
        engine: Engine, ago: timedelta, state: str, target: str | None) -> None:
    # DESY, the only endpoint with room, may receive 150 GB a day: after 50 GB and a
    # byte sent, the 100 GB ESD is over it.
    hot(engine, free_bytes=FULL)
    sent(engine, "DESY_DATADISK", 50 * GB + 1, NOW - ago, state)
    got = decide(engine, settings(site_quota_bytes_per_day=150 * GB))
    assert [d["target"] for d in got] == ([target] if target else [])


def test_an_endpoint_only_where_a_decision_failed_is_left_out_not_where_one_expired(
        engine: Engine) -> None:
    hot(engine)
    (first,) = decide(engine, settings(decision_expiry_hours=1.0))
    assert first["target"] == "FZK_DATADISK"
    later = NOW + timedelta(hours=1, seconds=1)
    # it expires, and the cooldown runs from its expiry: no decision in that cycle
    assert pd2p.run_cycle(engine, settings(), now=later) == {"decisions": [],
                                                              "expired": [first["id"]]}
    assert decide(engine, settings(), now=later + timedelta(hours=6)) == []
    (again,) = decide(engine, settings(), now=later + timedelta(hours=6, seconds=1))
    assert again["target"] == "FZK_DATADISK"
    rejected = pd2p.get_decision(engine, again["id"])["candidates"]["rejected"]
    assert "failed there before" not in rejected


def test_a_datasets_bytes_are_the_sum_of_its_own_files(engine: Engine) -> None:
    """The ESD's 10 files of 10 GB, the AOD cut to 3 of them, and an empty dataset."""
    doc = json.loads(mini_grid({"data23.ESD": ["LRZ_DATADISK"]}, extra_dataset="data23.ESD",
                               files=10))
    aod = next(d for d in doc["dataset"] if d["name"] == "data23.AOD")
    aod["files"] = aod["files"][:3]
    doc["dataset"].append({"scope": "data23", "name": "data23.EMPTY", "files": [],
                           "replicas": []})
    registry.import_grid_document(engine, json.dumps(doc))
    assert [(p["dataset"], p["bytes"]) for name in ("ESD", "AOD", "EMPTY")
            for p in pd2p.popularity(engine, f"data23:data23.{name}")] == [
        (ESD, 100 * GB), ("data23:data23.AOD", 30 * GB), ("data23:data23.EMPTY", 0)]


def test_a_done_decision_does_not_hold_the_dataset_back(engine: Engine) -> None:
    """Done at FZK, the ESD has 2 disk replicas of 5 and 10 jobs still wait for it: the
    next cycle places it again (at RAL, the next of the equal Tier-1s)."""
    hot(engine)
    (first,) = decide(engine, settings())
    pd2p.mark_done(engine, first["id"], settings(), now=NOW)
    (again,) = decide(engine, settings(), now=NOW + timedelta(minutes=1))
    assert (again["target"], again["reason"].split("; ")[2]) == ("RAL_DATADISK",
                                                                 "2 disk replicas < 5")


def test_a_dataset_with_an_open_decision_is_open_before_it_is_cooling(engine: Engine) -> None:
    """The ESD failed at FZK 2 h ago and is new at RAL: "open"; the AOD only failed 2 h
    ago: "cooldown" (6 h); a failure 7 h ago is past it."""
    hot(engine)
    open_decision(engine, "data23.ESD", "FZK_DATADISK", GB, state="failed")
    open_decision(engine, "data23.ESD", "RAL_DATADISK", GB)
    open_decision(engine, "data23.AOD", "RAL_DATADISK", GB, state="failed")
    esd, aod = dataset_id(engine, "data23.ESD"), dataset_id(engine, "data23.AOD")
    with engine.connect() as conn:
        db = Pd2pDB(conn)
        assert db.decided([esd, aod], NOW - timedelta(hours=6)) == {esd: "open",
                                                                    aod: "cooldown"}
        assert db.decided([esd, aod], NOW - timedelta(hours=1)) == {esd: "open"}


def test_a_cycle_reports_what_expired_with_what_it_decided(engine: Engine) -> None:
    hot(engine)
    open_decision(engine, "data23.AOD", "RAL_DATADISK", GB)  # expires NOW + 1 day
    with engine.connect() as conn:
        aod_decision = conn.execute(sa.select(replication_decisions.c.id)).scalar_one()
    cycle = pd2p.run_cycle(engine, settings(), now=NOW + timedelta(days=1, seconds=1))
    assert [d["dataset"] for d in cycle["decisions"]] == [ESD]
    assert cycle["expired"] == [aod_decision]


def test_accesses_older_than_a_day_count_for_the_week_only(engine: Engine) -> None:
    hot(engine)  # bob's 10 accesses to the ESD now
    two_days_ago = NOW - timedelta(days=2)
    with begin_immediate(engine) as conn:
        Pd2pDB(conn).record_accesses([{
            "dataset_id": dataset_id(engine, name), "task_id": None, "user_name": "carol",
            "jobs": jobs, "at": two_days_ago}
            for name, jobs in (("data23.ESD", 3), ("data23.ESD", 4), ("data23.AOD", 7))])

    def seen(now: datetime) -> dict[str, tuple[int, int, int]]:
        return {p["dataset"]: (p["accesses_1d"], p["accesses_1w"], p["users_1w"])
                for p in pd2p.popularity(engine, now=now)}

    assert seen(NOW) == {ESD: (10, 17, 2), "data23:data23.AOD": (0, 7, 1)}
    # a day after carol's accesses: the day's first instant counts them
    assert seen(two_days_ago + timedelta(days=1)) == {ESD: (17, 17, 2),
                                                      "data23:data23.AOD": (7, 7, 1)}
