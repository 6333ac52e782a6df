"""Browser tests: Playwright (sync API) driving Debian's chromium against the real app.

* ``browser``: one headless chromium per session; the tests skip when it is not
  installed (``apt-get install -y chromium``; never ``playwright install``).
* ``studio``: the app with its UI under uvicorn (``tests.conftest.run_server``),
  pointed at the fake hub through the ``settings`` fixture.
* ``page``/``new_page``: fresh browser contexts (no shared storage between them).

Everything waits on conditions (``expect``, ``wait_for_function``) with generous
timeouts, never on fixed sleeps: these tests run on loaded two-core machines.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest

from tests.conftest import LiveServer, run_server

CHROMIUM = Path(os.environ.get("STUDIO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 30_000
SCREENSHOTS = Path(os.environ.get("STUDIO_SCREENSHOTS", "test-results/screenshots"))

# Records every EventSource the page opens, so tests can prove it opens none of its own.
COUNT_EVENT_SOURCES = """
(() => {
  const Native = window.EventSource;
  window.__eventSources = [];
  if (!Native) return;
  window.EventSource = function (url, init) {
    window.__eventSources.push(String(url));
    return new Native(url, init);
  };
  window.EventSource.prototype = Native.prototype;
})();
"""


@pytest.fixture(scope="package")  # not session: Playwright's sync API keeps an event loop
def browser():  # running in the main thread, which would break later tests' asyncio.run()
    if not CHROMIUM.exists():
        pytest.skip(f"chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def studio(settings) -> Iterator[LiveServer]:
    with run_server(settings, ui=True) as live:
        yield live


@pytest.fixture
def open_page(browser) -> Iterator[Callable]:
    """``open_page(url)``: a new browser context (another user, another window) on ``url``, ready."""
    contexts = []

    def open_url(url: str):
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(COUNT_EVENT_SOURCES)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
        page.locator("#transcribe-btn").wait_for()
        return page

    yield open_url
    for context in contexts:
        context.close()


@pytest.fixture
def new_page(open_page, studio) -> Callable:
    """Open the studio in a new browser context (like another user or another window)."""
    return lambda: open_page(studio.url)


@pytest.fixture
def page(new_page):
    return new_page()


# --- helpers --------------------------------------------------------------------------------------
def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name, exact=True).click()


def choose(page, elem_id: str, value: str) -> None:
    """Pick ``value`` in the Gradio dropdown ``#elem_id`` the way a person does."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    page.get_by_role("option", name=value, exact=True).click()
    from playwright.sync_api import expect

    expect(box).to_have_value(value)


def model_row(page, model_id: str, container: str = "#models-table"):
    return page.locator(f'{container} [data-model="{model_id}"]')


def row_bytes(page, model_id: str, container: str = "#models-table") -> int:
    return int(model_row(page, model_id, container).get_attribute("data-bytes") or 0)


def wait_row_bytes_above(page, model_id: str, floor: int, container: str = "#models-table") -> int:
    """Wait until the row shows more than ``floor`` bytes done; return what it shows."""
    page.wait_for_function(
        """([sel, floor]) => {
            const row = document.querySelector(sel);
            return row && Number(row.dataset.bytes) > floor;
        }""",
        arg=[f'{container} [data-model="{model_id}"]', floor],
    )
    return row_bytes(page, model_id, container)


STATUS_RE = {
    "busy": re.compile(r"^(waiting|downloading)$"),
    "downloading": re.compile(r"^downloading$"),
    "downloaded": re.compile(r"^downloaded$"),
}


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


# --- transcription helpers ------------------------------------------------------------------------
FINISHED_RE = re.compile(r"^(done|error|cancelled)$")
SRT_TIME = re.compile(r"(\d\d):(\d\d):(\d\d),(\d\d\d) --> (\d\d):(\d\d):(\d\d),(\d\d\d)")


def upload(page, *paths: Path) -> None:
    """Put files into the Transcribe tab's file input and wait until it lists them (uploaded)."""
    from playwright.sync_api import expect

    page.locator("#audio-input input[type=file]").set_input_files([str(p) for p in paths])
    for path in paths:  # Gradio lists "one.wav" as "one" and ".wav" in separate elements
        name = re.compile(re.escape(path.stem) + r"\s*" + re.escape(path.suffix))
        expect(page.locator("#audio-input")).to_contain_text(name)


def job_rows(page):
    return page.locator("#jobs-table tr[data-job]")


def job_row(page, file_name: str):
    return job_rows(page).filter(has=page.locator(".c-file", has_text=file_name))


def wait_finished(row, timeout_ms: int = 240_000) -> str:
    """Wait until a job row is done/error/cancelled; fail with its text unless it is done."""
    from playwright.sync_api import expect

    expect(row).to_have_attribute("data-status", FINISHED_RE, timeout=timeout_ms)
    status = row.get_attribute("data-status")
    assert status == "done", row.inner_text()
    return status


def segment_cells(page) -> list[list[str]]:
    """The segment table's cells, checked: start <= end, in order, text in every row, word timings."""
    from playwright.sync_api import expect

    table = page.locator("#segments-table")
    expect(table.locator('tr[data-row="0"] td[data-col="0"]')).to_be_visible()
    cells = table.evaluate(
        """(el) => [...el.querySelectorAll('tr[data-row]')].map(
            (tr) => [...tr.querySelectorAll('td[data-col]')].map((td) => td.innerText.trim()))"""
    )
    assert cells, "no segments shown"
    times = [(clock(row[0]), clock(row[1])) for row in cells]
    assert all(start <= end for start, end in times), times
    assert [t[0] for t in times] == sorted(t[0] for t in times)
    assert all(row[2] for row in cells), cells  # every segment has text
    assert re.search(r"\d+\.\d\d–\d+\.\d\d", " ".join(row[3] for row in cells)), cells  # word timings
    return cells


def fetch_srt(page, row) -> str:
    """Follow the row's SRT link as the browser would (no token in the URL); check its cues."""
    href = row.locator('a[data-format="srt"]').get_attribute("href")
    response = page.request.get(urljoin(page.url, href))
    assert response.status == 200, (response.status, response.text())
    srt = response.text()
    cues = [srt_span(m) for m in SRT_TIME.finditer(srt)]
    assert cues, srt
    assert all(start < end for start, end in cues), cues
    assert [c[0] for c in cues] == sorted(c[0] for c in cues)
    assert srt.lstrip().startswith("1\n")
    return srt


def clock(text: str) -> float:
    """'1:02.50' or '1:01:02.50' -> seconds."""
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def srt_span(m: re.Match) -> tuple[int, int]:
    g = [int(x) for x in m.groups()]
    return (
        ((g[0] * 60 + g[1]) * 60 + g[2]) * 1000 + g[3],
        ((g[4] * 60 + g[5]) * 60 + g[6]) * 1000 + g[7],
    )
