"""The monitor and the API docs in real headless Chromium (Selenium), on both backends.

Every page is opened with data behind it (a grid with measured links, a foreign
calculated member and a refused candidate, an analysis task with a finished and
a failed job, a production task whose jobs were rebrokered, a PD2P decision, a
boost, a failing cycle); its key content is asserted, the console has no error,
and a screenshot is kept in ``screenshots/`` (``<backend>-<page>.png``). One
test walks overview -> task -> job -> site -> cloud -> dataset by clicking
links; one opens Swagger UI and ReDoc, served from the packaged assets.
One browser serves the whole module. Skipped when Debian's ``chromium`` and
``chromium-driver`` are missing, unless NETBROKER_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from collectors.ingest import ingest
from netbroker.clouds import membership as clouds
from netbroker.common.config import CloudSettings, Settings
from netbroker.common.enums import utcnow
from netbroker.db.cycles import CycleDB
from netbroker.registry import registry
from netbroker.workload import priority, tasks
from netbroker.workload.rebrokerage import rebroker
from tests.conftest import LiveServer
from tests.factories import fts_transfers, mini_grid, task_spec
from tests.test_monitor import busy  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parent.parent / "screenshots"
ESD = "data23:data23.ESD"
SMALL = {"FZK": 8000, "RAL": 8000, "MAN": 8000, "CC": 8000}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        if os.environ.get("NETBROKER_REQUIRE_BROWSER") == "1":
            pytest.fail("NETBROKER_REQUIRE_BROWSER=1 but chromium/chromedriver are missing")
        pytest.skip("chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="nb-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=options)
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def monitored(busy: Engine) -> dict[str, Any]:  # noqa: F811
    """``busy`` and more: a foreign member of DE (MAN) and a refused candidate (RAL),
    a production task over the ESD whose jobs moved from DESY to LRZ, a boost, a
    failing cycle. Returns the engine and the ids the pages are opened at."""
    engine = busy
    end = time.time() - 60
    for dst, rate in (("MAN_DATADISK", 60.0), ("RAL_DATADISK", 2.0)):
        ingest(engine, "fts", fts_transfers("FZK_DATADISK", dst, rate, 4, end, tag="b"),
               now_s=end + 60)
    assert [(c.site, c.change) for c in clouds.recompute(engine, CloudSettings())] == [
        ("MAN", "joined")]
    grid = {"files": 20, "queue_memory_mb": SMALL, "extra_dataset": "data23.ESD"}
    registry.import_grid_document(engine, mini_grid(
        {"data23.AOD": ["DESY_DATADISK"], "data23.ESD": ["FZK_TAPE"]}, **grid))
    production = tasks.submit(engine, tasks.parse_task(task_spec(
        name="reco.esd", user="prodsys", input_dataset=ESD, files_per_job=4)), Settings())
    registry.import_grid_document(engine, mini_grid(
        {"data23.AOD": ["DESY_DATADISK"], "data23.ESD": ["FZK_TAPE", "LRZ_DATADISK"]}, **grid))
    moved = rebroker(engine, Settings(), now=utcnow() + timedelta(hours=2))["moved"]
    assert moved, "no job moved"
    priority.add_boost(engine, 200, 24, user="alice", site="DESY", comment="deadline")
    now = utcnow()
    with engine.begin() as conn:
        cycles = CycleDB(conn)
        cycles.try_lease("collect", "test", now, 60, 300)
        cycles.record_run("collect", now, now, "esmond at ps.example answered 502")
    failed = tasks.list_jobs(engine, status="failed")[0]["id"]
    return {"engine": engine, "analysis": 1, "production": production["id"],
            "moved": moved[0]["job_id"], "failed": failed}


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def open_page(driver: Any, url: str, shot: str | None = None, refused: bool = False) -> Any:
    """Open ``url``, check the console (an error page's own status is all it may report
    when ``refused``), keep a screenshot named ``shot``; the page's main element."""
    from selenium.webdriver.common.by import By

    console_errors(driver)  # drain what earlier pages logged
    driver.get(url)
    assert driver.title.startswith("netbroker"), url
    errors = console_errors(driver)
    if refused:
        errors = [e for e in errors if not e.startswith(f"{url} - Failed to load resource")]
    assert errors == [], url
    if shot:
        height = driver.execute_script("return document.body.scrollHeight")
        driver.set_window_size(1400, min(max(height + 80, 700), 4000))
        driver.save_screenshot(str(SHOTS / f"{shot}.png"))
        driver.set_window_size(1400, 1000)
    return driver.find_element(By.TAG_NAME, "main") if "/monitor" in url or "/problems" in url \
        else driver.find_element(By.TAG_NAME, "body")


