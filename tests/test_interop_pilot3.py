"""The real PanDA Pilot 3, unmodified (3.7 from PyPI, 3.11 vendored; ``make interop``),
runs jobs submitted the way users submit them, files in and out, auth on.

A grid of local sites (``examples/local-site/make_site.py``: a POSIX storage
endpoint per site under a folder, an input dataset placed there at Rucio's
paths, queues whose catchall lets ``mv`` read and write that storage) is
imported; tasks go in through ``POST /api/v1/tasks`` with a user's token; the
pilots authenticate with a pilot token the way Pilot 3 does (a token file,
``PANDA_AUTH_TOKEN``/``PANDA_AUTH_ORIGIN``). Both versions run side by side,
one site each per case: a payload that exits 0 (inputs staged in from the
storage, output and log staged out and registered as replicas with the size
and checksum the pilot measured, the pilot's log kept), one that exits 3
(failed, with exactly the pilotErrorCode the pilot sent), and an empty queue
(a no-job answer and no updateJob). The exit-0 case runs on both backends.

Safety, as the pilot kills orphaned processes of its user when a job ends:
``PILOT_NOKILL=1`` and a PID namespace of its own (``unshare --pid --fork
--mount-proc --kill-child``). Every URL of its configuration points at the
netbroker under test on 127.0.0.1. Pilot 3.7 takes a transformation only
under a PanDA host it trusts, and with ``$HARVESTER_WORKDIR`` set copies the
script from there; 3.11 downloads it from this server's ``/trf/user``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from netbroker.accounts import auth
from netbroker.common.config import DispatcherSettings, ServiceSettings, Settings
from netbroker.db import create_db_engine, upgrade
from netbroker.db.jobs import JobDB
from netbroker.db.schema import datasets, endpoints, file_replicas, files, jobs, queues
from netbroker.registry import registry
from tests.conftest import BACKENDS, LiveServer

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".interop" / "venv" / "bin" / "python"
PILOTS = {"3.7": ROOT / ".interop" / "src" / "pilot.py",
          "3.11": ROOT / ".interop" / "next" / "pilot.py"}
TRUSTED = "http://pandaserver-doma.cern.ch:25080/trf/user"  # the prefix Pilot 3.7 trusts
ORIGIN = "netbroker.test"

pytestmark = [pytest.mark.interop, pytest.mark.slow, pytest.mark.timeout(1200)]

# The example a user follows (README, "Running the real PanDA Pilot 3") is what runs.
EXAMPLE = ROOT / "examples" / "local-site"
sys.path.insert(0, str(EXAMPLE))
from make_site import make_site, rucio_path  # noqa: E402
from pilot_config import pilot_config  # noqa: E402

PAYLOADS = {"ok": (EXAMPLE / "runtest.sh").read_text(),
            "fail": "#!/bin/bash\necho 'the payload fails on purpose'\nexit 3\n"}


@dataclass
class Run:
    """One pilot's run: its site and case, its job's id (None when idle), its output."""

    version: str
    case: str
    site: str
    job_id: int | None
    stdout: str = ""


def cases_for(backend: str) -> list[tuple[str, str]]:
    """(version, case) pairs run on ``backend``: exit 0 on both, the rest on SQLite."""
    wanted = ["ok"] if backend == "postgresql" else ["ok", "fail", "idle"]
    return [(v, c) for c in wanted for v in PILOTS]


def site_of(version: str, case: str) -> str:
    return f"{case.upper()}-{version.replace('.', '')}"


def config_file(version: str, base: str, target: Path) -> Path:
    """This pilot's own default.cfg with every server URL pointing at ``base``."""
    with target.open("w") as out:
        pilot_config(PILOTS[version].parent, base, out)
    return target


