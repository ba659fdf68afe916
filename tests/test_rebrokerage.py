"""Rebrokerage on both backends: jobs follow their data, within the limit, never pinned ones."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.common.config import Settings
from netbroker.common.enums import utcnow
from netbroker.db.schema import datasets, jobs, queues, rebrokerages
from netbroker.db.schema import tasks as task_table
from netbroker.db.tasks import TaskDB
from netbroker.registry import registry
from netbroker.workload import rebrokerage, tasks
from netbroker.workload.rebrokerage import rebroker
from tests.factories import fts_transfers, mini_grid, task_spec

ESD = "data23:data23.ESD"
# UK's queues and FZK's are too small for the task: its jobs go to DESY and LRZ.
SMALL = {"FZK": 8000, "RAL": 8000, "MAN": 8000, "CC": 8000}


@pytest.fixture
def waiting_task(engine: Engine) -> tuple[Engine, int]:
    """Six jobs at DESY and LRZ, assigned: their input is only on tape at FZK."""
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["FZK_TAPE"]},
                                                    queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD"))
    task = tasks.submit(engine, tasks.parse_task(task_spec(input_dataset=ESD)), Settings())
    assert task["jobs"] == {"assigned": 6}
    return engine, task["id"]


def placement(engine: Engine) -> Counter[tuple[str, str, int]]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(queues.c.name, jobs.c.status, jobs.c.rebrokerages)
                            .join(jobs, jobs.c.queue_id == queues.c.id)).all()
    return Counter((q, str(s), n) for q, s, n in rows)


def add_replica(engine: Engine, rse: str, **grid: object) -> None:
    registry.import_grid_document(engine, mini_grid({"data23.ESD": [rse]}, queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD", **grid))


def test_a_long_waiting_job_moves_when_its_data_appears_elsewhere(
        waiting_task: tuple[Engine, int]) -> None:
    engine, _ = waiting_task
    before = placement(engine)
    at_lrz = sum(n for (q, _, _), n in before.items() if q == "LRZ_UCORE")
    assert 0 < at_lrz < 6
    add_replica(engine, "LRZ_DATADISK")

    fresh = rebroker(engine, Settings())  # nobody has waited an hour yet: no move
    assert fresh["moved"] == [] and fresh["activated"] == at_lrz

    later = rebroker(engine, Settings(), now=utcnow() + timedelta(hours=2))
    assert len(later["moved"]) == 6 - at_lrz
    assert all(m["from"] == "DESY_UCORE" and m["to"] == "LRZ_UCORE" for m in later["moved"])
    assert "input now on disk at another site" in later["moved"][0]["reason"]
    assert placement(engine) == {("LRZ_UCORE", "activated", 0): at_lrz,
                                 ("LRZ_UCORE", "activated", 1): 6 - at_lrz}
    moved_id = later["moved"][0]["job_id"]
    why = tasks.explain_job(engine, moved_id)
    assert [d["kind"] for d in why["decisions"]] == ["task", "job", "rebrokerage"]
    assert why["rebrokerages"][0]["to_queue"] == "LRZ_UCORE"
    lrz = next(c for c in why["decisions"][2]["candidates"] if c["name"] == "LRZ_UCORE")
    assert lrz["terms"]["data"] == 1.0
    # The explanation marks where the job was placed and where the move took it, puts
    # the move on its timeline with its decision, and counts the jobs each queue got.
    assert why["decisions"][1]["highlight"] == why["job"]["placed_on"] == "DESY_UCORE"
    assert why["decisions"][2]["highlight"] == "LRZ_UCORE" and lrz["jobs"] == 6 - at_lrz
    (move,) = [e for e in why["timeline"] if e["event"] == "moved"]
    assert move["detail"].startswith("DESY_UCORE -> LRZ_UCORE: input now on disk")
    assert move["decision_id"] == why["decisions"][2]["id"]
    assert why["timeline"][0]["event"] == "assigned"


def test_rebrokerage_never_exceeds_the_limit(waiting_task: tuple[Engine, int]) -> None:
    engine, _ = waiting_task
    settings = Settings.model_validate({"rebrokerage": {"max_rebrokerages": 1}})
    add_replica(engine, "LRZ_DATADISK")
    rebroker(engine, settings, now=utcnow() + timedelta(hours=2))
    # LRZ goes offline and DESY gets a copy: every job would like to move again.
    add_replica(engine, "DESY_DATADISK", queue_status={"LRZ": "offline"})
    again = rebroker(engine, settings, now=utcnow() + timedelta(hours=4))
    assert again["moved"] and all(m["to"] == "DESY_UCORE" for m in again["moved"])
    assert "LRZ_UCORE no longer passes the filters" in again["moved"][0]["reason"]
    after = placement(engine)
    assert max(n for (_, _, n) in after) == 1
    stuck = sum(c for (q, _, n), c in after.items() if q == "LRZ_UCORE")
    assert stuck == sum(c for (q, _, n), c in after.items() if n == 1 and q == "LRZ_UCORE") > 0
    assert rebroker(engine, settings, now=utcnow() + timedelta(hours=6))["moved"] == []
    with engine.connect() as conn:
        per_job = Counter(conn.execute(sa.select(rebrokerages.c.job_id)).scalars())
    assert set(per_job.values()) == {1}


def test_pinned_jobs_are_never_rebrokered(engine: Engine) -> None:
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["FZK_TAPE"]},
                                                    queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD"))
    task = tasks.submit(engine, tasks.parse_task(task_spec(input_dataset=ESD, site="DESY")),
                        Settings())
    assert task["jobs"] == {"assigned": 6}
    add_replica(engine, "LRZ_DATADISK")
    result = rebroker(engine, Settings(), now=utcnow() + timedelta(hours=2))
    assert result["moved"] == []
    assert placement(engine) == {("DESY_UCORE", "assigned", 0): 6}


def test_a_busy_queue_sheds_jobs_to_a_better_one(engine: Engine) -> None:
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["DESY_DATADISK",
                                                                    "LRZ_DATADISK"]},
                                                    queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD", files=60))
    task = tasks.submit(engine, tasks.parse_task(task_spec(input_dataset=ESD)), Settings())
    # DESY shrinks to 10 pilot slots: its ~30 waiting jobs make it busy (3 per slot > 2).
    registry.import_grid_document(engine, mini_grid(
        {"data23.ESD": ["DESY_DATADISK", "LRZ_DATADISK"]}, queue_memory_mb=SMALL,
        extra_dataset="data23.ESD", files=60, pilot_slots={"DESY": 10}))
    before = placement(engine)
    at_desy = sum(n for (q, _, _), n in before.items() if q == "DESY_UCORE")
    assert at_desy > 20, before
    result = rebroker(engine, Settings(), now=utcnow() + timedelta(hours=2))
    assert result["moved"] and {m["to"] for m in result["moved"]} == {"LRZ_UCORE"}
    assert "DESY_UCORE busy" in result["moved"][0]["reason"]
    left = sum(n for (q, _, _), n in placement(engine).items() if q == "DESY_UCORE")
    assert left <= 2 * 10 + 1  # moves stop once DESY is no longer busy
    assert tasks.get_task(engine, task["id"])["jobs"] == {"activated": 60}


def test_the_pass_reads_each_datasets_file_sizes_in_the_tasks_order(engine: Engine) -> None:
    # Three files of 3, 0 and 5 bytes (names ._000001 .. ._000003), a second dataset
    # with the same, and an id with no files: the sizes as dataset_files lists them.
    registry.import_grid_document(engine, mini_grid(contents=[b"abc", b"", b"hello"],
                                                    extra_dataset="data23.EVNT"))
    with engine.connect() as conn:
        ids = dict(conn.execute(sa.select(datasets.c.name, datasets.c.id)).all())
        aod, evnt = ids["data23.AOD"], ids["data23.EVNT"]
        db = TaskDB(conn)
        sizes = db.dataset_file_bytes({aod, evnt, 999_999})
        listed = db.dataset_files({aod})
    assert {d: s.tolist() for d, s in sizes.items()} == {aod: [3, 0, 5], evnt: [3, 0, 5],
                                                        999_999: []}
    assert sizes[aod].dtype.name == "int64"
    assert [f["bytes"] for f in listed[aod]] == [3, 0, 5]


def test_one_pass_moves_every_movable_task_and_leaves_the_pinned_one(engine: Engine) -> None:
    # Task 1 pinned to DESY, tasks 2 and 3 free; a copy appears at LRZ: the pass moves the
    # DESY jobs of tasks 2 and 3 (the pinned task, read first, does not end the pass).
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["FZK_TAPE"]},
                                                    queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD"))
    ids = [tasks.submit(engine, tasks.parse_task(task_spec(
        f"task.00{k}", input_dataset=ESD, **({"site": "DESY"} if k == 1 else {}))),
        Settings())["id"] for k in (1, 2, 3)]
    with engine.connect() as conn:
        at_desy = Counter(conn.execute(sa.select(jobs.c.task_id).join(
            queues, jobs.c.queue_id == queues.c.id).where(queues.c.name == "DESY_UCORE"))
            .scalars())
    assert at_desy[ids[0]] == 6 and at_desy[ids[1]] > 0 and at_desy[ids[2]] > 0
    add_replica(engine, "LRZ_DATADISK")
    settings = Settings()
    now = utcnow() + timedelta(hours=2)
    result = rebroker(engine, settings, now=now)
    with engine.connect() as conn:
        moved_of = Counter(conn.execute(sa.select(jobs.c.task_id).where(
            jobs.c.id.in_([m["job_id"] for m in result["moved"]]))).scalars())
        db = TaskDB(conn)
        (decision,) = [d for d in db.decisions(ids[1]) if d["kind"] == "rebrokerage"]
        assert [d for d in db.decisions(ids[0]) if d["kind"] == "rebrokerage"] == []
        modified = {t["id"]: t["modified_at"] for t in db.tasks(ids=set(ids))}
        states = Counter(conn.execute(sa.select(jobs.c.status).where(
            jobs.c.id.in_([m["job_id"] for m in result["moved"]]))).scalars())
    assert moved_of == {ids[1]: at_desy[ids[1]], ids[2]: at_desy[ids[2]]}
    n = at_desy[ids[1]]
    # the decision: what moved, the settings it moved by, each queue and its arrivals
    assert (decision["seed"], decision["chosen"], decision["summary"]) == (
        0, f"DESY_UCORE -> LRZ_UCORE ({n})", f"moved {n} jobs: DESY_UCORE -> LRZ_UCORE ({n})")
    assert orjson.loads(decision["weights"]) == {
        "rebrokerage": settings.rebrokerage.model_dump(),
        "brokerage": settings.brokerage.model_dump()}
    arrivals = {c["name"]: c.get("jobs") for c in orjson.loads(decision["candidates"])}
    assert arrivals["LRZ_UCORE"] == n and arrivals["DESY_UCORE"] == 0
    # the moved tasks were modified by the pass, the pinned one not; every moved job has
    # its input on disk where it went: activated
    assert modified[ids[1]] == modified[ids[2]] == now != modified[ids[0]]
    assert states == {"activated": sum(moved_of.values())}


@pytest.mark.parametrize(("mbytes_per_s", "limit_s", "status"), [
    (10.0, 1800.0, "activated"),  # a 10 GB file at 10 MB/s: 1,000 s, within 1,800 s
    # ... exactly at the limit: the estimate is the file's bytes times the seconds a byte
    # takes, 1 / 10e6, to the float's last bit
    (10.0, 10e9 * (1 / 10e6), "activated"),
    (10.0, 999.0, "assigned"),    # ... a second beyond it
    (None, 1800.0, "assigned"),   # unmeasured (1 MB/s): 10,000 s, waits for the data
])
def test_a_job_moved_away_from_its_input_is_activated_only_if_it_arrives_in_time(
        engine: Engine, mbytes_per_s: float | None, limit_s: float, status: str) -> None:
    # The input only on tape at FZK; DESY goes offline: its jobs move to LRZ, which has no
    # copy either, and get the file from FZK.
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["FZK_TAPE"]},
                                                    queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD"))
    tasks.submit(engine, tasks.parse_task(task_spec(input_dataset=ESD)), Settings())
    add_replica(engine, "FZK_TAPE", queue_status={"DESY": "offline"})
    if mbytes_per_s is not None:
        end = time.time() - 60
        assert ingest(engine, "fts", fts_transfers("FZK_DATADISK", "LRZ_DATADISK",
                                                   mbytes_per_s, 4, end),
                      now_s=end + 60).stored == 8
    settings = Settings.model_validate({"brokerage": {"remote_input_max_transfer_s": limit_s}})
    result = rebroker(engine, settings, now=utcnow() + timedelta(hours=2))
    assert result["moved"] and {m["to"] for m in result["moved"]} == {"LRZ_UCORE"}
    with engine.connect() as conn:
        moved = set(conn.execute(sa.select(jobs.c.status).where(
            jobs.c.id.in_([m["job_id"] for m in result["moved"]]))).scalars())
    assert moved == {status}
    assert result["activated"] == 0  # nothing arrived anywhere


@pytest.mark.parametrize(("lrz_state", "spare", "tight", "moves"), [
    ("assigned", 0, False, 0),  # LRZ's slots all taken by its own waiting jobs: no move
    ("running", 0, False, 0),   # ... or by its own running jobs
    ("running", 1, False, 1),   # one slot spare: exactly one job moves
    ("running", 1, True, 1),    # ... also when no queue anywhere has more than one
    ("running", 0, True, 0),    # no free slot anywhere
])
def test_jobs_move_only_into_free_slots_neither_waiting_nor_running(
        waiting_task: tuple[Engine, int], lrz_state: str, spare: int, tight: bool,
        moves: int) -> None:
    engine, _ = waiting_task
    with engine.connect() as conn:
        lrz = list(conn.execute(sa.select(jobs.c.id).join(
            queues, jobs.c.queue_id == queues.c.id).where(queues.c.name == "LRZ_UCORE"))
            .scalars())
    assert 0 < len(lrz) < 6
    if lrz_state == "running":
        with engine.begin() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.id.in_(lrz)).values(status="running"))
    # tight: the other sites have no slot, DESY exactly its own jobs
    others = {"FZK": 0, "RAL": 0, "MAN": 0, "CC": 0, "DESY": 6 - len(lrz)} if tight else {}
    add_replica(engine, "LRZ_DATADISK", pilot_slots={"LRZ": len(lrz) + spare, **others})
    result = rebroker(engine, Settings(), now=utcnow() + timedelta(hours=2))
    assert len(result["moved"]) == moves


def test_a_full_mesh_tasks_jobs_move_among_its_nucleus_reach(engine: Engine) -> None:
    # Full mesh: the nucleus FZK reaches DESY and LRZ (measured at 100 MB/s); a copy at
    # LRZ moves the DESY jobs there.
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["FZK_TAPE"]},
                                                    queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD"))
    end = time.time() - 60
    for dst in ("DESY", "LRZ"):
        assert ingest(engine, "fts", fts_transfers("FZK_DATADISK", f"{dst}_DATADISK", 100.0,
                                                   4, end, tag=dst),
                      now_s=end + 60).stored == 8
    mesh = Settings.model_validate({"brokerage": {"mode": "full_mesh"}})
    task = tasks.submit(engine, tasks.parse_task(task_spec(input_dataset=ESD)), mesh)
    before = placement(engine)
    at_desy = sum(n for (q, _, _), n in before.items() if q == "DESY_UCORE")
    assert 0 < at_desy < 6 and tasks.get_task(engine, task["id"])["nucleus"] == "FZK"
    add_replica(engine, "LRZ_DATADISK")
    result = rebroker(engine, mesh, now=utcnow() + timedelta(hours=2))
    assert len(result["moved"]) == at_desy
    assert {(m["from"], m["to"]) for m in result["moved"]} == {("DESY_UCORE", "LRZ_UCORE")}


def test_a_task_placed_nowhere_known_is_left_and_the_next_still_moves(engine: Engine) -> None:
    # Two tasks; the first loses its cloud (as if its cloud left the registry): the pass
    # leaves its jobs and moves the second's DESY jobs to the new copy at LRZ.
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["FZK_TAPE"]},
                                                    queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD"))
    first, second = (tasks.submit(engine, tasks.parse_task(task_spec(
        f"task.00{k}", input_dataset=ESD)), Settings())["id"] for k in (1, 2))
    with engine.begin() as conn:
        conn.execute(sa.update(task_table).where(task_table.c.id == first)
                     .values(cloud_id=None, nucleus_site_id=None))
        desy = Counter(conn.execute(sa.select(jobs.c.task_id).join(
            queues, jobs.c.queue_id == queues.c.id).where(queues.c.name == "DESY_UCORE"))
            .scalars())
    assert desy[first] > 0 and desy[second] > 0
    add_replica(engine, "LRZ_DATADISK")
    result = rebroker(engine, Settings(), now=utcnow() + timedelta(hours=2))
    with engine.connect() as conn:
        moved = Counter(conn.execute(sa.select(jobs.c.task_id).where(
            jobs.c.id.in_([m["job_id"] for m in result["moved"]]))).scalars())
    assert moved == {second: desy[second]}


def test_a_job_a_pilot_took_meanwhile_stays_and_the_others_move(
        waiting_task: tuple[Engine, int], monkeypatch: pytest.MonkeyPatch) -> None:
    # Between the pass's read and its write a pilot takes the first job it would move: that
    # one is left where it runs, the others still move, and only theirs is history.
    engine, _ = waiting_task
    add_replica(engine, "LRZ_DATADISK")
    real_store = rebrokerage._store
    taken: list[int] = []

    def store(engine_: Engine, settings: Settings, view: Any, ids_of: Any, activate: Any,
              planned: list[Any], now: Any) -> Any:
        _, rows, _, moves = planned[0]
        taken.append(rows[moves[0].job].id)
        with engine_.begin() as conn:
            conn.execute(sa.update(jobs).where(jobs.c.id == taken[0]).values(status="running"))
        return real_store(engine_, settings, view, ids_of, activate, planned, now)

    monkeypatch.setattr(rebrokerage, "_store", store)
    at_desy = sum(n for (q, _, _), n in placement(engine).items() if q == "DESY_UCORE")
    assert at_desy >= 2
    result = rebroker(engine, Settings(), now=utcnow() + timedelta(hours=2))
    assert taken and taken[0] not in {m["job_id"] for m in result["moved"]}
    assert len(result["moved"]) == at_desy - 1
    with engine.connect() as conn:
        history = set(conn.execute(sa.select(rebrokerages.c.job_id)).scalars())
    assert history == {m["job_id"] for m in result["moved"]}


def test_a_decision_names_every_queue_pair_its_jobs_moved_between(engine: Engine) -> None:
    # FZK (5 slots: room for 10 jobs), DESY and LRZ take the task's 30 jobs; a copy at
    # LRZ moves FZK's and DESY's jobs there: two pairs, each with its count, in one
    # decision.
    small = {"RAL": 8000, "MAN": 8000, "CC": 8000}
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["FZK_TAPE"]}, files=30,
                                                    queue_memory_mb=small,
                                                    extra_dataset="data23.ESD",
                                                    pilot_slots={"FZK": 5}))
    task_id = tasks.submit(engine, tasks.parse_task(task_spec(input_dataset=ESD)),
                           Settings())["id"]
    at = Counter(q for (q, _, _), n in placement(engine).items() for _ in range(n))
    assert at["FZK_UCORE"] > 0 and at["DESY_UCORE"] > 0, at
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["LRZ_DATADISK"]},
                                                    files=30, queue_memory_mb=small,
                                                    extra_dataset="data23.ESD",
                                                    pilot_slots={"FZK": 5}))
    result = rebroker(engine, Settings(), now=utcnow() + timedelta(hours=2))
    assert len(result["moved"]) == at["FZK_UCORE"] + at["DESY_UCORE"]
    with engine.connect() as conn:
        (decision,) = [d for d in TaskDB(conn).decisions(task_id) if d["kind"] == "rebrokerage"]
    assert set(decision["chosen"].split("; ")) == {
        f"FZK_UCORE -> LRZ_UCORE ({at['FZK_UCORE']})",
        f"DESY_UCORE -> LRZ_UCORE ({at['DESY_UCORE']})"}
