"""The monitor in real headless Chromium (Selenium): every page loads with no console
error, the job filters work, the heatmap renders and opens a link's history plot.

Screenshots of the key pages go to ``screenshots/`` for review. Skipped when
Debian's ``chromium`` and ``chromium-driver`` are missing, unless
NETBROKER_REQUIRE_BROWSER=1 (then it fails).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.conftest import LiveServer
from tests.test_monitor import PAGES, busy  # noqa: F401  (the fixture)

pytestmark = pytest.mark.browser
SHOTS = Path(__file__).resolve().parent.parent / "screenshots"


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver_bin):
        if os.environ.get("NETBROKER_REQUIRE_BROWSER") == "1":
            pytest.fail("NETBROKER_REQUIRE_BROWSER=1 but chromium/chromedriver are missing")
        pytest.skip("chromium and chromium-driver are not installed")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_bin), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def console_errors(driver: object) -> list[str]:
    return [e["message"] for e in driver.get_log("browser")  # type: ignore[attr-defined]
            if e["level"] == "SEVERE"]


def test_monitor_pages_filters_and_heatmap_in_chromium(busy: Engine,  # noqa: F811
                                                       browser: object, backend: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver = browser
    SHOTS.mkdir(exist_ok=True)
    with LiveServer(busy) as server:
        for page in PAGES:
            driver.get(server.url + page)  # type: ignore[attr-defined]
            assert driver.title.startswith("netbroker monitor"), page  # type: ignore[attr-defined]
            assert console_errors(driver) == [], page
            name = page.strip("/").replace("/", "_").split("?")[0] or "overview"
            driver.save_screenshot(str(SHOTS / f"{backend}-{name}.png"))  # type: ignore[attr-defined]

        driver.get(server.url + "/monitor/jobs")  # type: ignore[attr-defined]
        Select(driver.find_element(By.NAME, "state")).select_by_value("failed")  # type: ignore[attr-defined]
        driver.find_element(By.CSS_SELECTOR, "form.filters button").click()  # type: ignore[attr-defined]
        WebDriverWait(driver, 30).until(lambda d: "state=failed" in d.current_url)
        states = [td.text for td in driver.find_elements(  # type: ignore[attr-defined]
            By.CSS_SELECTOR, "#jobs td:nth-child(4)")]
        assert states == ["failed"]

        driver.find_element(By.CSS_SELECTOR, "#jobs td a").click()  # type: ignore[attr-defined]
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "timeline"))
        assert driver.find_elements(By.CSS_SELECTOR, "table.decision")  # type: ignore[attr-defined]
        assert driver.find_element(By.ID, "log-download")  # type: ignore[attr-defined]
        assert console_errors(driver) == []
        driver.save_screenshot(str(SHOTS / f"{backend}-job.png"))  # type: ignore[attr-defined]

        driver.get(server.url + "/monitor/network?cloud=DE")  # type: ignore[attr-defined]
        cells = driver.find_elements(By.CSS_SELECTOR, "#heatmap td a")  # type: ignore[attr-defined]
        assert cells, "the heatmap has no measured cell"
        colour = cells[0].find_element(By.XPATH, "..").value_of_css_property("background-color")
        assert colour not in ("rgba(0, 0, 0, 0)", "transparent")
        cells[0].click()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "link-plot"))
        image = driver.find_element(By.ID, "link-plot")  # type: ignore[attr-defined]
        WebDriverWait(driver, 30).until(lambda d: d.execute_script(
            "return arguments[0].complete && arguments[0].naturalWidth > 100", image))
        assert console_errors(driver) == []
        driver.save_screenshot(str(SHOTS / f"{backend}-link.png"))  # type: ignore[attr-defined]
