"""Every documented rebrokerage rule at its boundary: the pure plan and the pass, both backends.

A waiting job moves when something changed for it (its queue is busy: more
than ``busy_queued_per_slot`` waiting per slot; its input is now on disk at
another eligible site of its cloud while not at its own; its queue no
longer passes the filters) and another queue of its task's cloud that fits
the job (its wall time and disk, a free slot) scores more than
``current * (1 + better_by_fraction)``; or, whatever changed, it would start
more than ``start_sooner_by_minutes`` sooner at such a queue (its wait,
jobs ahead over slots times its wall time, against the time to bring its
input there). Only jobs waiting at least
``min_wait_minutes``, moved fewer than ``max_rebrokerages`` times and not
pinned are considered.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.config import RebrokerageSettings, Settings
from netbroker.common.enums import JobStatus
from netbroker.db.jobs import WAITING, JobDB
from netbroker.db.schema import jobs, queues
from netbroker.registry import registry
from netbroker.workload import tasks
from netbroker.workload.brokerage import GridView, QueueScores
from netbroker.workload.rebrokerage import Move, plan_moves, rebroker
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
           eligible: list[bool] | None = None, seconds: list[float] | None = None
           ) -> QueueScores:
    q = len(score)
    ok = np.array(eligible or [True] * q)
    return QueueScores(np.where(ok, 0, 2).astype(np.int8), np.ones(q, bool), ok,
                       np.array(data or [0.0] * q), np.ones(q), np.array(seconds or [0.0] * q),
                       np.array(score), np.ones(q, np.int64))


def planned(v: GridView, qs: QueueScores, jobs_at: list[int], walltime_s: float = 3600,
            disk_mb: int = 1000, free: list[int] | None = None, ahead: list[int] | None = None,
            **settings: float) -> list[Move]:
    return plan_moves(v, qs, np.array(jobs_at), np.full(len(jobs_at), walltime_s),
                      np.full(len(jobs_at), disk_mb), RebrokerageSettings(**settings),
                      np.array(free if free is not None else [100] * len(v.queues)),
                      np.array(ahead if ahead is not None else [0] * len(jobs_at)))


def plan(v: GridView, qs: QueueScores, jobs_at: list[int], walltime_s: float = 3600,
         disk_mb: int = 1000, free: list[int] | None = None, ahead: list[int] | None = None,
         **settings: float) -> list[tuple[int, int, int]]:
    return [(m.job, m.from_queue, m.to_queue)
            for m in planned(v, qs, jobs_at, walltime_s, disk_mb, free, ahead, **settings)]


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


# --- the start rule: a backlog moves to a queue where the job starts sooner ----------------
# A job's wait where it is: ahead / slots * its wall time. Q0 below has 20 waiting for
# 10 slots (2.0 per slot: not busy), no input on disk anywhere, equal scores: only the
# start rule can move a job.

@pytest.mark.parametrize(("ahead", "moves"), [(20, False), (21, True)])
def test_a_job_moves_when_it_would_start_more_than_start_sooner_by_minutes_sooner(
        ahead: int, moves: bool) -> None:
    # 1 h jobs, 10 slots: 20 ahead wait 2.0 h = 120 min, not more than 120 min; 21, 2.1 h.
    v = view([20, 0], [10, 10])
    assert plan(v, scores([1.0, 1.0]), [0], ahead=[ahead],
                start_sooner_by_minutes=120) == ([(0, 0, 1)] if moves else [])


@pytest.mark.parametrize(("walltime_s", "moves"), [(3600, False), (3601, True)])
def test_the_wait_counts_the_jobs_wall_time(walltime_s: int, moves: bool) -> None:
    # 5 ahead for 10 slots: half a turn, 1800 s for 3600 s jobs (not more than 30 min).
    v = view([20, 0], [10, 10])
    assert bool(plan(v, scores([1.0, 1.0]), [0], walltime_s=walltime_s, ahead=[5],
                     start_sooner_by_minutes=30)) is moves


@pytest.mark.parametrize(("ahead", "data", "moves"), [
    (25, 0.0, False),  # 2.5 h = 9000 s, not more than 1800 s to bring the input + 7200 s
    (26, 0.0, True),   # 9360 s
    (25, 1.0, True),   # the input on disk at Q1: nothing to bring, 9000 s > 7200 s
])
def test_the_time_to_bring_the_input_counts_where_it_is_not_on_disk(
        ahead: int, data: float, moves: bool) -> None:
    v = view([20, 0], [10, 10])
    qs = scores([1.0, 1.0], data=[0.0, data], seconds=[0.0, 1800.0])
    assert bool(plan(v, qs, [0], ahead=[ahead], start_sooner_by_minutes=120)) is moves


def test_the_start_rule_takes_the_queue_where_the_job_starts_first() -> None:
    # Q1 scores best but needs 3600 s of transfer; Q2 and Q3 have the input (0 s):
    # of those two the better scored, Q3.
    v = view([20, 0, 0, 0], [10, 10, 10, 10])
    qs = scores([1.0, 3.0, 1.1, 1.2], data=[0.0, 0.0, 1.0, 1.0],
                seconds=[0.0, 3600.0, 50.0, 50.0])
    assert plan(v, qs, [0], ahead=[100], start_sooner_by_minutes=60,
                better_by_fraction=10) == [(0, 0, 3)]


@pytest.mark.parametrize(("free", "walltime", "moves"), [
    ([100, 1], [86400.0, 3600.0], True),
    ([100, 0], [86400.0, 3600.0], False),  # no free slot at Q1
    ([100, 1], [86400.0, 3599.0], False),  # Q1 too short for the job
])
def test_the_start_rule_needs_a_free_slot_at_a_queue_that_fits(
        free: list[int], walltime: list[float], moves: bool) -> None:
    v = view([20, 0], [10, 10], walltime)
    assert bool(plan(v, scores([1.0, 1.0]), [0], free=free, ahead=[100],
                     start_sooner_by_minutes=60)) is moves


def test_the_start_rules_reason_gives_both_starts() -> None:
    v = view([20, 0], [10, 10])
    qs = scores([1.0, 1.0], data=[0.0, 0.0], seconds=[0.0, 900.0])
    (move,) = planned(v, qs, [0], ahead=[21], start_sooner_by_minutes=60)
    # 21 / 10 * 3600 s = 2.1 h where it is; 900 s = 0.25 h to bring its input to Q1.
    assert move.reason == "21 jobs ahead for 10 slots: start in 2.10 h -> 0.25 h at Q1"


def test_the_score_rule_goes_first_and_the_start_rule_keeps_what_changed() -> None:
    # Busy (21 waiting for 10 slots) and Q1 scores 2.0 > 1.2: the score rule moves job 0
    # (Q0 is then 20 waiting, not busy); job 1, 30 ahead (3 h), moves by the start rule.
    v = view([21, 0], [10, 10])
    got = planned(v, scores([1.0, 2.0]), [0, 0], ahead=[5, 30], start_sooner_by_minutes=60)
    assert [m.reason for m in got] == [
        "Q0 busy: 21 waiting for 10 slots; score 1.000 -> 2.000",
        "30 jobs ahead for 10 slots: start in 3.00 h -> 0.00 h at Q1"]
    # Busy, Q1 not better by 20% (1.1 <= 1.2): the start rule, and the reason says both.
    v = view([21, 0], [10, 10])
    (move,) = planned(v, scores([1.0, 1.1]), [0], ahead=[30], start_sooner_by_minutes=60)
    assert move.reason == ("Q0 busy: 21 waiting for 10 slots; "
                           "30 jobs ahead for 10 slots: start in 3.00 h -> 0.00 h at Q1")


def test_jobs_alike_are_judged_again_after_a_move() -> None:
    # Q1 has one free slot: the first job (40 ahead) takes it; the second, alike, finds
    # no open queue. Q2 opens nothing: it is too short for these jobs.
    v = view([20, 0, 0], [10, 10, 10], [86400.0, 86400.0, 60.0])
    assert plan(v, scores([1.0, 1.0, 1.0]), [0, 0], free=[0, 1, 5], ahead=[40, 39],
                start_sooner_by_minutes=60) == [(0, 0, 1)]


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


def waited_since(engine: Engine) -> datetime:
    with engine.connect() as conn:
        (since,) = set(conn.execute(sa.select(jobs.c.waiting_since)).scalars())
    assert isinstance(since, datetime)
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


# --- what the pass reads, and the start rule over the database --------------------------

def desy_ids(engine: Engine) -> list[int]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(jobs.c.id).join(
            queues, jobs.c.queue_id == queues.c.id).where(queues.c.name == "DESY_UCORE")
            .order_by(jobs.c.id)).scalars())


def test_ahead_counts_the_jobs_a_pilot_takes_first(waiting_task: Engine) -> None:
    # A pilot takes the highest priority first, then the highest id: with the oldest
    # DESY job raised from the task's 1000 to 2000 it is first (0 ahead), then the
    # others newest first.
    ids = desy_ids(waiting_task)
    assert len(ids) >= 3
    with waiting_task.begin() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == ids[0]).values(priority=2000))
        read = JobDB(conn).waiting_task_jobs(WAITING, waited_since(waiting_task), 3,
                                             any_wait=(JobStatus.ASSIGNED,))
    ahead = {w.id: w.ahead for w in read}
    assert [ahead[i] for i in ids] == [0, *range(len(ids) - 1, 0, -1)]


def test_the_read_of_one_tasks_jobs_counts_the_other_tasks_ahead(waiting_task: Engine) -> None:
    since = waited_since(waiting_task)
    with waiting_task.connect() as conn:
        (first,) = set(conn.execute(sa.select(jobs.c.task_id)).scalars())
    tasks.submit(waiting_task, tasks.parse_task(task_spec("task.002", input_dataset=ESD)),
                 Settings())
    with waiting_task.connect() as conn:
        every = JobDB(conn).waiting_task_jobs(WAITING, since, 3, any_wait=(JobStatus.ASSIGNED,))
        own = JobDB(conn).waiting_task_jobs(WAITING, since, 3, task_ids={first},
                                            any_wait=(JobStatus.ASSIGNED,))
    assert len(every) == 12 and {w.task_id for w in every} == {first, first + 1}
    assert [(w.id, w.ahead) for w in own] == [(w.id, w.ahead) for w in every
                                              if w.task_id == first]
    assert max(w.ahead for w in own) > 0


def test_the_read_leaves_out_the_jobs_that_cannot_move_but_counts_them_ahead(
        waiting_task: Engine) -> None:
    ids = desy_ids(waiting_task)
    limit = waited_since(waiting_task) + timedelta(hours=1)
    pinned, moved_3, fresh, *rest = ids
    with waiting_task.begin() as conn:
        assigned = {w.id: w.ahead for w in JobDB(conn).waiting_task_jobs(
            WAITING, limit, 3, any_wait=(JobStatus.ASSIGNED,))}
        conn.execute(sa.update(jobs).values(status=JobStatus.ACTIVATED))
        conn.execute(sa.update(jobs).where(jobs.c.id == pinned).values(pinned=True))
        conn.execute(sa.update(jobs).where(jobs.c.id == moved_3).values(rebrokerages=3))
        conn.execute(sa.update(jobs).where(jobs.c.id == fresh).values(
            waiting_since=limit + timedelta(microseconds=1)))
        conn.execute(sa.update(jobs).where(jobs.c.id == rest[0]).values(
            waiting_since=limit, rebrokerages=2))
        read = JobDB(conn).waiting_task_jobs(WAITING, limit, 3, any_wait=(JobStatus.ASSIGNED,))
        conn.execute(sa.update(jobs).where(jobs.c.id == pinned).values(
            status=JobStatus.ASSIGNED))
        with_assigned = JobDB(conn).waiting_task_jobs(WAITING, limit, 3,
                                                      any_wait=(JobStatus.ASSIGNED,))
        tasks_other = JobDB(conn).waiting_task_jobs(WAITING, limit, 3, task_ids={-1})
    assert len(assigned) == 6  # all assigned: all read, whatever their wait
    assert {w.id: w.ahead for w in read} == {
        i: a for i, a in assigned.items() if i not in {pinned, moved_3, fresh}}
    assert all(w.movable for w in read)
    (pinned_row,) = [w for w in with_assigned if w.id == pinned]  # read to be activated
    assert not pinned_row.movable
    assert tasks_other == []


def test_the_pass_moves_a_backlog_by_the_start_rule_with_its_reason(
        waiting_task: Engine) -> None:
    # DESY gets 10 slots (6 jobs at most: not busy), LRZ a copy of the input. Each DESY
    # job waits ahead / 10 * 7200 s (one 2-h file each): 720 s per job ahead; at LRZ it
    # starts at once (input on disk). The score rule is off (better_by_fraction 10):
    # with start_sooner_by_minutes 12 (720 s) a job with 1 ahead stays, 2 and more move.
    ids = desy_ids(waiting_task)
    assert len(ids) >= 3
    registry.import_grid_document(waiting_task, mini_grid(
        {"data23.ESD": ["FZK_TAPE", "LRZ_DATADISK"]}, queue_memory_mb=SMALL,
        extra_dataset="data23.ESD", pilot_slots={"DESY": 10}))
    with waiting_task.connect() as conn:
        assert set(conn.execute(sa.select(jobs.c.max_walltime_s)).scalars()) == {7200}
    rules = Settings.model_validate({"rebrokerage": {"better_by_fraction": 10.0,
                                                     "start_sooner_by_minutes": 12.0}})
    moved = rebroker(waiting_task, rules, now=waited_since(waiting_task)
                     + timedelta(hours=2))["moved"]
    ahead = {i: len(ids) - 1 - k for k, i in enumerate(ids)}  # newest first
    assert {m["job_id"] for m in moved} == {i for i in ids if ahead[i] >= 2}
    assert {m["job_id"]: m["reason"] for m in moved} == {
        i: f"input now on disk at another site; {ahead[i]} jobs ahead for 10 slots: "
           f"start in {ahead[i] * 0.2:.2f} h -> 0.00 h at LRZ_UCORE"
        for i in ids if ahead[i] >= 2}


# --- the plan at its edges -----------------------------------------------------------------

def test_either_rule_may_move_a_job_to_the_first_queue() -> None:
    # Q1 busy (25 for 10 slots), Q0 scores better: the score rule, to queue index 0.
    assert plan(view([0, 25], [10, 10]), scores([2.0, 1.0]), [1]) == [(0, 1, 0)]
    # Q1 not busy, equal scores, 30 ahead (3 h): the start rule, to queue index 0.
    assert plan(view([0, 20], [10, 10]), scores([1.0, 1.0]), [1], ahead=[30],
                start_sooner_by_minutes=60) == [(0, 1, 0)]


def test_a_one_slot_queues_wait_is_a_full_turn_per_job_ahead() -> None:
    # 100 ahead at a 1-slot queue, 1 h jobs: 100 h; at Q1 the input takes 50 h to come
    # (not on disk): 100 h > 50 h + 1 h, a move, and the reason gives both to the
    # hundredth of an hour.
    v = view([0, 0], [1, 10])
    qs = scores([1.0, 1.0], seconds=[0.0, 180_000.0])
    (move,) = planned(v, qs, [0], ahead=[100], start_sooner_by_minutes=60)
    assert (move.to_queue, move.reason) == (
        1, "100 jobs ahead for 1 slots: start in 100.00 h -> 50.00 h at Q1")


def test_a_queue_with_two_free_slots_takes_two_jobs() -> None:
    # Q0 busy with 25 for 10 slots; Q1 better with 2 free slots: both jobs move.
    v = view([25, 0], [10, 100])
    assert plan(v, scores([1.0, 2.0]), [0, 0], free=[0, 2]) == [(0, 0, 1), (1, 0, 1)]


def test_the_input_on_disk_costs_no_time_to_start() -> None:
    # 1 ahead for 2 slots of 14,401 s jobs: 7,200.5 s, half a second more than 120 min;
    # the input is on disk at Q1 (nothing to bring, whatever its transfer estimate).
    v = view([0, 0], [2, 10])
    qs = scores([1.0, 1.0], data=[0.0, 1.0], seconds=[0.0, 5.0])
    assert plan(v, qs, [0], walltime_s=14_401, ahead=[1],
                start_sooner_by_minutes=120, better_by_fraction=10) == [(0, 0, 1)]


def test_a_job_whose_queue_no_longer_passes_scores_nothing_there() -> None:
    v = view([1, 0], [10, 10])
    (move,) = planned(v, scores([3.0, 0.2], eligible=[False, True]), [0])
    assert move.reason == "Q0 no longer passes the filters; score 0.000 -> 0.200"


def test_a_job_that_fits_nowhere_does_not_stop_the_next_from_moving() -> None:
    # Q0 busy; job 0 needs 90,000 s, longer than Q1's 86,400; job 1 fits and moves.
    v = view([25, 0], [10, 10])
    moves = plan_moves(v, scores([1.0, 2.0]), np.array([0, 0]), np.array([90_000, 3600]),
                       np.array([1000, 1000]), RebrokerageSettings(), np.array([0, 100]),
                       np.array([0, 0]))
    assert [(m.job, m.to_queue) for m in moves] == [(1, 1)]
