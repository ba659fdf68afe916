"""getJob's acquisition reads its index, on both backends: its cost does not grow with the table.

The plan of the very statement the dispatcher runs (``JobDB.acquire``'s)
is inspected over a table big enough that a planner would choose a scan
if the index did not serve: 20,000 jobs over 40 queues, most of them not
activated, statistics gathered. Expected: the acquisition index read
backwards in (priority, id) order from the queue's activated jobs, so no
sort and no scan of the jobs table.
"""

from __future__ import annotations

import re

import psycopg.sql
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dispatcher.fastpath import close_dispatch_engine, create_dispatch_engine
from netbroker.common.enums import utcnow
from netbroker.db.engine import begin_immediate
from netbroker.db.jobs import _acquire_batch_statement, _acquire_statement
from netbroker.db.prepared import prepared
from netbroker.db.schema import jobs, queues


def _fill(engine: Engine) -> int:
    """20,000 jobs over 40 of the sample grid's queues (a fifth activated); the
    first queue's id."""
    now = utcnow()
    with begin_immediate(engine) as conn:
        queue_ids = [row[0] for row in conn.execute(sa.select(queues.c.id)).all()]
        assert len(queue_ids) >= 40, "the sample grid has the queues"
        states = ["activated", "finished", "failed", "running", "finished"]
        conn.execute(sa.insert(jobs), [
            {"name": f"plan.{k}", "status": states[k % 5], "queue_id": queue_ids[k % 40],
             "prod_source_label": "managed", "priority": k % 997, "base_priority": k % 997,
             "cores": 1, "min_ram_mb": 1000, "max_disk_mb": 0, "max_walltime_s": 3600,
             "transformation": "run.sh", "user_name": "alice", "working_group": "",
             "created_at": now, "modified_at": now} for k in range(20_000)])
    with engine.connect() as conn:
        conn.exec_driver_sql("ANALYZE")
        conn.commit()
    return queue_ids[0]


def _processed(engine: Engine, queue_id: int) -> tuple[sa.engine.Compiled, dict[str, object]]:
    """The acquisition compiled for ``engine`` and its parameters as the driver takes them."""
    compiled = _acquire_statement().compile(dialect=engine.dialect)
    params = {"p_queue": queue_id, "p_label": "managed", "p_cores": 8, "p_memory": 16000,
              "p_disk": 100000, "p_pilot": "p", "p_node": "n", "p_now": utcnow(),
              "p_owner": None, "p_log_status": "sent",
              "p_log_entry": "sent 2026-12-07T11:00:00.000000Z\n"}
    processed = compiled.construct_params(params)
    binds = compiled.binds
    for name, value in list(processed.items()):
        processor = binds[name].type.dialect_impl(engine.dialect).bind_processor(
            engine.dialect)
        if processor is not None:
            processed[name] = processor(value)
    return compiled, processed


def _plan(engine: Engine, queue_id: int) -> str:
    compiled, processed = _processed(engine, queue_id)
    explain = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
    with engine.connect() as conn:
        if compiled.positiontup:  # positional parameters (SQLite's qmark)
            args = tuple(processed[n] for n in compiled.positiontup)
            rows = conn.exec_driver_sql(explain + str(compiled), args).all()
        else:
            rows = conn.exec_driver_sql(explain + str(compiled), processed).all()
        conn.rollback()
    return "\n".join(" ".join(str(c) for c in row) for row in rows)


def test_the_acquisition_reads_its_index_backwards_without_a_sort(grid_engine: Engine) -> None:
    plan = _plan(grid_engine, _fill(grid_engine))
    if grid_engine.dialect.name == "postgresql":
        assert "Index Scan Backward using ix_jobs_acquire on jobs" in plan, plan
        assert "Sort" not in plan and "Seq Scan on jobs" not in plan, plan
    else:
        assert "SEARCH jobs USING INDEX ix_jobs_acquire (queue_id=? AND status=?)" in plan, plan
        assert "TEMP B-TREE" not in plan and "SCAN jobs" not in plan, plan


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_dispatch_connection_plans_the_acquisition_once_on_its_index(
        grid_engine: Engine) -> None:
    """The dispatcher's own connection (``dispatcher.fastpath``) runs the acquisition
    with a generic plan, made once for any parameters: that plan is the same backward
    read of the index, no sort, no scan (PREPARE, then EXPLAIN EXECUTE)."""
    queue_id = _fill(grid_engine)
    compiled, processed = _processed(grid_engine, queue_id)
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", numbered, str(compiled))
    types = ", ".join(compiled.binds[n].type.compile(dialect=grid_engine.dialect)
                      for n in names)
    plan = _generic_plan(grid_engine, f"({types}) AS {sql}", [processed[n] for n in names])
    assert "$1" in plan or "$2" in plan, plan  # generic: the parameters, not their values
    assert "Index Scan Backward using ix_jobs_acquire on jobs" in plan, plan
    assert "Sort" not in plan and "Seq Scan on jobs" not in plan, plan


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_the_batch_acquisition_reads_the_index_backwards_per_fit(grid_engine: Engine) -> None:
    """Its generic plan (the dispatch connection's setting): per fit, a backward read
    of ``ix_jobs_acquire`` under the row locks, no scan of the jobs."""
    queue_id = _fill(grid_engine)
    sql = prepared(_acquire_batch_statement(), grid_engine.dialect).sql
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    sql = re.sub(r"%\((\w+)\)s", numbered, sql)
    arrays = {"p_ord": "{0}", "p_queue": f"{{{queue_id}}}", "p_label": "{managed}",
              "p_cores": "{8}", "p_memory": "{16000}", "p_disk": "{20000}", "p_pilot": "{p}",
              "p_node": "{n}", "p_owner": "{o}", "p_now": "2026-12-07 12:00:00+00",
              "p_log_entry": "x"}
    plan = _generic_plan(grid_engine, f"AS {sql}", [arrays[n] for n in names])
    assert "Index Scan Backward using ix_jobs_acquire on jobs" in plan, plan
    assert "LockRows" in plan and "Seq Scan on jobs" not in plan, plan


def _generic_plan(engine: Engine, statement: str, values: list[object]) -> str:
    """``EXPLAIN EXECUTE`` of ``PREPARE p <statement>`` with ``values``, on the
    dispatcher's own connection (its generic plans, checked set)."""
    fast = create_dispatch_engine(engine)
    assert fast is not None
    try:
        with fast.connect() as conn:
            assert conn.exec_driver_sql("SHOW plan_cache_mode").scalar() == "force_generic_plan"
            raw = conn.connection.dbapi_connection
            assert raw is not None
            with raw.cursor() as cursor:
                cursor.execute(f"PREPARE p {statement}")
                given = psycopg.sql.SQL(", ").join(psycopg.sql.Literal(v) for v in values)
                cursor.execute(psycopg.sql.SQL("EXPLAIN EXECUTE p({})").format(given))
                plan = "\n".join(row[0] for row in cursor.fetchall())
                cursor.execute("DEALLOCATE p")
    finally:
        close_dispatch_engine(fast)
    return plan
