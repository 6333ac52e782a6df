"""Twenty tabs of one browser with seven transcriptions queued stay live: direct, through
nginx over HTTP/1.1, and through nginx over HTTP/2.

Browsers allow six HTTP/1.1 connections per host, shared by every tab of a profile (here:
one Playwright context). A Gradio page holds one while an event of its waits, so requests
that wait for a long transcription froze every tab. Jobs hold none: they are submitted,
answered with 202 at once, and their progress reaches the pages through the timer.

The seven jobs ask for a model that is still downloading (slowly, from the throttled
hub), so they stay queued without loading torch; every tab must show that download's
bytes advancing, and a new tab must still load promptly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelmgr.settings import Settings
from tests.conftest import LiveServer, run_server, wait_until
from tests.e2e.conftest import TIMEOUT_MS, model_row
from tests.nginx import run_nginx

TABS = 20
JOBS = 7
MODEL = "base"  # not the one other tests download first: its bytes move for this test only


@pytest.fixture
def server(settings: Settings) -> Iterator[LiveServer]:
    with run_server(settings, ui=True) as live:
        yield live


def _submit_jobs(url: str, audio: Path) -> list[str]:
    ids = []
    with httpx.Client(base_url=url, verify=False, timeout=60) as client:
        for i in range(JOBS):
            with audio.open("rb") as f:
                answer = client.post(
                    "/api/transcriptions",
                    data={"model": MODEL, "language": "zh", "device": "cpu"},
                    files={"file": (f"take-{i}.wav", f)},
                )
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
    return ids


def _open(context, url: str, count: int = 1) -> list:
    """Open ``count`` tabs at once (they load in parallel, as restored tabs do), on the Models tab."""
    pages = [context.new_page() for _ in range(count)]
    for page in pages:
        page.goto(url, wait_until="commit")
    for page in pages:
        page.locator("#transcribe-btn").wait_for(timeout=120_000)
        page.get_by_role("tab", name="Models", exact=True).click()
    return pages


@pytest.mark.parametrize("route", ["direct", "nginx-http1", "nginx-http2"])
def test_twenty_tabs_with_seven_queued_jobs_all_keep_updating(
    browser, server: LiveServer, hub, tiny, tmp_path: Path, route: str
) -> None:
    hub.set_throttle(20_000)  # the model the jobs wait for arrives over minutes
    proxy_cm = proxy = None
    url = server.url
    if route != "direct":
        site = "whisperx-studio-tls.conf" if route == "nginx-http2" else "whisperx-studio.conf"
        proxy_cm = run_nginx(tmp_path / "nginx", site, server.url)
        proxy = proxy_cm.__enter__()
        url = proxy.url
    context = browser.new_context(viewport={"width": 1100, "height": 800}, ignore_https_errors=True)
    context.set_default_timeout(TIMEOUT_MS)
    services = server.services
    try:
        pages = _open(context, url, TABS)
        jobs = _submit_jobs(url, tiny.wav)
        states = [services.transcriptions.get(j).status for j in jobs]
        assert states.count("queued") >= JOBS - 1, states  # one may be downloading its model

        def server_bytes() -> int:
            return services.downloads.describe(services.catalog.get(MODEL))["progress"]["bytes_done"] or 0

        floor = wait_until(server_bytes, 60, f"{MODEL} to start downloading")
        # Every tab (each redrawn by its own timer over the shared connections) shows more than
        # the server had when we looked.
        for page in pages:
            page.wait_for_function(
                """([sel, floor]) => {
                    const row = document.querySelector(sel);
                    return row && Number(row.dataset.bytes) > floor;
                }""",
                arg=[f'#models-table [data-model="{MODEL}"]', floor],
                timeout=90_000,
            )
            assert model_row(page, MODEL).get_attribute("data-status") == "downloading"
        # Still responsive: one more tab loads while all of that goes on.
        started = time.monotonic()
        _open(context, url)
        new_tab_s = time.monotonic() - started
        print(f"{route}: new tab loaded in {new_tab_s:.1f} s with {TABS} tabs and {JOBS} queued jobs")
        assert new_tab_s < 20, new_tab_s
        if proxy is not None:  # the browser really went through nginx, in the protocol named
            protocol = "HTTP/2.0" if route == "nginx-http2" else "HTTP/1.1"
            assert f"/gradio_api/queue/join {protocol}" in proxy.nginx.access_log()
        states = [services.transcriptions.get(j).status for j in jobs]
        assert all(s in ("queued", "downloading") for s in states), states  # still waiting, not lost
    finally:
        context.close()
        for job in services.transcriptions.jobs():
            with contextlib.suppress(Exception):  # already finished or gone: nothing to cancel
                services.transcriptions.delete(job.id)
        hub.set_throttle(None)
        if proxy_cm is not None:
            proxy_cm.__exit__(None, None, None)
