"""The status page in a real headless browser, against a running ``tuya-events demo``.

Debian's chromium driven through its chromedriver by Selenium (installed by
``scripts/ensure-browser.sh``, a step of ``make test-deps``); Selenium is always given the
driver's path, so nothing is downloaded. Screenshots go to the test's tmp_path (printed).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import read_dead_letters, start_demo, wait_until_serving
from tests.support.ports import free_port
from tests.support.waiting import wait_for
from tuya_events.transport.simulator import KINDS, device_name

selenium = pytest.importorskip("selenium", reason="selenium: pip install -e '.[dev]'")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

DEVICES = 6  # the demo's default
DEMO_NAMES = {device_name(KINDS[i % len(KINDS)], i // len(KINDS)) for i in range(DEVICES)}
UNITS = {"va_temperature": "℃", "va_humidity": "%", "cur_power": "W", "battery_percentage": "%"}
WAIT = 30.0


def _executable(variable: str, *candidates: str) -> str:
    """$VARIABLE, else the first candidate on PATH or at its absolute path (as the script)."""
    for candidate in (os.environ.get(variable), *candidates):
        if not candidate:
            continue
        found = candidate if "/" in candidate else shutil.which(candidate)
        if found and os.access(found, os.X_OK) and not os.path.isdir(found):
            return found
    pytest.fail(f"{candidates[0]} not found: run `make test-deps` (scripts/ensure-browser.sh)")


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[webdriver.Chrome]:
    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager, should it run, stays offline
    options = webdriver.ChromeOptions()
    options.binary_location = _executable(
        "CHROMIUM", "chromium", "chromium-browser", "/usr/lib/chromium/chromium"
    )
    for argument in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root here
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console
    service = Service(
        executable_path=_executable(
            "CHROMEDRIVER", "chromedriver", "/usr/lib/chromium/chromedriver"
        )
    )
    driver = webdriver.Chrome(options=options, service=service)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A demo on a free port: (port, its output file, its dead-letter store)."""
    port = free_port()
    state = tmp_path / "state"
    output = tmp_path / "demo.log"
    with output.open("w") as out:
        process = start_demo(
            port, state, "--duration", "120", "--rate", "10", "--seed", "7", stdout=out
        )
    try:
        wait_until_serving(port, process, "/readyz", detail=output.read_text)
        yield port, output, state / "dead-letters.sqlite3"
        process.send_signal(signal.SIGTERM)
        process.wait(30)
        assert process.returncode == 0, output.read_text()[-3000:]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


# Read in one script, at one instant: the page redraws its lists every few seconds, so elements
# found one call earlier may be gone by the next.
READ_DEVICES = """
const shown = {};
for (const card of document.querySelectorAll(".device")) {
  const values = {};
  for (const value of card.querySelectorAll("dd.value")) {
    values[value.dataset.code] = value.textContent;
  }
  shown[card.querySelector(".device-name").textContent] = values;
}
return shown;
"""
READ_DEAD_LETTERS = """
return Array.from(document.querySelectorAll(".dead-letter[data-id]"),
                  (item) => [item.dataset.id, item.innerText]);
"""


def device_values(driver: webdriver.Chrome) -> dict[str, dict[str, str]]:
    """``{device name: {code: shown text}}`` as the page shows them now."""
    return driver.execute_script(READ_DEVICES)


def wait_until(what: str, condition, driver: webdriver.Chrome):
    """Poll ``condition()`` until it returns something truthy; that is returned."""
    found: list = []

    def check() -> bool:
        result = condition()
        if result:
            found.append(result)
        return bool(result)

    wait_for(check, WAIT, what, lambda: driver.find_element(By.TAG_NAME, "body").text)
    return found[-1]


def test_the_status_page_shows_the_demo_live(browser, demo, tmp_path: Path) -> None:
    port, output, store = demo
    url = f"http://127.0.0.1:{port}/"
    assert output.read_text().splitlines()[0] == f"status page: {url}"  # the first thing printed

    browser.get(url)
    browser.execute_script("window.notReloaded = true;")

    def all_devices_with_values():
        shown = device_values(browser)
        complete = set(shown) == DEMO_NAMES and all(shown.values())
        return shown if complete else None

    first = wait_until("the demo's devices with values", all_devices_with_values, browser)
    units_seen = set()
    for values in first.values():
        for code, text in values.items():
            if code in UNITS:
                assert text.endswith(" " + UNITS[code]), (code, text)
                units_seen.add(code)
            if code == "va_temperature":  # raw 180..260 with scale 1: shown as 18.0..26.0
                assert re.fullmatch(r"\d\d\.\d ℃", text), text
                assert 18.0 <= float(text.split()[0]) <= 26.0
            if code == "cur_power":
                assert re.fullmatch(r"\d+\.\d W", text), text
    assert {"va_temperature", "cur_power", "battery_percentage"} <= units_seen

    def changed():
        now = device_values(browser)
        return any(now.get(name, {}).get(code) not in (None, text)
                   for name, values in first.items() for code, text in values.items())  # fmt: skip

    wait_until("a value to change as the simulator reports", changed, browser)
    assert browser.execute_script("return window.notReloaded === true;")  # live, no reload
    assert browser.find_element(By.ID, "connection-state").text == "connected"

    def a_dead_letter():
        return browser.execute_script(READ_DEAD_LETTERS)

    shown = wait_until("the demo's dead letter", a_dead_letter, browser)
    records = {str(record["id"]): record for record in read_dead_letters(store)}
    record_id, text = shown[0]
    assert record_id in records
    assert text.startswith(records[record_id]["reason"])
    assert records[record_id]["message"][:40] in text
    count = int(browser.find_element(By.ID, "dead-letter-count").text.replace(",", ""))
    assert count >= len(shown)

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []  # no script error, no refused resource (the page's CSP holds)

    wide = tmp_path / "status-page.png"
    browser.save_screenshot(str(wide))
    print(f"\nscreenshot: {wide}")

    browser.set_window_size(390, 844)  # a phone: nothing may need sideways scrolling
    overflow = "return document.documentElement.scrollWidth - window.innerWidth;"
    wait_for(lambda: browser.execute_script(overflow) <= 0, 10, "the page to fit a phone",
             lambda: f"{browser.execute_script(overflow)}px too wide")  # fmt: skip
    phone = tmp_path / "status-page-phone.png"
    browser.save_screenshot(str(phone))
    print(f"screenshot: {phone}")
