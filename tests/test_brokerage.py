"""Task and job brokerage on both backends: data first, then the network; reasons stored."""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from dispatcher.core import AcquireRequest, UpdateRequest, acquire_job, update_job
from netbroker.common.config import Settings
from netbroker.common.enums import JobStatus
from netbroker.common.errors import InvalidTask, InvalidTransition, TaskExists, UnknownDataset
from netbroker.db.schema import jobs, queues
from netbroker.db.tasks import TaskDB
from netbroker.registry import registry
from netbroker.workload import tasks
from tests.conftest import LiveServer
from tests.factories import fts_transfers, mini_grid, task_spec

ESD = "data23:data23.ESD"  # a second dataset, placed by each test that uses it


@pytest.fixture
def mini(engine: Engine) -> Engine:
    registry.import_grid_document(engine, mini_grid())
    return engine


def measure(engine: Engine, src: str, dst: str, mbytes_per_s: float) -> None:
    """Four FTS transfers src -> dst at the given rate, ended in the last minutes."""
    end = time.time() - 60
    report = ingest(engine, "fts", fts_transfers(src, dst, mbytes_per_s, 4, end), now_s=end + 60)
    assert report.stored == 8, report


def job_queues(engine: Engine, task_id: int) -> Counter[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(queues.c.name).join(jobs, jobs.c.queue_id == queues.c.id)
                            .where(jobs.c.task_id == task_id)).scalars()
        return Counter(rows)


def submit(engine: Engine, settings: Settings | None = None, **over: object) -> dict:
    return tasks.submit(engine, tasks.parse_task(task_spec(**over)), settings or Settings())


def test_brokerage_prefers_the_site_with_the_data_and_records_why(mini: Engine) -> None:
    registry.import_grid_document(mini, mini_grid(queue_memory_mb={"LRZ": 8000}))
    task = submit(mini)
    assert (task["status"], task["cloud"]) == ("running", "DE")
    assert task["jobs"] == {"activated": 6}  # one file per job, the data is local
    assert job_queues(mini, task["id"]) == {"DESY_UCORE": 6}

    why = tasks.explain_job(mini, 1)
    assert why["job"]["queue"] == "DESY_UCORE"
    task_decision, job_decision = why["decisions"]
    assert task_decision["kind"] == "task" and task_decision["chosen"] == "DE"
    de = next(c for c in task_decision["candidates"] if c["name"] == "DE")
    assert de["data"] is True and de["terms"]["data"] == 1.0
    by_name = {c["name"]: c for c in job_decision["candidates"]}
    assert by_name["DESY_UCORE"]["terms"]["data"] == 1.0
    assert by_name["DESY_UCORE"]["jobs"] == 6 and by_name["DESY_UCORE"]["share"] == 1.0
    assert by_name["LRZ_UCORE"]["filter"] == "memory: queue allows 8000 MB"
    assert by_name["FZK_UCORE"]["score"] < by_name["DESY_UCORE"]["score"]
    assert "MAN_UCORE" not in by_name  # another cloud's queue is no candidate
    with mini.connect() as conn:
        pars = conn.execute(sa.select(jobs.c.job_pars).where(jobs.c.id == 1)).scalar_one()
    assert pars == "--in data23.AOD._000001.pool.root.1 --out task.001._000001.root.1"


