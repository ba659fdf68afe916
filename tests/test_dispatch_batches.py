"""The dispatcher's batches on PostgreSQL: many pilots' calls in one statement.

``dispatcher.fastpath.CallBatcher`` runs the getJob acquisitions (and the
one-statement reports) that one service process has waiting as one
statement (``dispatcher.core.acquire_jobs``, ``update_jobs``). A batch must
give each caller what a call of its own would have given: each job to one
pilot, the best first, to the pilot it was for; each report applied once,
or refused for the same reason; a call that met a lock waits in the thread
pool, not on the loop, and still lands.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dispatcher.core import UpdateRequest, acquire_jobs, update_job, update_jobs
from dispatcher.fastpath import CallBatcher, close_dispatch_engine, create_dispatch_engine
from netbroker.common.enums import JobStatus
from netbroker.common.errors import Forbidden, UnknownJob, UnknownQueue
from netbroker.db.jobs import JobDB, parse_state_log
from netbroker.db.schema import jobs
from tests.conftest import LiveServer
from tests.test_dispatcher import add_jobs, ask
from tests.test_observability import sample

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)

OWNER = "pilot-a"
JSON = {"Accept": "application/json"}
FINISHED = UpdateRequest(state=JobStatus.FINISHED, exit_code=0, cpu_time_s=12.5)


def best_first(engine: Engine, ids: set[int]) -> list[int]:
    """``ids`` in the dispatcher's order: priority, then id, both descending."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(jobs.c.id, jobs.c.priority)
                            .where(jobs.c.id.in_(ids))).all()
    return [i for i, _ in sorted(rows, key=lambda r: (r[1], r[0]), reverse=True)]


def test_a_batch_sends_each_job_once_best_first_to_the_pilot_that_asked(
        grid_engine: Engine) -> None:
    ids = set(add_jobs(grid_engine, 50))
    order = best_first(grid_engine, ids)
    outcomes = acquire_jobs(grid_engine, [(ask(pilot_id=f"p{i}"), OWNER) for i in range(20)])
    assert all(isinstance(o, dict) for o in outcomes)
    got = [o for o in outcomes if isinstance(o, dict)]
    # The i-th ask of the batch got the i-th best job, as calls one after another would.
    assert [j["id"] for j in got] == order[:20]
    assert [j["pilot_id"] for j in got] == [f"p{i}" for i in range(20)]
    assert {j["status"] for j in got} == {JobStatus.SENT} and {j["owner"] for j in got} == {OWNER}
    with grid_engine.connect() as conn:
        stored = {r.id: r for r in conn.execute(
            sa.select(jobs.c.id, jobs.c.status, jobs.c.pilot_id, jobs.c.owner,
                      jobs.c.node, jobs.c.state_log).where(jobs.c.id.in_(order[:20])))}
    for i, job_id in enumerate(order[:20]):
        row = stored[job_id]
        assert (row.status, row.pilot_id, row.owner, row.node) == ("sent", f"p{i}", OWNER, "wn1")
        assert [e["status"] for e in parse_state_log(row.state_log)] == ["activated", "sent"]


def test_a_batch_past_the_end_of_a_queue_says_no_job_and_names_an_unknown_queue(
        grid_engine: Engine) -> None:
    ids = set(add_jobs(grid_engine, 30))
    asked = [(ask("NOPE" if i % 10 == 3 else "DESY-HH", pilot_id=f"p{i}"), OWNER)
             for i in range(40)]
    outcomes = acquire_jobs(grid_engine, asked)
    errors = [i for i, o in enumerate(outcomes) if isinstance(o, Exception)]
    assert errors == [3, 13, 23, 33]
    assert all(isinstance(outcomes[i], UnknownQueue) for i in errors)
    got = [o for o in outcomes if isinstance(o, dict)]
    assert {j["id"] for j in got} == ids and len(got) == 30  # every job, each once
    assert sum(o is None for o in outcomes) == 40 - 4 - 30  # the rest: no job, no error
    # The first 30 known asks got the jobs, the best to the first.
    known = [i for i in range(40) if i % 10 != 3]
    assert [outcomes[i]["id"] for i in known[:30]] == best_first(grid_engine, ids)  # type: ignore[index]


