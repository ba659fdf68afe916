"""Group commit on SQLite: write_batch (savepoint per write) and the dispatcher's WriteBatcher.

The batched writes must keep what one transaction per write gave: a write
that fails changes nothing and costs no other write its place; nothing is
answered before it is committed; every job is dispatched once, in priority
order, however many pilots ask at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

import dispatcher.fastpath
from dispatcher.core import acquire_job
from dispatcher.fastpath import WriteBatcher
from netbroker.common.errors import UnknownQueue
from netbroker.db import begin_immediate
from netbroker.db.engine import WriteBatchLost, write_batch
from netbroker.db.jobs import JobDB
from netbroker.db.schema import job_logs, jobs
from tests.conftest import LiveServer
from tests.test_dispatcher import add_jobs, ask

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def rename(name: str, fail: bool = False) -> Callable[[Engine], int]:
    """A write: one job renamed (then, with ``fail``, an error)."""
    def write(engine: Engine, job_id: int) -> int:
        with begin_immediate(engine) as conn:
            conn.execute(sa.update(jobs).where(jobs.c.id == job_id).values(name=name))
            if fail:
                raise ValueError(f"{name} failed")
        return job_id
    return write


def orphan_log(engine: Engine) -> None:
    """A write the commit refuses: the log of no job, its key checked at commit."""
    with begin_immediate(engine) as conn:
        conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        conn.execute(sa.insert(job_logs).values(
            job_id=10**9, content=b"", media_type="text/plain",
            uploaded_at=sa.func.current_timestamp()))


def names(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(jobs.c.id, jobs.c.name)).all())


@sqlite_only
def test_a_write_that_raises_is_undone_alone(grid_engine: Engine) -> None:
    a, b, c = add_jobs(grid_engine, 3)
    with write_batch(grid_engine) as writes:
        assert writes.run(rename("a"), a) == a
        with pytest.raises(ValueError, match="b failed"):
            writes.run(rename("b", fail=True), b)
        writes.run(rename("c"), c)
        with grid_engine.connect() as other:  # not seen before the commit
            assert other.execute(sa.select(jobs.c.name).where(jobs.c.id == a)).scalar() != "a"
    after = names(grid_engine)
    assert (after[a], after[c]) == ("a", "c") and after[b] != "b"


@sqlite_only
def test_a_batch_whose_commit_fails_stores_none_of_its_writes(grid_engine: Engine) -> None:
    a, b = add_jobs(grid_engine, 2)
    before = names(grid_engine)
    with pytest.raises(sa.exc.IntegrityError, match="FOREIGN KEY"), \
            write_batch(grid_engine) as writes:
        writes.run(rename("a"), a)
        writes.run(orphan_log)
        writes.run(rename("b"), b)
    assert names(grid_engine) == before
    with write_batch(grid_engine) as writes:  # the locks were given back
        writes.run(rename("a"), a)
    assert names(grid_engine)[a] == "a"


def rolled_back(engine: Engine) -> None:
    """A write after which SQLite has rolled the whole transaction back, as it
    does on a full disk or an I/O error."""
    with begin_immediate(engine) as conn:
        conn.connection.dbapi_connection.execute("ROLLBACK")  # type: ignore[union-attr]
        raise sa.exc.OperationalError("INSERT", {}, Exception("database or disk is full"))


@sqlite_only
def test_a_batch_that_lost_its_transaction_runs_nothing_more(grid_engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No write runs outside the batch's transaction (each would commit alone):
    the batch ends, every call of it failed, nothing stored."""
    a, b = add_jobs(grid_engine, 2)
    before = names(grid_engine)
    outcomes, _ = run_batched(grid_engine, [(rename("a"), (a,)), (rolled_back, ()),
                                            (rename("b"), (b,))], monkeypatch)
    assert all(isinstance(o, WriteBatchLost) for o in outcomes), outcomes
    assert names(grid_engine) == before


@sqlite_only
def test_write_batch_is_not_nested(grid_engine: Engine) -> None:
    with write_batch(grid_engine), pytest.raises(RuntimeError, match="inside a write_batch"), \
            write_batch(grid_engine):
        pass


