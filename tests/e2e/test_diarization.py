"""Who spoke when, in the browser, as a new user: a fresh `python app.py`, the page's defaults.

With ``HF_TOKEN`` in the server's environment (and nowhere else: not in its settings, not in
the page) a newcomer picks tiny.en, ticks Diarize, uploads two-voice espeak-ng speech and
presses Transcribe: the segment table gains a Speaker column, the SRT's cues start with
``[SPEAKER_..] ``, the gated pyannote models come down once, a second tab (and an API poller)
meet no error, and the token is in no line the server wrote. Without a token the page says
in words what to do (set HF_TOKEN) and nothing is fetched from the gated repos.

The pyannote models are tiny and random: which voice gets which label says nothing, so
only the labels' presence is checked (tests/asr/test_diarization.py has the details).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from playwright.sync_api import expect

from tests import tiny_models
from tests.conftest import ACCEPTED_TOKEN, DIARIZER
from tests.e2e.conftest import (
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
from tests.live import wait_until

FIRST_JOB_TIMEOUT_MS = 600_000  # imports torch, whisperx and pyannote on a loaded 2-core box
LABEL = re.compile(r"^SPEAKER_\d\d$")
GATED_FILES = {  # what the gated repos hold that a diarizing job needs
    DIARIZER: "config.yaml",
    tiny_models.PYANNOTE_SEGMENTATION: "pytorch_model.bin",
}


@contextmanager
def screenshot_on_failure(page, name: str) -> Iterator[None]:
    try:
        yield
    except BaseException:
        screenshot(page, name)
        raise


def watch(page) -> list[str]:
    """Uncaught page errors and failed answers of the server, as they happen."""
    seen: list[str] = []
    page.on("pageerror", lambda exc: seen.append(f"pageerror: {exc}"))
    page.on("response", lambda r: seen.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return seen


def diarize_upload(page, path) -> None:
    """What a newcomer does: pick tiny.en, unfold Options, tick Diarize, drop the file, press Transcribe."""
    upload(page, path)
    choose(page, "tx-model", "tiny.en")
    page.locator("#tx-options").get_by_text("Options", exact=True).click()
    page.locator("#tx-diarize input[type=checkbox]").check()
    expect(page.locator("#tx-min-speakers input")).to_be_enabled()  # the counts follow Diarize
    page.locator("#transcribe-btn").click()


def speaker_column(page) -> list[tuple[str, str]]:
    """(speaker id, the name shown) per row of the segment table's Speaker column."""
    table = page.locator("#segments-table")
    expect(table.locator("th", has_text="speaker")).to_be_visible()
    return table.evaluate(
        """(el) => [...el.querySelectorAll('tr[data-row]')].map((tr) => {
            const td = tr.querySelector('td.c-speaker');
            return td ? [td.dataset.speaker, td.innerText.trim()] : null;
        })"""
    )


def speaker_cell(page, label: str):
    """The first Speaker cell of ``label`` in the segment table."""
    return page.locator(f'#segments-table td.c-speaker[data-speaker="{label}"]').first


@pytest.mark.timeout(1200)
def test_a_newcomer_with_hf_token_sees_who_speaks(
    open_page, diarize_settings, gated_hub, dialogue, tiny_pyannote, tmp_path
):
    settings = diarize_settings.model_copy(
        update={
            "hf_token": None,  # the token: from the server's environment only
            # No torchaudio host (the test hub's torchaudio file is a stand-in that does not load):
            # the English aligner then comes from the Hub, as it would behind a mirror.
            "torch_models_base_url": f"{gated_hub.url}/no-torchaudio-here",
        }
    )
    with fresh_server(settings, tmp_path, ui=True, HF_TOKEN=ACCEPTED_TOKEN) as app:
        polled = [f"{app.url}/api/transcriptions", f"{app.url}/api/preload/status", f"{app.url}/api/models"]
        with Poller(polled) as poller:
            page, second = open_page(app.url), open_page(app.url)
            errors = {"first tab": watch(page), "second tab": watch(second)}
            with screenshot_on_failure(page, "diarize-failed"):
                diarize_upload(page, dialogue.path)
                expect(page.locator("#transcribe-stage")).to_contain_text("Queued 1 file")
                row = job_row(page, dialogue.path.name)
                expect(row.locator(".c-model")).to_contain_text("diarize")
                wait_finished(row, FIRST_JOB_TIMEOUT_MS)
                cells = segment_cells(page)  # start, end, text, words: as for any job
                speakers = speaker_column(page)
                assert len(speakers) == len(cells), (speakers, cells)
                assert all(s and LABEL.match(s[0]) and s[1] == s[0] for s in speakers), speakers
                srt = fetch_srt(page, row)
                cues = re.findall(r"^\[(SPEAKER_\d\d)\] \S", srt, re.M)
                assert cues and len(cues) == len(cells), srt[:600]
                assert {label for label, _ in speakers} == set(cues)
                screenshot(page, "diarized-speakers")
                # Named in the page: the table and every format follow, in this tab and the other.
                first = speakers[0][0]
                page.locator("#tx-speaker-names textarea").fill(f"{first}=Ada Lovelace")
                page.locator("#tx-rename-btn").click()
                expect(page.locator("#tx-rename-said")).to_contain_text("Renamed the speakers")
                expect(speaker_cell(page, first)).to_have_text("Ada Lovelace")
                named = [[label, "Ada Lovelace" if label == first else name] for label, name in speakers]
                assert speaker_column(page) == named
                assert "[Ada Lovelace] " in fetch_srt(page, row)
                page.locator("#tx-speaker-names textarea").fill("SPEAKER_99=Nobody")
                page.locator("#tx-rename-btn").click()
                expect(page.locator("#tx-rename-said")).to_contain_text(
                    "is not a speaker of this transcription"
                )
                assert speaker_column(page) == named, "a refused rename changes nothing"
            with screenshot_on_failure(second, "diarize-second-tab-failed"):
                other = job_row(second, dialogue.path.name)  # drawn by the second tab's own timer
                expect(other).to_have_attribute("data-status", "done")
                expect(speaker_cell(second, first)).to_have_text("Ada Lovelace")
                assert speaker_column(second) == named
            for each in (page, second):
                assert ACCEPTED_TOKEN not in each.content()
        log = app.output()
    for repo, folder in {
        DIARIZER: tiny_pyannote.pipeline,
        tiny_models.PYANNOTE_SEGMENTATION: tiny_pyannote.segmentation,
        tiny_models.PYANNOTE_EMBEDDING: tiny_pyannote.embedding,
    }.items():
        wanted = GATED_FILES.get(repo, "pytorch_model.bin")
        size = (folder / wanted).stat().st_size
        assert gated_hub.bytes_sent(repo, wanted) == size, f"{repo}/{wanted} fetched once"
    assert poller.polls > 100 and not poller.failures, poller.failures[:5]
    assert errors == {"first tab": [], "second tab": []}, errors
    assert ACCEPTED_TOKEN not in log
    assert "Traceback" not in log, log[-4000:]