def text_of(driver: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(e.text for e in driver.find_elements(By.CSS_SELECTOR, css))


def test_every_page_shows_its_key_content(monitored: dict[str, Any], browser: Any,
                                          backend: str) -> None:
    d, ids = browser, monitored
    with LiveServer(monitored["engine"]) as server:
        def visit(path: str, name: str) -> str:
            return str(open_page(d, server.url + path, f"{backend}-{name}").text)

        page = visit("/monitor", "overview")
        assert "collect (failing)" in text_of(d, "#cycles-unwell")
        assert "DESY" in text_of(d, "#site-states") and "reco.esd" in text_of(d, "#recent-tasks")
        assert "MAN" in text_of(d, "main table .badge.foreign") or "foreign" in page
        assert "task.001" in visit("/monitor/tasks", "tasks")

        visit(f"/monitor/tasks/{ids['analysis']}", "task")
        assert "finished 1" in text_of(d, "#progress") and "failed 1" in text_of(d, "#progress")
        assert "data23:data23.AOD" in text_of(d, "#datasets")
        marked = text_of(d, "table.decision[data-kind=task] tr.marked")
        assert "DE" in marked and "chosen" in marked
        assert "transfer time, s (lower is better)" in text_of(
            d, "table.decision[data-kind=task] th")
        assert "1305" in text_of(d, "#task-errors")

        visit(f"/monitor/tasks/{ids['production']}", "task-rebrokered")
        assert "reco.esd" in text_of(d, "h1") and "moved" not in text_of(d, "#task-errors")

        visit("/monitor/jobs", "jobs")
        assert text_of(d, "#jobs td.state-failed") == "failed"

        visit(f"/monitor/jobs/{ids['moved']}", "job-rebrokered")
        assert "DESY_UCORE -> LRZ_UCORE" in text_of(d, "#timeline tr.move")
        assert "this job" in text_of(d, "table.decision[data-kind=job] tr.marked")
        assert "DESY_UCORE" in text_of(d, "table.decision[data-kind=job] tr.marked")
        moved_here = text_of(d, "table.decision[data-kind=rebrokerage] tr.marked")
        assert "LRZ_UCORE" in moved_here and "moved here" in moved_here
        assert "jobs moved here" in text_of(d, "table.decision[data-kind=rebrokerage] th")

        visit(f"/monitor/jobs/{ids['failed']}", "job")
        assert "payload exited with 3" in text_of(d, "#job") and text_of(d, "#log")

        assert "DESY" in visit("/monitor/sites", "sites")
        visit("/monitor/sites/DESY", "site")
        assert "DESY_UCORE" in text_of(d, "#queues") and "DESY_DATADISK" in text_of(
            d, "#endpoints")
        assert "FZK" in text_of(d, "#links") and "50%" in text_of(d, "#success")
        visit("/monitor/sites/MAN", "site-foreign")
        assert "foreign calculated member of DE" in text_of(d, "#memberships")

        assert "MAN" in text_of(d, "#clouds") if visit("/monitor/clouds", "clouds") else False
        visit("/monitor/clouds/DE", "cloud")
        assert "MAN" in text_of(d, "#foreign") and "60" in text_of(d, "#foreign")
        refused = text_of(d, "#refused")
        assert "RAL" in refused and "throughput 2 MB/s < 5 MB/s" in refused
        assert "data23:data23.AOD" in text_of(d, "#cloud-datasets")
        assert "joined" in text_of(d, "#history")

        visit("/monitor/datasets", "datasets")
        assert "data23:data23.ESD" in text_of(d, "#datasets")
        visit("/monitor/datasets/data23:data23.AOD", "dataset")
        assert "DESY_DATADISK" in text_of(d, "#replicas")
        assert "new" in text_of(d, "#pd2p") and "task.001" in text_of(d, "#readers")
        assert "200 GB" in text_of(d, "#dataset-size")

        visit("/monitor/users/alice", "user")
        assert "+200" in text_of(d, "#boosts") and "task.001" in text_of(d, "#user-tasks")
        assert "CPU-hours" in text_of(d, "#usage")

        visit("/monitor/network?cloud=DE", "network")
        assert "MB/s" in text_of(d, "#legend") and "higher is better" in text_of(d, "#legend")
        assert "UK" in text_of(d, "#heatmap th.group")
        visit("/monitor/network?cloud=DE&columns=clouds", "network-by-cloud")
        assert {"DE", "UK"} <= set(text_of(d, "#heatmap th.col").split())

        visit("/monitor/network/link?src=FZK&dst=DESY", "link")
        assert "throughput 1d fts" in text_of(d, "#windows tr.marked")
        image = d.find_element("id", "link-plot")
        assert d.execute_script("return arguments[0].complete && arguments[0].naturalWidth "
                                "> 100", image)

        visit("/monitor/replication", "replication")
        assert " GB" in text_of(d, "#decisions") and "GB 0.0" not in text_of(d, "#decisions")
        visit("/monitor/errors", "errors")
        assert "1305" in text_of(d, "#scatter") and "DESY" in text_of(d, "#scatter")


def test_unknown_ids_and_bad_filters_are_pages(monitored: dict[str, Any], browser: Any,
                                               backend: str) -> None:
    d = browser
    with LiveServer(monitored["engine"]) as server:
        open_page(d, server.url + "/monitor/jobs/999999", f"{backend}-error-404", refused=True)
        assert text_of(d, "#error-title") == "404: Unknown job"
        open_page(d, server.url + "/monitor/jobs?state=bogus", f"{backend}-error-400",
                  refused=True)
        assert text_of(d, "#error-title") == "400: Invalid filter"
        assert text_of(d, ".bad-field") == "state"
        for path in ("/monitor/network?cloud=XX", "/monitor/tasks?status=bogus",
                     "/monitor/network/link?src=NOWHERE&dst=FZK", "/monitor/users/nobody"):
            open_page(d, server.url + path, refused=True)
            assert text_of(d, "#error-title").split(":")[0] in ("400", "404"), path


def test_walk_from_the_overview_to_a_dataset_by_clicking(monitored: dict[str, Any],
                                                         browser: Any, backend: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser

    def click(css: str, heading: str) -> None:
        d.find_element(By.CSS_SELECTOR, css).click()
        WebDriverWait(d, 30).until(lambda drv: drv.find_element(
            By.TAG_NAME, "h1").text.startswith(heading))
        assert console_errors(d) == []

    with LiveServer(monitored["engine"]) as server:
        open_page(d, server.url + "/")  # the root leads to the monitor
        assert d.find_element(By.TAG_NAME, "h1").text == "Overview"
        click("#recent-tasks a[href^='/monitor/tasks/']", "Task ")
        click("#task-jobs a[href^='/monitor/jobs/']", "Job ")
        click("#site-link", "Site ")
        click("#cloud-link", "Cloud ")
        click("#cloud-datasets a[href^='/monitor/datasets/']", "Dataset ")
        assert text_of(d, "#replicas")
        d.save_screenshot(str(SHOTS / f"{backend}-walk-end.png"))


def test_filters_and_the_heatmap_lead_to_a_link(monitored: dict[str, Any], browser: Any,
                                                backend: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    d = browser
    with LiveServer(monitored["engine"]) as server:
        open_page(d, server.url + "/monitor/jobs")
        Select(d.find_element(By.NAME, "state")).select_by_value("failed")
        d.find_element(By.CSS_SELECTOR, "form.filters button").click()
        WebDriverWait(d, 30).until(lambda drv: "state=failed" in drv.current_url)
        assert [td.text for td in d.find_elements(By.CSS_SELECTOR,
                                                  "#jobs td:nth-child(4)")] == ["failed"]
        open_page(d, server.url + "/monitor/network?cloud=DE")
        cells = d.find_elements(By.CSS_SELECTOR, "#heatmap td a")
        assert cells, "the heatmap has no measured cell"
        colour = cells[0].find_element(By.XPATH, "..").value_of_css_property(
            "background-color")
        assert colour not in ("rgba(0, 0, 0, 0)", "transparent")
        cells[0].click()
        WebDriverWait(d, 30).until(lambda drv: drv.find_elements(By.ID, "link-plot"))
        assert console_errors(d) == []


def test_the_matrix_stays_readable_at_150_sites(grid_engine: Engine, browser: Any,
                                                backend: str) -> None:
    """The shipped 152-site grid, one DE site measured to every other: the columns
    are grouped under their clouds' names and their labels keep a legible size."""
    import sqlalchemy as sa
    from selenium.webdriver.common.by import By

    from netbroker.db.schema import endpoints, sites

    with grid_engine.connect() as conn:
        disks = dict(conn.execute(sa.select(sites.c.name, sa.func.min(endpoints.c.name))
                                  .join(endpoints, endpoints.c.site_id == sites.c.id)
                                  .where(endpoints.c.kind == "disk")
                                  .group_by(sites.c.name)).all())
    end = time.time() - 60
    lines = [fts_transfers(disks["FZK-LCG2"], rse, 5.0 + (i % 40), 3, end, tag=f"m{i}")
             for i, (site, rse) in enumerate(sorted(disks.items())) if site != "FZK-LCG2"]
    ingest(grid_engine, "fts", "\n".join(lines), now_s=end + 60)
    d = browser
    with LiveServer(grid_engine) as server:
        open_page(d, server.url + "/monitor/network?cloud=DE", f"{backend}-network-150")
        labels = d.find_elements(By.CSS_SELECTOR, "#heatmap th.col")
        assert len(labels) >= 140
        assert len(d.find_elements(By.CSS_SELECTOR, "#heatmap th.group")) == 12
        sizes = {float(e.value_of_css_property("font-size").removesuffix("px"))
                 for e in labels[:5]}
        assert min(sizes) >= 9, sizes
        widths = [e.size["width"] for e in labels[:20]]
        assert min(widths) >= 20, widths  # a column per site, wide enough for its label
        open_page(d, server.url + "/monitor/network?cloud=DE&columns=clouds",
                  f"{backend}-network-150-by-cloud")
        assert len(d.find_elements(By.CSS_SELECTOR, "#heatmap th.col")) == 12


def test_api_docs_render_from_packaged_assets(sqlite_template: Path, tmp_path: Path,
                                              browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from netbroker.db import create_db_engine

    shutil.copyfile(sqlite_template, tmp_path / "docs.db")
    engine = create_db_engine(f"sqlite:///{tmp_path / 'docs.db'}")
    d = browser
    with LiveServer(engine) as server:
        d.get(server.url + "/docs")
        WebDriverWait(d, 60).until(lambda drv: drv.find_elements(By.CSS_SELECTOR,
                                                                  ".opblock"))
        assert d.find_elements(By.CSS_SELECTOR, ".btn.authorize"), "no Authorize button"
        assert "netbroker" in d.find_element(By.CSS_SELECTOR, ".info .title").text
        loaded = d.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(u.startswith(server.url) for u in loaded), loaded
        assert console_errors(d) == []
        d.save_screenshot(str(SHOTS / "docs-swagger.png"))
        d.get(server.url + "/redoc")
        WebDriverWait(d, 60).until(lambda drv: drv.find_elements(By.CSS_SELECTOR,
                                                                  ".api-info h1"))
        assert "netbroker" in d.find_element(By.CSS_SELECTOR, ".api-info h1").text
        loaded = d.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)")
        assert all(u.startswith((server.url, "blob:", "data:")) for u in loaded), loaded
        assert console_errors(d) == []
        d.save_screenshot(str(SHOTS / "docs-redoc.png"))
        open_page(d, server.url + "/problems/unknown-site", "problem-type")
        assert "Unknown site" in text_of(d, "#problem-title")
    engine.dispose()