def test_without_local_data_the_better_connected_site_wins(mini: Engine) -> None:
    # The only disk copy is at CC, whose queue is offline: FR cannot run the task.
    registry.import_grid_document(mini, mini_grid({"data23.ESD": ["CC_DATADISK"]},
                                                  queue_status={"CC": "offline"},
                                                  extra_dataset="data23.ESD"))
    measure(mini, "CC_DATADISK", "FZK_DATADISK", 10.0)   # CC -> DE's Tier-1
    measure(mini, "CC_DATADISK", "DESY_DATADISK", 400.0)  # CC -> a DE Tier-2, fast
    measure(mini, "CC_DATADISK", "RAL_DATADISK", 2.0)    # CC -> UK's Tier-1, slow
    task = submit(mini, files_per_job=5, walltime_s=5 * 7200, input_dataset=ESD)
    assert task["cloud"] == "DE"
    explained = tasks.explain_task(mini, task["id"])
    task_decision, job_decision = explained["decisions"]
    fr = next(c for c in task_decision["candidates"] if c["name"] == "FR")
    assert fr["filter"] == "no queue fits: queue status (most queues)"
    uk = next(c for c in task_decision["candidates"] if c["name"] == "UK")
    de = next(c for c in task_decision["candidates"] if c["name"] == "DE")
    assert de["transfer_s"] < uk["transfer_s"]
    assert set(job_queues(mini, task["id"])) == {"DESY_UCORE"}
    by_name = {c["name"]: c for c in job_decision["candidates"]}
    assert by_name["DESY_UCORE"]["terms"]["transfer_s"] == pytest.approx(125.0, rel=0.01)
    assert by_name["LRZ_UCORE"]["terms"]["transfer_s"] == pytest.approx(50_000.0, rel=0.01)
    # 50 GB at 400 MB/s is within the remote-input limit: activated at once.
    assert task["jobs"] == {"activated": 2}


def test_slow_input_waits_assigned_for_the_data(mini: Engine) -> None:
    registry.import_grid_document(mini, mini_grid({"data23.ESD": ["FZK_TAPE"]},
                                                  queue_memory_mb={"FZK": 8000},
                                                  extra_dataset="data23.ESD"))
    task = submit(mini, input_dataset=ESD)
    assert task["cloud"] == "DE"  # the only cloud holding a copy, on tape
    assert task["jobs"] == {"assigned": 6}


def test_jobs_are_sized_to_the_queue_walltime(mini: Engine) -> None:
    # 2 h per file, 12 files per job asked: the 48 h queues take 12, so 1 job of 6 files.
    task = submit(mini, files_per_job=12, walltime_s=12 * 7200)
    assert sum(task["jobs"].values()) == 1
    registry.import_grid_document(mini, mini_grid())  # same grid; now a 10 h limit per file
    task = submit(mini, name="task.002", files_per_job=4, walltime_s=4 * 36000)
    with mini.connect() as conn:
        walltimes = sorted(conn.execute(sa.select(jobs.c.max_walltime_s)
                                        .where(jobs.c.task_id == task["id"])).scalars())
    assert walltimes == [2 * 36000, 4 * 36000]  # 4 files (40 h), then the 2 left


def test_event_split_task_covers_every_event_once(mini: Engine) -> None:
    task = submit(mini, events_per_job=300, events_per_file=1000, walltime_s=3000,
                  parameters="--in $IN --skip $FIRST_EVENT --max $MAX_EVENTS")
    assert sum(task["jobs"].values()) == 6 * 4  # 1000 events: 300, 300, 300, 100
    with mini.connect() as conn:
        pars = conn.execute(sa.select(jobs.c.job_pars).where(jobs.c.task_id == task["id"])
                            .order_by(jobs.c.id)).scalars().all()
    assert pars[:4] == [f"--in data23.AOD._000001.pool.root.1 --skip {s} --max {n}"
                        for s, n in ((0, 300), (300, 300), (600, 300), (900, 100))]


def test_a_task_no_queue_can_take_stays_pending_then_is_brokered(mini: Engine) -> None:
    task = submit(mini, memory_mb=100_000)
    assert task["status"] == "pending" and task["jobs"] == {}
    assert task["reason"] == "no candidate passes the filters"
    explained = tasks.explain_task(mini, task["id"])
    assert {c["filter"] for c in explained["decisions"][0]["candidates"]} == {
        "no queue fits: memory (most queues)"}
    registry.import_grid_document(mini, mini_grid(queue_memory_mb={"LRZ": 128_000}))
    (row,) = tasks.broker_tasks(mini, Settings())
    assert (row["status"], row["where"], row["jobs"]) == ("running", "DE", 6)
    assert job_queues(mini, task["id"]) == {"LRZ_UCORE": 6}


