"""Jobs as a task defines them (``tasks._task_jobs``, ``tasks._task_files``), on both backends.

A job gets the task's files in order, as many as its queue allows; its
parameters are the task's template with ``$IN`` (its files, comma
separated), ``$OUT`` (its output file), ``$JOB`` (its number in the task),
``$FIRST_EVENT`` and ``$MAX_EVENTS`` filled in; it asks for the task's cores
and memory, the wall time of its files and their disk plus the scratch disk;
production jobs are ``managed`` and write under the input's scope, analysis
jobs are ``user`` and write under ``user.<name>``; only analysis tasks count
as accesses for PD2P's popularity.
"""

from __future__ import annotations

from string import Template
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.config import Settings
from netbroker.db.schema import dataset_accesses, event_ranges, jobs
from netbroker.db.tasks import TaskDB
from netbroker.registry import registry
from netbroker.workload import tasks
from tests.factories import GB, mini_grid, task_spec


@pytest.fixture
def mini(engine: Engine) -> Engine:
    registry.import_grid_document(engine, mini_grid(files=5))
    return engine


def submit(engine: Engine, **over: object) -> dict[str, Any]:
    return tasks.submit(engine, tasks.parse_task(task_spec(**over)), Settings())


def job_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(jobs).order_by(jobs.c.id)).mappings()]


def test_parameters_name_each_jobs_files_output_and_number(mini: Engine) -> None:
    # 5 files, 2 per job: jobs of files 1-2, 3-4 and 5.
    submit(mini, files_per_job=2, walltime_s=4 * 3600, parameters="-i $IN -o $OUT -n $JOB",
           name="t")
    pars = [r["job_pars"] for r in job_rows(mini)]
    names = [f"data23.AOD._{i:06d}.pool.root.1" for i in range(1, 6)]
    assert pars == [f"-i {names[0]},{names[1]} -o t._000001.root.1 -n 1",
                    f"-i {names[2]},{names[3]} -o t._000002.root.1 -n 2",
                    f"-i {names[4]} -o t._000003.root.1 -n 3"]


def test_a_job_asks_for_the_wall_time_and_disk_of_its_own_files(mini: Engine) -> None:
    submit(mini, files_per_job=2, walltime_s=4 * 3600, cores=4, memory_mb=3000)
    rows = job_rows(mini)
    # 2 h per file; 10,000 MB per file plus the 2,000 MB of scratch.
    assert [(r["max_walltime_s"], r["max_disk_mb"], r["input_bytes"]) for r in rows] == [
        (4 * 3600, 22_000, 20 * GB), (4 * 3600, 22_000, 20 * GB), (2 * 3600, 12_000, 10 * GB)]
    assert {(r["cores"], r["min_ram_mb"], r["max_attempts"]) for r in rows} == {(4, 3000, 3)}


@pytest.mark.parametrize(("kind", "label", "scope", "accesses"), [
    ("production", "managed", "data23", []),
    ("analysis", "user", "user.alice", [5]),
])
def test_production_and_analysis_jobs_differ_in_label_output_scope_and_popularity(
        mini: Engine, kind: str, label: str, scope: str, accesses: list[int]) -> None:
    made = submit(mini, processing_type=kind, priority=777)
    rows = job_rows(mini)
    assert {(r["prod_source_label"], r["base_priority"]) for r in rows} == {(label, 777)}
    with mini.connect() as conn:
        files = TaskDB(conn).job_files(rows[0]["id"])
        counted = list(conn.execute(sa.select(dataset_accesses.c.jobs)).scalars())
    outputs = {(f["kind"], f["scope"], f["dataset"]) for f in files if f["kind"] != "input"}
    assert outputs == {("output", scope, f"{made['name']}.output"),
                       ("log", scope, f"{made['name']}.log")}
    assert counted == accesses


def test_event_service_jobs_hand_their_events_out_in_ranges(mini: Engine) -> None:
    # 1,000 events per file, 400 per job: jobs of 400, 400, 200; ranges of 150.
    submit(mini, events_per_job=400, events_per_file=1000, walltime_s=4000,
           event_service=True, events_per_range=150)
    with mini.connect() as conn:
        first_job = conn.execute(sa.select(event_ranges.c.first_event, event_ranges.c.last_event)
                                 .where(event_ranges.c.job_id == 1)
                                 .order_by(event_ranges.c.first_event)).all()
        third_job = conn.execute(sa.select(event_ranges.c.first_event, event_ranges.c.last_event)
                                 .where(event_ranges.c.job_id == 3)
                                 .order_by(event_ranges.c.first_event)).all()
    assert [tuple(r) for r in first_job] == [(0, 149), (150, 299), (300, 399)]
    assert [tuple(r) for r in third_job] == [(800, 949), (950, 999)]
    assert sum(1 for r in job_rows(mini) if r["event_service"]) == 5 * 3


def test_an_event_jobs_wall_time_is_its_events(mini: Engine) -> None:
    # 4,000 s for a full job of 400 events: 10 s an event; jobs of 400, 400 and 200
    # events a file ask for 4,000, 4,000 and 2,000 s, and one file's disk each.
    submit(mini, events_per_job=400, events_per_file=1000, walltime_s=4000)
    rows = job_rows(mini)
    assert [(r["max_walltime_s"], r["max_disk_mb"]) for r in rows] == [
        (4000, 12_000), (4000, 12_000), (2000, 12_000)] * 5


def test_each_job_lists_its_inputs_in_order_then_its_output_and_log(mini: Engine) -> None:
    # 5 files, 2 per job: the second job reads files 3 and 4.
    submit(mini, files_per_job=2, walltime_s=4 * 3600, name="t")
    second = job_rows(mini)[1]
    with mini.connect() as conn:
        rows = TaskDB(conn).job_files(second["id"])
        file_ids = dict(conn.execute(sa.text("SELECT name, id FROM files")).all())
    lfn = [f"data23.AOD._{i:06d}.pool.root.1" for i in (3, 4)]
    assert [(r["kind"], r["lfn"], r["scope"], r["dataset"], r["file_id"], r["bytes"],
             r["guid"], r["adler32"]) for r in rows] == [
        ("input", lfn[0], "data23", "data23.AOD", file_ids[lfn[0]], 10 * GB,
         "00000000-0000-4000-8000-000000000003", "0a0b0c0d"),
        ("input", lfn[1], "data23", "data23.AOD", file_ids[lfn[1]], 10 * GB,
         "00000000-0000-4000-8000-000000000004", "0a0b0c0d"),
        ("output", "t._000002.root.1", "data23", "t.output", None, None, None, None),
        ("log", "t._000002.log.tgz.1", "data23", "t.log", None, None, None, None)]


@pytest.mark.parametrize("template", [
    "--in $IN --out $OUT", "${IN}x$OUT.$JOB", "$$IN costs $$5", "$MISSING stays, $ too",
    "$in is not $IN", "trailing $", "${OUT", "$FIRST_EVENT-$MAX_EVENTS", "", "no fields",
])
def test_parameters_are_filled_in_as_string_template_would(template: str) -> None:
    values = {"IN": "a,b", "OUT": "o.root", "JOB": "7", "FIRST_EVENT": "0",
              "MAX_EVENTS": "100"}
    assert tasks._template_filler(template)(values) == Template(template).safe_substitute(values)
