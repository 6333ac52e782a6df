"""The studio in a real browser: three-stage buttons, progress that survives closing,
switching and reloading, one transfer per double click, many pages without extra
SSE subscribers, a transcription end to end with the tiny models, and the job queue."""

from __future__ import annotations

import re
import shutil
import time

from playwright.sync_api import expect

from tests.conftest import wait_until
from tests.e2e.conftest import (
    STATUS_RE,
    choose,
    fetch_srt,
    job_row,
    job_rows,
    model_row,
    open_tab,
    row_bytes,
    screenshot,
    segment_cells,
    upload,
    wait_finished,
    wait_row_bytes_above,
)

TINY_REPO = "Systran/faster-whisper-tiny"
PANEL = "#panel-models"
QUEUE_JOIN = "**/queue/join*"


def server_bytes(live, model_id: str = "tiny") -> int:
    model = live.services.downloads.describe(live.services.catalog.get(model_id))
    return int(model["progress"]["bytes_done"] or 0)


def server_status(live, model_id: str = "tiny") -> str:
    return live.services.downloads.describe(live.services.catalog.get(model_id))["status"]


def wait_stalled(live, quiet_s: float = 1.0) -> int:
    """Wait until the server's byte count has not moved for ``quiet_s``; return it."""
    state = {"bytes": -1, "since": time.monotonic()}

    def stalled() -> bool:
        now = server_bytes(live)
        if now != state["bytes"]:
            state.update(bytes=now, since=time.monotonic())
        return now > 0 and time.monotonic() - state["since"] >= quiet_s

    wait_until(stalled, 30, "the transfer to stall")
    return state["bytes"]


def start_in_models_tab(page, model_id: str = "tiny") -> None:
    """Select the model in the Models tab and click Download."""
    open_tab(page, "Models")
    choose(page, "model-select", model_id)
    expect(page.locator("#download-btn")).to_be_enabled()
    page.locator("#download-btn").click()


def finish_download(live, hub, model_id: str = "tiny") -> None:
    hub.resume()
    hub.set_throttle(None)
    wait_until(lambda: server_status(live, model_id) == "downloaded", 60, f"{model_id} to finish")


def test_click_disables_at_once_and_shows_waiting_then_progress_then_done(page, studio, hub):
    hub.set_throttle(200_000)
    open_tab(page, "Models")
    choose(page, "model-select", "tiny")
    button, row = page.locator("#download-btn"), model_row(page, "tiny")
    status = row.locator(".mm-status-text")
    expect(status).to_have_text("not downloaded")
    expect(button).to_be_enabled()

    # Stage one, within a second, before the server has heard of it: hold back the page's
    # requests to Gradio's queue, so only the click's own JavaScript can act.
    held = []

    def hold(route) -> None:
        held.append(route)

    page.route(QUEUE_JOIN, hold)
    button.click()
    expect(button).to_be_disabled(timeout=1_000)
    expect(status).to_have_text("waiting", timeout=1_000)
    assert held, "the click did not reach Gradio's queue"
    assert server_status(studio) == "not_downloaded"
    for route in held:  # let them through (the list grows if ticks are held meanwhile)
        route.continue_()
    page.unroute(QUEUE_JOIN)

    # Stage two: progress from the server snapshot, button still disabled.
    expect(status).to_have_text(STATUS_RE["downloading"])
    wait_row_bytes_above(page, "tiny", 0)
    expect(row.locator(".c-percent")).to_have_text(re.compile(r"^\d{1,3}%$"))
    expect(row.locator("progress")).to_have_count(1)
    expect(button).to_be_disabled()
    expect(page.locator("#cancel-btn")).to_be_enabled()
    screenshot(page, "models-downloading")

    # Stage three: done, the button comes back.
    finish_download(studio, hub)
    expect(status).to_have_text(STATUS_RE["downloaded"])
    expect(row.locator(".c-percent")).to_have_text("100%")
    expect(button).to_be_enabled()
    expect(page.locator("#cancel-btn")).to_be_disabled()
    expect(page.locator("#delete-btn")).to_be_enabled()
    assert "⚠" not in page.locator("#models-status").inner_text()


