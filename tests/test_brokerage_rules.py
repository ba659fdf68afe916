"""Every documented brokerage rule, made to bite on both backends.

Each test builds the three-cloud mini grid (``tests.factories.mini_grid``: DE
with FZK, DESY and LRZ; UK with RAL and MAN; FR with CC; one unified 8-core,
64 GB, 48 h, 200 GB-disk queue of 100 slots per site), changes the one thing
the rule is about, submits a task and checks both the decision (where the
jobs went, in which state) and the reason stored with it. Boundaries are
tested on both sides, so a ``>=`` turned into ``>`` fails a test. Expected
numbers are worked out in the comments, never read back from the code.

The task (``tests.factories.task_spec``): 6 files of 10 GB, one file per
job, 2 h per file, 8 cores, 16,000 MB. Defaults: scratch disk 2,000 MB, so a
job needs 10,000 + 2,000 = 12,000 MB of disk; an unmeasured link counts as
1 MB/s, so a 10 GB file takes 10,000 s over one.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.common.config import BrokerageSettings, Settings
from netbroker.common.enums import JobStatus, utcnow
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.schema import jobs, queues
from netbroker.registry import registry
from netbroker.workload import tasks
from netbroker.workload.brokerage import (
    FILTERS,
    MB,
    GridView,
    TaskChoice,
    TaskNeeds,
    _tiny_view,
    broker_jobs,
    broker_task,
    draw,
    draw_with_room,
    fitted_files,
    mesh_members,
    queue_filter_codes,
    transfer_seconds,
)
from tests.factories import GB, fts_transfers, mini_grid, task_spec

ESD = "data23:data23.ESD"


def grid(engine: Engine, **over: Any) -> Engine:
    registry.import_grid_document(engine, mini_grid(**over))
    return engine


def submit(engine: Engine, settings: Settings | None = None, **over: object) -> dict[str, Any]:
    return tasks.submit(engine, tasks.parse_task(task_spec(**over)), settings or Settings())


def settings_with(**groups: dict[str, object]) -> Settings:
    return Settings.model_validate(groups)


def job_queues(engine: Engine, task_id: int) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(conn.execute(sa.select(queues.c.name).join(
            jobs, jobs.c.queue_id == queues.c.id).where(jobs.c.task_id == task_id)).scalars())


def decisions(engine: Engine, task_id: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stored task decision's and job decision's candidates, by name."""
    task_decision, job_decision = tasks.explain_task(engine, task_id)["decisions"]
    return ({c["name"]: c for c in task_decision["candidates"]},
            {c["name"]: c for c in job_decision["candidates"]})


def measure(engine: Engine, src: str, dst: str, mbytes_per_s: float) -> None:
    """Four FTS transfers of 1 GB src -> dst at the rate, ended in the last minutes."""
    end = time.time() - 60
    assert ingest(engine, "fts", fts_transfers(src, dst, mbytes_per_s, 4, end),
                  now_s=end + 60).stored == 8


# --- the job filters ------------------------------------------------------------------

# LRZ holds the data, so without the filter every job would go to LRZ_UCORE (score 2.0
# against 0.63 elsewhere); with it, none does and its candidate says why.
JOB_FILTERS = [
    # (LRZ queue fields, task fields, the filter stored for LRZ_UCORE or None: it passes)
    ({"maxtime": 7199}, {}, "walltime: queue allows 7199 s"),   # one file needs 7,200 s
    ({"maxtime": 7200}, {}, None),
    ({"corecount": 7}, {}, "cores: queue has 7 cores"),         # the task needs 8
    ({"corecount": 8}, {}, None),
    ({"maxrss": 15999}, {}, "memory: queue allows 15999 MB"),   # the task needs 16,000
    ({"maxrss": 16000}, {}, None),
    ({"maxwdir": 11999}, {}, "disk: queue allows 11999 MB of disk"),  # 10,000 + 2,000
    ({"maxwdir": 12000}, {}, None),
    ({"type": "production"}, {"processing_type": "analysis"},
     "queue type: queue runs production"),
    ({"type": "analysis"}, {"processing_type": "analysis"}, None),
    ({"type": "analysis"}, {"processing_type": "production"}, "queue type: queue runs analysis"),
    ({"type": "production"}, {"processing_type": "production"}, None),
    ({"type": "unified"}, {"processing_type": "analysis"}, None),
    ({"status": "offline"}, {}, "queue status: queue is offline"),
    ({"status": "brokeroff"}, {}, "queue status: queue is brokeroff"),
]


@pytest.mark.parametrize(("queue", "task", "refused"), JOB_FILTERS)
def test_a_job_filter_removes_the_queue_that_fails_it_and_says_why(
        engine: Engine, queue: dict[str, object], task: dict[str, object],
        refused: str | None) -> None:
    grid(engine, replicas={"data23.AOD": ["LRZ_DATADISK"]}, queues={"LRZ": queue})
    made = submit(engine, **task)
    assert made["cloud"] == "DE"
    _, job_candidates = decisions(engine, made["id"])
    lrz = job_candidates["LRZ_UCORE"]
    if refused is None:
        assert "filter" not in lrz and lrz["jobs"] == 6
        assert job_queues(engine, made["id"]) == {"LRZ_UCORE": 6}
    else:
        assert lrz["filter"] == refused and "score" not in lrz
        assert "LRZ_UCORE" not in job_queues(engine, made["id"])
        assert sum(job_queues(engine, made["id"]).values()) == 6


def test_an_offline_site_removes_its_queues(engine: Engine) -> None:
    grid(engine, replicas={"data23.AOD": ["LRZ_DATADISK"]}, site_status={"LRZ": "offline"})
    made = submit(engine)
    _, job_candidates = decisions(engine, made["id"])
    assert job_candidates["LRZ_UCORE"]["filter"] == "site status: site is not online"
    assert set(job_queues(engine, made["id"])) == {"DESY_UCORE", "FZK_UCORE"}


def test_the_first_failed_filter_is_the_one_recorded(engine: Engine) -> None:
    # Wrong type and too little memory: the type comes first in the filter order.
    grid(engine, replicas={"data23.AOD": ["LRZ_DATADISK"]},
         queues={"LRZ": {"type": "production", "maxrss": 100, "maxtime": 60}})
    made = submit(engine, processing_type="analysis")
    _, job_candidates = decisions(engine, made["id"])
    assert job_candidates["LRZ_UCORE"]["filter"] == "queue type: queue runs production"


@pytest.mark.parametrize(("scratch_mb", "refused"), [(2000, True), (1999, False)])
def test_the_disk_filter_counts_the_scratch_disk(engine: Engine, scratch_mb: int,
                                                 refused: bool) -> None:
    # 11,999 MB of disk: a 10,000 MB file and 2,000 MB of scratch do not fit, 1,999 do.
    grid(engine, replicas={"data23.AOD": ["LRZ_DATADISK"]}, queues={"LRZ": {"maxwdir": 11999}})
    made = submit(engine, settings_with(brokerage={"scratch_disk_mb": scratch_mb}))
    assert ("LRZ_UCORE" in job_queues(engine, made["id"])) is not refused


# --- the task filters -----------------------------------------------------------------

@pytest.mark.parametrize(("fraction", "free_bytes", "refused"), [
    # 60 GB of input * 0.5: 30 GB of output expected at the Tier-1
    (0.5, 30 * GB - 1, "output space: 0.03 TB free at FZK, 0.03 TB expected"),
    (0.5, 30 * GB, None),
    (0.25, 15 * GB, None),
    (0.25, 15 * GB - 1, "output space: 0.01 TB free at FZK, 0.01 TB expected"),
])
def test_a_cloud_whose_tier1_has_no_room_for_the_output_is_refused(
        engine: Engine, fraction: float, free_bytes: int, refused: str | None) -> None:
    grid(engine, free_bytes={"FZK": free_bytes})  # the data is at DESY, in DE
    made = submit(engine, settings_with(brokerage={"output_to_input_fraction": fraction}))
    task_candidates, _ = decisions(engine, made["id"])
    if refused is None:
        assert made["cloud"] == "DE" and "filter" not in task_candidates["DE"]
    else:
        # UK beats FR on free slots: 200 against 100 (0.5 * 1 + network vs 0.5 * 0.5 + ...)
        assert made["cloud"] == "UK" and task_candidates["DE"]["filter"] == refused


