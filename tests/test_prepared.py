"""Statements run on the driver's cursor (netbroker.db.prepared) act as Connection.execute does.

The same rows with the same Python types back, the same values stored, the
same SQLAlchemy exception classes, and a connection that died is
invalidated rather than handed out again. On both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.enums import JobStatus
from netbroker.db.jobs import (
    DISPATCH_COLUMNS,
    JobDB,
    _acquire_statement,
    _set_status_statement,
    state_entry,
)
from netbroker.db.prepared import PreparedStatement, prepared, run_driver_sql
from netbroker.db.schema import job_logs, jobs, queues
from tests.test_dispatcher import add_jobs

NOW = datetime(2026, 12, 2, 8, 30, 15, 123456, tzinfo=UTC)


def acquire_params(engine: Engine, pilot: str) -> dict[str, object]:
    with engine.connect() as conn:
        queue_id = conn.execute(sa.select(queues.c.id).where(queues.c.name == "DESY-HH")
                                ).scalar_one()
    return {"p_queue": queue_id, "p_label": "managed", "p_cores": 8, "p_memory": 16000,
            "p_disk": 20000, "p_pilot": pilot, "p_node": "wn1", "p_now": NOW,
            "p_owner": "tok", "p_log_status": JobStatus.SENT,
            "p_log_entry": state_entry(JobStatus.SENT, NOW)}


def test_rows_and_stored_values_are_those_of_connection_execute(grid_engine: Engine) -> None:
    """Two jobs alike but in name, each taken by the acquisition statement: one
    through SQLAlchemy, one prepared. Every column comes back the same, with its
    type (aware datetimes, the status enum, booleans, floats), and reads back the same."""
    first, second = add_jobs(grid_engine, 2, seed=7, priority=500, cpu_time_s=1.5)
    stmt = _acquire_statement()
    with grid_engine.begin() as conn:
        by_core = dict(conn.execute(stmt, acquire_params(grid_engine, "p1")).mappings().one())
    with grid_engine.begin() as conn:
        (by_prepared,) = prepared(stmt, conn.dialect).rows(
            conn, acquire_params(grid_engine, "p2"))
    assert {by_core["id"], by_prepared["id"]} == {first, second}
    differ = {"id", "name", "job_pars"}
    assert {k: v for k, v in by_prepared.items() if k not in differ} == {
        k: v for k, v in by_core.items() if k not in differ}
    # What a pilot is sent, less what the statement set (JobDB.acquire adds those).
    assert tuple(by_prepared) == tuple(c for c in DISPATCH_COLUMNS if c not in (
        "status", "queue_id", "pilot_id", "node", "owner"))
    assert type(by_prepared["event_service"]) is bool
    # Every column type, read back through both.
    read = sa.select(jobs).where(jobs.c.id == sa.bindparam("p_job"))
    with grid_engine.connect() as conn:
        whole = dict(conn.execute(read, {"p_job": second}).mappings().one())
        (whole_prepared,) = prepared(read, conn.dialect).rows(conn, {"p_job": second})
    assert whole_prepared == whole
    assert whole_prepared["modified_at"] == NOW and whole_prepared["modified_at"].tzinfo
    assert type(whole_prepared["pinned"]) is bool
    assert type(whole_prepared["cpu_time_s"]) is float
    # As stored: read without SQLAlchemy's type processing, so a value bound in
    # another form (a datetime with its zone on SQLite, say) shows.
    with grid_engine.connect() as conn:
        stored = {r[0]: r[1:] for r in conn.exec_driver_sql(
            "SELECT id, status, modified_at, heartbeat_at, node, owner FROM jobs "
            f"WHERE id IN ({first}, {second})")}
    assert stored[first] == stored[second]


def test_named_and_literal_parameters_and_a_missing_one(grid_engine: Engine) -> None:
    """The statuses a move may start from are literals in the statement; the
    parameters are by name; one left out is an error naming it, and nothing ran."""
    (job,) = add_jobs(grid_engine, 1)
    stmt = _set_status_statement((JobStatus.ACTIVATED,), False, ())
    params = {"p_job": job, "p_status": JobStatus.HOLDING, "p_now": NOW,
              "p_log_status": JobStatus.HOLDING,
              "p_log_entry": state_entry(JobStatus.HOLDING, NOW)}
    without_job = {k: v for k, v in params.items() if k != "p_job"}
    with grid_engine.begin() as conn, pytest.raises(sa.exc.InvalidRequestError, match="p_job"):
        prepared(stmt, conn.dialect).rows(conn, without_job)
    with grid_engine.begin() as conn:
        assert prepared(stmt, conn.dialect).rows(conn, params) == [{"id": job}]
        # From holding it may not move "from activated" again: no row.
        assert prepared(stmt, conn.dialect).rows(conn, params) == []
    with grid_engine.connect() as conn:
        assert conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job)
                            ).scalar_one() is JobStatus.HOLDING


def test_a_driver_error_is_sqlalchemys_and_the_transaction_rolls_back(
        grid_engine: Engine) -> None:
    (job,) = add_jobs(grid_engine, 1)
    log = sa.insert(job_logs).values(
        job_id=sa.bindparam("p_job_id", type_=sa.BigInteger),
        content=sa.bindparam("p_content", type_=job_logs.c.content.type),
        media_type="text/plain",
        uploaded_at=sa.bindparam("p_at", type_=job_logs.c.uploaded_at.type))
    with grid_engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(job_logs)).scalar_one()
    with pytest.raises(sa.exc.IntegrityError) as caught, grid_engine.begin() as conn:
        statement = PreparedStatement(log, conn.dialect)
        statement.run_many(conn, [{"p_job_id": job, "p_content": b"log", "p_at": NOW}])
        # A job that does not exist: the foreign key refuses it.
        statement.run_many(conn, [{"p_job_id": job + 10**6, "p_content": b"log",
                                   "p_at": NOW + timedelta(seconds=1)}])
    assert caught.value.orig is not None and not caught.value.connection_invalidated
    with grid_engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(job_logs)
                            ).scalar_one() == before


def test_a_statement_whose_sql_depends_on_its_values_is_refused(grid_engine: Engine) -> None:
    expanding = sa.select(jobs.c.id).where(jobs.c.id.in_(sa.bindparam("ids", expanding=True)))
    with pytest.raises(ValueError, match="expanding"):
        PreparedStatement(expanding, grid_engine.dialect)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_dead_connection_is_invalidated_and_the_pool_reconnects(grid_engine: Engine) -> None:
    """A backend killed under the connection: the error says the connection was
    invalidated, and the next checkout works (not the dead one again)."""
    (job,) = add_jobs(grid_engine, 1)
    stmt = _set_status_statement((JobStatus.ACTIVATED,), False, ())
    params = {"p_job": job, "p_status": JobStatus.HOLDING, "p_now": NOW,
              "p_log_status": JobStatus.HOLDING,
              "p_log_entry": state_entry(JobStatus.HOLDING, NOW)}
    with grid_engine.connect() as conn:
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with grid_engine.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(sa.exc.DBAPIError) as caught:
            prepared(stmt, conn.dialect).rows(conn, params)
        assert caught.value.connection_invalidated
    with grid_engine.begin() as conn:
        run_driver_sql(conn, "SELECT 1")
        assert prepared(stmt, conn.dialect).rows(conn, params) == [{"id": job}]


def test_an_acquired_job_is_what_the_row_now_holds(grid_engine: Engine) -> None:
    """JobDB.acquire gives the columns a pilot is sent, those the statement set
    (state, queue, pilot, node, owner) as the row now stores them, and the
    statement logged the state in the row."""
    (job,) = add_jobs(grid_engine, 1, seed=3)
    params = acquire_params(grid_engine, "pilot-7")
    with grid_engine.begin() as conn:
        got = JobDB(conn).acquire(params["p_queue"], "managed", 8, 16000, 20000, "pilot-7",
                                  "wn9", NOW, "tok")
    assert got is not None and got["id"] == job and set(got) == set(DISPATCH_COLUMNS)
    with grid_engine.connect() as conn:
        row = conn.execute(sa.select(jobs).where(jobs.c.id == job)).mappings().one()
    assert {k: got[k] for k in DISPATCH_COLUMNS} == {k: row[k] for k in DISPATCH_COLUMNS}
    assert got["status"] is JobStatus.SENT and got["node"] == "wn9"
    assert row["state_log"].endswith("sent 2026-12-02T08:30:15.123456Z\n")
    assert row["state_log"].count("\n") == 2  # created activated, then sent