def test_cancel_and_errors_bring_the_button_back_and_are_said_in_words(page, studio, hub):
    hub.set_throttle(100_000)
    start_in_models_tab(page)
    row, button = model_row(page, "tiny"), page.locator("#download-btn")
    wait_row_bytes_above(page, "tiny", 0)
    page.locator("#cancel-btn").click()
    expect(row.locator(".mm-status-text")).to_have_text("cancelled")
    expect(page.locator("#models-status")).to_contain_text("Cancelling tiny")
    expect(button).to_be_enabled()
    expect(page.locator("#cancel-btn")).to_be_disabled()

    # No room on the disk (this test's own settings): the row says error, in words, and the
    # button comes back.
    studio.services.settings.min_free_bytes = 10**18
    button.click()
    expect(row.locator(".mm-status-text")).to_have_text("error")
    expect(row.locator(".mm-error-text")).to_contain_text("free")
    expect(button).to_be_enabled()
    screenshot(page, "models-error")


def test_progress_survives_closing_the_panel_switching_tabs_and_reloading(page, studio, hub):
    hub.set_throttle(100_000)
    panel = page.locator("#model-panel")
    expect(panel).to_be_visible()
    choose(page, "model-select-panel", "tiny")
    page.locator("#download-btn-panel").click()
    expect(page.locator("#download-btn-panel")).to_be_disabled(timeout=1_000)
    seen = wait_row_bytes_above(page, "tiny", 0, PANEL)

    # Close the panel; the download goes on, and so do the (hidden) panel's updates.
    page.locator("#panel-close").click()
    expect(panel).to_be_hidden()
    screenshot(page, "panel-closed")
    wait_until(lambda: server_bytes(studio) > seen + 100_000, 60, "the download to advance")
    hidden_shows = wait_row_bytes_above(page, "tiny", seen, PANEL)
    at_reopen = server_bytes(studio)
    page.locator("#panel-toggle").click()
    expect(panel).to_be_visible()
    # At once: at least what it showed while closed (never reset to 0) ...
    assert row_bytes(page, "tiny", PANEL) >= hidden_shows > seen
    # ... and within a tick what the server had when it was reopened.
    seen = wait_row_bytes_above(page, "tiny", at_reopen - 1, PANEL)

    # Switch to the Models tab and away and back.
    open_tab(page, "Models")
    seen = wait_row_bytes_above(page, "tiny", seen - 1)
    open_tab(page, "System")
    expect(page.locator("#system-info .mm-gauge").first).to_be_visible()
    wait_until(lambda: server_bytes(studio) > seen + 100_000, 60, "the download to advance")
    at_return = server_bytes(studio)
    open_tab(page, "Models")
    expect(model_row(page, "tiny")).to_be_visible()
    assert row_bytes(page, "tiny") >= seen
    seen = wait_row_bytes_above(page, "tiny", at_return - 1)
    expect(model_row(page, "tiny").locator(".mm-status-text")).to_have_text("downloading")

    # Reload: the first drawing after the reload is already current.
    before_reload = server_bytes(studio)
    page.reload()
    expect(model_row(page, "tiny", PANEL)).to_be_visible()
    assert row_bytes(page, "tiny", PANEL) >= before_reload
    open_tab(page, "Models")
    assert row_bytes(page, "tiny") >= before_reload
    expect(model_row(page, "tiny").locator(".mm-status-text")).to_have_text("downloading")
    expect(page.locator("#download-btn-panel")).to_be_enabled()  # the panel select is back to its default
    choose(page, "model-select", "tiny")
    expect(page.locator("#download-btn")).to_be_disabled()  # derived from the snapshot, not from memory

    # A closed panel stays closed across a reload (a client preference, not download state).
    page.locator("#panel-close").click()
    page.reload()
    page.locator("#transcribe-btn").wait_for()
    expect(page.locator("#model-panel")).to_be_hidden()
    page.locator("#panel-toggle").click()
    expect(page.locator("#model-panel")).to_be_visible()

    finish_download(studio, hub)
    expect(model_row(page, "tiny", PANEL).locator(".mm-status-text")).to_have_text("downloaded")