TOAST_CLEAR_OF_PANEL = """() => {
  const toast = document.querySelector('.toast-wrap > *');
  const panel = document.querySelector('#model-panel');
  if (!toast || !panel) return null;
  const a = toast.getBoundingClientRect(), b = panel.getBoundingClientRect();
  const apart = a.right <= b.left || b.right <= a.left || a.bottom <= b.top || b.bottom <= a.top;
  return apart ? 'clear' : 'overlap';
}"""


def toast_clear_of_the_panel(page) -> bool:
    """Gradio's toast (the refusal's words, also shown under the button) is not drawn over the
    model manager panel docked at the right, whose rows show the same models' states."""
    return page.wait_for_function(TOAST_CLEAR_OF_PANEL).json_value() == "clear"


def api_refusal(url: str, english) -> dict:
    """The API's answer to a diarizing job without a token: refused at once, or a job that fails."""
    with english.path.open("rb") as f:
        created = httpx.post(
            f"{url}/api/transcriptions",
            files={"file": ("meeting.wav", f, "audio/wav")},
            data={"model": "tiny.en", "diarize": "true"},
            timeout=60,
        )
    if created.status_code != 202:
        return created.json()["error"]
    job = f"{url}/api/transcriptions/{created.json()['id']}"
    done = wait_until(
        lambda: (j := httpx.get(job, timeout=30).json())["status"] in ("done", "error", "cancelled") and j,
        FIRST_JOB_TIMEOUT_MS / 1000,
        "the diarizing job without a token",
    )
    return done["error"] or {}


@pytest.mark.timeout(1200)
def test_without_a_token_the_page_says_to_set_hf_token_and_fetches_nothing_gated(
    open_page, diarize_settings, gated_hub, english, tmp_path
):
    settings = diarize_settings.model_copy(update={"hf_token": None})
    with fresh_server(settings, tmp_path, ui=True) as app:
        page = open_page(app.url)
        with screenshot_on_failure(page, "diarize-no-token-failed"):
            diarize_upload(page, english.path)
            # Refused up front (the message under the button) or by the job (its row): either way in words.
            said = page.wait_for_function(
                """() => {
                    const stage = document.querySelector('#transcribe-stage');
                    if (stage && stage.innerText.includes('HF_TOKEN')) return 'stage';
                    const rows = [...document.querySelectorAll('#jobs-table tr[data-job]')];
                    const row = rows.find(
                        (r) => r.dataset.status === 'error' && r.innerText.includes('HF_TOKEN'));
                    return row ? 'row' : null;
                }""",
                timeout=FIRST_JOB_TIMEOUT_MS,
            ).json_value()
            where = page.locator("#transcribe-stage") if said == "stage" else job_rows(page)
            text = where.first.inner_text()
            assert "gated" in text and f"{gated_hub.url}/{DIARIZER}" in text, text  # why, and where to go
            if said == "stage":
                expect(job_rows(page)).to_have_count(0)  # refused: nothing queued
                assert toast_clear_of_the_panel(page), "the warning toast covers the model manager"
            screenshot(page, "diarize-no-token")
        error = api_refusal(app.url, english)
        assert error.get("code") == "auth_required" and "HF_TOKEN" in error.get("message", ""), error
        log = app.output()
    for repo, wanted in GATED_FILES.items():
        assert gated_hub.bytes_sent(repo, wanted) == 0, f"{repo}/{wanted} was fetched without a token"
    assert "Traceback" not in log, log[-4000:]