def test_asks_of_one_queue_that_fit_differently_each_get_their_own_job(
        grid_engine: Engine) -> None:
    """Two fits of one queue in a batch may pick the same job (this statement's own
    locks are not skipped): one of them gets it, the other asks again alone."""
    small = set(add_jobs(grid_engine, 3, min_ram_mb=1000, seed=1))
    big = set(add_jobs(grid_engine, 3, min_ram_mb=8000, seed=2))
    asked = [(ask(memory_mb=16000 if i % 2 else 2000, pilot_id=f"p{i}"), OWNER)
             for i in range(6)]
    outcomes = acquire_jobs(grid_engine, asked)
    got = [o for o in outcomes if isinstance(o, dict)]
    assert len(got) == 6 and {j["id"] for j in got} == small | big
    for (request, _), job in zip(asked, outcomes, strict=True):
        assert isinstance(job, dict) and job["min_ram_mb"] <= request.memory_mb  # it fits
    with grid_engine.connect() as conn:
        assert JobDB(conn).count_by_status() == {"sent": 6}


def sent(engine: Engine, n: int, owner: str = OWNER) -> list[int]:
    """``n`` jobs sent to ``owner``'s pilots; their ids."""
    add_jobs(engine, n)
    outcomes = acquire_jobs(engine, [(ask(pilot_id=f"p{i}"), owner) for i in range(n)])
    return [o["id"] for o in outcomes if isinstance(o, dict)]


def test_a_batch_of_reports_applies_each_once_and_refuses_as_a_call_alone_would(
        grid_engine: Engine) -> None:
    ids = sent(grid_engine, 8)
    running = UpdateRequest(state=JobStatus.RUNNING, cpu_time_s=1.0)
    reports: list[tuple[int, UpdateRequest, str | None]] = [
        *((job_id, FINISHED, OWNER) for job_id in ids[:5]),
        (ids[0], FINISHED, OWNER),       # the same final report twice in one batch
        (ids[5], FINISHED, "pilot-b"),   # another pilot's job
        (10**9, FINISHED, OWNER),        # no such job
        (ids[6], running, OWNER),        # another kind of report: its own statement
    ]
    outcomes = update_jobs(grid_engine, reports)
    assert outcomes[:6] == [{"job_id": i, "status": "finished", "command": "NULL"}
                            for i in [*ids[:5], ids[0]]]
    assert isinstance(outcomes[6], Forbidden) and isinstance(outcomes[7], UnknownJob)
    assert outcomes[8] == {"job_id": ids[6], "status": "running", "command": "NULL"}
    with grid_engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(
            sa.select(jobs.c.id, jobs.c.status, jobs.c.exit_code, jobs.c.cpu_time_s,
                      jobs.c.state_log).where(jobs.c.id.in_(ids)))}
    for job_id in ids[:5]:
        row = rows[job_id]
        assert (row.status, row.exit_code, row.cpu_time_s) == ("finished", 0, 12.5)
        # Logged once, the repeated report too.
        assert [e["status"] for e in parse_state_log(row.state_log)] == [
            "activated", "sent", "finished"]
    assert (rows[ids[5]].status, rows[ids[5]].exit_code) == ("sent", None)  # refused: unchanged
    assert (rows[ids[6]].status, rows[ids[6]].cpu_time_s) == ("running", 1.0)
    assert rows[ids[7]].status == "sent"


