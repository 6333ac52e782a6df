"""The studio in chromium behind Debian's nginx, under the /studio/ sub-path, on a non-default port.

What a new user does after copying deploy/nginx/whisperx-studio-subpath.conf and
starting the app with ``--root-path /studio``: the page loads, every request stays
under the prefix, the timer keeps the table live, a download shows progress, and a
file link Gradio builds in the page answers 200 through the proxy.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from modelmgr.settings import Settings
from tests.conftest import LiveServer, run_server, wait_until
from tests.e2e.conftest import TIMEOUT_MS, choose, model_row, open_tab, screenshot
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

        # A file link built by Gradio in the page (the uploaded audio's player) answers through the
        # proxy, prefix and port included. (Subtitle links from jobs: tests/test_deploy.py.)
        open_tab(page, "Transcribe")
        with page.expect_request(lambda r: "gradio_api/file=" in r.url, timeout=60_000) as loaded:
            page.locator("#audio-input input[type=file]").set_input_files(str(tiny.wav))
        src = loaded.value.url
        assert src.startswith(base + "gradio_api/file="), src
        answer = page.request.get(src)
        assert answer.status == 200 and answer.body() == tiny.wav.read_bytes(), (src, answer.status)

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
