"""The PanDA wire protocol as Pilot 3.7 (form) and 3.11 (gzip'd JSON) speak it."""

from __future__ import annotations

import gzip
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from netbroker.db.schema import jobs
from tests.conftest import LiveServer
from tests.test_dispatcher import add_jobs

JSON = {"Accept": "application/json"}


@pytest.fixture
def panda(grid_engine: Engine) -> Iterator[httpx.Client]:
    with LiveServer(grid_engine) as server, httpx.Client(base_url=server.url) as client:
        yield client


def test_pilot_37_form_get_job_then_reports_to_finished(grid_engine: Engine,
                                                       panda: httpx.Client) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    form = {"siteName": "DESY-HH", "computingElement": "DESY-HH", "prodSourceLabel": "managed",
            "diskSpace": "50000", "mem": "16000.55078125", "node": "wn042.desy.de", "cpu": "2400",
            "allowOtherCountry": "False", "workingGroup": ""}
    job = panda.post("/server/panda/getJob", data=form, headers=JSON).json()
    assert job["StatusCode"] == 0 and job["PandaID"] == job_id
    # A bare script name is answered as a URL under this server's /trf/user.
    assert job["transformation"].endswith("/trf/user/run.sh")
    assert (job["coreCount"], job["inFiles"]) == (1, "")
    again = panda.post("/server/panda/getJob", data=form, headers=JSON).json()
    assert again == {"StatusCode": 20, "errorDialog": "no jobs"}
    for state in ("starting", "running", "running"):
        answer = panda.post("/server/panda/updateJob", headers=JSON,
                            data={"jobId": str(job_id), "state": state, "siteName": "DESY-HH"})
        assert answer.json() == {"StatusCode": 0, "command": "NULL"}
    final = {"jobId": str(job_id), "state": "finished", "transExitCode": "0",
             "pilotErrorCode": "0", "pilotTiming": "1|0|12|0|1|1", "xml": "{}"}
    assert panda.post("/server/panda/updateJob", data=final, headers=JSON).json()[
        "StatusCode"] == 0
    # a retried final report (the first answer lost) is acknowledged, not refused
    assert panda.post("/server/panda/updateJob", data=final, headers=JSON).json()[
        "StatusCode"] == 0
    late = panda.post("/server/panda/updateJob", headers=JSON,
                      data={"jobId": str(job_id), "state": "running"})
    assert late.status_code == 409 and "is finished" in late.json()["errorDialog"]


def test_pilot_311_gzipped_json_and_failure_codes(grid_engine: Engine,
                                                 panda: httpx.Client) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    body = gzip.compress(json.dumps({"computingElement": "DESY-HH", "diskSpace": 50000,
                                     "mem": 16000, "node": "wn1"}).encode())
    job = panda.post("/server/panda/getJob", content=body,
                     headers={**JSON, "Content-Type": "application/json"}).json()
    assert job["PandaID"] == job_id
    report = gzip.compress(json.dumps({"jobId": job_id, "state": "failed", "transExitCode": 3,
                                       "pilotErrorCode": 1368,
                                       "pilotErrorDiag": "payload exit 3"}).encode())
    panda.post("/server/panda/updateJob", content=report,
               headers={**JSON, "Content-Type": "application/json"}).raise_for_status()
    stored = panda.get(f"/api/v1/jobs/{job_id}").json()
    assert (stored["status"], stored["exit_code"], stored["pilot_error_code"]) == (
        "failed", 3, 1368)


def test_url_encoded_answer_without_accept_json(grid_engine: Engine,
                                                panda: httpx.Client) -> None:
    answer = panda.post("/server/panda/getJob", data={"computingElement": "DESY-HH"})
    assert answer.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert dict(parse_qsl(answer.text)) == {"StatusCode": "20", "errorDialog": "no jobs"}


@pytest.mark.parametrize(("path", "data", "status"), [
    ("/server/panda/getJob", {"siteName": "X"}, 400),
    ("/server/panda/getJob", {"computingElement": "NOPE"}, 404),
    ("/server/panda/getJob", {"computingElement": "DESY-HH", "diskSpace": "lots"}, 400),
    ("/server/panda/updateJob", {"jobId": "abc", "state": "running"}, 400),
    ("/server/panda/updateJob", {"jobId": "1", "state": "dancing"}, 400),
    ("/server/panda/updateJob", {"jobId": "999999", "state": "running"}, 404),
])
def test_malformed_pilot_requests_get_clear_refusals(panda: httpx.Client, path: str,
                                                     data: dict[str, str], status: int) -> None:
    answer = panda.post(path, data=data, headers=JSON)
    assert answer.status_code == status
    assert answer.json()["StatusCode"] == 30 and answer.json()["errorDialog"]


