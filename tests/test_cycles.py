"""Periodic cycles: one atomic lease, every run and failure recorded, health shown.

The leases are raced by real processes on one database file (each with its
engine, as service processes are), because the fault they guard against is
two SQLite transactions that read and then write.
"""

from __future__ import annotations

import multiprocessing
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine

from netbroker.db import begin_immediate, create_db_engine
from netbroker.db.cycles import CycleDB, cycle_health, is_overdue
from netbroker.service.scheduler import Cycle, run_cycle
from tests.conftest import LiveServer
from tests.test_cli import netbroker

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def lease(engine: Engine, name: str, holder: str, at: datetime, ttl_s: float = 60.0) -> bool:
    with begin_immediate(engine) as conn:
        return CycleDB(conn).try_lease(name, holder, at, ttl_s, period_s=30.0)


def rows(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r["name"]: r for r in CycleDB(conn).list_cycles()}


def test_the_first_lease_creates_the_row_and_holds_it_until_it_runs_out(engine: Engine) -> None:
    assert lease(engine, "clouds", "a", T0)
    row = rows(engine)["clouds"]
    assert (row["holder"], row["runs"], row["failures"], row["period_s"]) == ("a", 0, 0, 30.0)
    assert row["lease_expires_at"] == T0 + timedelta(seconds=60)
    assert not lease(engine, "clouds", "b", T0 + timedelta(seconds=59))
    assert lease(engine, "clouds", "a", T0 + timedelta(seconds=59))  # renewed by its holder
    assert not lease(engine, "clouds", "b", T0 + timedelta(seconds=118))
    assert lease(engine, "clouds", "b", T0 + timedelta(seconds=120))  # ran out at 119
    assert rows(engine)["clouds"]["holder"] == "b"
    with begin_immediate(engine) as conn:
        CycleDB(conn).release("clouds", "b")
    assert lease(engine, "clouds", "a", T0 + timedelta(seconds=121))


def test_a_run_and_a_failure_are_recorded_with_the_last_of_each(engine: Engine) -> None:
    calls = []

    def job(_: Engine) -> None:
        calls.append(1)
        if len(calls) == 2:
            raise ValueError("no route to the archive")

    cycle = Cycle("pd2p", 30.0, job)
    for _ in range(3):
        assert run_cycle(engine, cycle, "me")
    row = rows(engine)["pd2p"]
    assert (row["runs"], row["failures"]) == (3, 1)
    assert row["last_failure"] == "ValueError: no route to the archive"
    assert row["last_error"] is None  # the last run went well
    assert row["last_failed_at"] < row["last_succeeded_at"]
    assert cycle_health(row, row["last_finished_at"]) == "ok"


def test_a_cycle_whose_lease_another_holds_does_not_run(engine: Engine) -> None:
    ran = []
    assert lease(engine, "priority", "other", datetime.now(UTC), ttl_s=600)
    assert not run_cycle(engine, Cycle("priority", 30.0, ran.append), "me")
    assert ran == [] and rows(engine)["priority"]["runs"] == 0


def test_a_run_longer_than_its_lease_keeps_it_from_another_process(engine: Engine) -> None:
    """A 0.2 s period leases for 0.4 s; the run takes 1.5 s. Another holder trying
    all along never runs it: the running holder renewed its lease."""
    import threading
    import time

    started, others = threading.Event(), []

    def slow(_: Engine) -> None:
        started.set()
        time.sleep(1.5)

    runner = threading.Thread(target=run_cycle, args=(engine, Cycle("clouds", 0.2, slow), "me"))
    runner.start()
    assert started.wait(10)
    while runner.is_alive():
        others.append(run_cycle(engine, Cycle("clouds", 0.2, lambda _: None), "other"))
        time.sleep(0.05)
    runner.join()
    assert len(others) >= 10 and not any(others)
    assert rows(engine)["clouds"]["runs"] == 1
    time.sleep(0.5)  # the holder is done: its lease runs out and the other may run
    assert run_cycle(engine, Cycle("clouds", 0.2, lambda _: None), "other")


