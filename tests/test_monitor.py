"""The monitor pages over real data, on both backends: every page, the filters, a job's page."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from dispatcher.core import (
    AcquireRequest,
    UpdateRequest,
    acquire_job,
    update_job,
    upload_log,
)
from netbroker.common.config import Settings
from netbroker.common.enums import JobStatus
from netbroker.placement import pd2p
from netbroker.registry import registry
from netbroker.workload import tasks
from tests.conftest import LiveServer
from tests.factories import fts_transfers, mini_grid, task_spec

PAGES = ("/monitor", "/monitor/tasks", "/monitor/jobs", "/monitor/sites", "/monitor/clouds",
         "/monitor/network?cloud=DE", "/monitor/replication", "/monitor/errors")


@pytest.fixture
def busy(engine: Engine) -> Engine:
    """A grid with measured links, a task, one finished and one failed job, a decision."""
    registry.import_grid_document(engine, mini_grid(files=20))
    end = time.time() - 60
    ingest(engine, "fts", fts_transfers("FZK_DATADISK", "DESY_DATADISK", 120.0, 4, end),
           now_s=end + 60)
    settings = Settings.model_validate({"pd2p": {"min_waiting_jobs": 5}})
    tasks.submit(engine, tasks.parse_task(task_spec(processing_type="analysis", max_attempts=1,
                                                    cores=1)), settings)
    for state in (JobStatus.FINISHED, JobStatus.FAILED):
        job = acquire_job(engine, AcquireRequest(queue="DESY_UCORE", prod_source_label="user",
                                                 memory_mb=64000, disk_mb=10**6))
        assert job is not None
        update_job(engine, job["id"], UpdateRequest(
            state=state, exit_code=0 if state == JobStatus.FINISHED else 3,
            pilot_error_code=None if state == JobStatus.FINISHED else 1305,
            error_diag=None if state == JobStatus.FINISHED else "payload exited with 3"))
        upload_log(engine, job["id"], f"pilot log of job {job['id']}\n<end>".encode(),
                   "text/plain")
    assert pd2p.run_cycle(engine, settings)["decisions"]
    return engine


def text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_page_renders_with_the_data(busy: Engine) -> None:
    with LiveServer(busy) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for page in PAGES:
            answer = http.get(page)
            assert answer.status_code == 200, page
            assert answer.headers["content-type"].startswith("text/html")
            assert 'href="/monitor/static/monitor.css"' in answer.text
        assert "task.001" in text(http.get("/monitor/tasks").text)
        assert "FZK" in text(http.get("/monitor/network?cloud=DE").text)
        assert "data23:data23.AOD" in text(http.get("/monitor/replication").text)
        errors = text(http.get("/monitor/errors").text)
        assert "1305" in errors and "payload exited with 3" in errors
        assert http.get("/monitor/static/monitor.css").status_code == 200


def test_job_filters_and_the_job_page(busy: Engine) -> None:
    with LiveServer(busy) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        failed = http.get("/monitor/jobs", params={"state": "failed"}).text
        ids = re.findall(r'href="/monitor/jobs/(\d+)"', failed)
        assert len(ids) == 1
        assert re.findall(r'href="/monitor/jobs/(\d+)"', http.get(
            "/monitor/jobs", params={"error": "1305", "site": "DESY"}).text) == ids
        assert re.findall(r'href="/monitor/jobs/(\d+)"', http.get(
            "/monitor/jobs", params={"user": "nobody"}).text) == []
        html = http.get(f"/monitor/jobs/{ids[0]}").text
        timeline = html[html.index('id="timeline"'):html.index("</table>",
                                                               html.index('id="timeline"'))]
        assert re.findall(r"<tr><td>(\w+)</td>", timeline) == ["activated", "sent", "failed"]
        page = text(html)
        assert "task decision" in page and "job decision" in page
        assert "DESY_UCORE" in page and "payload exited with 3" in page
        assert f"pilot log of job {ids[0]}\n&lt;end&gt;" in html  # shown, escaped
        assert f'href="/api/v1/jobs/{ids[0]}/log"' in html
        log = http.get(f"/api/v1/jobs/{ids[0]}/log")
        assert log.text == f"pilot log of job {ids[0]}\n<end>"
        link = re.search(r'href="(/monitor/network/link\?[^"]+)"',
                         http.get("/monitor/network?cloud=DE").text)
        assert link is not None
        plot = re.search(r'src="([^"]+)"', http.get(link.group(1).replace("&amp;", "&")).text)
        assert plot is not None
        png = http.get(plot.group(1).replace("&amp;", "&"))
        assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
        assert http.get("/monitor/jobs/999999").status_code == 404


DRILL_DOWN = ("/monitor/tasks/1", "/monitor/sites/DESY", "/monitor/clouds/DE",
              "/monitor/datasets", "/monitor/datasets/data23:data23.AOD", "/monitor/users/alice",
              "/monitor/network/link?src=FZK&dst=DESY")
STAMP = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?")


def test_times_are_iso_8601_utc_with_z_on_every_page_and_in_the_api(busy: Engine) -> None:
    with LiveServer(busy) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        jobs = http.get("/api/v1/jobs").json()
        for page in (*PAGES, *DRILL_DOWN, f"/monitor/jobs/{jobs[0]['id']}"):
            html = http.get(page).text
            assert "+00:00" not in html, page
            for stamp in STAMP.findall(html):
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp), (page, stamp)
        for path in ("/api/v1/tasks", "/api/v1/jobs", "/api/v1/tasks/1/brokerage",
                     "/api/v1/clouds", "/api/v1/replication/decisions",
                     f"/api/v1/jobs/{jobs[0]['id']}/brokerage"):
            for stamp in STAMP.findall(http.get(path).text):
                assert stamp.endswith("Z") and "+" not in stamp, (path, stamp)


def test_drill_down_pages_over_http(busy: Engine) -> None:
    with LiveServer(busy) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        for page in DRILL_DOWN:
            answer = http.get(page)
            assert answer.status_code == 200, page
        assert "data23:data23.AOD" in text(http.get("/monitor/tasks/1").text)
        assert "DESY_UCORE" in text(http.get("/monitor/sites/DESY").text)
        replication = text(http.get("/monitor/replication").text)
        assert " GB " in replication and "GB 0.0" not in replication
        assert http.get("/monitor/users/nobody").status_code == 404
        assert http.get("/monitor/datasets/data23:nothing").status_code == 404
        assert http.get("/monitor/sites/NOWHERE").status_code == 404
        assert http.get("/monitor/network/link", params={"src": "NOWHERE", "dst": "FZK"}
                        ).status_code == 404
        for bad in ({"cloud": "XX"}, {"kind": "speed"}, {"window": "2d"}):
            page = http.get("/monitor/network", params=bad)
            assert page.status_code == 400 and next(iter(bad)) in page.text
        assert http.get("/monitor/jobs", params={"task": "abc"}).status_code == 400
        assert http.get("/monitor/errors", params={"hours": 0}).status_code == 400