def run_pilot(version: str, site: str, base: str, work: Path, storage: Path,
              token: Path, trf: Path) -> str:
    """Run one pilot on ``site``'s queue until it exits; its stdout and stderr."""
    port = base.rsplit(":", 1)[1]
    home = work / f"home-{site}"
    home.mkdir()
    env = {**os.environ, "PILOT_NOKILL": "1", "PANDA_AUTH_TOKEN": token.name,
           # Pilot 3 looks for the token in the folder of this path (its dirname).
           "PANDA_AUTH_DIR": str(token), "PANDA_AUTH_ORIGIN": ORIGIN,
           "HARVESTER_PILOT_CONFIG": str(config_file(version, base, work / f"{site}.cfg"))}
    command = [str(PYTHON), str(PILOTS[version]), "-q", f"{site}_UCORE", "-i", "PR",
               "-j", "managed", "--pilot-user", "generic", "-w", "generic",
               "--url", "http://127.0.0.1", "-p", port, "--use-rucio-traces", "false",
               "-t", "-d", "-v", "1", "--input-destination-dir",
               str(storage / site / "rucio")]
    if version == "3.7":
        env["HARVESTER_WORKDIR"] = str(trf)  # 3.7 copies its trusted URL's script from here
    else:
        command += ["-b", "-y", "-k", "--baseurls", f"{base}/trf/user"]
    assert shutil.which("unshare"), "unshare is needed to run the real pilot safely"
    command = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", *command]
    done = subprocess.run(command, cwd=home, env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    return done.stdout + done.stderr


def pilot_sent(stdout: str, field: str) -> Any:
    """``field`` of the last updateJob data the pilot logged sending."""
    values = re.findall(rf"'{field}': ([^,}}]+)", stdout)
    assert values, f"the pilot never sent {field}"
    return json.loads(values[-1].replace("'", '"'))


@pytest.fixture(scope="module")
def installed() -> dict[str, Path]:
    missing = [v for v, path in PILOTS.items() if not path.exists() or not PYTHON.exists()]
    if missing:
        if os.environ.get("NETBROKER_REQUIRE_INTEROP") == "1":
            pytest.fail(f"NETBROKER_REQUIRE_INTEROP=1 but Pilot {missing} is missing: "
                        "run make interop")
        pytest.skip("PanDA Pilot 3 not installed: run `make interop`")
    return PILOTS


@pytest.fixture(scope="module", params=BACKENDS)
def scenario(request: pytest.FixtureRequest, installed: dict[str, Path],
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every case of the backend run once, the pilots side by side; what they left."""
    backend = request.param
    work = tmp_path_factory.mktemp(f"interop-{backend}")
    if backend == "sqlite":
        url = f"sqlite:///{work / 'netbroker.db'}"
    else:
        cluster = request.getfixturevalue("pg_cluster")
        admin = sa.create_engine(cluster.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql("CREATE DATABASE interop")
        admin.dispose()
        url = cluster.url("interop")
    engine = create_db_engine(url)
    upgrade(engine)
    storage, trf, auth_dir = work / "storage", work / "trf", work / "auth"
    for folder in (trf, auth_dir):
        folder.mkdir()
    for name, script in PAYLOADS.items():
        (trf / f"{name}.sh").write_text(script)
        (trf / f"{name}.sh").chmod(0o755)
    cases = cases_for(backend)
    grid = make_site(storage, [site_of(v, c) for v, c in cases], "local", "local.input",
                     files=2, file_bytes=5000)
    registry.import_grid_document(engine, json.dumps(grid))
    token = auth_dir / "pilot-token"
    token.write_text(auth.create_token(engine, "local-pilots", "pilot"))  # no newline
    user = auth.create_token(engine, "alice", "user")
    settings = Settings(service=ServiceSettings(auth="required"),
                        dispatcher=DispatcherSettings(transformations_dir=str(trf)))
    runs: list[Run] = []
    with LiveServer(engine, settings, auth=True) as server, \
            httpx.Client(base_url=server.url, timeout=30,
                         headers={"Authorization": f"Bearer {user}"}) as api:
        for version, case in cases:
            site = site_of(version, case)
            job_id = None
            if case != "idle":
                script = f"{case}.sh"
                made = api.post("/api/v1/tasks", json={
                    "name": f"interop.{site}", "user": "alice",
                    "input_dataset": "local:local.input", "site": site,
                    # 3.7 takes its transformation only under a PanDA host it trusts.
                    "transformation": f"{TRUSTED}/{script}" if version == "3.7" else script,
                    "parameters": "$IN $OUT", "cores": 1, "memory_mb": 1000,
                    "walltime_s": 600, "files_per_job": 2, "max_attempts": 1})
                assert made.status_code == 201, made.text
                assert made.json()["jobs"] == {"activated": 1}, made.json()
                (job,) = api.get("/api/v1/jobs", params={"task": made.json()["id"]}).json()
                job_id = job["id"]
            runs.append(Run(version, case, site, job_id))
        threads = [threading.Thread(target=lambda r=r: setattr(r, "stdout", run_pilot(
            r.version, r.site, server.url, work, storage, token, trf))) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        logs = {r.job_id: api.get(f"/api/v1/jobs/{r.job_id}/log") for r in runs if r.job_id}
    yield {"engine": engine, "runs": runs, "storage": storage, "logs": logs,
           "backend": backend}
    engine.dispose()


def the_run(scenario: dict[str, Any], version: str, case: str) -> Run:
    if (version, case) not in cases_for(scenario["backend"]):
        pytest.skip(f"the {case} case runs once, on SQLite")
    return next(r for r in scenario["runs"] if (r.version, r.case) == (version, case))


def job_of(scenario: dict[str, Any], run: Run) -> tuple[dict[str, Any], list[str]]:
    with scenario["engine"].connect() as conn:
        db = JobDB(conn)
        job = db.get(run.job_id)
        timeline = [str(t["status"]) for t in db.timeline(run.job_id)]
    assert job is not None
    return job, timeline


@pytest.mark.parametrize("version", list(PILOTS))
def test_a_payload_exiting_0_finishes_with_its_files_in_and_out(
        scenario: dict[str, Any], version: str) -> None:
    run = the_run(scenario, version, "ok")
    job, timeline = job_of(scenario, run)
    tail = run.stdout[-4000:]
    assert (job["status"], job["exit_code"]) == ("finished", 0), tail
    assert timeline[:3] == ["activated", "sent", "starting"] and timeline[-1] == "finished"
    assert job["owner"] == "local-pilots"  # the pilot's token took and reported it
    storage: Path = scenario["storage"]
    root = storage / run.site / "rucio"
    # The inputs were staged in from the storage: the payload's output holds their md5.
    inputs = b"".join((root / rucio_path("local", f"local.input._{i:06d}.dat")).read_bytes()
                      for i in (1, 2))
    engine = scenario["engine"]
    with engine.connect() as conn:
        made = {r.name: r for r in conn.execute(
            sa.select(files.c.name, files.c.bytes, files.c.adler32, datasets.c.scope,
                      datasets.c.name.label("dataset"), endpoints.c.name.label("endpoint"),
                      file_replicas.c.url)
            .join(datasets, datasets.c.id == files.c.dataset_id)
            .join(file_replicas, file_replicas.c.file_id == files.c.id)
            .join(endpoints, endpoints.c.id == file_replicas.c.endpoint_id)
            .where(datasets.c.name.like(f"interop.{run.site}.%")))}
    assert {r.dataset for r in made.values()} == {f"interop.{run.site}.output",
                                                  f"interop.{run.site}.log"}
    for replica in made.values():
        on_disk = root / rucio_path(replica.scope, replica.name)
        content = on_disk.read_bytes()
        # Registered with the size and checksum the pilot measured of what it wrote.
        assert (replica.bytes, replica.adler32) == (len(content),
                                                    f"{zlib.adler32(content):08x}")
        assert replica.endpoint == f"{run.site}_DATADISK"
        assert replica.url == f"file://localhost{on_disk}"
    (output,) = [r for r in made.values() if r.dataset.endswith(".output")]
    text = (root / rucio_path(output.scope, output.name)).read_text()
    assert text == f"processed\n{hashlib.md5(inputs).hexdigest()}  -\n"
    (log_file,) = [r for r in made.values() if r.dataset.endswith(".log")]
    log = scenario["logs"][run.job_id]
    assert log.status_code == 200, log.text
    assert log.text.startswith(f"log file local:{log_file.name}: {log_file.bytes} bytes, "
                               f"adler32 {log_file.adler32}\n  at {run.site}_DATADISK: "
                               f"{log_file.url}\n")


@pytest.mark.parametrize("version", list(PILOTS))
def test_a_payload_exiting_3_fails_with_the_code_its_pilot_sent(
        scenario: dict[str, Any], version: str) -> None:
    run = the_run(scenario, version, "fail")
    job, timeline = job_of(scenario, run)
    tail = run.stdout[-4000:]
    assert (job["status"], job["exit_code"]) == ("failed", 3), tail
    assert timeline[-1] == "failed"
    sent = pilot_sent(run.stdout, "pilotErrorCode")
    assert sent and job["pilot_error_code"] == sent  # 1305 from 3.7, 1368 from 3.11
    with scenario["engine"].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)
                            .where(jobs.c.retry_of == run.job_id)).scalar() == 0


@pytest.mark.parametrize("version", list(PILOTS))
def test_an_empty_queue_answers_no_job_and_gets_no_update(
        scenario: dict[str, Any], version: str) -> None:
    run = the_run(scenario, version, "idle")
    assert "'StatusCode': 20" in run.stdout or '"StatusCode":20' in run.stdout, \
        run.stdout[-3000:]
    assert "server/panda/updateJob" not in run.stdout
    with scenario["engine"].connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(jobs)
                            .join(queues, queues.c.id == jobs.c.queue_id)
                            .where(queues.c.name == f"{run.site}_UCORE")).scalar() == 0