def test_a_cloud_where_no_queue_fits_is_refused_with_the_commonest_filter(
        engine: Engine) -> None:
    grid(engine, queues={"FZK": {"maxrss": 8000}, "DESY": {"maxrss": 8000},
                         "LRZ": {"corecount": 1}})
    made = submit(engine)
    assert made["cloud"] != "DE"
    task_candidates, _ = decisions(engine, made["id"])
    assert task_candidates["DE"]["filter"] == "no queue fits: memory (most queues)"


# --- the score ------------------------------------------------------------------------

def test_the_score_weighs_data_free_slots_and_transfer_time(engine: Engine) -> None:
    grid(engine)  # data at DESY; FZK and LRZ would bring each 10 GB file over 1 MB/s
    made = submit(engine)
    task_candidates, job_candidates = decisions(engine, made["id"])
    # DESY: 1.0 * 1 (data) + 0.5 * 1 (100 of 100 slots free) + 0.5 / (1 + 0 / 3600)
    assert job_candidates["DESY_UCORE"]["score"] == 2.0
    assert job_candidates["DESY_UCORE"]["terms"] == {"data": 1.0, "capacity": 1.0,
                                                     "transfer_s": 0.0}
    # FZK: 0 + 0.5 * 1 + 0.5 / (1 + 10,000 / 3,600) = 0.5 + 0.1324 = 0.6324
    for name in ("FZK_UCORE", "LRZ_UCORE"):
        assert job_candidates[name]["score"] == 0.6324
        assert job_candidates[name]["terms"]["transfer_s"] == 10_000.0
    # Clouds: DE has the data, 300 free slots (the most): 1 + 0.5 + 0.5 = 2.0.
    assert task_candidates["DE"]["score"] == 2.0
    # UK: 200 of 300 slots; the 60 GB to RAL over 1 MB/s, 60,000 s:
    # 0.5 * 0.6667 + 0.5 / (1 + 60,000 / 3,600) = 0.3333 + 0.0283 = 0.3616
    assert task_candidates["UK"]["score"] == 0.3616
    assert task_candidates["UK"]["transfer_s"] == 60_000.0
    assert job_queues(engine, made["id"]) == {"DESY_UCORE": 6}


@pytest.mark.parametrize(("brokerage", "score"), [
    ({"network_scale_s": 10_000.0}, 0.75),        # 0.5 + 0.5 / (1 + 1)
    ({"unknown_link_mbytes_per_s": 4.0}, 0.7951),  # 2,500 s: 0.5 + 0.5 / (1 + 0.6944)
    ({"weight_capacity": 0.0}, 0.1324),            # 0.5 / (1 + 2.7778)
    ({"weight_network": 2.0}, 1.0294),             # 0.5 + 2 / (1 + 2.7778)
])
def test_each_weight_and_scale_changes_the_score_as_documented(
        engine: Engine, brokerage: dict[str, float], score: float) -> None:
    grid(engine)
    made = submit(engine, settings_with(brokerage=brokerage))
    _, job_candidates = decisions(engine, made["id"])
    assert job_candidates["FZK_UCORE"]["score"] == score


def test_without_weights_on_data_and_network_free_slots_alone_decide(engine: Engine) -> None:
    grid(engine)
    made = submit(engine, settings_with(brokerage={"weight_data": 0.0, "weight_network": 0.0}))
    _, job_candidates = decisions(engine, made["id"])
    # Every DE queue scores 0.5 * 1: all three are drawn, a third each.
    assert {c["share"] for c in job_candidates.values()} == {0.3333}


def test_a_site_with_its_own_tape_copy_recalls_it_at_the_recall_rate(engine: Engine) -> None:
    grid(engine, replicas={"data23.ESD": ["FZK_TAPE"]}, extra_dataset="data23.ESD")
    made = submit(engine, input_dataset=ESD)
    _, job_candidates = decisions(engine, made["id"])
    # 10 GB from tape at 50 MB/s: 200 s; a tape copy is not on disk: no data term.
    assert job_candidates["FZK_UCORE"]["terms"] == {"data": 0.0, "capacity": 1.0,
                                                    "transfer_s": 200.0}
    assert job_candidates["DESY_UCORE"]["terms"]["transfer_s"] == 10_000.0
    assert job_queues(engine, made["id"]) == {"FZK_UCORE": 6}
    assert made["jobs"] == {"activated": 6}  # 200 s <= 1,800 s


@pytest.mark.parametrize(("limit_s", "state"), [(200.0, "activated"), (199.0, "assigned")])
def test_input_arriving_within_the_limit_activates_the_job(engine: Engine, limit_s: float,
                                                           state: str) -> None:
    grid(engine, replicas={"data23.ESD": ["FZK_TAPE"]}, extra_dataset="data23.ESD")
    made = submit(engine, settings_with(brokerage={"remote_input_max_transfer_s": limit_s}),
                  input_dataset=ESD)
    assert made["jobs"] == {state: 6}


def test_input_comes_from_the_best_connected_replica(engine: Engine) -> None:
    # The ESD is at CC and at MAN, whose queues are closed; RAL's is too small: only DE runs.
    grid(engine, replicas={"data23.ESD": ["CC_DATADISK", "MAN_DATADISK"]},
         extra_dataset="data23.ESD", queue_status={"CC": "offline", "MAN": "offline"},
         queue_memory_mb={"RAL": 8000})
    measure(engine, "CC_DATADISK", "LRZ_DATADISK", 100.0)
    measure(engine, "MAN_DATADISK", "LRZ_DATADISK", 10.0)
    made = submit(engine, input_dataset=ESD)
    _, job_candidates = decisions(engine, made["id"])
    assert job_candidates["LRZ_UCORE"]["terms"]["transfer_s"] == 100.0  # 10 GB at 100 MB/s
    assert job_candidates["DESY_UCORE"]["terms"]["transfer_s"] == 10_000.0  # unmeasured
    assert job_queues(engine, made["id"]) == {"LRZ_UCORE": 6}


def running_jobs(engine: Engine, queue: str, n: int) -> None:
    with engine.begin() as conn:
        queue_id = GridDB(conn).ids(queues)[queue]
        JobDB(conn).add_jobs([{
            "name": f"busy-{i}", "status": JobStatus.RUNNING, "queue_id": queue_id,
            "prod_source_label": "managed", "priority": 1, "cores": 1, "min_ram_mb": 0,
            "max_disk_mb": 0, "max_walltime_s": 60, "transformation": "x"}
            for i in range(n)], utcnow())


@pytest.mark.parametrize(("fraction", "shared"), [(0.03, True), (0.02, False)])
def test_queues_within_the_near_equal_fraction_share_the_jobs(
        engine: Engine, fraction: float, shared: bool) -> None:
    # Both hold the data; 10 of DESY's 100 slots run jobs: DESY scores
    # 1 + 0.5 * 0.9 + 0.5 = 1.95, LRZ 2.0; 1.95 >= 2.0 * (1 - 0.03) = 1.94 shares,
    # 1.95 < 2.0 * (1 - 0.02) = 1.96 does not (the exact boundary: test_draw_*).
    grid(engine, replicas={"data23.AOD": ["DESY_DATADISK", "LRZ_DATADISK"]}, files=40)
    running_jobs(engine, "DESY_UCORE", 10)
    made = submit(engine, settings_with(brokerage={"near_equal_fraction": fraction}))
    _, job_candidates = decisions(engine, made["id"])
    assert job_candidates["DESY_UCORE"]["score"] == 1.95
    if shared:  # in proportion to the score: 1.95 / 3.95 and 2 / 3.95
        assert job_candidates["DESY_UCORE"]["share"] == 0.4937
        assert job_candidates["LRZ_UCORE"]["share"] == 0.5063
        assert set(job_queues(engine, made["id"])) == {"DESY_UCORE", "LRZ_UCORE"}
    else:
        assert job_candidates["DESY_UCORE"]["share"] == 0.0
        assert job_queues(engine, made["id"]) == {"LRZ_UCORE": 40}