def test_queue_description_and_storage_endpoints(panda: httpx.Client) -> None:
    flat = panda.get("/cache/schedconfig/DESY-HH.all.json").json()
    assert (flat["nickname"], flat["state"], flat["corecount"], flat["maxrss"]) == (
        "DESY-HH", "ACTIVE", 8, 24000)
    # The sample grid's DESY-HH reads from DATADISK and SCRATCHDISK and writes to
    # DATADISK, whose protocols are file:// then root:// (and davs:// to read).
    # (with 3.7's names for the same activities: pr, pw and pl for logs)
    reads, writes = ["DESY-HH_DATADISK", "DESY-HH_SCRATCHDISK"], ["DESY-HH_DATADISK"]
    assert flat["astorages"] == {"read_lan": reads, "pr": reads, "write_lan": writes,
                                 "pw": writes, "pl": writes}
    assert flat["acopytools"]["pr"][0] == "mv" and flat["timefloor"] == 0
    assert panda.get("/cache/schedconfig/DESY-HH.json").json() == {"DESY-HH": flat}
    assert panda.get("/cache/schedconfig/NOPE.all.json").status_code == 404
    endpoints = panda.get("/cache/ddmendpoints.json").json()
    datadisk = endpoints["DESY-HH_DATADISK"]
    assert datadisk["site"] == "DESY-HH"
    assert [(p["endpoint"], p["path"]) for p in datadisk["arprotocols"]["write_lan"]] == [
        ("file://localhost", "/pnfs/desy.de/atlas/datadisk/rucio/"),
        ("root://se.desy.de:1094", "/pnfs/desy.de/atlas/datadisk/rucio/")]


def test_report_on_a_locked_job_waits_in_the_thread_pool_not_on_the_loop(
        grid_engine: Engine, panda: httpx.Client, backend: str,
        caplog: pytest.LogCaptureFixture) -> None:
    """On PostgreSQL a report runs on the event loop with a lock timeout; on a row
    another transaction holds it gives up there and waits in the thread pool, so
    the service keeps answering meanwhile and the report still lands."""
    if backend != "postgresql":
        pytest.skip("the event-loop fast path is PostgreSQL's (SQLite batches its writes)")
    caplog.set_level(logging.INFO, logger="dispatcher.fastpath")
    (job_id,) = add_jobs(grid_engine, 1)
    got = panda.post("/server/panda/getJob", headers=JSON,
                     data={"computingElement": "DESY-HH", "diskSpace": "50000", "mem": "4000"})
    assert got.json()["PandaID"] == job_id
    outcome: dict[str, object] = {}

    def report() -> None:
        outcome["answer"] = panda.post("/server/panda/updateJob", headers=JSON, data={
            "jobId": str(job_id), "state": "finished", "transExitCode": "0"}).json()
        outcome["at"] = time.monotonic()

    with grid_engine.connect() as holder:
        holder.execute(sa.select(jobs.c.id).where(jobs.c.id == job_id).with_for_update())
        reporter = threading.Thread(target=report)
        reporter.start()
        time.sleep(0.5)  # 25 lock timeouts' worth: the report is waiting, in a thread
        assert "answer" not in outcome
        health = panda.get("/healthz")  # the loop is free meanwhile
        assert health.status_code == 200
        released = time.monotonic()
        holder.rollback()
    reporter.join(timeout=10)
    assert outcome["answer"] == {"StatusCode": 0, "command": "NULL"}
    assert outcome["at"] >= released  # it landed after the lock went, not before
    # ... and it was tried on the loop first, which gave up on the lock:
    assert any("update_job timed out on the event loop" in r.getMessage()
               for r in caplog.records)
    with grid_engine.connect() as conn:
        assert conn.execute(sa.select(jobs.c.status).where(jobs.c.id == job_id)
                            ).scalar_one() == "finished"


