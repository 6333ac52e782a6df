"""Real English in the browser, behind a Hub mirror: a fresh `python app.py`, the page's defaults.

The server is pointed at a mirror that serves the real tiny.en and nothing else (no
torchaudio host, no aligner of any kind). A newcomer picks tiny.en, leaves everything
else as the page offers it and transcribes known espeak-ng speech: the words on the page
must match the script as faster-whisper's own call does, each word timed inside its
sentence, and the job must say in words that Whisper timed them. A second tab sees the
same job; pollers hit the status pages every 20 ms throughout.
"""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests import speech
from tests.conftest import mirror_settings
from tests.e2e.conftest import (
    choose,
    fetch_srt,
    job_row,
    screenshot,
    segment_cells,
    upload,
    wait_finished,
)
from tests.fresh import Poller, fresh_server

FIRST_JOB_TIMEOUT_MS = 300_000  # imports torch + whisperx, downloads and loads tiny.en
WORD_TIME = re.compile(r"(\S+) (\d+\.\d\d)–(\d+\.\d\d)")


def test_english_behind_a_mirror_with_the_page_defaults(open_page, mirror, english, direct, tmp_path):
    settings = mirror_settings(mirror, tmp_path)
    with fresh_server(settings, tmp_path, ui=True) as app:
        polled = [f"{app.url}/api/preload/status", f"{app.url}/api/system"]
        with Poller(polled) as poller:
            page, second = open_page(app.url), open_page(app.url)
            expect(page.locator("#tx-language input")).to_have_value("auto")
            upload(page, english.path)
            choose(page, "tx-model", "tiny.en")
            page.locator("#transcribe-btn").click()
            row = job_row(page, english.path.name)
            wait_finished(row, FIRST_JOB_TIMEOUT_MS)
            expect(row.locator(".mm-stage-text")).to_contain_text("words timed by Whisper")
            expect(row.locator(".mm-warn-text")).to_contain_text("no alignment model for 'en'")
            expect(row.locator(".c-model")).to_contain_text(re.compile(r"tiny\.en · en · (cpu|cuda)"))
            cells = segment_cells(page)
            text = " ".join(cell[2] for cell in cells)
            ours, theirs = speech.wer(english.script, text), speech.wer(english.script, direct["words"])
            assert ours <= 0.15 and abs(ours - theirs) <= 0.02, (ours, theirs, text)
            words = [(m[1], float(m[2])) for cell in cells for m in WORD_TIME.findall(cell[3])]
            assert len(words) >= 0.9 * len(speech.words_of(english.script)), cells
            assert speech.misplaced_words(english, words) == []
            fetch_srt(page, row)
            screenshot(page, "real-speech-behind-a-mirror")
            other = job_row(second, english.path.name)  # the second tab's own timer drew it
            expect(other).to_have_attribute("data-status", "done")
            expect(other.locator(".mm-stage-text")).to_contain_text("words timed by Whisper")
        log = app.output()
    assert poller.polls > 100 and not poller.failures, poller.failures[:5]
    assert "Traceback" not in log, log[-4000:]