def test_double_click_starts_one_transfer(page, studio, hub):
    hub.set_throttle(300_000)
    open_tab(page, "Models")
    choose(page, "model-select", "tiny")
    page.locator("#download-btn").dblclick()
    expect(page.locator("#download-btn")).to_be_disabled(timeout=1_000)
    # A click that gets through anyway (here from the panel) joins the same download.
    choose(page, "model-select-panel", "tiny")
    page.locator("#download-btn-panel").click(force=True)
    finish_download(studio, hub)
    expect(model_row(page, "tiny").locator(".mm-status-text")).to_have_text("downloaded")
    assert hub.get_count(TINY_REPO, "model.bin") == 1
    assert studio.services.downloads.transfers_started == 1
    for message in ("#models-status", "#panel-status"):
        assert "⚠" not in page.locator(message).inner_text()


def test_two_pages_show_the_same_progress_without_sse_subscribers(new_page, studio, hub):
    hub.set_throttle(150_000)
    first, second = new_page(), new_page()
    start_in_models_tab(first)
    open_tab(second, "Models")
    for page in (first, second):
        wait_row_bytes_above(page, "tiny", 0)
        wait_row_bytes_above(page, "tiny", 0, PANEL)

    # Freeze the transfer: both pages settle on exactly what the server knows.
    hub.pause()
    frozen = wait_stalled(studio)
    for page in (first, second):
        for container in ("#models-table", PANEL):
            expect(model_row(page, "tiny", container)).to_have_attribute("data-bytes", str(frozen))
        expect(model_row(page, "tiny").locator(".c-percent")).to_have_text(
            model_row(first, "tiny").locator(".c-percent").inner_text()
        )
    hub.resume()
    assert studio.services.bus.subscriber_count == 0
    for page in (first, second):
        opened = page.evaluate("window.__eventSources")
        assert not [url for url in opened if "/api/events" in url], opened
    finish_download(studio, hub)
    for page in (first, second):
        expect(model_row(page, "tiny").locator(".mm-status-text")).to_have_text("downloaded")
    assert studio.services.bus.subscriber_count == 0


def test_transcribe_the_tiny_wav(page, studio, tiny):
    upload(page, tiny.wav)
    choose(page, "tx-model", "tiny")
    choose(page, "tx-language", "zh")
    choose(page, "tx-device", "cpu")
    expect(page.locator("#transcribe-btn")).to_be_enabled()
    page.locator("#transcribe-btn").click()
    # The click returns at once: the job is queued and the table shows it while it runs.
    expect(page.locator("#transcribe-stage")).to_contain_text("Queued 1 file")
    expect(page.locator("#transcribe-btn")).to_be_enabled()
    expect(page.locator("#audio-input")).not_to_contain_text(tiny.wav.name)  # queued files leave the input
    row = job_row(page, tiny.wav.name)
    expect(row).to_have_count(1)
    wait_finished(row)
    expect(row.locator(".c-model")).to_contain_text("tiny · zh · cpu")
    screenshot(page, "transcribe-done")

    # The segment table shows the newest finished job, with its name.
    segment_cells(page)
    job_id = row.get_attribute("data-job")
    expect(page.locator(f'#segments-table [data-job="{job_id}"]')).to_contain_text(tiny.wav.name)

    # The downloads: a link per format; the SRT has numbered cues with valid, ordered timings.
    for fmt in ("srt", "vtt", "json", "txt"):
        expect(row.locator(f'a[data-format="{fmt}"]')).to_have_count(1)
    fetch_srt(page, row)
    assert "⚠" not in page.locator("#transcribe-stage").inner_text()

    # The System tab shows what is loaded now.
    open_tab(page, "System")
    expect(page.locator("#system-info")).to_contain_text("Whisper tiny on cpu")
    screenshot(page, "system")

    # Remove: the row goes, and so do its results.
    open_tab(page, "Transcribe")
    row.locator('button[data-action="remove"]').click()
    expect(row).to_have_count(0)
    expect(page.locator("#jobs-table")).to_contain_text("No transcriptions yet")
    assert page.request.get(studio.url + f"/api/transcriptions/{job_id}").status == 404