def test_pinned_task_goes_only_to_its_site(mini: Engine) -> None:
    task = submit(mini, site="MAN")
    assert task["cloud"] == "UK" and task["site"] == "MAN"
    assert job_queues(mini, task["id"]) == {"MAN_UCORE": 6}
    with mini.connect() as conn:
        assert set(conn.execute(sa.select(jobs.c.pinned)).scalars()) == {True}


def test_near_equal_sites_share_the_work_by_a_seeded_draw(mini: Engine) -> None:
    registry.import_grid_document(mini, mini_grid({"data23.ESD": ["DESY_DATADISK",
                                                                  "LRZ_DATADISK"]},
                                                  files=60, extra_dataset="data23.ESD"))
    task = submit(mini, input_dataset=ESD)
    placed = job_queues(mini, task["id"])
    assert set(placed) == {"DESY_UCORE", "LRZ_UCORE"}
    assert min(placed.values()) >= 15  # 60 jobs drawn ~50/50
    again = tasks.explain_task(mini, task["id"])["decisions"][1]
    shares = {c["name"]: c.get("share") for c in again["candidates"]}
    assert shares["DESY_UCORE"] == pytest.approx(0.5, abs=0.01)


def test_full_mesh_mode_brokers_to_a_nucleus_and_its_close_sites(mini: Engine) -> None:
    registry.import_grid_document(mini, mini_grid({"data23.ESD": ["FZK_TAPE"]},
                                                  queue_memory_mb={"FZK": 8000},
                                                  extra_dataset="data23.ESD"))
    measure(mini, "FZK_DATADISK", "MAN_DATADISK", 300.0)  # MAN, in UK, is close to FZK
    settings = Settings.model_validate({"brokerage": {"mode": "full_mesh"}})
    task = submit(mini, settings, input_dataset=ESD)
    assert (task["cloud"], task["nucleus"]) == (None, "FZK")
    # FZK's own queue is too small; MAN is a member by the network, DESY/LRZ are not.
    assert set(job_queues(mini, task["id"])) == {"MAN_UCORE"}


def test_bad_submissions_are_refused_and_store_nothing(mini: Engine) -> None:
    with pytest.raises(InvalidTask, match="input_dataset"):
        tasks.parse_task(task_spec(input_dataset="no-scope"))
    with pytest.raises(InvalidTask, match="cores: Input should be greater than or equal to 1"):
        tasks.parse_task(task_spec(cores=0))
    with pytest.raises(InvalidTask, match="bogus: Extra inputs are not permitted"):
        tasks.parse_task(task_spec(bogus=1))
    with pytest.raises(UnknownDataset):
        submit(mini, input_dataset="data23:nope")
    submit(mini)
    with pytest.raises(TaskExists):
        submit(mini)
    assert len(tasks.list_tasks(mini)) == 1


def test_kill_cancels_the_task_and_its_jobs_once(mini: Engine) -> None:
    task = submit(mini)
    result = tasks.kill_task(mini, task["id"])
    assert result["jobs_cancelled"] == 6
    assert tasks.get_task(mini, task["id"])["jobs"] == {"cancelled": 6}
    with pytest.raises(InvalidTransition, match="task 1 is cancelled"):
        tasks.kill_task(mini, task["id"])
    with pytest.raises(InvalidTransition, match="job 1 is cancelled"):
        tasks.kill_job(mini, 1)