def run_batched(engine: Engine, calls: list[tuple[Callable[..., Any], tuple[Any, ...]]],
                monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], int]:
    """Submit every call at once to a WriteBatcher; their outcomes (value or
    exception), in order, and how many transactions ran them."""
    transactions = 0
    real = dispatcher.fastpath.write_batch

    def counted(engine: Engine) -> Any:
        nonlocal transactions
        transactions += 1
        return real(engine)

    async def main() -> list[Any]:
        batcher = WriteBatcher(engine)
        return await asyncio.gather(*(batcher.submit(fn, *args) for fn, args in calls),
                                    return_exceptions=True)

    monkeypatch.setattr(dispatcher.fastpath, "write_batch", counted)
    return asyncio.run(main()), transactions


@sqlite_only
def test_batcher_dispatches_each_job_once_in_priority_order(grid_engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ids = set(add_jobs(grid_engine, 150))
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (acquire_job, (ask("NOPE" if i % 40 == 7 else "DESY-HH", pilot_id=f"p{i}"),))
        for i in range(205)]
    outcomes, transactions = run_batched(grid_engine, calls, monkeypatch)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 5 and all(isinstance(e, UnknownQueue) for e in errors)
    got = [o for o in outcomes if isinstance(o, dict)]
    assert {j["id"] for j in got} == ids and len(got) == len(ids)  # each once
    assert outcomes.count(None) == 200 - 150  # then "no job", not an error
    prios = [j["priority"] for j in got]
    assert prios == sorted(prios, reverse=True)  # in the order asked: best first
    assert transactions == -(-205 // WriteBatcher.MAX_BATCH)  # 64 calls a transaction
    with grid_engine.connect() as conn:
        assert JobDB(conn).count_by_status() == {"sent": 150}
        pilots = dict(conn.execute(sa.select(jobs.c.id, jobs.c.pilot_id)).all())
    assert all(pilots[o["id"]] == f"p{i}"  # each answer went to the caller it was for
               for i, o in enumerate(outcomes) if isinstance(o, dict))


@sqlite_only
def test_batcher_answers_every_call_of_a_failed_commit_with_its_error(
        grid_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    add_jobs(grid_engine, 10)
    calls: list[tuple[Callable[..., Any], tuple[Any, ...]]] = [
        (acquire_job, (ask(),)), (acquire_job, (ask(),)), (orphan_log, ()),
        (acquire_job, (ask(),))]
    outcomes, transactions = run_batched(grid_engine, calls, monkeypatch)
    assert transactions == 1
    assert all(isinstance(o, sa.exc.IntegrityError) for o in outcomes), outcomes
    with grid_engine.connect() as conn:  # none of the acquisitions happened
        assert JobDB(conn).count_by_status() == {"activated": 10}


def test_concurrent_wire_pilots_get_each_job_once(grid_engine: Engine) -> None:
    """Through the service (batched on SQLite, on the event loop on PostgreSQL):
    16 pilots asking over the PanDA wire at once, each job to one of them."""
    ids = set(add_jobs(grid_engine, 400))
    taken: list[int] = []

    def pilot() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while True:
                job = client.post("/server/panda/getJob", headers={"Accept": "application/json"},
                                  data={"computingElement": "DESY-HH", "diskSpace": "50000",
                                        "mem": "4000"}).json()
                if job["StatusCode"] != 0:
                    return
                taken.append(job["PandaID"])
                done = client.post("/server/panda/updateJob",
                                   headers={"Accept": "application/json"},
                                   data={"jobId": str(job["PandaID"]), "state": "finished",
                                         "transExitCode": "0"}).json()
                assert done["StatusCode"] == 0, done

    with LiveServer(grid_engine) as server:
        pilots = [threading.Thread(target=pilot) for _ in range(16)]
        for p in pilots:
            p.start()
        for p in pilots:
            p.join(timeout=120)
    assert set(taken) == ids and max(Counter(taken).values()) == 1
    with grid_engine.connect() as conn:
        assert JobDB(conn).count_by_status() == {"finished": 400}
