"""The page as a reviewer sees it: headless Chromium opens it from disk with no errors."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from dcgan.report import render_report
from tests.report.conftest import SEEDS, build_results

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "reports" / "screenshots"
WINDOW = (1400, 4000)
SCRIPT_ARM = "<script>alert(1)</script>"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
    pytest.skip(
        f"needs Debian chromium and chromium-driver ({CHROMIUM}, {CHROMEDRIVER})",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    yield chrome
    chrome.quit()


def _severe_logs(driver) -> list[dict]:
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def _broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.images)"
        ".filter(img => !(img.complete && img.naturalWidth > 0)).map(img => img.alt)"
    )


def _full_page_screenshot(driver, path: Path) -> None:
    """Chrome's DevTools capture beyond the viewport: the whole page in one PNG."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


def _load_cleanly(driver, page: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.resolve().as_uri())
    # get() can return at "interactive" on a loaded machine (CI saw it); wait for the load event,
    # bounded, so a page that never finishes loading still fails here.
    WebDriverWait(driver, 60).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    assert _severe_logs(driver) == []
    assert driver.execute_script("return document.images.length") > 0
    assert _broken_images(driver) == []


def test_report_loads_without_errors_and_every_image_shows(driver, results, tmp_path):
    _load_cleanly(driver, render_report(results, tmp_path))
    _full_page_screenshot(driver, SCREENSHOTS / "test_report.png")


def test_part_done_report_loads_with_its_banner(driver, tmp_path):
    unfinished = {("lr 3e-4", 2): "missing"} | {("G selu / D selu", s): "waiting" for s in SEEDS}
    page = render_report(build_results(tmp_path, unfinished=unfinished), tmp_path / "out")
    _load_cleanly(driver, page)
    banner = driver.find_element("css selector", ".banner").text
    assert banner.startswith("5 of 9 runs done")
    _full_page_screenshot(driver, SCREENSHOTS / "test_report_part_done.png")


def test_script_in_an_arm_name_is_shown_as_text(driver, tmp_path):
    from selenium.common.exceptions import NoAlertPresentException

    arms = {"baseline": {}, SCRIPT_ARM: {}, "G selu / D selu": {}}
    page = render_report(build_results(tmp_path, arms=arms, name="escape"), tmp_path / "out")
    assert "&lt;script&gt;" in page.read_text()
    driver.get(page.resolve().as_uri())
    with pytest.raises(NoAlertPresentException):
        _ = driver.switch_to.alert
    assert SCRIPT_ARM in driver.find_element("tag name", "body").text
    assert driver.execute_script("return document.scripts.length") == 0
