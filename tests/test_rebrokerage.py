"""Rebrokerage on both backends: jobs follow their data, within the limit, never pinned ones."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.config import Settings
from netbroker.common.enums import utcnow
from netbroker.db.schema import datasets, jobs, queues, rebrokerages
from netbroker.db.tasks import TaskDB
from netbroker.registry import registry
from netbroker.workload import tasks
from netbroker.workload.rebrokerage import rebroker
from tests.factories import mini_grid, task_spec

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