@pytest.mark.parametrize(("per_slot", "at_lrz"), [(2.0, 4), (2.5, 5)])
def test_a_queue_takes_jobs_up_to_the_waiting_per_slot_limit(
        engine: Engine, per_slot: float, at_lrz: int) -> None:
    # LRZ holds the data but has 2 slots: it takes floor(2 * per_slot) jobs, the
    # others go to the next best (DESY and FZK, equal).
    grid(engine, replicas={"data23.AOD": ["LRZ_DATADISK"]}, pilot_slots={"LRZ": 2})
    made = submit(engine, settings_with(brokerage={"max_waiting_per_slot": per_slot}))
    placed = job_queues(engine, made["id"])
    assert placed["LRZ_UCORE"] == at_lrz and sum(placed.values()) == 6
    _, job_candidates = decisions(engine, made["id"])
    assert job_candidates["LRZ_UCORE"]["jobs"] == at_lrz


def test_when_every_queue_is_at_the_limit_the_rest_spread_in_proportion_to_the_slots(
        engine: Engine) -> None:
    # DE alone is online; LRZ holds the data with 1 slot, DESY has 2, FZK 3; at one
    # waiting job per slot they take 1 + 2 + 3 = 6 of the 12 jobs (LRZ first: 2.0
    # against 0.5 + 0.5 / (1 + 10,000 / 3,600) = 0.632 for the other two, equal).
    # All full: one more per slot each, LRZ first again, 6 more: 2, 4 and 6 in all.
    # (On score alone the 6 would all have gone to LRZ, 7 jobs on its one slot.)
    grid(engine, replicas={"data23.AOD": ["LRZ_DATADISK"]}, files=12,
         pilot_slots={"LRZ": 1, "DESY": 2, "FZK": 3},
         queue_status={"RAL": "offline", "MAN": "offline", "CC": "offline"})
    made = submit(engine, settings_with(brokerage={"max_waiting_per_slot": 1.0}))
    assert job_queues(engine, made["id"]) == {"LRZ_UCORE": 2, "DESY_UCORE": 4,
                                              "FZK_UCORE": 6}
    _, job_candidates = decisions(engine, made["id"])
    assert {k: c["jobs"] for k, c in job_candidates.items()} == {
        "LRZ_UCORE": 2, "DESY_UCORE": 4, "FZK_UCORE": 6}


@pytest.mark.parametrize(("disk_mb", "jobs_made", "files_each"), [(22000, 3, 2),
                                                                  (21999, 6, 1)])
def test_jobs_are_sized_to_the_queue_disk(engine: Engine, disk_mb: int, jobs_made: int,
                                          files_each: int) -> None:
    # Four 10 GB files per job asked; 22,000 MB of disk hold 2 files and the scratch.
    grid(engine, replicas={"data23.AOD": ["LRZ_DATADISK"]}, queues={"LRZ": {"maxwdir": disk_mb}})
    made = submit(engine, files_per_job=4, walltime_s=4 * 7200)
    assert job_queues(engine, made["id"]) == {"LRZ_UCORE": jobs_made}
    with engine.connect() as conn:
        rows = conn.execute(sa.select(jobs.c.max_disk_mb, jobs.c.max_walltime_s,
                                      jobs.c.input_bytes)).all()
    assert set(rows) == {(files_each * 10_000 + 2000, files_each * 7200, files_each * 10 * GB)}


@pytest.mark.parametrize(("mbytes_per_s", "members", "queue"), [(5.0, 2, "MAN_UCORE"),
                                                                (4.9, 1, "FZK_UCORE")])
def test_full_mesh_members_are_the_sites_the_nucleus_reaches_at_the_threshold(
        engine: Engine, mbytes_per_s: float, members: int, queue: str) -> None:
    grid(engine, replicas={"data23.AOD": ["MAN_DATADISK"]})
    measure(engine, "FZK_DATADISK", "MAN_DATADISK", mbytes_per_s)
    made = submit(engine, settings_with(brokerage={"mode": "full_mesh"}))
    assert made["nucleus"] == "FZK"
    task_candidates, _ = decisions(engine, made["id"])
    assert task_candidates["FZK"]["members"] == members
    assert set(job_queues(engine, made["id"])) == {queue}


def test_each_decision_stores_a_seed_mixed_from_the_setting_and_the_task(
        engine: Engine) -> None:
    grid(engine, replicas={"data23.AOD": ["DESY_DATADISK", "LRZ_DATADISK"]}, files=40)
    first = submit(engine)
    again = submit(engine, name="task.002")
    other = submit(engine, settings_with(brokerage={"seed": 1}), name="task.003")
    stored = [tasks.explain_task(engine, t["id"])["decisions"] for t in (first, again, other)]
    assert all(task["seed"] == job["seed"] for task, job in stored)  # one draw per task
    assert len({task["seed"] for task, _ in stored}) == 3
    # the seed: the first 64-bit word numpy's SeedSequence draws from (setting, task id),
    # its top 63 bits (a signed 64-bit column holds it)
    for (task, _), base, made in zip(stored, (0, 0, 1), (first, again, other), strict=True):
        word = np.random.SeedSequence([base, made["id"]]).generate_state(1, np.uint64)[0]
        assert task["seed"] == int(word) >> 1 < 2**63


# --- the pure pieces, at their exact boundaries -----------------------------------------

def test_draw_keeps_a_candidate_exactly_at_the_near_equal_bound() -> None:
    # 0.5 >= 1.0 * (1 - 0.5): shared in proportion 1 : 0.5; 0.25 is out.
    _, p = draw(np.array([1.0, 0.5, 0.25]), np.ones(3, bool), 0.5, np.random.default_rng(0), 1)
    assert p.tolist() == [2 / 3, 1 / 3, 0.0]


def test_draw_never_picks_an_ineligible_candidate() -> None:
    idx, p = draw(np.array([9.0, 1.0]), np.array([False, True]), 0.1,
                  np.random.default_rng(0), 20)
    assert set(idx.tolist()) == {1} and p.tolist() == [0.0, 1.0]


def test_draw_with_room_places_every_job_even_without_room() -> None:
    idx, _ = draw_with_room(np.array([2.0, 1.0]), np.ones(2, bool), np.array([0, 0]), 7, 0.1,
                            np.random.default_rng(0))
    assert sorted(idx.tolist()) == [0] * 7  # on score alone: the best


def test_draw_with_room_fills_the_best_then_the_next() -> None:
    idx, _ = draw_with_room(np.array([2.0, 1.0, 0.5]), np.ones(3, bool), np.array([2, 3, 50]),
                            6, 0.1, np.random.default_rng(0))
    assert Counter(idx.tolist()) == {0: 2, 1: 3, 2: 1}


def test_draw_with_room_without_room_adds_a_step_per_candidate_until_all_fit() -> None:
    # Rooms 1, 0, 0 and steps 1, 2, 4 (slots): the best takes its 1; none has room, so
    # 1, 2 and 4 more: the best 1, then the next best 2, the last 4 (8 placed, 2 left);
    # full again: the best 1, the next 1 (of its 2 more): 1 + 1 + 1, 2 + 1, 4.
    idx, _ = draw_with_room(np.array([3.0, 2.0, 1.0]), np.ones(3, bool), np.array([1, 0, 0]),
                            10, 0.1, np.random.default_rng(0), step=np.array([1, 2, 4]))
    assert Counter(idx.tolist()) == {0: 3, 1: 3, 2: 4}