def test_several_files_queue_up_and_can_be_cancelled_from_the_table(page, studio, hub, tiny, tmp_path):
    hub.pause()  # the model download cannot finish: the jobs stay in flight
    first, second = tmp_path / "first.wav", tmp_path / "second.wav"
    for copy in (first, second):
        shutil.copyfile(tiny.wav, copy)
    upload(page, first, second)
    choose(page, "tx-model", "tiny")
    page.locator("#transcribe-btn").click()
    expect(page.locator("#transcribe-stage")).to_contain_text("Queued 2 files")
    expect(job_rows(page)).to_have_count(2)
    running, waiting = job_row(page, "first.wav"), job_row(page, "second.wav")
    expect(running).to_have_attribute("data-status", "downloading")
    expect(running.locator(".mm-stage-text")).to_contain_text("downloading tiny")
    expect(waiting).to_have_attribute("data-status", "queued")
    expect(waiting.locator(".mm-stage-text")).to_have_text("waiting (#1 in the queue)")
    screenshot(page, "transcribe-queue")

    waiting.locator('button[data-action="cancel"]').click()
    expect(waiting).to_have_attribute("data-status", "cancelled")
    running.locator('button[data-action="cancel"]').click()
    expect(running).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#transcribe-stage")).to_contain_text("Cancelled")
    assert [j["status"] for j in studio.services.transcriptions.snapshot()] == ["cancelled", "cancelled"]
    hub.resume()
    for row in (waiting, running):
        row.locator('button[data-action="remove"]').click()
        expect(row).to_have_count(0)
    assert studio.services.transcriptions.snapshot() == []


def test_preload_clear_cache_and_delete(page, studio, hub):
    start_in_models_tab(page)
    row = model_row(page, "tiny")
    expect(row.locator(".mm-status-text")).to_have_text("downloaded")
    choose(page, "device-select", "cpu")
    page.locator("#preload-btn").click()
    card = page.locator("#preload-status [data-preload-state]")
    expect(card).to_have_attribute("data-preload-state", "ready", timeout=120_000)
    expect(card).to_contain_text("tiny on cpu")
    expect(page.locator("#status-badge")).to_contain_text("tiny loaded")

    # Deleting a loaded model is refused, in words.
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete-btn").click()
    expect(page.locator("#models-status")).to_contain_text("loaded")
    expect(row.locator(".mm-status-text")).to_have_text("downloaded")

    page.locator("#clear-cache-btn").click()
    expect(card).to_have_attribute("data-preload-state", "idle")
    expect(page.locator("#models-status")).to_contain_text("Unloaded: tiny")

    # A dismissed confirmation deletes nothing; an accepted one deletes.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.locator("#delete-btn").click()
    expect(page.locator("#models-status")).to_have_text("Nothing was deleted.")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#delete-btn").click()
    expect(page.locator("#models-status")).to_contain_text("Deleted tiny")
    expect(row.locator(".mm-status-text")).to_have_text("not downloaded")
    expect(page.locator("#delete-btn")).to_be_disabled()
    assert server_status(studio) == "not_downloaded"