def test_the_loops_held_connection_cut_by_the_database_is_replaced(
        grid_engine: Engine, panda: httpx.Client, backend: str) -> None:
    """On PostgreSQL the event loop keeps its connection from call to call. The
    database ending it (a restart, an operator's pg_terminate_backend) costs the
    next call at most (503, the pilot asks again); the one after is served on a
    new connection, and no job went to two pilots."""
    if backend != "postgresql":
        pytest.skip("the held connection is the PostgreSQL fast path's")
    add_jobs(grid_engine, 4)
    form = {"computingElement": "DESY-HH", "diskSpace": "50000", "mem": "4000"}
    first = panda.post("/server/panda/getJob", headers=JSON, data=form)
    assert first.json()["StatusCode"] == 0
    with grid_engine.connect() as conn:
        cut = conn.execute(sa.text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE pid <> pg_backend_pid() AND datname = current_database() "
            "AND backend_type = 'client backend'")).scalar_one()
    assert cut >= 1
    answers = [panda.post("/server/panda/getJob", headers=JSON, data=form) for _ in range(3)]
    assert all(a.status_code in (200, 503) for a in answers), [a.text for a in answers]
    served = [a.json()["PandaID"] for a in answers if a.status_code == 200]
    assert answers[1].status_code == answers[2].status_code == 200
    ids = [first.json()["PandaID"], *served]
    assert len(ids) == len(set(ids))


def test_a_bare_transformation_is_served_from_the_folder_a_url_is_kept(
        grid_engine: Engine, tmp_path: Path) -> None:
    """A job's bare script name is answered as a URL under this server's /trf/user,
    which serves it from ``dispatcher.transformations_dir`` (Pilot 3.11 downloads
    it there); a full URL stays as the user gave it; a missing one is a 404."""
    from netbroker.common.config import DispatcherSettings, Settings

    (tmp_path / "runtest.sh").write_text("#!/bin/bash\necho hi\n")
    (tmp_path / ".hidden").write_text("no")
    bare, full = add_jobs(grid_engine, 2)
    with grid_engine.begin() as conn:
        conn.execute(sa.update(jobs).where(jobs.c.id == bare)
                     .values(transformation="runtest.sh", priority=10))
        conn.execute(sa.update(jobs).where(jobs.c.id == full)
                     .values(transformation="https://trf.example/x/run.py", priority=5))
    settings = Settings(dispatcher=DispatcherSettings(transformations_dir=str(tmp_path)))
    with LiveServer(grid_engine, settings) as server, \
            httpx.Client(base_url=server.url) as client:
        form = {"computingElement": "DESY-HH", "diskSpace": "50000"}
        first = client.post("/server/panda/getJob", data=form, headers=JSON).json()
        second = client.post("/server/panda/getJob", data=form, headers=JSON).json()
        assert (first["PandaID"], first["transformation"]) == (
            bare, f"{server.url}/trf/user/runtest.sh")
        assert (second["PandaID"], second["transformation"]) == (
            full, "https://trf.example/x/run.py")
        script = client.get("/trf/user/runtest.sh")
        assert script.status_code == 200 and script.content == b"#!/bin/bash\necho hi\n"
        for missing in ("nothere.sh", ".hidden", "..%2F..%2Fetc%2Fpasswd"):
            answer = client.get(f"/trf/user/{missing}")
            assert answer.status_code == 404, missing
        assert "unknown transformation 'nothere.sh'" in client.get(
            "/trf/user/nothere.sh").json()["detail"]


def test_the_transformation_base_url_setting_names_where_pilots_download(
        grid_engine: Engine) -> None:
    from netbroker.common.config import DispatcherSettings, Settings

    (job_id,) = add_jobs(grid_engine, 1, transformation="runtest.sh")
    base = "http://pandaserver-doma.cern.ch:25080/trf/user"  # the prefix Pilot 3.7 trusts
    settings = Settings(dispatcher=DispatcherSettings(transformation_base_url=base))
    with LiveServer(grid_engine, settings) as server, \
            httpx.Client(base_url=server.url) as client:
        job = client.post("/server/panda/getJob", headers=JSON,
                          data={"computingElement": "DESY-HH"}).json()
    assert (job["PandaID"], job["transformation"]) == (job_id, f"{base}/runtest.sh")


@pytest.mark.parametrize(("pilot_label", "gets"), [
    ("ptest", "managed"), ("managed", "managed"), ("rc_test2", "managed"),
    ("user", "user"), ("panda", "user"), ("install", None)])