def test_a_batch_that_meets_a_locked_row_waits_in_the_thread_pool_and_lands(
        grid_engine: Engine) -> None:
    """The batch's statement gives up on the lock after the dispatch connection's
    lock timeout; every call of it is run again alone in the thread pool: those
    whose rows are free land at once, the locked one when the lock goes."""
    ids = sent(grid_engine, 5)
    fast = create_dispatch_engine(grid_engine)
    assert fast is not None
    landed: dict[int, float] = {}

    def timed(engine: Engine, *args: Any) -> dict[str, Any]:
        result = update_job(engine, *args)
        landed[args[0]] = time.monotonic()
        return result

    async def main() -> list[Any]:
        batcher = CallBatcher(fast, grid_engine, timed, update_jobs)
        return await asyncio.gather(*(batcher.submit(i, FINISHED, OWNER) for i in ids),
                                    return_exceptions=True)

    holder = grid_engine.connect()
    holder.execute(sa.select(jobs.c.id).where(jobs.c.id == ids[2]).with_for_update())
    released: list[float] = []

    def release() -> None:
        time.sleep(0.5)
        released.append(time.monotonic())
        holder.rollback()

    releaser = threading.Thread(target=release)
    releaser.start()
    try:
        outcomes = asyncio.run(main())
    finally:
        releaser.join()
        holder.close()
        close_dispatch_engine(fast)
    assert outcomes == [{"job_id": i, "status": "finished", "command": "NULL"} for i in ids]
    assert landed[ids[2]] >= released[0]  # after the lock went
    assert all(landed[i] < released[0] for i in ids if i != ids[2])  # the others at once
    with grid_engine.connect() as conn:
        assert JobDB(conn).count_by_status() == {"finished": 5}


def test_a_failed_batch_statement_is_every_callers_error_and_sends_no_job(
        grid_engine: Engine) -> None:
    add_jobs(grid_engine, 10)

    def broken(engine: Engine, calls: list[tuple[Any, ...]]) -> list[Any]:
        raise sa.exc.DBAPIError("batch", {}, psycopg.errors.InternalError("boom"))

    fast = create_dispatch_engine(grid_engine)
    assert fast is not None

    async def main() -> list[Any]:
        from dispatcher.core import acquire_job
        batcher = CallBatcher(fast, grid_engine, acquire_job, broken)
        return await asyncio.gather(*(batcher.submit(ask(), OWNER) for _ in range(4)),
                                    return_exceptions=True)

    try:
        outcomes = asyncio.run(main())
    finally:
        close_dispatch_engine(fast)
    assert all(isinstance(o, sa.exc.DBAPIError) for o in outcomes), outcomes
    with grid_engine.connect() as conn:
        assert JobDB(conn).count_by_status() == {"activated": 10}


def test_pilots_at_once_through_the_service_are_batched_and_served_once(
        grid_engine: Engine) -> None:
    """16 pilots over the PanDA wire at once: every job to one of them, every call
    answered, and the calls ran in batches (``netbroker_dispatch_batch_calls``)."""
    ids = set(add_jobs(grid_engine, 300))
    taken: list[int] = []
    calls: dict[str, list[None]] = {"getJob": [], "updateJob": []}  # appends: thread-safe

    def pilot() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while True:
                calls["getJob"].append(None)
                job = client.post("/server/panda/getJob", headers=JSON, data={
                    "computingElement": "DESY-HH", "diskSpace": "50000", "mem": "4000"}).json()
                if job["StatusCode"] != 0:
                    return
                taken.append(job["PandaID"])
                calls["updateJob"].append(None)
                done = client.post("/server/panda/updateJob", headers=JSON, data={
                    "jobId": str(job["PandaID"]), "state": "finished",
                    "transExitCode": "0"}).json()
                assert done["StatusCode"] == 0, done

    def batched(text: str, call: str) -> tuple[float, float]:
        """(batches, calls in them) of ``call`` so far."""
        name = "netbroker_dispatch_batch_calls"
        return (sample(text, f"{name}_count", call=call) or 0.0,
                sample(text, f"{name}_sum", call=call) or 0.0)

    with LiveServer(grid_engine) as server:
        with httpx.Client(base_url=server.url) as http:
            before = http.get("/metrics").text
        pilots = [threading.Thread(target=pilot) for _ in range(16)]
        for p in pilots:
            p.start()
        for p in pilots:
            p.join(timeout=120)
        with httpx.Client(base_url=server.url) as http:
            after = http.get("/metrics").text
    assert set(taken) == ids and len(taken) == len(ids)  # each job once
    with grid_engine.connect() as conn:
        assert JobDB(conn).count_by_status() == {"finished": 300}
    for call, wire in (("acquire_job", "getJob"), ("update_job", "updateJob")):
        (b0, c0), (b1, c1) = batched(before, call), batched(after, call)
        assert c1 - c0 == len(calls[wire])  # every call went through a batch ...
        assert b1 - b0 < len(calls[wire])  # ... and some batches held several
