"""The Transcribe tab's Options in a real browser: what a person sets (task, VAD, batch size,
prompt, Diarize with speaker counts) is exactly what the job stores, and a bad combination is
said in words and starts nothing.

The hub is paused while a job is in flight, so no test here waits for a transcription: they
are about the request (the job is cancelled once its options have been read).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from tests.conftest import LiveServer, predownload_diarizer, run_server
from tests.e2e.conftest import choose, job_row, screenshot, upload

DIARIZER = "pyannote/speaker-diarization-3.1"


@contextmanager
def screenshot_on_failure(page, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        screenshot(page, name)
        raise


def open_options(page) -> None:
    """Unfold the Options accordion (folded by default) and wait for its inputs."""
    page.locator("#tx-options").get_by_text("Options", exact=True).click()
    expect(page.locator("#tx-diarize input[type=checkbox]")).to_be_visible()


def set_count(page, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input")
    expect(box).to_be_enabled()  # enabled once Diarize is ticked
    box.fill(str(value))
    box.press("Tab")
    expect(box).to_have_value(str(value))


def tick_diarize(page) -> None:
    expect(page.locator("#tx-min-speakers input")).to_be_disabled()  # until Diarize is ticked
    page.locator("#tx-diarize input[type=checkbox]").check()


@pytest.fixture
def diarizing_studio(diarize_settings) -> Iterator[LiveServer]:
    """The studio with HF_TOKEN set, the gated hub, and the diarization models already on disk
    (no up-front probe of the gated repos meets the paused hub)."""
    with run_server(diarize_settings, ui=True) as live:
        predownload_diarizer(live.services)
        yield live


def test_every_option_set_in_the_page_is_what_the_job_stores(open_page, diarizing_studio, gated_hub, tiny):
    studio, hub = diarizing_studio, gated_hub
    page = open_page(studio.url)
    hub.pause()  # the job waits on its model download: nothing runs while the test reads it
    try:
        with screenshot_on_failure(page, "options-failed"):
            upload(page, tiny.wav)
            choose(page, "tx-model", "tiny")
            choose(page, "tx-device", "cpu")
            open_options(page)
            page.locator("#tx-task").get_by_label("Translate to English").check()
            page.locator("#tx-vad input[type=checkbox]").uncheck()
            batch = page.locator("#tx-batch-size input")
            batch.fill("2")
            batch.press("Tab")
            page.locator("#tx-prompt textarea").fill("Ada, Grace")
            tick_diarize(page)
            set_count(page, "tx-min-speakers", 1)
            set_count(page, "tx-max-speakers", 3)
            screenshot(page, "options-set")
            page.locator("#transcribe-btn").click()
            expect(page.locator("#transcribe-stage")).to_contain_text("Queued 1 file")
            row = job_row(page, tiny.wav.name)
            expect(row).to_have_count(1)
            expect(row.locator(".c-model")).to_contain_text("translate · no VAD · diarize: 1–3 speakers")
            job_id = row.get_attribute("data-job")
            answer = page.request.get(f"{studio.url}/api/transcriptions/{job_id}")
            assert answer.status == 200, answer.text()
            options = answer.json()["options"]
            assert {k: options[k] for k in ("model", "device", "task", "vad", "batch_size")} == {
                "model": "tiny",
                "device": "cpu",
                "task": "translate",
                "vad": False,
                "batch_size": 2,
            }
            assert options["initial_prompt"] == "Ada, Grace"
            assert options["diarize"] is True
            assert (options["num_speakers"], options["min_speakers"], options["max_speakers"]) == (None, 1, 3)
            assert options["diarize_model"] == DIARIZER
            assert options["word_timestamps"] is True, "untouched: the default"
    finally:
        for job in studio.services.transcriptions.jobs():
            studio.services.transcriptions.cancel(job.id)
        hub.resume()


def test_min_speakers_above_max_is_said_in_words_and_starts_no_job(page, studio, tiny):
    with screenshot_on_failure(page, "options-refused-failed"):
        upload(page, tiny.wav)
        choose(page, "tx-model", "tiny")
        open_options(page)
        tick_diarize(page)
        set_count(page, "tx-min-speakers", 3)
        set_count(page, "tx-max-speakers", 2)
        page.locator("#transcribe-btn").click()
        stage = page.locator("#transcribe-stage")
        expect(stage).to_contain_text("min_speakers (3) is more than max_speakers (2)")
        expect(stage.locator('[data-kind="err"]')).to_have_count(1)
        expect(page.locator("#transcribe-btn")).to_be_enabled()  # the button comes back for another try
        expect(page.locator("#audio-input")).to_contain_text(tiny.wav.stem)  # the file stays in the input
        screenshot(page, "options-refused")
        assert page.request.get(f"{studio.url}/api/transcriptions").json() == {"jobs": []}
        assert studio.services.transcriptions.jobs() == []
        expect(page.locator("#jobs-table")).to_contain_text("No transcriptions yet")