def test_draw_with_room_steps_only_the_eligible_and_at_least_one() -> None:
    # The ineligible best never takes a job; a zero step counts as one.
    idx, _ = draw_with_room(np.array([9.0, 1.0]), np.array([False, True]), np.array([0, 0]),
                            3, 0.1, np.random.default_rng(0), step=np.array([5, 0]))
    assert idx.tolist() == [1, 1, 1]


def tiny(throughput: list[list[float]], present: list[bool], sources: list[bool]) -> GridView:
    view = _tiny_view()
    view.throughput = np.array(throughput)
    view.present = {7: np.array(present)}
    view.sources = {7: np.array(sources)}
    return view


def test_mesh_members_are_the_sites_reached_at_or_above_the_threshold() -> None:
    nan = np.nan
    view = tiny([[nan, 5.0, 4.999], [nan, nan, nan], [nan, nan, nan]], [True] * 3, [True] * 3)
    assert mesh_members(view, 0, 5.0).tolist() == [True, True, False]
    assert mesh_members(view, 1, 5.0).tolist() == [False, True, False]  # itself, unmeasured out


def test_transfer_time_rules() -> None:
    nan = np.nan
    # A holds the dataset on disk; B is reached at 10 MB/s; C is not measured.
    view = tiny([[nan, 10.0, nan], [nan, nan, nan], [nan, nan, nan]],
                [True, False, False], [True, False, False])
    assert transfer_seconds(view, 7, 100 * MB, np.arange(3), 2.0).tolist() == [0.0, 10.0, 50.0]
    # C holds a tape copy (a source, not present): it recalls at the local rate.
    view.sources = {7: np.array([True, False, True])}
    assert transfer_seconds(view, 7, 100 * MB, np.arange(3), 2.0, 25.0).tolist() == [
        0.0, 10.0, 4.0]
    assert transfer_seconds(view, 99, 100 * MB, np.arange(3), 2.0).tolist() == [np.inf] * 3


def test_a_file_bigger_than_the_queue_disk_or_longer_than_its_walltime_is_filtered() -> None:
    view = _tiny_view()
    view.queue_cores = np.array([8, 8, 8])
    view.site_online = np.array([True, True, True])
    needs = TaskNeeds(1, "production", 7, np.array([98_000 * MB, 10 * MB]), 8, 16000, 7200, 1)
    codes = queue_filter_codes(view, needs, 2000)  # 98,000 + 2,000 = 100,000 MB: fits
    assert codes.tolist() == [0, 0, 0]
    codes = queue_filter_codes(view, needs, 2001, np.array([True, True, False]))
    assert [FILTERS[c - 1] if c else "ok" for c in codes] == ["disk", "disk", "ok"]
    view.queue_walltime_s = np.array([7199.0, 7200.0, np.inf])
    assert queue_filter_codes(view, needs, 0).tolist() == [FILTERS.index("walltime") + 1, 0, 0]


def test_mesh_members_leave_out_an_unmeasured_site_even_at_a_low_threshold() -> None:
    nan = np.nan
    view = tiny([[nan, 1.0, nan], [nan, nan, nan], [nan, nan, nan]], [True] * 3, [True] * 3)
    # B measured at exactly 1 MB/s is reached; C, not measured, is not (unknown, not 1 MB/s).
    assert mesh_members(view, 0, 1.0).tolist() == [True, True, False]


# --- event-split jobs over the queues' room ---------------------------------------------

def open_view(slots: list[int]) -> GridView:
    """The tiny view with every site online and every queue 8 cores; the input at A.

    Scores (one 1 MB file a job): A_Q 1 + 0.5 + 0.5 = 2.0; B_Q 0 + 0.5 + 0.5 / (1 +
    0.1 s / 3600 s) = 1.49999 (the file from A at 10 MB/s), below 2.0 * 0.9: A_Q alone is
    the near-best while it has room."""
    view = _tiny_view()
    view.site_online = np.array([True, True, True])
    view.queue_cores = np.array([8, 8, 8])
    view.queue_slots = np.array(slots)
    return view


def event_plan(view: GridView, files: int, events_per_file: int, per_slot: float
               ) -> Counter[int]:
    # 1 s an event (400 s for a 400-event job); every queue fits 400 events a job.
    needs = TaskNeeds(1, "production", 7, np.full(files, 1 * MB), 1, 2000, 400, 1,
                      events_per_job=400, events_per_file=events_per_file)
    plan = broker_jobs(view, needs, np.array([True, True, False]),
                       BrokerageSettings(max_waiting_per_slot=per_slot),
                       np.random.default_rng(0))
    return Counter(plan.queue.tolist())


def test_event_jobs_fill_a_queue_by_the_whole_files_its_room_holds() -> None:
    # 1,000 events a file at 400 a job: 3 jobs a file (400, 400, 200). A_Q's 2 slots at
    # 2.5 waiting per slot hold 5 jobs: one file's 3 (two files would be 6), so A_Q
    # takes 1 file and B_Q the other 2: 3 and 6 jobs.
    assert event_plan(open_view([2, 100, 100]), 3, 1000, 2.5) == {0: 3, 1: 6}


def test_event_jobs_of_one_job_a_file_take_the_room_job_for_job() -> None:
    # 400 events a file, 400 a job: one job a file. A_Q's 2 slots at 1 per slot hold 2.
    assert event_plan(open_view([2, 100, 100]), 3, 400, 1.0) == {0: 2, 1: 1}


def test_event_jobs_over_full_queues_spread_by_the_files_their_slots_drain() -> None:
    # One job a file; A_Q 1 slot, B_Q 3, at 1 per slot: A_Q 1 file, B_Q 3 (4 of 8); all
    # full, each gains its slots (1 and 3) in files: A_Q 1 more, B_Q 3 more: 2 and 6.
    # (On score alone the last 4 would all go to A_Q: 5 and 3.)
    assert event_plan(open_view([1, 3, 100]), 8, 400, 1.0) == {0: 2, 1: 6}


# --- the commonest filter of a refusal ----------------------------------------------------

def job_summary(view: GridView, members: list[bool], pinned_site: int = -1) -> str:
    needs = TaskNeeds(1, "production", 7, np.array([1 * MB]), 8, 2000, 3600, 1,
                      pinned_site=pinned_site)
    plan = broker_jobs(view, needs, np.array(members), BrokerageSettings(),
                       np.random.default_rng(0))
    assert len(plan) == 0
    return plan.summary


def test_no_queue_passing_names_the_filter_most_queues_failed() -> None:
    # C is offline: its queue fails the first filter, site status (code 1).
    assert job_summary(_tiny_view(), [False, False, True]) == (
        "no queue passes the filters: site status (most queues)")
    # No member has a queue at all.
    assert job_summary(_tiny_view(), [False, False, False]) == (
        "no queue passes the filters: no queues")


def test_a_pinned_tasks_refusal_counts_only_the_pinned_sites_queues() -> None:
    # Pinned to B, whose 1-core queue fails "cores" for 8 cores; A_Q passes but is off the
    # pinned site (not judged): the one failure is the commonest, not A_Q's pass.
    assert job_summary(_tiny_view(), [True, True, False], pinned_site=1) == (
        "no queue passes the filters: cores (most queues)")


def choose(view: GridView, settings: BrokerageSettings | None = None, seed: int = 0,
           **needs: Any) -> TaskChoice:
    """broker_task for a task of one 100 MB file, 1 core, 2,000 MB, 1 h a file (``needs``
    changes TaskNeeds' fields), at the 5 MB/s mesh threshold, drawn with ``seed``."""
    task = replace(TaskNeeds(1, "production", 7, np.array([100 * MB]), 1, 2000, 3600, 1),
                   **needs)
    return broker_task(view, task, settings or BrokerageSettings(), 5.0,
                       np.random.default_rng(seed))


# --- the sentence a task decision stores --------------------------------------------------

