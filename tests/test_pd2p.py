"""PD2P on both backends: one decision per popular dataset, network-aware, and the DDM feed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.common.config import Settings
from netbroker.common.enums import utcnow
from netbroker.common.errors import DecisionConflict, InvalidDecision, UnknownDecision
from netbroker.db import begin_immediate
from netbroker.db.grid import GridDB
from netbroker.db.pd2p import Pd2pDB
from netbroker.db.schema import datasets, endpoints, jobs, queues, replicas
from netbroker.placement import pd2p
from netbroker.registry import registry
from netbroker.workload import tasks
from tests.conftest import LiveServer
from tests.factories import GB, fts_transfers, mini_grid, task_spec

ESD = "data23:data23.ESD"
SETTINGS = Settings.model_validate({"pd2p": {"min_waiting_jobs": 10,
                                             "site_quota_bytes_per_day": 1e12}})


def measure(engine: Engine, src: str, dst: str, mbytes_per_s: float) -> None:
    end = time.time() - 60
    assert ingest(engine, "fts", fts_transfers(src, dst, mbytes_per_s, 4, end),
                  now_s=end + 60).stored == 8


@pytest.fixture
def popular(engine: Engine) -> Engine:
    """ESD (30 files of 10 GB) on disk at LRZ only; 30 analysis jobs wait for it at LRZ.

    From LRZ the fastest links go to FZK (its disk is full, it also has tape),
    MAN (site offline), CC (over its daily quota), then DESY; RAL is slow.
    """
    registry.import_grid_document(engine, mini_grid(
        {"data23.ESD": ["LRZ_DATADISK"]}, extra_dataset="data23.ESD", files=30,
        pilot_slots={"LRZ": 10}, site_status={"MAN": "offline"},
        free_bytes={"FZK": 200 * GB}))  # room for the task output, not for 300 GB
    for dst, rate in (("FZK_DATADISK", 1200.0), ("MAN_DATADISK", 1000.0),
                      ("CC_DATADISK", 900.0), ("DESY_DATADISK", 700.0),
                      ("RAL_DATADISK", 100.0)):
        measure(engine, "LRZ_DATADISK", dst, rate)
    with begin_immediate(engine) as conn:  # CC already received its day's quota
        cc = GridDB(conn).ids(endpoints)["CC_DATADISK"]
        aod = conn.execute(sa.select(datasets.c.id).where(datasets.c.name == "data23.AOD")
                           ).scalar_one()
        now = utcnow()
        Pd2pDB(conn).add_decisions([{
            "dataset_id": aod, "bytes": 10**12, "target_endpoint_id": cc, "sources": "[]",
            "candidates": "{}", "reason": "earlier", "state": "done", "lifetime_days": 1.0,
            "created_at": now, "expires_at": now, "updated_at": now}])
    task = tasks.submit(engine, tasks.parse_task(task_spec(
        "ana.001", processing_type="analysis", input_dataset=ESD, user="bob")), SETTINGS)
    assert task["cloud"] == "DE" and task["jobs"] == {"activated": 30}
    return engine


def test_a_popular_dataset_gets_one_decision_at_the_fastest_endpoint_with_room(
        popular: Engine) -> None:
    result = pd2p.run_cycle(popular, SETTINGS)
    (decision,) = result["decisions"]
    assert (decision["dataset"], decision["target"]) == (ESD, "DESY_DATADISK")
    assert "30 waiting jobs >= 10" in decision["reason"]
    assert "300 GB from LRZ_DATADISK in about 429 s (700 MB/s)" in decision["reason"]
    stored = pd2p.get_decision(popular, decision["id"])
    assert stored["sources"] == [{"endpoint": "LRZ_DATADISK", "rank": 1}]
    assert stored["bytes"] == 300 * GB and stored["state"] == "new"
    rejected = stored["candidates"]["rejected"]
    assert rejected["not enough free space"] == 1             # FZK_DATADISK
    assert rejected["site over its daily quota"] == 1         # CC_DATADISK
    assert rejected["not a disk endpoint at an online site"] == 2  # FZK_TAPE, MAN_DATADISK
    assert rejected["holds the dataset"] == 1                 # LRZ_DATADISK
    assert pd2p.run_cycle(popular, SETTINGS)["decisions"] == []  # one, not one per cycle


def test_done_adds_the_replica_and_rebrokers_the_waiting_jobs(popular: Engine) -> None:
    (decision,) = pd2p.run_cycle(popular, SETTINGS)["decisions"]
    pd2p.mark_acknowledged(popular, decision["id"])
    result = pd2p.mark_done(popular, decision["id"], SETTINGS)
    assert result["state"] == "done"
    moved = result["rebrokered"]["moved"]
    # LRZ took jobs up to 2 per slot (20); the 10 beyond went to other DE sites, without
    # the data: those now move to the new copy.
    assert moved and {m["to"] for m in moved} == {"DESY_UCORE"}
    away = [m for m in moved if m["from"] != "LRZ_UCORE"]
    assert away and all("input now on disk at another site" in m["reason"] for m in away)
    # So do LRZ's jobs with more than 10 ahead of them for its 10 slots: k ahead of 2-h
    # jobs wait k / 10 * 2 h, more than the 2 h of start_sooner_by_minutes from 11 on.
    assert sorted(m["reason"] for m in moved if m["from"] == "LRZ_UCORE") == [
        f"{k} jobs ahead for 10 slots: start in {k * 0.2:.2f} h -> 0.00 h at DESY_UCORE"
        for k in range(11, 20)]
    with popular.connect() as conn:
        desy = GridDB(conn).ids(endpoints)["DESY_DATADISK"]
        replica = conn.execute(sa.select(replicas).where(replicas.c.endpoint_id == desy)
                               ).mappings().one()
        at_desy = conn.execute(sa.select(sa.func.count()).select_from(jobs).join(queues).where(
            queues.c.name == "DESY_UCORE")).scalar_one()
        free = conn.execute(sa.select(endpoints.c.free_bytes).where(endpoints.c.id == desy)
                            ).scalar_one()
    assert (replica["state"], replica["origin"]) == ("available", "pd2p")
    assert replica["expires_at"] > utcnow() + timedelta(days=13)
    assert at_desy >= len(moved)
    assert free == 5 * 10**14 - 300 * GB
    later = utcnow() + timedelta(days=15)
    (proposal,) = pd2p.cleanup_proposals(popular, SETTINGS.pd2p, now=later)
    assert proposal["endpoint"] == "DESY_DATADISK" and "lifetime ended" in proposal["reason"]


def test_failed_and_expired_decisions(popular: Engine) -> None:
    (first,) = pd2p.run_cycle(popular, SETTINGS)["decisions"]
    pd2p.mark_failed(popular, first["id"], "FTS: destination overloaded")
    assert pd2p.run_cycle(popular, SETTINGS)["decisions"] == []  # the cooldown
    no_cooldown = SETTINGS.model_copy(update={"pd2p": SETTINGS.pd2p.model_copy(
        update={"cooldown_hours": 0.0})})
    (second,) = pd2p.run_cycle(popular, no_cooldown)["decisions"]
    assert second["target"] != "DESY_DATADISK"  # not where it failed
    expired = pd2p.run_cycle(popular, no_cooldown, now=utcnow() + timedelta(hours=49))
    assert expired["expired"] == [second["id"]]
    assert pd2p.get_decision(popular, second["id"])["state"] == "expired"
    with pytest.raises(DecisionConflict, match="is expired"):
        pd2p.mark_done(popular, second["id"], SETTINGS)


def test_excluded_and_well_replicated_datasets_get_no_decision(engine: Engine) -> None:
    registry.import_grid_document(engine, mini_grid(
        {"data23.ESD": ["LRZ_DATADISK"], "user.bob.ntuple.log": ["LRZ_DATADISK"]},
        extra_dataset="user.bob.ntuple.log", files=12))
    tasks.submit(engine, tasks.parse_task(task_spec(
        "logs", processing_type="analysis", input_dataset="data23:user.bob.ntuple.log")),
        SETTINGS)
    registry.import_grid_document(engine, mini_grid(extra_dataset="data23.ESD", files=12))
    tasks.submit(engine, tasks.parse_task(task_spec(
        "aod", processing_type="analysis")), SETTINGS)  # AOD: one disk replica, at DESY
    assert pd2p.popularity(engine, "data23:user.bob.ntuple.log")[0]["waiting_jobs"] == 12
    capped = SETTINGS.model_copy(update={"pd2p": SETTINGS.pd2p.model_copy(
        update={"max_replicas": 1})})
    assert pd2p.run_cycle(engine, capped)["decisions"] == []  # one replica is the cap
    # Uncapped, both are popular and under-replicated: only the exclusion keeps the log out.
    placed = {d["dataset"] for d in pd2p.run_cycle(engine, SETTINGS)["decisions"]}
    assert placed == {"data23:data23.AOD"}


def test_the_feed_pages_without_gaps_or_repeats_while_decisions_are_added(
        popular: Engine) -> None:
    with popular.connect() as conn:
        aod = conn.execute(sa.select(datasets.c.id).where(datasets.c.name == "data23.AOD")
                           ).scalar_one()
        desy = GridDB(conn).ids(endpoints)["DESY_DATADISK"]
    writers_left = [1, 2]  # one entry per running writer

    def writer() -> None:
        for _ in range(30):
            now = utcnow()
            with begin_immediate(popular) as conn:
                Pd2pDB(conn).add_decisions([{
                    "dataset_id": aod, "bytes": 1, "target_endpoint_id": desy,
                    "sources": "[]", "candidates": "{}", "reason": "load", "state": "done",
                    "lifetime_days": 1.0, "created_at": now, "expires_at": now,
                    "updated_at": now} for _ in range(3)])
                time.sleep(0.002)  # hold the transaction: a rival writer must wait
        writers_left.pop()

    # Two writers at once: without the feed's lock a later id could commit first.
    threads = [threading.Thread(target=writer) for _ in range(2)]
    for thread in threads:
        thread.start()
    seen, cursor = [], 0
    while True:
        finished = not writers_left  # read before the page: an empty page then means all
        page = pd2p.feed(popular, cursor, 7)
        seen += [d["id"] for d in page["decisions"]]
        cursor = page["next"]
        if finished and not page["decisions"]:
            break
    for thread in threads:
        thread.join()
    with popular.connect() as conn:
        every = sorted(conn.execute(sa.text("SELECT id FROM replication_decisions")).scalars())
    assert seen == every and len(every) == 1 + 180


def test_feed_api_rucio_format_and_bad_requests(popular: Engine) -> None:
    (decision,) = pd2p.run_cycle(popular, SETTINGS)["decisions"]
    did = decision["id"]
    with LiveServer(popular, SETTINGS) as server, \
            httpx.Client(base_url=server.url, timeout=30) as http:
        page = http.get("/api/v1/replication/decisions", params={"after": did - 1}).json()
        assert [d["id"] for d in page["decisions"]] == [did] and page["next"] == did
        rule = http.get("/api/v1/replication/decisions",
                        params={"after": did - 1, "format": "rucio"}).json()["decisions"][0]
        assert rule["rule"]["dids"] == [{"scope": "data23", "name": "data23.ESD"}]
        assert rule["rule"]["rse_expression"] == "DESY_DATADISK"
        assert rule["rule"]["source_replica_expression"] == "LRZ_DATADISK"
        assert rule["rule"]["lifetime"] == 14 * 86400
        assert rule["rule"]["activity"] == "Data Brokering"
        assert http.get("/api/v1/replication/decisions",
                        params={"after": "abc"}).status_code == 400
        assert http.get("/api/v1/replication/decisions",
                        params={"after": "-3"}).status_code == 400
        assert http.get("/api/v1/replication/decisions",
                        params={"limit": 0}).status_code == 422
        assert http.post("/api/v1/replication/decisions/99999/ack").status_code == 404
        assert http.post(f"/api/v1/replication/decisions/{did}/failed",
                         json={"reason": ""}).status_code == 422
        assert http.post(f"/api/v1/replication/decisions/{did}/ack").status_code == 200
        assert http.post(f"/api/v1/replication/decisions/{did}/ack").status_code == 200
        assert http.post(f"/api/v1/replication/decisions/{did}/failed",
                         json={"reason": "no space"}).json()["state"] == "failed"
        refused = http.post(f"/api/v1/replication/decisions/{did}/done")
        assert refused.status_code == 409 and "is failed" in refused.json()["detail"]
        assert http.get(f"/api/v1/replication/decisions/{did}").json()["state"] == "failed"
        pop = http.get(f"/api/v1/datasets/{ESD}/popularity").json()
        assert (pop["accesses_1w"], pop["users_1w"], pop["waiting_jobs"]) == (30, 1, 30)
        assert http.get("/api/v1/datasets/data23:nope/popularity").status_code == 404
    with pytest.raises(InvalidDecision):
        pd2p.parse_cursor("1.5")
    with pytest.raises(UnknownDecision):
        pd2p.mark_failed(popular, 424242, "x")


def test_pd2p_from_the_command_line(popular: Engine, tmp_path: Path) -> None:
    config = tmp_path / "netbroker.toml"
    config.write_text("[pd2p]\nmin_waiting_jobs = 10\nsite_quota_bytes_per_day = 1e12\n")
    env = {**os.environ, "NETBROKER_DATABASE_URL": popular.url.render_as_string(False),
           "NETBROKER_CONFIG": str(config), "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "netbroker", *args], env=env,
                              capture_output=True, text=True, timeout=120, check=False)

    ran = cli("pd2p", "run", "--json")
    assert ran.returncode == 0, ran.stderr
    (decision,) = json.loads(ran.stdout)["decisions"]
    rules = json.loads(cli("pd2p", "export", "--format", "rucio").stdout)["decisions"]
    assert [r["rule"]["rse_expression"] for r in rules][-1] == "DESY_DATADISK"
    assert "data23:data23.ESD" in cli("pd2p", "popularity").stdout
    assert cli("pd2p", "ack", str(decision["id"])).returncode == 0
    failed = cli("pd2p", "fail", str(decision["id"]), "--reason", "quota")
    assert failed.returncode == 0, failed.stderr
    again = cli("pd2p", "done", str(decision["id"]))
    assert again.returncode == 1 and "is failed" in again.stderr
    assert cli("pd2p", "cleanup").stdout.strip() == "no replica to clean up"


def test_done_rebrokers_as_at_the_time_given(popular: Engine) -> None:
    """``now`` is the rebrokerage's clock too: at an hour before the jobs began waiting
    none of them has waited yet, so none moves (at the present 5 do, as above)."""
    (decision,) = pd2p.run_cycle(popular, SETTINGS)["decisions"]
    before = utcnow() - timedelta(hours=1)
    result = pd2p.mark_done(popular, decision["id"], SETTINGS, now=before)
    assert result["rebrokered"] == {"activated": 0, "moved": []}
    assert result["updated_at"] == before


def test_done_rebrokers_only_the_jobs_of_the_tasks_reading_the_dataset(
        popular: Engine) -> None:
    """The AOD's task runs at DESY (its data); DESY_UCORE then goes offline, so its
    jobs could move: the ESD's replica being done moves none of them."""
    (decision,) = pd2p.run_cycle(popular, SETTINGS)["decisions"]
    registry.import_grid_document(popular, mini_grid(
        {"data23.ESD": ["LRZ_DATADISK"], "data23.AOD": ["DESY_DATADISK"]},
        extra_dataset="data23.ESD", files=30, pilot_slots={"LRZ": 10},
        site_status={"MAN": "offline"}, free_bytes={"FZK": 200 * GB}))
    aod = tasks.submit(popular, tasks.parse_task(task_spec("aod.001")), SETTINGS)
    with popular.connect() as conn:
        aod_jobs = sorted(conn.execute(sa.select(jobs.c.id, queues.c.name).join(queues)
                                       .where(jobs.c.task_id == aod["id"])).all())
    assert aod_jobs and {q for _, q in aod_jobs} == {"DESY_UCORE"}
    registry.import_grid_document(popular, mini_grid(
        {"data23.ESD": ["LRZ_DATADISK"], "data23.AOD": ["DESY_DATADISK"]},
        extra_dataset="data23.ESD", files=30, pilot_slots={"LRZ": 10},
        site_status={"MAN": "offline"}, free_bytes={"FZK": 200 * GB},
        queue_status={"DESY": "offline"}))
    result = pd2p.mark_done(popular, decision["id"], SETTINGS)
    moved = {m["job_id"] for m in result["rebrokered"]["moved"]}
    assert not moved & {j for j, _ in aod_jobs}
    with popular.connect() as conn:
        assert sorted(conn.execute(sa.select(jobs.c.id, queues.c.name).join(queues)
                                   .where(jobs.c.task_id == aod["id"])).all()) == aod_jobs


