"""The pilot factory: pilots started from the dispatcher's demand, until the work is done."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.common.enums import JobStatus, utcnow
from netbroker.db.grid import GridDB
from netbroker.db.jobs import JobDB
from netbroker.db.schema import jobs, queues
from netbroker.registry import registry
from tests.conftest import LiveServer
from tests.factories import mini_grid


def add_jobs(engine: Engine, queue: str, n: int) -> list[int]:
    with engine.begin() as conn:
        queue_id = GridDB(conn).ids(queues)[queue]
        return JobDB(conn).add_jobs([{
            "name": f"f-{i}", "status": JobStatus.ACTIVATED, "queue_id": queue_id,
            "prod_source_label": "managed", "priority": 100, "cores": 1, "min_ram_mb": 100,
            "max_disk_mb": 100, "max_walltime_s": 600, "transformation": "/bin/sh",
            "job_pars": "-c 'sleep 0.3; echo done'", "max_attempts": 1} for i in range(n)],
            utcnow())


def test_factory_runs_pilots_until_the_queues_are_drained(engine: Engine,
                                                          tmp_path: Path) -> None:
    registry.import_grid_document(engine, mini_grid())
    ids = add_jobs(engine, "DESY_UCORE", 5) + add_jobs(engine, "LRZ_UCORE", 2)
    demand = subprocess.run(
        [sys.executable, "-m", "netbroker", "queues", "demand", "--json"],
        capture_output=True, text=True, check=False, timeout=60,
        env={**os.environ, "NETBROKER_DATABASE_URL": engine.url.render_as_string(False)})
    assert demand.returncode == 0, demand.stderr
    assert {r["queue"]: r["demand"] for r in json.loads(demand.stdout)} == {
        "DESY_UCORE": 5, "LRZ_UCORE": 2}
    with LiveServer(engine) as server:
        run = subprocess.run(
            [sys.executable, "-m", "pilot.main", "factory", "--server", server.url,
             "--queues", "DESY_UCORE,LRZ_UCORE", "--workdir", str(tmp_path), "--max-pilots",
             "3", "--cycle-s", "0.3", "--heartbeat-s", "0.2", "--until-idle"],
            capture_output=True, text=True, timeout=180, check=False)
    assert run.returncode == 0, run.stderr
    with engine.connect() as conn:
        states = dict(conn.execute(sa.select(jobs.c.id, jobs.c.status)).all())
        sent = [job for job, status, _ in JobDB(conn).state_changes()
                if status == JobStatus.SENT]
    assert {states[i] for i in ids} == {JobStatus.FINISHED}
    assert sorted(sent) == sorted(ids)  # each job sent exactly once
    started = int(re.search(r"(\d+) pilots started in all", run.stderr).group(1))  # type: ignore[union-attr]
    assert 7 <= started <= 10  # one job per pilot; a few may find the queue already empty
