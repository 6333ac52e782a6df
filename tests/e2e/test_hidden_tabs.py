"""A tab in the background costs the server nothing, and redraws at once when it comes back.

The page's one timer ticks every few seconds (every second while something is in flight).
Gradio's Timer dispatches no tick while ``document.visibilityState`` is ``hidden`` (gradio
6.31 checks it before each tick), so twenty tabs left behind others send nothing; this test
keeps that true across upgrades. Shown again, a tab used to wait for its next tick (up to
``IDLE_TICK_S``) before it showed what changed meanwhile; it now asks for a redraw as the
``visibilitychange`` arrives.

Visibility is emulated in chromium (headless pages are always visible): the document reports
``hidden`` or ``visible`` and the event is dispatched, as a browser does when a tab is covered
or uncovered. Times are the browser's own (resource timing), so a loaded test machine that
hands Playwright's events over late does not blur them.
"""

from __future__ import annotations

from playwright.sync_api import expect

from modelmgr.web.ui.views import IDLE_TICK_S
from tests.e2e.conftest import model_row, open_tab

SET_VISIBILITY = """(state) => {
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => state});
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => state === 'hidden'});
  document.dispatchEvent(new Event('visibilitychange'));
  return performance.now();
}"""
# When the page's Gradio calls left (milliseconds on the page's clock), oldest first.
CALLS_SINCE = """(t) => performance.getEntriesByType('resource')
  .filter((e) => e.name.includes('/gradio_api/') && e.initiatorType === 'fetch' && e.startTime > t)
  .map((e) => e.startTime)"""
HIDDEN_WINDOW_MS = 4 * IDLE_TICK_S * 1000  # four idle ticks would fall in it
PROMPT_MS = 900  # a redraw asked for by the event, not a tick that happens to come soon after
ROUNDS = 4  # without the event's redraw, each round passes only by chance (under 1 in 3)


def calls_since(page, t: float) -> list[float]:
    return page.evaluate(CALLS_SINCE, t)


def wait_for_calls_since(page, t: float, count: int) -> None:
    page.wait_for_function(f"([t, n]) => ({CALLS_SINCE})(t).length >= n", arg=[t, count])


def test_a_hidden_tab_sends_nothing_and_a_shown_one_redraws_at_once(page, studio) -> None:
    page.evaluate("() => performance.setResourceTimingBufferSize(100000)")
    open_tab(page, "Models")
    wait_for_calls_since(page, 0, 2)  # the timer runs (and resource timing sees it)

    hidden_at = page.evaluate(SET_VISIBILITY, "hidden")
    page.wait_for_timeout(HIDDEN_WINDOW_MS)  # a measurement window, not a wait for a condition
    # A tick that left just before the event may still be answered; nothing leaves after it.
    sent = [t for t in calls_since(page, hidden_at) if t > hidden_at + 100]
    assert sent == [], f"{len(sent)} calls in {HIDDEN_WINDOW_MS / 1000:.0f} s from a hidden tab"

    # While the tab is hidden the server's state changes; shown again, the page says so at once.
    job = studio.services.downloads.start("tiny").job
    assert job is not None and job.done.wait(120) and job.status == "downloaded", job and job.error
    for round_ in range(ROUNDS):
        if round_:
            page.evaluate(SET_VISIBILITY, "hidden")
            page.wait_for_timeout(IDLE_TICK_S * 1000)
        shown_at = page.evaluate(SET_VISIBILITY, "visible")
        wait_for_calls_since(page, shown_at, 1)
        delay = calls_since(page, shown_at)[0] - shown_at
        assert delay < PROMPT_MS, f"round {round_}: the first call left {delay:.0f} ms after the tab showed"
        if not round_:
            expect(model_row(page, "tiny")).to_contain_text("downloaded")