@pytest.mark.parametrize(("sources", "why"), [
    # B holds a tape copy: 100 MB to the Tier-1 A over an unmeasured link (1 MB/s), 100 s;
    # 0.5 * 200 / 200 + 0.5 / (1 + 100 / 3600) = 0.5 + 0.4865 = 0.986.
    ([False, True, False], "X: score 0.986 of 1 passing (input 100 s away, 200 free slots)"),
    # No replica anywhere: the input cannot be brought, the network term is 0.
    ([False, False, False],
     "X: score 0.500 of 1 passing (input unreachable away, 200 free slots)"),
])
def test_a_task_decision_says_how_far_the_input_is(sources: list[bool], why: str) -> None:
    # X (A and B, 100 free slots each) is the one cloud passing: Y's only site C is offline.
    view = tiny([[np.nan] * 3] * 3, [False, False, False], sources)
    choice = choose(view)
    assert (choice.chosen_name, choice.summary) == ("X", why)


# --- file jobs cut to the queues' sizes ---------------------------------------------------

def file_plan(view: GridView, files: int, files_per_job: int, walltime_s: int,
              per_slot: float = 2.0, seed: int = 0) -> tuple[list[int], list[int], list[int]]:
    """Broker ``files`` 1 MB files over A_Q and B_Q: (queue, first file, files) per job."""
    needs = TaskNeeds(1, "production", 7, np.full(files, 1 * MB), 1, 2000, walltime_s,
                      files_per_job)
    plan = broker_jobs(view, needs, np.array([True, True, False]),
                       BrokerageSettings(max_waiting_per_slot=per_slot),
                       np.random.default_rng(seed))
    order = np.lexsort((plan.first_file, plan.queue))
    return (plan.queue[order].tolist(), plan.first_file[order].tolist(),
            plan.n_files[order].tolist())


def test_jobs_are_sized_to_the_queue_walltime() -> None:
    # 4 files a job of 1 h each; A_Q's 7,200 s hold 2 files: two jobs of 2 at A_Q.
    assert file_plan(open_view([100, 100, 100]), 4, 4, 4 * 3600) == ([0, 0], [0, 2], [2, 2])


def test_a_task_cut_for_its_smallest_queue_makes_only_the_jobs_its_files_fill() -> None:
    # B_Q's disk (2,001 MB, 2,000 of scratch) holds 1 file, A_Q's 4: enough jobs are drawn
    # for 7 files at 1 a job, all land on A_Q (the best): 4 + 3 files, two jobs, no more.
    view = open_view([100, 100, 100])
    view.queue_disk_mb = np.array([100000, 2001, 100000])
    assert file_plan(view, 7, 4, 4 * 1800) == ([0, 0], [0, 4], [4, 3])


@pytest.mark.parametrize("seed", range(10))
def test_a_queue_with_room_for_one_job_takes_one_and_the_next_the_rest(seed: int) -> None:
    # A_Q (the best) has 1 slot at 1 waiting per slot: room for 1 job. 2 files a job.
    view = open_view([1, 100, 100])
    assert file_plan(view, 2, 2, 2 * 1800, 1.0, seed) == ([0], [0], [2])  # one job: A_Q
    view = open_view([1, 100, 100])
    queue, _, n_files = file_plan(view, 4, 2, 2 * 1800, 1.0, seed)
    assert (queue, n_files) == ([0, 1], [2, 2])  # two jobs: A_Q its one, B_Q the other


# --- a cloud's free slots -------------------------------------------------------------------

def four_site_view() -> GridView:
    """The tiny view and a fourth site D in cloud Y with no queue at all (the last site)."""
    view = _tiny_view()
    nan = np.nan
    view.sites = ["A", "B", "C", "D"]
    view.site_cloud = np.array([0, 0, 1, 1])
    view.site_online = np.array([True, True, False, True])
    view.site_nucleus = np.array([True, False, False, False])
    view.site_disk_free = np.array([1e15, 1e14, 0.0, 1e15])
    view.foreign = np.zeros((2, 4), bool)
    view.throughput = np.array([[nan, 10.0, nan, nan]] + [[nan] * 4] * 3)
    view.present = {7: np.array([True, False, False, False])}
    view.sources = {7: np.array([True, False, False, False])}
    return view


def test_a_clouds_free_slots_are_its_passing_queues_slots_not_waiting_nor_running() -> None:
    # A_Q: 100 slots, 30 waiting, 50 running: 20 free. B_Q: 100 slots, 120 waiting: none
    # free (not -20). C_Q fails (C offline): its 100 free slots do not count. D: no queue.
    view = four_site_view()
    view.queue_waiting = np.array([30, 120, 0])
    view.queue_running = np.array([50, 0, 0])
    choice = choose(view)
    rows = {c["name"]: c for c in choice.candidates}
    assert (rows["X"]["free_slots"], rows["Y"]["free_slots"]) == (20, 0)
    assert rows["Y"]["filter"] == "no queue fits: site status (most queues)"
    assert choice.chosen_name == "X" and choice.members.tolist() == [True, True, False, False]


@pytest.mark.parametrize(("pinned", "chosen"), [(1, "A"), (2, None)])
def test_a_pinned_task_in_full_mesh_takes_the_nucleus_reaching_its_site(
        pinned: int, chosen: str | None) -> None:
    # A, the one nucleus, reaches B at 10 MB/s (>= 5), not C (unmeasured): pinned to B the
    # task goes to A; pinned to C no nucleus may take it.
    view = _tiny_view()
    view.site_online = np.array([True, True, True])
    choice = choose(view, BrokerageSettings(mode="full_mesh"), pinned_site=pinned)
    assert choice.chosen_name == chosen
    if chosen is None:
        assert choice.candidates[0]["filter"] == (
            "pinned: the task is pinned to a site outside it")
        assert choice.summary == "no candidate passes the filters"
        assert choice.members.dtype == bool and choice.members.tolist() == [False] * 3


# --- fitted sizes at their bounds -----------------------------------------------------------

def test_files_smaller_than_a_megabyte_fill_the_queue_disk_by_their_size() -> None:
    # Files of 0.5 MB; 2 MB of disk besides the 2,000 of scratch hold 4 of them.
    view = _tiny_view()
    view.queue_disk_mb = np.array([2002, 2002, 2002])
    needs = TaskNeeds(1, "production", 7, np.full(8, 0.5 * MB), 1, 2000, 8, 8)
    assert fitted_files(view, needs, 2000).tolist() == [4, 4, 4]


def test_a_queue_too_short_for_one_file_is_still_sized_one_file() -> None:
    # 2 h a file: the 1 h queue holds none, but a size is at least 1 (the filter removes it).
    view = _tiny_view()
    view.queue_walltime_s = np.array([3600, 7200, 172800])
    needs = TaskNeeds(1, "production", 7, np.full(4, 1 * MB), 1, 2000, 4 * 7200, 4)
    assert fitted_files(view, needs, 0).tolist() == [1, 1, 4]


def test_a_clouds_transfer_time_is_to_its_tier1_recalling_the_tier1s_own_tape() -> None:
    # A (X's Tier-1, index 0) holds a tape copy: 100 MB recalled at 50 MB/s, 2 s (B, which
    # would take it from A at 10 MB/s, 10 s, is not X's target).
    view = tiny([[np.nan, 10.0, np.nan], [np.nan] * 3, [np.nan] * 3], [False] * 3,
                [True, False, False])
    choice = choose(view)
    assert choice.candidates[0]["name"] == "X" and choice.candidates[0]["transfer_s"] == 2.0


# --- the stored explanation, to the digit -------------------------------------------------