def test_a_pilots_label_asks_for_production_or_analysis_jobs(
        grid_engine: Engine, panda: httpx.Client, pilot_label: str, gets: str | None) -> None:
    """Pilot 3's default label ptest and the other test labels take production
    jobs (label managed), user and panda analysis jobs (user); a label not in
    ``dispatcher.pilot_labels`` takes only jobs of its own label."""
    (production,) = add_jobs(grid_engine, 1, prod_source_label="managed")
    (analysis,) = add_jobs(grid_engine, 1, prod_source_label="user", seed=2)
    job = panda.post("/server/panda/getJob", headers=JSON, data={
        "computingElement": "DESY-HH", "prodSourceLabel": pilot_label}).json()
    if gets is None:
        assert job == {"StatusCode": 20, "errorDialog": "no jobs"}
    else:
        assert job["PandaID"] == {"managed": production, "user": analysis}[gets]
        assert job["prodSourceLabel"] == gets


def test_the_pilot_log_extracts_of_the_final_report_are_kept_and_shown(
        grid_engine: Engine, panda: httpx.Client) -> None:
    (job_id,) = add_jobs(grid_engine, 1)
    panda.post("/server/panda/getJob", headers=JSON, data={"computingElement": "DESY-HH"})
    extracts = "\n".join(f"2026-12-06 10:00:{i:02d} | WARNING | stage-out retry {i}"
                         for i in range(20))
    report = {"jobId": str(job_id), "state": "failed", "transExitCode": "0",
              "pilotErrorCode": "1137", "pilotErrorDiag": "stage-out failed",
              "pilotLog": extracts}
    assert panda.post("/server/panda/updateJob", data=report, headers=JSON).json() == {
        "StatusCode": 0, "command": "NULL"}
    log = panda.get(f"/api/v1/jobs/{job_id}/log")
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
    assert log.text == f"pilot log extracts:\n{extracts}\n"
    assert panda.get(f"/api/v1/jobs/{job_id}").json()["pilot_log"] == extracts
    page = panda.get(f"/monitor/jobs/{job_id}").text
    assert 'id="pilot-log"' in page and "stage-out retry 19" in page
    (other,) = add_jobs(grid_engine, 1, seed=3)
    missing = panda.get(f"/api/v1/jobs/{other}/log")
    assert missing.status_code == 404 and "no log" in missing.json()["detail"]


def test_the_wire_refuses_a_missing_token_and_a_wrong_role_as_panda_does(
        grid_engine: Engine) -> None:
    """No token or a bad one: 401 with StatusCode 50; a token of another role: 403
    with 60; another pilot's job: 403 with 70; each with an errorDialog the pilot
    logs. A pilot token sent as Pilot 3 sends it (with an Origin) works."""
    from netbroker.accounts.auth import create_token

    (job_id,) = add_jobs(grid_engine, 1)
    pilot = create_token(grid_engine, "factory-desy", "pilot")
    other = create_token(grid_engine, "factory-other", "pilot")
    user = create_token(grid_engine, "alice", "user")
    form = {"computingElement": "DESY-HH"}
    with LiveServer(grid_engine, auth=True) as server, \
            httpx.Client(base_url=server.url) as client:
        none = client.post("/server/panda/getJob", data=form, headers=JSON)
        assert none.status_code == 401 and none.json()["StatusCode"] == 50
        assert "bearer token is required" in none.json()["errorDialog"]
        assert none.headers["WWW-Authenticate"] == "Bearer"
        forged = client.post("/server/panda/getJob", data=form,
                             headers={**JSON, "Authorization": "Bearer nb_forged"})
        assert forged.status_code == 401 and forged.json()["StatusCode"] == 50
        wrong = client.post("/server/panda/getJob", data=form,
                            headers={**JSON, "Authorization": f"Bearer {user}"})
        assert wrong.status_code == 403 and wrong.json()["StatusCode"] == 60
        assert "role user may not do this" in wrong.json()["errorDialog"]
        job = client.post("/server/panda/getJob", data=form, headers={
            **JSON, "Authorization": f"Bearer {pilot}", "Origin": "netbroker.test"}).json()
        assert job["PandaID"] == job_id
        theirs = client.post("/server/panda/updateJob", headers={
            **JSON, "Authorization": f"Bearer {other}"},
            data={"jobId": str(job_id), "state": "running"})
        assert theirs.status_code == 403 and theirs.json()["StatusCode"] == 70
        assert "taken by another pilot" in theirs.json()["errorDialog"]
