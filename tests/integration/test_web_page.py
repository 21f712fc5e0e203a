"""The status page in headless Chromium: it loads, lists the nodes and shows new events without a reload."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from pypxe_homelab.events import Event
from tests.integration.web_harness import PC, PC_MAC, PI, WebServer, make_runtime

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser():
    if not CHROMIUM or not CHROMEDRIVER:
        pytest.skip("headless Chromium not available: install Debian packages chromium and chromium-driver")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium not installed: pip install selenium")
    profile = tempfile.mkdtemp(prefix="pypxe-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--window-size=390,844",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    return driver, profile


def _wait(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as exc:  # the page is still rendering
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {last!r}")


@pytest.fixture
def page(tmp_path: Path):
    with WebServer(make_runtime(tmp_path)) as server:
        driver, profile = _browser()
        try:
            yield server, driver
        finally:
            driver.quit()
            shutil.rmtree(profile, ignore_errors=True)


def test_page_lists_nodes_and_updates_live(page) -> None:
    from selenium.webdriver.common.by import By

    server, driver = page
    server.runtime.emit(
        Event("dhcp.offer", "0.0.0.0:68", PC, PC_MAC, {"arch": 7, "class": "efi64", "port": 67})
    )
    driver.get(server.url + "/")
    rows = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#nodes tbody tr"), what="node rows")
    ids = [r.get_attribute("data-id") for r in rows]
    assert ids == [PC, PI]
    assert "web1" in rows[0].text and "booting" in rows[0].text
    _wait(lambda: driver.find_element(By.ID, "live").text == "live", what="the event stream")

    # A new event arrives: the table changes without a reload (a progress bar appears).
    driver.execute_script("window.__marker = 1")
    server.runtime.emit(
        Event(
            "install.event",
            "10.231.0.50:1",
            PC,
            PC_MAC,
            {"name": "subiquity/Install/install/curtin_install", "event_type": "start"},
        )
    )
    bar = _wait(lambda: driver.find_element(By.CSS_SELECTOR, f'tr[data-id="{PC}"] .bar'), what="progress bar")
    assert bar.get_attribute("aria-valuenow") == "22"
    assert driver.execute_script("return window.__marker") == 1  # same page, not reloaded

    # The node's timeline, then one more event shown live.
    driver.find_element(By.LINK_TEXT, "web1").click()
    _wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#timeline li")) == 2, what="timeline")
    server.runtime.emit(
        Event(
            "install.event",
            "10.231.0.50:1",
            PC,
            PC_MAC,
            {"name": "subiquity/Install/install", "event_type": "finish", "result": "SUCCESS"},
        )
    )
    first = _wait(
        lambda: driver.find_elements(By.CSS_SELECTOR, "#timeline li")[0].text.count("SUCCESS"),
        what="new timeline entry",
    )
    assert first and "installed" in driver.find_element(By.ID, "node-title").text
    assert driver.execute_script("return window.__marker") == 1