@pytest.mark.parametrize(("window_end_s", "moves"), [(0.0, False), (3 * 86400.0, True)])
def test_done_rebrokers_with_the_links_of_the_window_given(popular: Engine,
                                                           window_end_s: float,
                                                           moves: bool) -> None:
    """A job moves only to a queue scoring 2.5 times its own (better_by_fraction 1.5).
    The 10 jobs at DE sites without the ESD score for the transfer from LRZ: over the
    measured links (the window ending now) they keep more than 1 / 2.5 of DESY's score
    with the new copy and stay; in a window ending 3 days on no link is measured, each
    counts as 1 MB/s, they score lower, and they move to DESY."""
    # The start rule off (LRZ's backlog would move to the new copy whatever the
    # window): the score rule alone reads the links.
    strict = SETTINGS.model_copy(update={"rebrokerage": SETTINGS.rebrokerage.model_copy(
        update={"better_by_fraction": 1.5, "start_sooner_by_minutes": 10**6})})
    (decision,) = pd2p.run_cycle(popular, strict)["decisions"]
    result = pd2p.mark_done(popular, decision["id"], strict,
                            now_s=time.time() + window_end_s)
    moved = result["rebrokered"]["moved"]
    assert bool(moved) is moves
    assert {m["to"] for m in moved} == ({"DESY_UCORE"} if moves else set())