def two_cloud_view() -> GridView:
    """The tiny view with C online (Y's Tier-1, one 300-slot queue, 43 waiting) and A, B
    at 150 slots each; the input on disk at A only; A -> C measured at 3 MB/s; C with
    a petabyte of disk free."""
    view = _tiny_view()
    view.site_online = np.array([True, True, True])
    view.site_disk_free = np.array([1e15, 1e14, 1e15])
    view.queue_slots = np.array([150, 150, 300])
    view.queue_waiting = np.array([0, 0, 43])
    view.throughput = np.array([[np.nan, 10.0, 3.0], [np.nan] * 3, [np.nan] * 3])
    return view


def test_a_task_decision_stores_each_candidates_score_share_and_terms() -> None:
    # weight_data 0, so both clouds are near-equal. X (A, B): input on disk at its Tier-1
    # A, 300 free slots, capacity 300 / 300 = 1, network 1: score 0.5 + 0.5 = 1.0.
    # Y (C): 257 free slots, capacity 257 / 300 = 0.856667 (0.8567); 100 MB to C at
    # 3 MB/s, 33.333 s (33.3), network 1 / (1 + 33.333 / 3600) = 0.990826 (0.9908):
    # score 0.428333 + 0.495413 = 0.923746 (0.9237), above 1.0 * 0.9: both drawn, by
    # shares 1.0 / 1.923746 = 0.519819 (0.5198) and 0.480181 (0.4802).
    settings = BrokerageSettings(weight_data=0.0)
    why = {"X": "X: score 1.000 of 2 passing (data present, 300 free slots)",
           "Y": "Y: score 0.924 of 2 passing (input 33 s away, 257 free slots)"}
    picked = set()
    for seed in range(8):
        choice = choose(two_cloud_view(), settings, seed)
        assert choice.candidates == [
            {"name": "X", "members": 2, "data": True, "free_slots": 300, "transfer_s": 0.0,
             "wait_s": 0.0, "score": 1.0, "share": 0.5198,
             "terms": {"data": 1.0, "capacity": 1.0, "network": 1.0}},
            {"name": "Y", "members": 1, "data": False, "free_slots": 257,
             "transfer_s": 33.3, "wait_s": 516.0, "score": 0.9237, "share": 0.4802,
             "terms": {"data": 0.0, "capacity": 0.8567, "network": 0.9908}}]
        assert choice.chosen_name is not None and choice.summary == why[choice.chosen_name]
        assert choice.chosen == {"X": 0, "Y": 1}[choice.chosen_name]
        picked.add(choice.chosen_name)
    assert picked == {"X", "Y"}  # both sentences were checked


# --- the data counts only where the jobs start soon -------------------------------------------

