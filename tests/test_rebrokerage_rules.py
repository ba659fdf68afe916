"""Every documented rebrokerage rule at its boundary: the pure plan and the pass, both backends.

A waiting job moves when something changed for it (its queue is busy: more
than ``busy_queued_per_slot`` waiting per slot; its input is now on disk at
another eligible site of its cloud while not at its own; its queue no
longer passes the filters) and another queue of its task's cloud that fits
the job (its wall time and disk, a free slot) scores more than
``current * (1 + better_by_fraction)``. Only jobs waiting at least
``min_wait_minutes``, moved fewer than ``max_rebrokerages`` times and not
pinned are considered.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.config import RebrokerageSettings, Settings
from netbroker.db.schema import jobs, queues
from netbroker.registry import registry
from netbroker.workload import tasks
from netbroker.workload.brokerage import GridView, QueueScores
from netbroker.workload.rebrokerage import plan_moves, rebroker
from tests.factories import mini_grid, task_spec

ESD = "data23:data23.ESD"
SMALL = {"FZK": 8000, "RAL": 8000, "MAN": 8000, "CC": 8000}  # only DESY and LRZ take the task


def view(waiting: list[int], slots: list[int], walltime: list[float] | None = None,
         disk: list[int] | None = None) -> GridView:
    """One queue per site, all in cloud 0; only what plan_moves reads matters."""
    q = len(slots)
    return GridView(
        sites=[f"S{k}" for k in range(q)], site_cloud=np.zeros(q, np.int64),
        site_online=np.ones(q, bool), site_nucleus=np.zeros(q, bool),
        site_disk_free=np.full(q, 1e15), clouds=["C"], cloud_tier1=np.array([0]),
        foreign=np.zeros((1, q), bool), queues=[f"Q{k}" for k in range(q)],
        queue_site=np.arange(q), queue_status=np.array(["online"] * q, dtype=object),
        queue_type=np.array(["unified"] * q, dtype=object), queue_cores=np.full(q, 8),
        queue_memory_mb=np.full(q, 64000),
        queue_walltime_s=np.array(walltime or [86400.0] * q),
        queue_disk_mb=np.array(disk or [100_000] * q), queue_slots=np.array(slots),
        queue_waiting=np.array(waiting), queue_running=np.zeros(q, np.int64),
        throughput=np.full((q, q), np.nan))


def scores(score: list[float], data: list[float] | None = None,
           eligible: list[bool] | None = None) -> QueueScores:
    q = len(score)
    ok = np.array(eligible or [True] * q)
    return QueueScores(np.where(ok, 0, 2).astype(np.int8), np.ones(q, bool), ok,
                       np.array(data or [0.0] * q), np.ones(q), np.zeros(q), np.array(score),
                       np.ones(q, np.int64))


def plan(v: GridView, qs: QueueScores, jobs_at: list[int], walltime_s: float = 3600,
         disk_mb: int = 1000, free: list[int] | None = None,
         **settings: float) -> list[tuple[int, int, int]]:
    got = plan_moves(v, qs, np.array(jobs_at), np.full(len(jobs_at), walltime_s),
                     np.full(len(jobs_at), disk_mb), RebrokerageSettings(**settings),
                     np.array(free if free is not None else [100] * len(v.queues)))
    return [(m.job, m.from_queue, m.to_queue) for m in got]


@pytest.mark.parametrize(("waiting", "moves"), [(20, False), (21, True)])
def test_a_queue_is_busy_only_above_busy_queued_per_slot(waiting: int, moves: bool) -> None:
    # Q0: `waiting` jobs for 10 slots; 2.0 per slot is not busy yet, 2.1 is.
    v = view([waiting, 0], [10, 10])
    assert bool(plan(v, scores([1.0, 2.0]), [0])) is moves


@pytest.mark.parametrize(("better", "moves"), [(1.5, False), (1.5000001, True)])
def test_the_new_queue_must_score_more_than_better_by_fraction_above(better: float,
                                                                     moves: bool) -> None:
    # Input now on disk at Q1 only: a reason to move; Q1 must beat 1.0 * (1 + 0.5).
    v = view([1, 0], [10, 10])
    qs = scores([1.0, better], data=[0.0, 1.0])
    assert bool(plan(v, qs, [0], better_by_fraction=0.5)) is moves


def test_without_a_reason_a_job_stays_even_if_another_queue_is_better() -> None:
    v = view([1, 0], [10, 10])
    assert plan(v, scores([0.1, 5.0]), [0]) == []  # no data anywhere, not busy, passing


def test_a_job_whose_queue_no_longer_passes_moves_to_any_better_queue() -> None:
    v = view([1, 0], [10, 10])
    qs = scores([3.0, 0.2], eligible=[False, True])  # its own score no longer counts
    assert plan(v, qs, [0]) == [(0, 0, 1)]


@pytest.mark.parametrize(("walltime", "disk", "free", "moves"), [
    ([86400.0, 7200.0], [100_000, 5000], [100, 1], True),   # exactly the job's size
    ([86400.0, 7199.0], [100_000, 5000], [100, 1], False),  # a second too short
    ([86400.0, 7200.0], [100_000, 4999], [100, 1], False),  # a MB too small
    ([86400.0, 7200.0], [100_000, 5000], [100, 0], False),  # no free slot
])
def test_the_new_queue_must_fit_the_job_as_it_was_sized(walltime: list[float], disk: list[int],
                                                        free: list[int], moves: bool) -> None:
    v = view([1, 0], [10, 10], walltime, disk)
    qs = scores([1.0, 2.0], data=[0.0, 1.0])
    assert bool(plan(v, qs, [0], walltime_s=7200, disk_mb=5000, free=free)) is moves


def test_moves_stop_once_the_queue_is_no_longer_busy() -> None:
    # 25 jobs for 10 slots: busy until 20 are left (2 per slot is not busy).
    v = view([25, 0], [10, 100])
    moved = plan(v, scores([1.0, 2.0]), [0] * 25)
    assert len(moved) == 5 and v.queue_waiting.tolist() == [20, 5]


# --- the pass over the database -----------------------------------------------------------

@pytest.fixture
def waiting_task(engine: Engine) -> Engine:
    """Six jobs at DESY and LRZ, assigned: their input is only on tape at FZK."""
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["FZK_TAPE"]},
                                                    queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD"))
    task = tasks.submit(engine, tasks.parse_task(task_spec(input_dataset=ESD)), Settings())
    assert task["jobs"] == {"assigned": 6}
    return engine


def copy_at(engine: Engine, rse: str) -> None:
    registry.import_grid_document(engine, mini_grid({"data23.ESD": ["FZK_TAPE", rse]},
                                                    queue_memory_mb=SMALL,
                                                    extra_dataset="data23.ESD"))


def at_desy(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(jobs).join(
            queues, jobs.c.queue_id == queues.c.id).where(queues.c.name == "DESY_UCORE"))
            .scalar_one())


def waited_since(engine: Engine) -> object:
    with engine.connect() as conn:
        (since,) = set(conn.execute(sa.select(jobs.c.waiting_since)).scalars())
    return since


@pytest.mark.parametrize(("waited", "moves"), [(timedelta(minutes=60), True),
                                               (timedelta(minutes=59, seconds=59), False)])
def test_only_jobs_waiting_min_wait_minutes_move(waiting_task: Engine, waited: timedelta,
                                                 moves: bool) -> None:
    desy = at_desy(waiting_task)
    assert desy > 0
    copy_at(waiting_task, "LRZ_DATADISK")
    result = rebroker(waiting_task, Settings(), now=waited_since(waiting_task) + waited)
    assert len(result["moved"]) == (desy if moves else 0)
    assert result["activated"] == 6 - desy  # LRZ's own jobs: their input arrived


def test_a_large_better_by_fraction_keeps_the_jobs_where_they_are(waiting_task: Engine) -> None:
    desy = at_desy(waiting_task)
    copy_at(waiting_task, "LRZ_DATADISK")
    later = waited_since(waiting_task) + timedelta(hours=2)
    strict = Settings.model_validate({"rebrokerage": {"better_by_fraction": 10.0}})
    # LRZ now scores 1 + 0.5 * free + 0.5 (data, no transfer), about 2; DESY
    # 0.5 * free + 0.5 / (1 + 10,000 / 3,600), about 0.6: 2 < 0.6 * 11, 2 > 0.6 * 1.2.
    assert rebroker(waiting_task, strict, now=later)["moved"] == []
    moved = rebroker(waiting_task, Settings(), now=later)["moved"]
    assert len(moved) == desy
    before, after = 0.5 * (100 - desy) / 100 + 0.5 / (1 + 10_000 / 3600), \
        1.5 + 0.5 * (100 - (6 - desy)) / 100
    assert {m["reason"] for m in moved} == {
        f"input now on disk at another site; score {before:.3f} -> {after:.3f}"}


def test_jobs_move_only_within_their_tasks_cloud(waiting_task: Engine) -> None:
    registry.import_grid_document(waiting_task, mini_grid(
        {"data23.ESD": ["FZK_TAPE", "MAN_DATADISK"]}, extra_dataset="data23.ESD",
        queue_memory_mb={"FZK": 8000, "RAL": 8000, "CC": 8000}))  # MAN fits, but in UK
    later = waited_since(waiting_task) + timedelta(hours=2)
    assert rebroker(waiting_task, Settings(), now=later)["moved"] == []


def test_no_job_moves_when_max_rebrokerages_is_zero(waiting_task: Engine) -> None:
    copy_at(waiting_task, "LRZ_DATADISK")
    never = Settings.model_validate({"rebrokerage": {"max_rebrokerages": 0}})
    later = waited_since(waiting_task) + timedelta(hours=2)
    assert rebroker(waiting_task, never, now=later)["moved"] == []
    with waiting_task.connect() as conn:
        assert Counter(conn.execute(sa.select(jobs.c.rebrokerages)).scalars()) == {0: 6}
