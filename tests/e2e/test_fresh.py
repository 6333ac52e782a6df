"""A newcomer's first transcription in the browser, against a fresh `python app.py` process.

Nothing is preloaded or imported: the server starts as a user starts it (its own
process, defaults everywhere, pointed at the test hub through the environment), and
the page is used with every default except model (tiny) and language (zh). The
device stays "auto": that is the path that once handed "auto" to whisperx.
Throughout, a thread polls /api/preload/status and /api/system every 20 ms; every
answer must be 200 (they once answered 500 while torch was half imported).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from playwright.sync_api import expect

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
from tests.fresh import Poller, fresh_server

POLLED = ("/api/preload/status", "/api/system")
FIRST_JOB_TIMEOUT_MS = 300_000  # imports torch + whisperx, downloads and loads both models


def test_first_transcription_in_a_fresh_process_with_the_page_defaults(browser, settings, tiny, tmp_path):
    with fresh_server(settings, tmp_path, ui=True) as app:
        with Poller([app.url + path for path in POLLED]) as poller:
            _first_transcription(browser, app.url, tiny, tmp_path)
        log = app.output()
    assert poller.polls > 100, poller.polls
    assert not poller.failures, (poller.failures[:5], log[-4000:])
    assert "Traceback" not in log, log[-4000:]


def _first_transcription(browser, url: str, tiny, tmp_path: Path) -> None:
    contexts = []

    def open_page():
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(TIMEOUT_MS)
        context.add_init_script(COUNT_EVENT_SOURCES)
        contexts.append(context)
        page = context.new_page()
        page.goto(url)
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
        for context in contexts:
            context.close()