def test_task_api_submits_explains_and_kills(mini: Engine) -> None:
    with LiveServer(mini) as server, httpx.Client(base_url=server.url, timeout=10) as http:
        created = http.post("/api/v1/tasks", json=task_spec())
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        assert http.post("/api/v1/tasks", json=task_spec()).status_code == 409
        bad = http.post("/api/v1/tasks", json=task_spec(name="t2", cores="many"))
        assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == ["body", "cores"]
        assert http.post("/api/v1/tasks", json=task_spec(
            name="t3", input_dataset="data23:nope")).status_code == 404
        listed = http.get("/api/v1/jobs", params={"task": task_id, "status": "activated"})
        assert len(listed.json()) == 6
        why = http.get(f"/api/v1/jobs/{listed.json()[0]['id']}/brokerage").json()
        assert [d["kind"] for d in why["decisions"]] == ["task", "job"]
        assert http.get("/api/v1/jobs/999/brokerage").status_code == 404
        assert http.post(f"/api/v1/tasks/{task_id}/kill").json()["jobs_cancelled"] == 6
        again = http.post(f"/api/v1/tasks/{task_id}/kill")
        assert again.status_code == 409 and again.json()["current"] == "cancelled"
        assert http.get("/api/v1/tasks").json()[0]["jobs"] == {"cancelled": 6}


def test_retry_keeps_the_files_and_renames_the_outputs(mini: Engine) -> None:
    submit(mini)
    job = acquire_job(mini, AcquireRequest(queue="DESY_UCORE", memory_mb=64000,
                                              disk_mb=50_000))
    assert job is not None
    update_job(mini, job["id"], UpdateRequest(state=JobStatus.FAILED, exit_code=1))
    with mini.connect() as conn:
        retry_id = conn.execute(sa.select(jobs.c.id).where(jobs.c.retry_of == job["id"])
                                ).scalar_one()
        before, after = TaskDB(conn).job_files(job["id"]), TaskDB(conn).job_files(retry_id)
    assert [f["lfn"] for f in after if f["kind"] == "input"] == [
        f["lfn"] for f in before if f["kind"] == "input"]
    assert [f["lfn"] for f in after if f["kind"] != "input"] == [
        f"{job['name']}.root.2", f"{job['name']}.log.tgz.2"]


def test_a_task_is_done_when_the_last_attempt_of_every_job_finished(mini: Engine) -> None:
    task = submit(mini, settings=None)
    assert tasks.finish_tasks(mini) == {}
    first = True
    while (job := acquire_job(mini, AcquireRequest(queue="DESY_UCORE", memory_mb=64000,
                                                   disk_mb=50_000))) is not None:
        state = JobStatus.FAILED if first else JobStatus.FINISHED  # the first is retried
        update_job(mini, job["id"], UpdateRequest(state=state, exit_code=int(first)))
        first = False
    assert tasks.get_task(mini, task["id"])["jobs"] == {"failed": 1, "finished": 6}
    assert tasks.finish_tasks(mini) == {task["id"]: "done"}
    assert tasks.get_task(mini, task["id"])["status"] == "done"


def test_a_task_whose_job_failed_its_last_attempt_fails_and_says_how_many(mini: Engine
                                                                          ) -> None:
    """Jobs failed with attempts left are retried (the task runs on); once every job
    ended, the task is ``failed``, counting the jobs whose last attempt failed."""
    task = submit(mini, max_attempts=2)
    to_fail = 3  # first attempts to fail; their retries (the last attempts) fail too
    while (job := acquire_job(mini, AcquireRequest(queue="DESY_UCORE", memory_mb=64000,
                                                   disk_mb=50_000))) is not None:
        assert tasks.finish_tasks(mini) == {}  # a job is still out
        fail = job["attempt_nr"] == 2 or to_fail > 0
        to_fail -= job["attempt_nr"] == 1 and to_fail > 0
        update_job(mini, job["id"], UpdateRequest(
            state=JobStatus.FAILED if fail else JobStatus.FINISHED, exit_code=int(fail)))
    assert tasks.get_task(mini, task["id"])["jobs"] == {"failed": 6, "finished": 3}
    assert tasks.finish_tasks(mini) == {task["id"]: "failed"}
    assert tasks.get_task(mini, task["id"])["reason"] == "3 jobs failed for good"
    assert tasks.finish_tasks(mini) == {}