def _race(url: str, holder: str, names: list[str], barrier: multiprocessing.synchronize.Barrier,
          out: multiprocessing.Queue) -> None:
    engine = create_db_engine(url)
    ran = []
    for name in names:
        barrier.wait(timeout=60)
        if run_cycle(engine, Cycle(name, 600.0, lambda _: None), holder):
            ran.append(name)
    out.put((holder, ran))
    engine.dispose()


def test_processes_starting_every_cycle_at_once_run_each_once_and_none_fails(
        db_url: str) -> None:
    """Six service processes start their cycles at the same moment, as services
    started together do: each cycle runs in exactly one, and none fails."""
    names = [f"cycle-{i}" for i in range(12)]
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(db_url, f"p{i}", names, barrier, out))
             for i in range(6)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    holders = {name: [holder for holder, ran in results if name in ran] for name in names}
    assert all(len(h) == 1 for h in holders.values()), holders
    engine = create_db_engine(db_url)
    stored = rows(engine)
    engine.dispose()
    assert {n: (r["holder"], r["runs"], r["failures"]) for n, r in stored.items()} == {
        n: (h[0], 1, 0) for n, h in holders.items()}


def test_overdue_after_two_periods_or_a_lease_run_out_before_any_run() -> None:
    done = {"period_s": 60.0, "last_finished_at": T0, "lease_expires_at": None,
            "last_error": None}
    assert not is_overdue(done, T0 + timedelta(seconds=120))
    assert is_overdue(done, T0 + timedelta(seconds=121))
    first = {"period_s": 60.0, "last_finished_at": None, "lease_expires_at": T0,
             "last_error": None}
    assert cycle_health(first, T0) == "running"
    assert cycle_health(first, T0 + timedelta(seconds=1)) == "overdue"
    assert not is_overdue({**done, "period_s": None}, T0 + timedelta(days=9))


def test_metrics_cli_and_monitor_show_runs_failures_and_health(grid_engine: Engine,
                                                               db_url: str) -> None:
    def fail(_: Engine) -> None:
        raise RuntimeError("archive answered 503")

    assert run_cycle(grid_engine, Cycle("collect", 60.0, fail), "me")
    for _ in range(2):
        assert run_cycle(grid_engine, Cycle("clouds", 60.0, lambda _: None), "me")
    with LiveServer(grid_engine) as server:
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        page = httpx.get(f"{server.url}/monitor", timeout=10).text
    assert re.search(r'^netbroker_cycle_runs_total\{cycle="clouds"\} 2\.0$', metrics, re.M)
    assert re.search(r'^netbroker_cycle_failures_total\{cycle="collect"\} 1\.0$', metrics,
                     re.M)
    assert re.search(r'^netbroker_cycle_failures_total\{cycle="clouds"\} 0\.0$', metrics, re.M)
    assert re.search(r'^netbroker_cycle_last_success_timestamp_seconds\{cycle="clouds"\} '
                     r'1\.\d+e\+09$', metrics, re.M)
    assert 'id="cycles-unwell"' in page and "collect (failing)" in page
    assert '<tr class="cycle-ok"><td>clouds</td>' in page
    listed = netbroker("cycles", url=db_url)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if "collect" in line)
    assert "failing" in line and "RuntimeError: archive answered 503" in line
    assert next(line for line in listed.stdout.splitlines() if "clouds" in line).split(
        "│")[2].strip() == "ok"


def test_a_lease_waits_out_a_write_lock_held_past_the_busy_timeout(tmp_path: Path) -> None:
    """While another connection holds SQLite's write lock past the busy timeout, a
    cycle still takes its lease and records its run: retried after SQLite gives up."""
    import sqlite3
    import threading
    import time

    from netbroker.common.config import DatabaseSettings
    from netbroker.db import upgrade

    url = f"sqlite:///{tmp_path / 'netbroker.db'}"
    engine = create_db_engine(DatabaseSettings(url=url, sqlite_busy_timeout_ms=200))
    upgrade(engine)
    held = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(tmp_path / "netbroker.db", isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        held.set()
        time.sleep(0.3)  # past the 200 ms the busy handler waits
        conn.execute("COMMIT")
        conn.close()

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    assert run_cycle(engine, Cycle("watchdog", 30.0, lambda _: None), "me")
    thread.join()
    assert rows(engine)["watchdog"]["runs"] == 1
    engine.dispose()
