"""A newcomer's first transcription in the browser, against a fresh `python app.py` process.

Nothing is preloaded or imported: the server starts as a user starts it (its own
process, defaults everywhere, pointed at the test hub through the environment), and
the page is used with every default except model (tiny) and language (zh). The
device stays "auto": that is the path that once handed "auto" to whisperx.
Throughout, a thread polls /api/preload/status and /api/system every 20 ms; every
answer must be 200 (they once answered 500 while torch was half imported).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import PUNKT_ZIP, wait_until
from tests.e2e.conftest import (
    COUNT_EVENT_SOURCES,
    TIMEOUT_MS,
    choose,
    fetch_srt,
    job_row,
    job_rows,
    screenshot,
    segment_cells,
    upload,
    wait_finished,
)

ROOT = Path(__file__).resolve().parents[2]
POLLED = ("/api/preload/status", "/api/system")
FIRST_JOB_TIMEOUT_MS = 300_000  # imports torch + whisperx, downloads and loads both models


@dataclass
class Poller:
    """GET each of ``POLLED`` every ``every_s`` on its own thread; remember every answer that is not 200."""

    base: str
    every_s: float = 0.02
    answers: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="poller", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as client:
            while not self._stop.is_set():
                for path in POLLED:
                    try:
                        response = client.get(path)
                        if response.status_code != 200:
                            self.failures.append(f"{path}: {response.status_code} {response.text[:300]}")
                    except httpx.HTTPError as exc:
                        self.failures.append(f"{path}: {exc!r}")
                    self.answers += 1
                self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)


@dataclass
class FreshServer:
    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fresh_server(hub, tmp_path: Path) -> Iterator[FreshServer]:
    """``python app.py --port P`` in its own process, configured only through the environment."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "MODELMGR_", "TORCH_"))}
    env.update(
        HF_ENDPOINT=hub.url,
        HF_HOME=str(tmp_path / "hf"),
        TORCH_HOME=str(tmp_path / "torch"),
        MODELMGR_TORCH_MODELS_BASE_URL=f"{hub.url}/torchaudio/models",
        MODELMGR_NLTK_PUNKT_URL=f"{hub.url}{PUNKT_ZIP}",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = FreshServer(f"http://127.0.0.1:{port}", process, log)

    def up() -> bool:
        assert process.poll() is None, f"app.py exited ({process.returncode}):\n{server.log_tail()}"
        try:
            return httpx.get(server.url + "/", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, 120, "app.py to serve the page")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)


def test_first_transcription_in_a_fresh_process_with_the_page_defaults(
    browser, fresh_server, hub, tiny, tmp_path
):
    poller = Poller(fresh_server.url)
    poller.start()
    contexts = []

    def open_page():
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(COUNT_EVENT_SOURCES)
        contexts.append(context)
        page = context.new_page()
        page.goto(fresh_server.url)
        page.locator("#transcribe-btn").wait_for()
        return page

    try:
        page = open_page()
        # The page's defaults, as a newcomer finds them.
        expect(page.locator("#tx-model input")).to_have_value("small")
        expect(page.locator("#tx-language input")).to_have_value("auto")
        expect(page.locator("#tx-device input")).to_have_value(re.compile(r"^auto \((cpu|cuda)\)$"))
        upload(page, tiny.wav)
        choose(page, "tx-model", "tiny")
        choose(page, "tx-language", "zh")
        page.locator("#transcribe-btn").click()
        expect(page.locator("#transcribe-stage")).to_contain_text("Queued 1 file")
        first = job_row(page, tiny.wav.name)
        wait_finished(first, FIRST_JOB_TIMEOUT_MS)
        expect(first.locator(".c-model")).to_contain_text(re.compile(r"tiny · zh · (cpu|cuda)"))
        segment_cells(page)
        fetch_srt(page, first)
        screenshot(page, "fresh-first-transcription")

        # Two files at once: two rows, both done.
        pair = [tmp_path / "one.wav", tmp_path / "two.wav"]
        for path in pair:
            shutil.copyfile(tiny.wav, path)
        upload(page, *pair)
        page.locator("#transcribe-btn").click()
        expect(page.locator("#transcribe-stage")).to_contain_text("Queued 2 files")
        expect(job_rows(page)).to_have_count(3)
        for path in pair:
            wait_finished(job_row(page, path.name))
        ids = job_rows(page).evaluate_all("(rows) => rows.map((r) => r.dataset.job)")

        # A reload keeps the rows and their links; a second page sees the same queue.
        page.reload()
        page.locator("#transcribe-btn").wait_for()
        expect(job_rows(page)).to_have_count(3)
        assert job_rows(page).evaluate_all("(rows) => rows.map((r) => r.dataset.job)") == ids
        for path in (tiny.wav, *pair):
            row = job_row(page, path.name)
            expect(row).to_have_attribute("data-status", "done")
            fetch_srt(page, row)
        segment_cells(page)
        second = open_page()
        expect(job_rows(second)).to_have_count(3)
        assert job_rows(second).evaluate_all("(rows) => rows.map((r) => r.dataset.job)") == ids
        screenshot(second, "fresh-second-page")

        # Show picks the job whose segments a page shows (the newest finished one until then).
        newest = job_row(second, "two.wav").get_attribute("data-job")
        expect(second.locator(f'#segments-table [data-job="{newest}"]')).to_be_visible()
        one = job_row(second, "one.wav")
        one_id = one.get_attribute("data-job")
        one.locator('button[data-action="show"]').click()
        expect(second.locator(f'#segments-table [data-job="{one_id}"]')).to_be_visible()
        expect(one).to_have_class(re.compile(r"\bmm-shown\b"))
        segment_cells(second)
        expect(page.locator(f'#segments-table [data-job="{newest}"]')).to_be_visible()  # per page
        for each in (page, second):
            opened = each.evaluate("window.__eventSources")
            assert not [url for url in opened if "/api/events" in url], opened
    finally:
        poller.stop()
        for context in contexts:
            context.close()
    assert poller.answers > 100, poller.answers
    assert not poller.failures, (poller.failures[:5], fresh_server.log_tail())
    assert "Traceback" not in fresh_server.log.read_text(errors="replace"), fresh_server.log_tail()
