"""netbroker doctor: each check says ok, warn or fail with why; a failure exits 1."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.accounts import auth
from netbroker.common.config import Settings
from netbroker.common.enums import utcnow
from netbroker.db.schema import cycles
from netbroker.ops.doctor import checkup
from netbroker.service.scheduler import Cycle, run_cycle
from tests.test_cli import netbroker
from tests.test_dispatcher import add_jobs


def verdicts(engine: Engine, settings: Settings | None = None) -> dict[str, str]:
    return {c.name: c.status for c in checkup(engine, settings or Settings())}


def test_an_empty_database_is_refused_until_upgraded(empty_db_url: str) -> None:
    from netbroker.db import create_db_engine

    engine = create_db_engine(empty_db_url)
    (check,) = checkup(engine, Settings())
    assert (check.name, check.status) == ("database", "fail")
    assert "netbroker db upgrade" in check.detail
    engine.dispose()


def test_a_fresh_grid_warns_and_fails_where_an_operator_must_act(grid_engine: Engine) -> None:
    got = verdicts(grid_engine)
    assert got["database"] == "ok" and got["registry"] == "ok"
    assert got["cycles"] == "warn" and got["metrics"] == "warn" and got["pilots"] == "warn"
    assert got["tokens"] == "fail"  # auth required, no pilot token


def test_a_healthy_installation_is_all_ok(grid_engine: Engine) -> None:
    from collectors.ingest import ingest
    from dispatcher.core import acquire_job
    from tests.factories import recent_fts_lines
    from tests.test_dispatcher import ask

    auth.create_token(grid_engine, "pilots", "pilot")
    assert run_cycle(grid_engine, Cycle("clouds", 600.0, lambda _: None), "me")
    ingest(grid_engine, "fts", recent_fts_lines())
    add_jobs(grid_engine, 1)
    acquire_job(grid_engine, ask())
    got = verdicts(grid_engine)
    assert set(got.values()) == {"ok"}, got


def test_a_failing_or_overdue_cycle_fails_the_checkup(grid_engine: Engine, db_url: str
                                                      ) -> None:
    def boom(_: Engine) -> None:
        raise RuntimeError("no route to host")

    auth.create_token(grid_engine, "pilots", "pilot")
    assert run_cycle(grid_engine, Cycle("pd2p", 600.0, boom), "me")
    (check,) = [c for c in checkup(grid_engine, Settings()) if c.name == "cycles"]
    assert check.status == "fail" and "pd2p failing (RuntimeError: no route to host)" in (
        check.detail)
    assert run_cycle(grid_engine, Cycle("pd2p", 600.0, lambda _: None), "me")
    with grid_engine.begin() as conn:
        conn.execute(sa.update(cycles).values(last_finished_at=utcnow() - timedelta(hours=1)))
    (check,) = [c for c in checkup(grid_engine, Settings()) if c.name == "cycles"]
    assert check.status == "fail" and "pd2p overdue" in check.detail
    cli = netbroker("doctor", "--json", url=db_url)
    assert cli.returncode == 1
    assert {c["name"]: c["status"] for c in json.loads(cli.stdout)}["cycles"] == "fail"


def test_a_job_file_whose_job_or_catalog_file_is_missing_fails_the_checkup(
        grid_engine: Engine) -> None:
    from netbroker.db.schema import job_files

    (job_id,) = add_jobs(grid_engine, 1)
    row = {"kind": "output", "lfn": "x.root.1", "scope": "user.alice", "dataset": "x.output"}
    with grid_engine.begin() as conn:
        for values in ({"job_id": job_id, "file_id": None},  # a sound row
                       {"job_id": job_id + 1000, "file_id": None},  # no such job
                       {"job_id": job_id, "file_id": 10**6}):  # no such file
            conn.execute(sa.insert(job_files).values(**row, **values))
    (check,) = [c for c in checkup(grid_engine, Settings()) if c.name == "job files"]
    assert check.status == "fail"
    assert check.detail.startswith("1 rows name a job and 1 a catalog file")
