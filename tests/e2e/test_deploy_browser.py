"""The studio in chromium behind Debian's nginx, under the /studio/ sub-path, on a non-default port.

What a new user does after copying deploy/nginx/whisperx-studio-subpath.conf and
starting the app with ``--root-path /studio``: the page loads, every request stays
under the prefix, the timer keeps the table live, a download shows progress, and a
transcription's subtitle links answer 200 through the proxy.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import pytest
from playwright.sync_api import expect

from modelmgr.core.settings import Settings
from tests.conftest import LiveServer, run_server, wait_until
from tests.e2e.conftest import (
    TIMEOUT_MS,
    choose,
    fetch_srt,
    job_row,
    model_row,
    open_tab,
    screenshot,
    upload,
    wait_finished,
)
from tests.nginx import Proxied, run_nginx

DOCS_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshot.png"


@pytest.fixture
def studio_under_prefix(settings: Settings) -> Iterator[LiveServer]:
    with run_server(settings.model_copy(update={"root_path": "/studio"}), ui=True) as live:
        yield live


@pytest.fixture
def proxied(studio_under_prefix: LiveServer, tmp_path: Path) -> Iterator[Proxied]:
    with run_nginx(tmp_path / "nginx", "whisperx-studio-subpath.conf", studio_under_prefix.url) as proxy:
        yield proxy


def test_subpath_behind_nginx_end_to_end(browser, proxied: Proxied, studio_under_prefix, hub, tiny):
    base = f"{proxied.url}/studio/"
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    context.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    failures: list[str] = []
    context.on("request", lambda r: requests.append(r.url))
    context.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    try:
        page = context.new_page()
        page.goto(proxied.url + "/studio")  # without the slash: nginx redirects
        page.locator("#transcribe-btn").wait_for()
        assert page.url == base

        # The timer's redraws arrive over Gradio's queue under the prefix: a download shows progress.
        hub.set_throttle(500_000)
        open_tab(page, "Models")
        expect(model_row(page, "tiny").locator(".mm-status-text")).to_have_text("not downloaded")
        choose(page, "model-select", "tiny")
        fit = page.locator("#download-fit .mm-fit")
        expect(fit).to_contain_text("Free disk")  # size and free space side by side, before Download
        expect(fit).to_contain_text(re.compile(r"Size ≈ \d+(\.\d)? MB \(approximate\)"))
        expect(fit).to_have_attribute("data-fits", "true")
        page.locator("#download-btn").click()
        expect(model_row(page, "tiny").locator(".mm-status-text")).to_have_text(
            re.compile("waiting|downloading")
        )
        hub.set_throttle(None)
        expect(model_row(page, "tiny").locator(".mm-status-text")).to_have_text("downloaded", timeout=60_000)

        # A transcription from the Transcribe tab: a job, whose subtitle links stay under the prefix
        # and answer through the proxy on its port.
        open_tab(page, "Transcribe")
        upload(page, tiny.wav)
        choose(page, "tx-model", "tiny")
        choose(page, "tx-language", "zh")
        choose(page, "tx-device", "cpu")
        page.locator("#transcribe-btn").click()
        row = job_row(page, tiny.wav.name)
        wait_finished(row)
        for fmt in ("srt", "vtt", "json", "txt"):
            href = urljoin(page.url, row.locator(f'a[data-format="{fmt}"]').get_attribute("href") or "")
            assert href.startswith(base + "api/transcriptions/"), href
            assert page.request.get(href).status == 200, href
        fetch_srt(page, row)

        open_tab(page, "Models")
        shot = screenshot(page, "studio-behind-nginx")
        if os.environ.get("STUDIO_UPDATE_SCREENSHOT") == "1":  # refresh the README's picture
            DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
            shutil.copyfile(shot, DOCS_SCREENSHOT)
    finally:
        context.close()

    ours = [u for u in requests if u.startswith(proxied.url) and u != proxied.url + "/studio"]
    outside = [u for u in ours if not u.startswith(base)]
    assert not outside, outside  # nothing goes to the host's root (queue/join used to)
    assert not failures, failures
    assert any("/studio/gradio_api/queue/join" in u for u in ours)
    wait_until(lambda: "/studio/gradio_api/queue/join" in proxied.nginx.access_log(), 30, "the log line")