def backlog_view(waiting_x: int, waiting_y: int = 30) -> GridView:
    """The two-cloud view with X's 300 slots (A_Q, B_Q: 150 each) behind ``waiting_x`` jobs
    (split evenly) and Y's 300 (C_Q) behind ``waiting_y``; A -> C at 5 MB/s, so a task's
    120 MB file reaches Y's Tier-1 in 24 s."""
    view = two_cloud_view()
    view.queue_waiting = np.array([waiting_x - waiting_x // 2, waiting_x // 2, waiting_y])
    view.throughput[0, 2] = 5.0
    return view


@pytest.mark.parametrize(("waiting_x", "data_x", "chosen"), [
    (599, 1.0, "X"),   # X starts 7,188 s, Y 384: 6,804 s sooner, not over 6,816
    (600, 1.0, "X"),   # X 7,200, Y 384: 6,816 sooner, at the margin, not over it
    (601, 0.0, "Y"),   # X 7,212, Y 384: 6,828 sooner, over it: X's data does not count
])
def test_a_cloud_holding_the_input_loses_its_data_term_when_another_starts_sooner_by_the_margin(
        waiting_x: int, data_x: float, chosen: str) -> None:
    # X's wait: waiting / 300 slots * the task's 3,600 s jobs (599: 7,188 s; 600: 7,200;
    # 601: 7,212); Y's start: 30 / 300 * 3,600 = 360 s of wait + 24 s of transfer = 384.
    # The margin, 113.6 minutes, is 6,816 s. Kept, X scores 1 + 0.5 * 0 (no free slot)
    # + 0.5 * 1 = 1.5 against Y's 0.5 * 1 + 0.5 / (1 + 24 / 3600) = 0.9967: X alone.
    # Dropped, X scores 0.5, under 0.9967 * 0.9: Y alone.
    choice = choose(backlog_view(waiting_x), BrokerageSettings(start_sooner_by_minutes=113.6),
                    file_bytes=np.array([120 * MB]))
    x, y = choice.candidates
    assert (x["wait_s"], y["wait_s"], y["transfer_s"]) == (
        round(waiting_x / 300 * 3600, 1), 360.0, 24.0)
    assert x["data"] is True and x["terms"]["data"] == data_x
    assert choice.chosen_name == chosen
    assert "data_waits" not in y
    if data_x:
        assert "data_waits" not in x and x["score"] == 1.5
        assert choice.summary == "X: score 1.500 of 2 passing (data present, 0 free slots)"
    else:
        assert x["data_waits"] == (
            "starts 6828 s later than the soonest: the data counts only where the jobs "
            "start soon")
        assert (x["score"], y["score"]) == (0.5, 0.9967)
        assert choice.summary == (
            "Y: score 0.997 of 2 passing (input 24 s away, 270 free slots); the data at X "
            "not counted: its jobs would start over 6816 s later")


def test_a_refused_candidate_is_not_the_soonest_start() -> None:
    # Y would start in 384 s against X's 36,000 (3,000 waiting), but its Tier-1 lacks the
    # space for the output: X, the one candidate passing, keeps its data term.
    view = backlog_view(3000)
    view.site_disk_free = np.array([1e15, 1e14, 0.0])
    choice = choose(view, BrokerageSettings(start_sooner_by_minutes=1.0),
                    file_bytes=np.array([120 * MB]))
    x, y = choice.candidates
    assert y["filter"].startswith("output space") and "data_waits" not in x
    assert x["terms"]["data"] == 1.0 and choice.chosen_name == "X"


def test_a_clouds_wait_counts_only_its_passing_queues_and_at_least_one_slot() -> None:
    # B_Q fails the wall time (1,800 s < the task's 3,600): its 900 waiting and 150 slots
    # do not count, X's wait is A_Q's 150 / 150 * 3,600 = 3,600 s (not 1,050 / 300 * 3,600
    # = 12,600). C_Q has no slot and 1 waiting: 1 / max(0, 1) * 3,600 = 3,600 s.
    view = backlog_view(0)
    view.queue_walltime_s = np.array([7200, 1800, 172800])
    view.queue_waiting = np.array([150, 900, 1])
    view.queue_slots = np.array([150, 150, 0])
    choice = choose(view, file_bytes=np.array([120 * MB]))
    assert [c["wait_s"] for c in choice.candidates] == [3600.0, 3600.0]


def test_without_a_backlog_the_data_term_stands_and_no_candidate_is_marked() -> None:
    # No job waits anywhere: X starts at once, Y after 24 s of transfer, over a margin of
    # one second (1 / 60 minutes): Y, without data, has no data term to lose and keeps
    # its row unmarked; X, the soonest, keeps its own.
    choice = choose(backlog_view(0, 0), BrokerageSettings(start_sooner_by_minutes=1 / 60),
                    file_bytes=np.array([120 * MB]))
    x, y = choice.candidates
    assert (x["wait_s"], y["wait_s"]) == (0.0, 0.0)
    assert "data_waits" not in x and "data_waits" not in y
    assert (x["terms"]["data"], y["terms"]["data"]) == (1.0, 0.0)


def test_a_clouds_capacity_is_over_the_best_clouds_free_slots_or_one() -> None:
    # One free slot in the whole grid (A_Q: 1 slot; B_Q and C_Q full): X's capacity is
    # 1 / max(1, 1) = 1, not halved; Y's 0 / 1 = 0.
    view = two_cloud_view()
    view.queue_slots = np.array([1, 1, 1])
    view.queue_waiting = np.array([0, 1, 1])
    choice = choose(view)
    assert [c["terms"]["capacity"] for c in choice.candidates] == [1.0, 0.0]


def test_an_unreachable_input_is_stored_as_no_transfer_time() -> None:
    # No replica anywhere: Y's input cannot be brought (inf s), stored as None, not inf.
    view = two_cloud_view()
    view.present, view.sources = {7: np.zeros(3, bool)}, {7: np.zeros(3, bool)}
    choice = choose(view)
    assert [c["transfer_s"] for c in choice.candidates] == [None, None]


def test_a_cloud_without_a_tier1_is_refused_saying_so() -> None:
    view = two_cloud_view()
    view.cloud_tier1 = np.array([0, -1])
    choice = choose(view)
    assert choice.candidates[1]["filter"] == (
        "no Tier-1: the cloud has no Tier-1 to hold the output")
    assert choice.chosen_name == "X"


def test_the_output_space_refusal_gives_terabytes_to_the_hundredth() -> None:
    # A has 5e9 bytes free, 0.005 TB: "0.01" (5e9 / 1e12 is a hair above 0.005); the
    # task's 30e9 bytes of input make 15e9 of output (half), 0.015 TB: "0.01" as well
    # (15e9 / 1e12 is a hair below 0.015). Dividing by anything but 1e12 shows otherwise.
    view = two_cloud_view()
    view.site_disk_free = np.array([5e9, 1e14, 1e15])
    needs = TaskNeeds(1, "production", 7, np.full(3, 10e9), 1, 2000, 3600, 1)
    choice = broker_task(view, needs, BrokerageSettings(), 5.0, np.random.default_rng(0))
    assert choice.candidates[0]["filter"] == (
        "output space: 0.01 TB free at A, 0.01 TB expected")
    # 4e9 free (0.00) for one 10 GB file's 5e9 of output, 0.005 TB: "0.01" (a hair above).
    view.site_disk_free = np.array([4e9, 1e14, 1e15])
    needs = TaskNeeds(1, "production", 7, np.array([10e9]), 1, 2000, 3600, 1)
    choice = broker_task(view, needs, BrokerageSettings(), 5.0, np.random.default_rng(0))
    assert choice.candidates[0]["filter"] == (
        "output space: 0.00 TB free at A, 0.01 TB expected")


@pytest.mark.parametrize("pinned", [0, 2])
def test_a_task_pinned_to_any_site_goes_to_that_sites_own_cloud(pinned: int) -> None:
    # Pinned to A (site index 0, X's) or to C (Y's, also a foreign member of X): the
    # pinned site's own cloud takes it, every other cloud is refused as pinned elsewhere.
    view = two_cloud_view()
    view.foreign[0, 2] = True
    home, other = ("X", 1) if pinned == 0 else ("Y", 0)
    choice = choose(view, pinned_site=pinned)
    assert choice.chosen_name == home
    assert choice.candidates[other]["filter"] == (
        "pinned: the task is pinned to a site outside it")


def test_a_pinned_task_no_nucleus_reaches_is_refused_by_every_nucleus() -> None:
    # Two nuclei, A and C, neither measured to reach B: a task pinned to B has no home.
    view = two_cloud_view()
    view.site_nucleus = np.array([True, False, True])
    view.throughput = np.full((3, 3), np.nan)
    choice = choose(view, BrokerageSettings(mode="full_mesh"), pinned_site=1)
    assert choice.chosen is None
    assert [c["filter"] for c in choice.candidates] == [
        "pinned: the task is pinned to a site outside it"] * 2


def six_queue_view(fail_last: bool) -> GridView:
    """One cloud of six online sites S1..S6, a queue each (Q1..Q6, 6..1 slots), the input on
    disk everywhere; Q1 has one job running. With ``fail_last`` Q6 has 1 core (and 3
    jobs waiting): an 8-core task's jobs cannot go there."""
    n = 6
    view = GridView(
        sites=[f"S{i}" for i in range(1, n + 1)], site_cloud=np.zeros(n, np.int64),
        site_online=np.ones(n, bool), site_nucleus=np.eye(1, n, 0, bool)[0],
        site_disk_free=np.full(n, 1e15), clouds=["X"], cloud_tier1=np.array([0]),
        foreign=np.zeros((1, n), bool), queues=[f"Q{i}" for i in range(1, n + 1)],
        queue_site=np.arange(n), queue_status=np.array(["online"] * n),
        queue_type=np.array(["unified"] * n),
        queue_cores=np.array([8] * 5 + [1 if fail_last else 8]),
        queue_memory_mb=np.full(n, 16000), queue_walltime_s=np.full(n, 172800),
        queue_disk_mb=np.full(n, 100000), queue_slots=np.array([6, 5, 4, 3, 2, 1]),
        queue_waiting=np.array([0, 0, 0, 0, 0, 3 if fail_last else 0]),
        queue_running=np.array([1, 0, 0, 0, 0, 0]), throughput=np.full((n, n), np.nan),
        present={7: np.ones(n, bool)}, sources={7: np.ones(n, bool)})
    return view


def six_queue_plan(fail_last: bool, files: int) -> tuple[GridView, Any]:
    # At 1 waiting job per slot the queues' room is their slots (running jobs do not
    # count): 21 files fill Q1..Q6 exactly (6 + 5 + 4 + 3 + 2 + 1), 20 fill Q1..Q5.
    view = six_queue_view(fail_last)
    needs = TaskNeeds(1, "production", 7, np.full(files, 1 * MB), 8, 2000, 3600, 1)
    plan = broker_jobs(view, needs, np.ones(6, bool),
                       BrokerageSettings(max_waiting_per_slot=1.0), np.random.default_rng(0))
    return view, plan


def test_a_job_decision_lists_the_five_busiest_queues_and_counts_the_rest() -> None:
    _, plan = six_queue_plan(False, 21)
    assert plan.summary == "21 jobs on Q1 (6), Q2 (5), Q3 (4), Q4 (3), Q5 (2) and 1 more queues"
    _, plan = six_queue_plan(True, 20)
    assert plan.summary == "20 jobs on Q1 (6), Q2 (5), Q3 (4), Q4 (3), Q5 (2)"


def test_a_job_decision_stores_each_queues_terms_share_jobs_and_size() -> None:
    # Q2..Q5 score 1 + 0.5 + 0.5 = 2.0; Q1, one of 6 slots running, capacity 5 / 6 =
    # 0.833333 (0.8333): 1 + 0.416667 + 0.5 = 1.916667 (1.9167), within 10% of 2.0. The
    # first draw's shares: 1.916667 / 9.916667 = 0.193277 (0.1933), 2 / 9.916667 =
    # 0.201681 (0.2017). Best first, then by name; Q6 (1 core) last with its filter.
    view, plan = six_queue_plan(True, 20)

    def row(q: int, score: float, capacity: float, share: float, jobs: int) -> dict[str, Any]:
        return {"name": f"Q{q}", "site": f"S{q}", "score": score,
                "terms": {"data": 1.0, "capacity": capacity, "transfer_s": 0.0},
                "share": share, "jobs": jobs, "files_per_job": 1}

    assert plan.candidates == [
        row(2, 2.0, 1.0, 0.2017, 5), row(3, 2.0, 1.0, 0.2017, 4),
        row(4, 2.0, 1.0, 0.2017, 3), row(5, 2.0, 1.0, 0.2017, 2),
        row(1, 1.9167, 0.8333, 0.1933, 6),
        {"name": "Q6", "site": "S6", "filter": "cores: queue has 1 cores"}]
    # every job's input is on disk where it runs; the queues' waiting counts grow by the
    # jobs placed (Q6 keeps its 3)
    assert plan.data_local.dtype == bool and plan.data_local.all()
    assert plan.transfer_s.tolist() == [0.0] * 20
    assert view.queue_waiting.tolist() == [6, 5, 4, 3, 2, 3]


def test_a_low_scoring_queue_still_ranks_above_every_filtered_one() -> None:
    # A_Q: 2.0. B_Q: no data, 90 of 100 slots waiting (capacity 0.1), 100 MB over an
    # unmeasured link (100 s): 0.05 + 0.5 / (1 + 100 / 3600) = 0.5365, below 1. C_Q is
    # offline: after both, whatever its missing score would be.
    view = _tiny_view()
    view.site_online = np.array([True, True, True])
    view.queue_status = np.array(["online", "online", "offline"])
    view.queue_waiting = np.array([0, 90, 0])
    view.throughput = np.full((3, 3), np.nan)
    needs = TaskNeeds(1, "production", 7, np.array([100 * MB]), 1, 2000, 3600, 1)
    plan = broker_jobs(view, needs, np.ones(3, bool), BrokerageSettings(),
                       np.random.default_rng(0))
    assert [(c["name"], c.get("score")) for c in plan.candidates] == [
        ("A_Q", 2.0), ("B_Q", 0.5365), ("C_Q", None)]


def test_a_plan_of_no_job_is_empty_arrays_and_keeps_its_candidates() -> None:
    view = _tiny_view()  # C offline: C_Q fails site status
    needs = TaskNeeds(1, "production", 7, np.array([1 * MB]), 1, 2000, 3600, 1)
    plan = broker_jobs(view, needs, np.array([False, False, True]), BrokerageSettings(),
                       np.random.default_rng(0))
    assert len(plan) == 0
    for array, dtype in ((plan.queue, "int64"), (plan.first_file, "int64"),
                         (plan.n_files, "int64"), (plan.data_local, "bool"),
                         (plan.transfer_s, "float64")):
        assert array.dtype.name == dtype and array.shape == (0,)
    assert (plan.first_event, plan.n_events) == (None, None)
    assert plan.candidates == [{"name": "C_Q", "site": "C",
                                "filter": "site status: site is not online"}]


def test_a_queue_off_the_members_is_out_of_scope_even_if_pinned() -> None:
    # Pinned to B, but only A is a member: no queue is judged at all.
    view = _tiny_view()
    needs = TaskNeeds(1, "production", 7, np.array([1 * MB]), 1, 2000, 3600, 1,
                      pinned_site=1)
    plan = broker_jobs(view, needs, np.array([True, False, False]), BrokerageSettings(),
                       np.random.default_rng(0))
    assert len(plan) == 0 and plan.candidates == []


def test_a_pinned_refusal_ignores_the_filters_of_the_queues_off_the_pinned_site() -> None:
    # Pinned to B (1 core: fails "cores" for 8); A_Q and C_Q, not judged, would fail
    # "memory" (2 of 3 queues): the refusal names cores.
    view = _tiny_view()
    view.site_online = np.array([True, True, True])
    view.queue_memory_mb = np.array([1000, 16000, 1000])
    assert job_summary(view, [True, True, True], pinned_site=1) == (
        "no queue passes the filters: cores (most queues)")


def test_an_event_jobs_transfer_is_one_file() -> None:
    # 400-event jobs of one 1 MB file: B_Q (no data) brings that file from A at 10 MB/s,
    # 0.1 s, whatever the job's events.
    view = open_view([100, 100, 100])
    needs = TaskNeeds(1, "production", 7, np.full(2, 1 * MB), 1, 2000, 400, 1,
                      events_per_job=400, events_per_file=1000)
    plan = broker_jobs(view, needs, np.array([True, True, False]), BrokerageSettings(),
                       np.random.default_rng(0))
    rows = {c["name"]: c for c in plan.candidates}
    assert rows["B_Q"]["terms"]["transfer_s"] == 0.1


def test_empty_files_need_no_transfer_and_no_disk_beyond_the_scratch() -> None:
    # Files of 0 bytes, no replica anywhere: nothing to bring (0 s, not unreachable), and
    # a queue with exactly the scratch disk (2,000 MB) passes.
    view = open_view([100, 100, 100])
    view.present, view.sources = {7: np.zeros(3, bool)}, {7: np.zeros(3, bool)}
    view.queue_disk_mb = np.array([2000, 100000, 100000])
    needs = TaskNeeds(1, "production", 7, np.zeros(2), 1, 2000, 3600, 1)
    plan = broker_jobs(view, needs, np.array([True, True, False]), BrokerageSettings(),
                       np.random.default_rng(0))
    rows = {c["name"]: c for c in plan.candidates}
    assert [rows[q]["terms"]["transfer_s"] for q in ("A_Q", "B_Q")] == [0.0, 0.0]


@pytest.mark.parametrize(("slots", "waiting", "capacity"), [
    (1, 0, 1.0),     # one free slot of one: all free
    (4, 10, 0.0),    # more waiting than slots: none free, not negative
])
def test_a_queues_capacity_is_its_free_share_of_its_slots(slots: int, waiting: int,
                                                          capacity: float) -> None:
    view = open_view([slots, 100, 100])
    view.queue_waiting = np.array([waiting, 0, 0])
    needs = TaskNeeds(1, "production", 7, np.array([1 * MB]), 1, 2000, 3600, 1)
    plan = broker_jobs(view, needs, np.array([True, True, False]), BrokerageSettings(),
                       np.random.default_rng(0))
    rows = {c["name"]: c for c in plan.candidates}
    assert rows["A_Q"]["terms"]["capacity"] == capacity


@pytest.mark.parametrize(("waiting", "at_a"), [
    (2, 2),   # 4 slots at 1 per slot, 2 waiting: room for 2
    (5, 0),   # already over the limit: room for none (not one)
])
def test_a_queues_room_is_its_limit_less_what_waits(waiting: int, at_a: int) -> None:
    # A_Q (the input on disk) is the best; B_Q takes what A_Q has no room for.
    view = open_view([4, 100, 100])
    view.queue_waiting = np.array([waiting, 0, 0])
    needs = TaskNeeds(1, "production", 7, np.full(5, 1 * MB), 1, 2000, 3600, 1)
    plan = broker_jobs(view, needs, np.array([True, True, False]),
                       BrokerageSettings(max_waiting_per_slot=1.0), np.random.default_rng(0))
    assert Counter(plan.queue.tolist()) == Counter({0: at_a, 1: 5 - at_a})


@pytest.mark.parametrize(("room", "step"), [([5, 5], None), ([5, 0], [1, 1])])
def test_draw_with_room_never_opens_an_ineligible_candidate_with_room(
        room: list[int], step: list[int] | None) -> None:
    # The ineligible candidate scores best and has room, before or after the eligible
    # one's room is raised by its step: it takes nothing.
    idx, _ = draw_with_room(np.array([9.0, 1.0]), np.array([False, True]), np.array(room),
                            3, 0.1, np.random.default_rng(0),
                            step=None if step is None else np.array(step))
    assert idx.tolist() == [1, 1, 1]


def test_draw_with_room_returns_the_first_rounds_shares() -> None:
    # Round one: only candidate 0 has room (1): shares [1, 0]. It fills; with no step the
    # other 2 are drawn on score alone (0.5 / 0.5): the shares returned stay round one's.
    idx, p = draw_with_room(np.array([1.0, 1.0]), np.ones(2, bool), np.array([1, 0]), 3, 0.1,
                            np.random.default_rng(0))
    assert len(idx) == 3 and p.tolist() == [1.0, 0.0]
    # No room anywhere from the start, no step: the draw on score is the first round.
    idx, p = draw_with_room(np.array([1.0, 1.0]), np.ones(2, bool), np.array([0, 0]), 2, 0.1,
                            np.random.default_rng(0))
    assert len(idx) == 2 and p.tolist() == [0.5, 0.5]


def test_draw_with_room_of_nothing_draws_nothing() -> None:
    idx, p = draw_with_room(np.array([1.0, 2.0]), np.ones(2, bool), np.array([1, 1]), 0, 0.1,
                            np.random.default_rng(0))
    assert idx.dtype.name == "int64" and idx.tolist() == [] and p.tolist() == [0.0, 0.0]
