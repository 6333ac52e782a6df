"""The studio's Gradio Blocks: a thin layer over the managers in ``Services``.

Deliberate choices (keep them):

* **One timer, no browser state.** A single top-level ``gr.Timer`` redraws the
  models table, the manager panel, the preload card, the System tab and the
  buttons' ``interactive`` flags from ``downloads.snapshot()`` and
  ``preload.status()`` on every tick: about once a second while something is
  in flight, every few seconds when idle. Nothing in a component or a
  ``gr.State`` remembers download state, so a reload, a closed panel, another
  tab or a second browser window all show what the server knows. The page opens
  no EventSource of its own: the tick travels over Gradio's queue connection,
  which the page holds anyway (browsers allow ~6 connections per host).
* **Three-stage buttons.** A click first runs a few lines of JavaScript that
  disable the button and mark the row ``waiting`` (before any round trip), then
  the request goes to the manager (which deduplicates: a double click starts one
  transfer), then the timer takes over and re-enables the button once the
  model is no longer queued/downloading/verifying.
* **The manager panel** is a docked column hidden or shown by a class on
  ``<body>`` (pure client side, remembered in ``localStorage``); it only ever
  displays timer outputs, so closing it loses nothing.
* Helpers named ``format_*``/``render_*``/``human_*`` are pure functions of a
  snapshot, so they are unit tested without a browser (tests/test_ui.py).

The CSS lives in ``assets/studio.css``; it is injected with a ``<style>`` element
because ``gr.mount_gradio_app`` overwrites ``Blocks.css``.
"""

from __future__ import annotations

import html
import logging
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from .errors import ModelMgrError
from .services import Services
from .subtitles import write_all
from .system import system_report
from .transcribe import run_pipeline

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CSS_PATH = ASSETS / "studio.css"
LOGO_PATH = ASSETS / "logo.svg"

IN_FLIGHT = frozenset({"queued", "downloading", "verifying"})
PRELOAD_BUSY = frozenset({"downloading", "loading"})
FAST_TICK_S = 1.0  # while anything is queued, downloading, verifying or loading
IDLE_TICK_S = 3.0
AUTO = "auto"
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_MODEL = "small"

STATUS_LABELS = {
    "not_downloaded": "not downloaded",
    "queued": "waiting",
    "downloading": "downloading",
    "verifying": "verifying",
    "downloaded": "downloaded",
    "incomplete": "incomplete",
    "error": "error",
    "cancelled": "cancelled",
}
TABLE_HEADERS = ["Model", "Kind", "Language", "Size", "Status", "Progress", "Speed", "ETA"]
SEGMENT_HEADERS = ["start", "end", "text", "words"]
OUTPUT_FORMATS = ("srt", "vtt", "json", "txt")


# ----------------------------------------------------------------------------
# Pure formatting helpers
# ----------------------------------------------------------------------------
def human_bytes(n: float | None) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as the Hub shows sizes); None -> ``"—"``."""
    if n is None:
        return "—"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def human_speed(bps: float | None) -> str:
    return "—" if not bps else f"{human_bytes(bps)}/s"


def format_eta(seconds: float | None) -> str:
    """Seconds left in words: ``"42 s"``, ``"3 min 5 s"``, ``"1 h 2 min"``; None -> ``"—"``."""
    if seconds is None or seconds < 0 or math.isnan(seconds) or math.isinf(seconds):
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def format_percent(percent: float | None) -> str:
    """``42.7`` -> ``"42%"``: floored, so 100% is shown only when it is done."""
    if percent is None:
        return "0%"
    return f"{max(0, min(100, math.floor(percent)))}%"


def status_label(status: str) -> str:
    return STATUS_LABELS.get(status, status.replace("_", " "))


def format_clock(seconds: float | None) -> str:
    """``83.456`` -> ``"1:23.46"``; ``3723.5`` -> ``"1:02:03.50"``."""
    if seconds is None:
        return "?"
    cs = round(max(0.0, seconds) * 100)
    h, rest = divmod(cs, 360000)
    m, rest = divmod(rest, 6000)
    s, c = divmod(rest, 100)
    return f"{h}:{m:02d}:{s:02d}.{c:02d}" if h else f"{m}:{s:02d}.{c:02d}"


def format_seconds(seconds: float | None) -> str:
    """Word timings: ``1.234`` -> ``"1.23"``; unknown -> ``"?"``."""
    return "?" if seconds is None else f"{seconds:.2f}"


def format_rows(snapshot: Sequence[dict[str, Any]]) -> list[list[str]]:
    """One row per model: id, kind, language, size, status, percent, speed, ETA."""
    rows = []
    for m in snapshot:
        p = m.get("progress") or {}
        in_flight = m["status"] in IN_FLIGHT
        rows.append(
            [
                m["id"],
                m["kind"],
                m.get("language") or "any",
                human_bytes(m.get("size_bytes") or p.get("bytes_total")),
                status_label(m["status"]),
                "—"
                if m["status"] == "not_downloaded" and not p.get("bytes_done")
                else format_percent(p.get("percent")),
                human_speed(p.get("speed_bps")) if in_flight else "—",
                format_eta(p.get("eta_s")) if in_flight else "—",
            ]
        )
    return rows


def find_model(snapshot: Sequence[dict[str, Any]], model_id: str | None) -> dict[str, Any] | None:
    return next((m for m in snapshot if m["id"] == model_id), None)


def busy(snapshot: Sequence[dict[str, Any]], preload: dict[str, Any] | None = None) -> bool:
    """Is anything in flight (so the timer should tick fast)?"""
    return any(m["status"] in IN_FLIGHT for m in snapshot) or bool(
        preload and preload.get("state") in PRELOAD_BUSY
    )


def button_states(
    snapshot: Sequence[dict[str, Any]], model_id: str | None, preload: dict[str, Any] | None = None
) -> dict[str, bool]:
    """Which buttons are clickable for the selected model."""
    model = find_model(snapshot, model_id)
    status = model["status"] if model else None
    in_flight = status in IN_FLIGHT
    preload_busy = bool(preload and preload.get("state") in PRELOAD_BUSY)
    return {
        "download": model is not None and not in_flight,
        "cancel": in_flight,
        "delete": model is not None and not in_flight and status != "not_downloaded",
        "preload": model is not None and model["kind"] == "whisper" and not preload_busy,
        "clear_cache": not preload_busy,
    }


def tick_interval(snapshot: Sequence[dict[str, Any]], preload: dict[str, Any] | None = None) -> float:
    return FAST_TICK_S if busy(snapshot, preload) else IDLE_TICK_S


def describe_start(model_id: str, status: str, languages: list[str] | None = None) -> str:
    """The words for ``DownloadManager.start``'s answer."""
    extra = f" (with the alignment model for {', '.join(languages)})" if languages else ""
    checked = " (its alignment model is checked too)" if languages else ""
    return {
        "started": f"Downloading **{model_id}**{extra}.",
        "queued": f"**{model_id}** is waiting for a free download slot{extra}.",
        "already_downloading": f"**{model_id}** is already downloading.",
        "already_downloaded": f"**{model_id}** is already downloaded{checked}.",
    }.get(status, f"{model_id}: {status}")


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _bar(percent: float | None) -> str:
    value = 0.0 if percent is None else max(0.0, min(100.0, float(percent)))
    return f'<progress class="mm-bar" max="100" value="{value:.1f}"></progress>'


def _row_attrs(m: dict[str, Any]) -> str:
    p = m.get("progress") or {}
    return (
        f'data-model="{_e(m["id"])}" data-status="{_e(m["status"])}" '
        f'data-bytes="{int(p.get("bytes_done") or 0)}" class="st-{_e(m["status"])}"'
    )


def render_models_table(snapshot: Sequence[dict[str, Any]]) -> str:
    """The Models tab's table (HTML, so each row carries data-* hooks and a progress bar)."""
    head = "".join(f"<th>{h}</th>" for h in TABLE_HEADERS)
    body = []
    section = None
    for m, row in zip(snapshot, format_rows(snapshot), strict=True):
        if m["kind"] != section:
            section = m["kind"]
            title = "Whisper models" if section == "whisper" else "Alignment models"
            body.append(f'<tr class="mm-section"><td colspan="{len(TABLE_HEADERS)}">{title}</td></tr>')
        model_id, kind, language, size, status, percent, speed, eta = row
        p = m.get("progress") or {}
        partial = m["status"] in ("incomplete", "cancelled", "error") and bool(p.get("bytes_done"))
        show_bar = m["status"] in IN_FLIGHT or partial
        status_cell = f'<span class="mm-status mm-status-text">{_e(status)}</span>'
        if show_bar:
            status_cell += _bar(p.get("percent"))
        if m.get("error"):
            status_cell += f'<div class="mm-error-text">{_e(m["error"])}</div>'
        repo = "" if m["repo_id"] == m["id"] else f'<div class="mm-sub">{_e(m["repo_id"])}</div>'
        body.append(
            f"<tr {_row_attrs(m)}>"
            f'<td class="c-id">{_e(model_id)}{repo}</td><td class="c-kind">{_e(kind)}</td>'
            f'<td class="c-lang">{_e(language)}</td><td class="c-num c-size">{_e(size)}</td>'
            f'<td class="c-status">{status_cell}</td><td class="c-num c-percent">{_e(percent)}</td>'
            f'<td class="c-num c-speed">{_e(speed)}</td><td class="c-num c-eta">{_e(eta)}</td></tr>'
        )
    return (
        '<div class="mm-table-wrap"><table class="mm-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def render_panel(snapshot: Sequence[dict[str, Any]]) -> str:
    """The manager panel's list: every model that is in flight or has files, with a bar."""
    cards = []
    for m, row in zip(snapshot, format_rows(snapshot), strict=True):
        if m["status"] == "not_downloaded":
            continue
        model_id, _kind, _language, size, status, percent, speed, eta = row
        p = m.get("progress") or {}
        if m["status"] in IN_FLIGHT:
            details = [f"{human_bytes(p.get('bytes_done'))} of {size}", speed, f"ETA {eta}"]
        else:
            details = [size]
        error = f'<div class="mm-error-text">{_e(m["error"])}</div>' if m.get("error") else ""
        cards.append(
            f'<div {_row_attrs(m)}><div class="mm-card">'
            f'<div class="mm-card-head"><span class="mm-name">{_e(model_id)}</span>'
            f'<span class="mm-status mm-status-text">{_e(status)}</span></div>{_bar(p.get("percent"))}'
            f'<div class="mm-meta"><span class="c-percent">{_e(percent)}</span>'
            f" · {_e(' · '.join(details))}</div>"
            f"{error}</div></div>"
        )
    if not cards:
        return '<div class="mm-empty">No models on disk yet. Pick one and press Download.</div>'
    return "".join(cards)


def render_preload(status: dict[str, Any]) -> str:
    """The preload card: state, what is loaded where, memory."""
    state = status.get("state", "idle")
    whisper = status.get("whisper") or {}
    align = status.get("align") or {}
    request = status.get("request") or {}
    memory = status.get("memory") or {}
    cuda = memory.get("cuda") or {}
    items = [("State", f'<span class="mm-status">{_e(state)}</span>')]
    if request and state != "ready":
        lang = request.get("language") or "auto"
        items.append(("Request", _e(f"{request.get('model')} · {lang} · {request.get('device')}")))
    if whisper:
        items.append(
            (
                "Whisper",
                _e(f"{whisper.get('id')} on {whisper.get('device')} ({whisper.get('compute_type')})"),
            )
        )
    if align:
        items.append(("Alignment", _e(f"{align.get('id')} ({align.get('language')})")))
    if memory.get("rss_bytes"):
        items.append(("Process RAM", _e(human_bytes(memory["rss_bytes"]))))
    if cuda:
        items.append(("CUDA allocated", _e(human_bytes(cuda.get("allocated_bytes")))))
    if status.get("error"):
        items.append(("Error", f'<span class="mm-error-text">{_e(status["error"])}</span>'))
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return (
        f'<div class="st-{_e(state)}" data-preload-state="{_e(state)}"><h4>Preloaded</h4>'
        f'<dl class="mm-kv">{rows}</dl></div>'
    )


def render_badge(snapshot: Sequence[dict[str, Any]], preload: dict[str, Any]) -> str:
    """The header's one-line summary."""
    counts: dict[str, int] = {}
    for m in snapshot:
        counts[m["status"]] = counts.get(m["status"], 0) + 1
    pills = []
    moving = counts.get("downloading", 0) + counts.get("verifying", 0)
    if moving:
        pills.append(("busy", f"{moving} downloading"))
    if counts.get("queued"):
        pills.append(("busy", f"{counts['queued']} waiting"))
    pills.append(("", f"{counts.get('downloaded', 0)} on disk"))
    whisper = (preload.get("whisper") or {}).get("id")
    state = preload.get("state", "idle")
    if state == "ready" and whisper:
        pills.append(("", f"{whisper} loaded"))
    elif state in PRELOAD_BUSY:
        pills.append(("busy", f"preload {state}"))
    elif state == "error":
        pills.append(("", "preload failed"))
    return "".join(f'<span class="mm-pill {cls}">{_e(text)}</span>' for cls, text in pills)


def _gauge(title: str, big: str, sub: str, percent: float | None) -> str:
    meter = ""
    if percent is not None:
        pct = max(0.0, min(100.0, float(percent)))
        level = "crit" if pct >= 90 else "warn" if pct >= 75 else ""
        meter = f'<div class="mm-meter {level}"><div style="width:{pct:.1f}%"></div></div>'
    return (
        f'<div class="mm-gauge"><h4>{_e(title)}</h4><div class="mm-big">{_e(big)}</div>'
        f'{meter}<div class="mm-sub">{sub}</div></div>'
    )


def render_system(report: dict[str, Any], preload: dict[str, Any]) -> str:
    """System tab: gauges for CPU, RAM, GPU, disk and the loaded models."""
    cards = []
    cpu = report.get("cpu") or {}
    cards.append(
        _gauge(
            "CPU",
            f"{cpu.get('percent', 0):.0f}%",
            _e(f"{cpu.get('count')} cores"),
            cpu.get("percent"),
        )
    )
    ram = report.get("ram") or {}
    total, available = ram.get("total_bytes") or 0, ram.get("available_bytes") or 0
    cards.append(
        _gauge(
            "RAM",
            f"{ram.get('percent', 0):.0f}%",
            _e(f"{human_bytes(total - available)} used of {human_bytes(total)}"),
            ram.get("percent"),
        )
    )
    gpu = report.get("gpu") or {}
    if gpu.get("available"):
        g_total, g_free = gpu.get("total_bytes") or 0, gpu.get("free_bytes") or 0
        used = g_total - g_free
        cards.append(
            _gauge(
                f"GPU · {gpu.get('name', 'CUDA')}",
                f"{100 * used / g_total:.0f}%" if g_total else "—",
                _e(
                    f"{human_bytes(used)} used of {human_bytes(g_total)}; "
                    f"{human_bytes(gpu.get('allocated_bytes'))} by models"
                ),
                100 * used / g_total if g_total else None,
            )
        )
    else:
        note = "No CUDA device" if gpu.get("available") is False else (gpu.get("note") or "unknown")
        cards.append(_gauge("GPU", "—", _e(note), None))
    disk = report.get("disk") or {}
    d_free, d_total = disk.get("free_bytes"), disk.get("total_bytes")
    d_pct = 100 * (d_total - d_free) / d_total if d_total and d_free is not None else None
    cards.append(
        _gauge(
            "Model cache disk",
            f"{human_bytes(d_free)} free",
            _e(disk.get("path", "")) + (_e(f" · {human_bytes(d_total)} total") if d_total else ""),
            d_pct,
        )
    )
    rss = (report.get("process") or {}).get("rss_bytes")
    cards.append(
        _gauge(
            "This process",
            human_bytes(rss),
            _e(f"{100 * rss / total:.1f}% of RAM") if rss and total else "",
            100 * rss / total if rss and total else None,
        )
    )
    loaded = []
    whisper, align = preload.get("whisper") or {}, preload.get("align") or {}
    if whisper:
        loaded.append(f"Whisper <b>{_e(whisper.get('id'))}</b> on {_e(whisper.get('device'))}")
    if align:
        loaded.append(f"Alignment <b>{_e(align.get('id'))}</b> ({_e(align.get('language'))})")
    cuda = (preload.get("memory") or {}).get("cuda") or {}
    if cuda:
        loaded.append(f"CUDA allocated {_e(human_bytes(cuda.get('allocated_bytes')))}")
    cards.append(
        _gauge(
            "Loaded models",
            str(len([x for x in (whisper, align) if x])),
            "<br>".join(loaded) or "nothing loaded",
            None,
        )
    )
    return f'<div class="mm-gauges">{"".join(cards)}</div>'


def segment_rows(transcript: Any) -> list[list[str]]:
    """Transcript -> rows for the segment table: start, end, text, words with timings."""
    rows = []
    for seg in transcript.segments:
        words = " · ".join(
            f"{w.text.strip()} {format_seconds(w.start)}–{format_seconds(w.end)}" for w in seg.words or ()
        )
        rows.append([format_clock(seg.start), format_clock(seg.end), seg.text.strip(), words])
    return rows


def render_stage(text: str, kind: str = "") -> str:
    return f'<div class="mm-stage {_e(kind)}" data-kind="{_e(kind or "running")}">{text}</div>'


STAGES = {
    "decoding": "Decoding the audio…",
    "transcribing": "Transcribing with {model}…",
    "aligning": "Aligning the words…",
    "done": "Writing the subtitle files…",
}


def stage_text(name: str, model_id: str) -> str:
    """The pipeline's stage name in words."""
    return STAGES.get(name, name.capitalize() + "…").format(model=model_id)


def done_text(transcript: Any, took_s: float) -> str:
    n = len(transcript.segments)
    return (
        f"Done: {n} segment{'s' if n != 1 else ''} from {transcript.duration:.1f} s of audio, "
        f"language <b>{_e(transcript.language)}</b>, in {took_s:.1f} s."
    )


def output_stem(audio_path: str) -> str:
    """Subtitle file names follow the uploaded file's name."""
    stem = Path(audio_path).stem.strip()
    return stem if stem and stem not in {".", ".."} else "audio"


def language_arg(language: str | None) -> str | None:
    return None if not language or language == AUTO else language


# ----------------------------------------------------------------------------
# Client-side snippets (run in the browser before the request is sent)
# ----------------------------------------------------------------------------
def _js_pending(button_id: str) -> str:
    """Disable the clicked button and mark the row waiting at once; pass the inputs on."""
    return f"""(...inputs) => {{
  const model = inputs[0];
  const el = document.getElementById({button_id!r});
  const btn = el && (el.tagName === 'BUTTON' ? el : el.querySelector('button'));
  if (btn) btn.disabled = true;
  if (model) {{
    document.querySelectorAll('[data-model="' + CSS.escape(model) + '"]').forEach((row) => {{
      if (['downloaded', 'downloading', 'verifying'].includes(row.dataset.status)) return;
      row.dataset.status = 'queued';
      row.className = 'st-queued';
      row.querySelectorAll('.mm-status-text').forEach((s) => {{ s.textContent = 'waiting'; }});
    }});
  }}
  return inputs.length === 1 ? inputs[0] : inputs;
}}"""


JS_TOGGLE_PANEL = """() => {
  const closed = document.body.classList.toggle('mm-panel-closed');
  try { localStorage.setItem('mm-panel-closed', closed ? '1' : '0'); } catch (e) {}
}"""
JS_CLOSE_PANEL = """() => {
  document.body.classList.add('mm-panel-closed');
  try { localStorage.setItem('mm-panel-closed', '1'); } catch (e) {}
}"""
JS_RESTORE_PANEL = """() => {
  try {
    if (localStorage.getItem('mm-panel-closed') === '1') document.body.classList.add('mm-panel-closed');
  } catch (e) {}
}"""
JS_CONFIRM_DELETE = (
    """(model) => (model && window.confirm('Delete the files of ' + model + '?')) ? model : null"""
)


def _html(value: str = "", **kwargs: Any) -> gr.HTML:
    """An HTML block styled only by assets/studio.css (no Gradio prose styles)."""
    return gr.HTML(value, apply_default_css=False, **kwargs)


def _read_asset(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        log.warning("UI asset %s is missing", path)
        return ""


# ----------------------------------------------------------------------------
# The Blocks
# ----------------------------------------------------------------------------
PRIVATE: dict[str, Any] = {"api_visibility": "private"}  # the REST API under /api is the public one
TAB_BUTTON_KEYS = ("download", "cancel", "delete", "preload", "clear_cache")
PANEL_BUTTON_KEYS = ("download", "cancel")


def build_ui(services: Services) -> gr.Blocks:
    specs = services.catalog.all()
    whisper_ids = [s.id for s in specs if s.kind == "whisper"]
    choices = SimpleNamespace(
        whisper=whisper_ids,
        default=DEFAULT_MODEL if DEFAULT_MODEL in whisper_ids else whisper_ids[0],
        models=[(s.id if s.kind == "whisper" else f"{s.id} (align · {s.language})", s.id) for s in specs],
        languages=[("auto", AUTO), *[(code, code) for code in services.catalog.languages]],
    )
    with gr.Blocks(title="WhisperX Studio", fill_width=True, delete_cache=(3600, 24 * 3600)) as demo:
        _html(f"<style>{_read_asset(CSS_PATH)}</style>", elem_id="studio-css")
        header = _header()
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=480), gr.Tabs(elem_id="main-tabs"):
                tx = _transcribe_tab(choices)
                models = _models_tab(choices)
                with gr.Tab("System", id="system", elem_id="tab-system"):
                    system_html = _html("", elem_id="system-info")
            panel = _panel(choices)
        timer = gr.Timer(IDLE_TICK_S)
        live = _wire_live(services, demo, timer, header, models, panel, system_html)
        _wire_actions(services, models, panel, live)
        _wire_transcribe(services, tx)
    return demo


def _header() -> SimpleNamespace:
    with gr.Row(elem_id="studio-header", equal_height=True):
        _html(
            f'<div class="mm-brand">{_read_asset(LOGO_PATH)}<div><h1>WhisperX Studio</h1>'
            "<p>Transcribe with word timings · models managed on the server</p></div></div>",
            scale=3,
        )
        badge = _html("", elem_id="status-badge", scale=2)
        toggle = gr.Button("☰ Model manager", elem_id="panel-toggle", size="sm", scale=0, min_width=170)
    toggle.click(None, js=JS_TOGGLE_PANEL)
    return SimpleNamespace(badge=badge)


def _transcribe_tab(choices: SimpleNamespace) -> SimpleNamespace:
    with gr.Tab("Transcribe", id="transcribe", elem_id="tab-transcribe"), gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=320):
            audio = gr.Audio(
                sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="audio-input"
            )
            with gr.Row():
                model = gr.Dropdown(choices.whisper, value=choices.default, label="Model", elem_id="tx-model")
                language = gr.Dropdown(choices.languages, value=AUTO, label="Language", elem_id="tx-language")
                device = gr.Dropdown(list(DEVICES), value="auto", label="Device", elem_id="tx-device")
            button = gr.Button("Transcribe", variant="primary", elem_id="transcribe-btn")
        with gr.Column(scale=3, min_width=360):
            stage = _html(
                render_stage("Upload or record audio, then press Transcribe."), elem_id="transcribe-stage"
            )
            segments = gr.Dataframe(
                headers=SEGMENT_HEADERS,
                value=[],
                interactive=False,
                wrap=True,
                column_widths=["13%", "13%", "30%", "44%"],
                label="Segments",
                elem_id="segments-table",
                max_height=420,
            )
            files = gr.File(
                label="Subtitles and transcript (SRT, VTT, JSON, TXT)",
                file_count="multiple",
                elem_id="subtitle-files",
                interactive=False,
                visible=False,
            )
    return SimpleNamespace(
        audio=audio,
        model=model,
        language=language,
        device=device,
        button=button,
        stage=stage,
        segments=segments,
        files=files,
    )


def _models_tab(choices: SimpleNamespace) -> SimpleNamespace:
    with gr.Tab("Models", id="models", elem_id="tab-models"):
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=420):
                with gr.Row(equal_height=True):
                    model = gr.Dropdown(
                        choices.models, value=choices.default, label="Model", elem_id="model-select", scale=3
                    )
                    language = gr.Dropdown(
                        choices.languages,
                        value=AUTO,
                        label="Language",
                        elem_id="language-select",
                        scale=1,
                        min_width=140,
                    )
                    device = gr.Dropdown(
                        list(DEVICES),
                        value="auto",
                        label="Device",
                        elem_id="device-select",
                        scale=1,
                        min_width=120,
                    )
                with gr.Row():
                    small = {"size": "md", "min_width": 100}
                    download = gr.Button("Download", variant="primary", elem_id="download-btn", **small)
                    cancel = gr.Button("Cancel", elem_id="cancel-btn", interactive=False, **small)
                    delete = gr.Button(
                        "Delete", variant="stop", elem_id="delete-btn", interactive=False, **small
                    )
                    preload = gr.Button("Preload", elem_id="preload-btn", **small)
                    clear = gr.Button("Clear cache", elem_id="clear-cache-btn", **small)
                message = gr.Markdown("", elem_id="models-status", elem_classes="mm-msg")
            with gr.Column(scale=1, min_width=260, elem_classes="mm-side-card"):
                preload_card = _html("", elem_id="preload-status")
        table = _html(render_models_table([]), elem_id="models-table")
    return SimpleNamespace(
        model=model,
        language=language,
        device=device,
        download=download,
        cancel=cancel,
        delete=delete,
        preload=preload,
        clear=clear,
        message=message,
        preload_card=preload_card,
        table=table,
        buttons=[download, cancel, delete, preload, clear],
    )


def _panel(choices: SimpleNamespace) -> SimpleNamespace:
    """The model manager panel: a docked column the user can close and reopen."""
    with gr.Column(scale=1, min_width=300, elem_id="model-panel"):
        with gr.Row(elem_classes="mm-panel-title", equal_height=True):
            _html("<h3>Model manager</h3>", scale=4)
            close = gr.Button("✕", elem_id="panel-close", size="sm", scale=0, min_width=44)
        model = gr.Dropdown(
            choices.models, value=choices.default, label="Model", elem_id="model-select-panel"
        )
        with gr.Row():
            download = gr.Button(
                "Download", variant="primary", elem_id="download-btn-panel", size="sm", min_width=80
            )
            cancel = gr.Button(
                "Cancel", elem_id="cancel-btn-panel", size="sm", interactive=False, min_width=80
            )
        message = gr.Markdown("", elem_id="panel-status", elem_classes="mm-msg")
        models = _html("", elem_id="panel-models")
        preload_card = _html("", elem_id="panel-preload")
    close.click(None, js=JS_CLOSE_PANEL)
    return SimpleNamespace(
        model=model,
        download=download,
        cancel=cancel,
        message=message,
        models=models,
        preload_card=preload_card,
        buttons=[download, cancel],
    )


def _wire_live(
    services: Services,
    demo: gr.Blocks,
    timer: gr.Timer,
    header: SimpleNamespace,
    models: SimpleNamespace,
    panel: SimpleNamespace,
    system_html: gr.HTML,
) -> SimpleNamespace:
    """The one timer (and the page load) redraw everything from the server's snapshot."""
    downloads, preload = services.downloads, services.preload
    outputs = [
        timer,
        header.badge,
        models.table,
        models.preload_card,
        panel.models,
        panel.preload_card,
        system_html,
        *models.buttons,
        *panel.buttons,
    ]
    selects = [models.model, panel.model]

    def buttons(snap: list[dict], pre: dict, selected: str | None, selected_panel: str | None) -> list:
        tab, side = button_states(snap, selected, pre), button_states(snap, selected_panel, pre)
        return [gr.Button(interactive=tab[k]) for k in TAB_BUTTON_KEYS] + [
            gr.Button(interactive=side[k]) for k in PANEL_BUTTON_KEYS
        ]

    def refresh(selected: str | None, selected_panel: str | None) -> list:
        snap, pre = downloads.snapshot(), preload.status()
        preload_html = render_preload(pre)
        return [
            gr.Timer(value=tick_interval(snap, pre)),
            render_badge(snap, pre),
            render_models_table(snap),
            preload_html,
            render_panel(snap),
            preload_html,
            render_system(system_report(services.store), pre),
            *buttons(snap, pre, selected, selected_panel),
        ]

    def refresh_buttons(selected: str | None, selected_panel: str | None) -> list:
        return buttons(downloads.snapshot(), preload.status(), selected, selected_panel)

    quiet = {"show_progress": "hidden", **PRIVATE}
    timer.tick(refresh, selects, outputs, concurrency_limit=None, **quiet)
    demo.load(refresh, selects, outputs, concurrency_limit=None, **quiet)
    demo.load(None, js=JS_RESTORE_PANEL)
    for select in selects:
        select.change(refresh_buttons, selects, [*models.buttons, *panel.buttons], queue=False, **quiet)
    return SimpleNamespace(refresh=refresh, selects=selects, outputs=outputs)


def _wire_actions(
    services: Services, models: SimpleNamespace, panel: SimpleNamespace, live: SimpleNamespace
) -> None:
    """Buttons call a manager and say what happened in words; the snapshot shows the rest."""
    downloads, preload = services.downloads, services.preload

    def said(action: Callable[[], str]) -> str:
        # Always answer (never raise): a failed event would skip the refresh that follows it and
        # leave a button disabled by the click's JavaScript until the page is reloaded.
        try:
            return action()
        except ModelMgrError as exc:
            gr.Warning(exc.message)
            return f"⚠️ {exc.message}"
        except Exception as exc:  # the UI boundary: a bug must still be said in words
            log.exception("UI action failed")
            gr.Warning(f"Unexpected error: {exc}")
            return f"⚠️ Unexpected error: {exc}"

    def download(model_id: str, language: str = AUTO) -> tuple[str, Any]:
        languages = [language_arg(language)] if language_arg(language) else None

        def run() -> str:
            return describe_start(model_id, downloads.start(model_id, languages=languages).status, languages)

        # The button stays disabled until the refresh that follows recomputes it from the snapshot.
        return said(run), gr.Button(interactive=False)

    def cancel(model_id: str) -> str:
        def run() -> str:
            downloads.cancel(model_id)
            return f"Cancelling **{model_id}**."

        return said(run)

    def delete(model_id: str | None) -> str:
        if not model_id:  # the confirm dialog was dismissed
            return "Nothing was deleted."

        def run() -> str:
            freed = downloads.delete(model_id, loaded=preload.is_loaded(model_id))
            return f"Deleted **{model_id}** ({human_bytes(freed)} freed)."

        return said(run)

    def start_preload(model_id: str, language: str, device: str) -> str:
        def run() -> str:
            status = preload.start(model_id, language_arg(language), device)
            if status.get("state") == "ready":
                return f"**{model_id}** is loaded on {status.get('device')}."
            return f"Preloading **{model_id}** ({status.get('state')})."

        return said(run)

    def clear_cache() -> str:
        def run() -> str:
            freed = preload.clear_cache()["freed"]
            names = ", ".join(freed["models"]) or "nothing was loaded"
            gpu = f", {human_bytes(freed['cuda_bytes'])} GPU memory" if freed.get("cuda_bytes") else ""
            return f"Unloaded: {names}. Freed {human_bytes(freed['rss_bytes'])} RAM{gpu}."

        return said(run)

    act = {"concurrency_limit": None, "show_progress": "hidden", **PRIVATE}
    redraw = (live.refresh, live.selects, live.outputs)
    then = {"queue": False, "show_progress": "hidden", **PRIVATE}
    # The Models tab downloads with the alignment model of the language chosen there; the panel
    # with the model's defaults.
    for button, inputs, message in (
        (models.download, [models.model, models.language], models.message),
        (panel.download, [panel.model], panel.message),
    ):
        button.click(
            download,
            inputs,
            [message, button],
            js=_js_pending(button.elem_id or ""),
            **act,
        ).then(*redraw, **then)
    for button, select, message in (
        (models.cancel, models.model, models.message),
        (panel.cancel, panel.model, panel.message),
    ):
        button.click(cancel, select, message, **act).then(*redraw, **then)
    models.delete.click(delete, models.model, models.message, js=JS_CONFIRM_DELETE, **act).then(
        *redraw, **then
    )
    models.preload.click(
        start_preload, [models.model, models.language, models.device], models.message, **act
    ).then(*redraw, **then)
    models.clear.click(clear_cache, None, models.message, **act).then(*redraw, **then)


def _wire_transcribe(services: Services, tx: SimpleNamespace) -> None:
    """Audio -> (load models, showing download/load progress) -> pipeline stages -> table + files."""
    preload = services.preload

    def transcribe(audio_path: str | None, model_id: str, language: str, device: str) -> Iterator[tuple]:
        keep = (gr.skip(), gr.skip())
        if not audio_path:
            gr.Warning("Upload or record some audio first.")
            yield (render_stage("Upload or record some audio first.", "err"), *keep)
            return
        lang = language_arg(language)
        started = time.monotonic()
        stage_now = {"name": "decoding"}
        result: dict[str, Any] = {}

        def pipeline() -> None:
            transcript = run_pipeline(
                audio_path,
                language=lang,
                device=device,
                get_whisper=preload.whisper,
                get_aligner=preload.aligner,
                on_stage=lambda name: stage_now.update(name=name),
            )
            out_dir = Path(tempfile.mkdtemp(prefix="whisperx-studio-"))
            result["files"] = write_all(transcript, out_dir, output_stem(audio_path))
            result["transcript"] = transcript

        try:
            yield (render_stage("Preparing the models…"), [], gr.File(value=None, visible=False))
            for text in _wait(
                lambda: preload.ensure_ready(model_id, lang, device),
                lambda: _loading_stage(services, model_id),
            ):
                yield (render_stage(_e(text)), *keep)
            for name in _wait(pipeline, lambda: stage_now["name"]):
                yield (render_stage(_e(stage_text(name, model_id))), *keep)
        except ModelMgrError as exc:
            gr.Warning(exc.message)
            yield (render_stage(f"⚠️ {_e(exc.message)}", "err"), *keep)
            return
        except Exception as exc:  # the UI boundary: say it in words, keep the worker alive
            log.exception("transcription failed")
            gr.Warning(f"Transcription failed: {exc}")
            yield (render_stage(f"⚠️ Transcription failed: {_e(exc)}", "err"), *keep)
            return
        transcript, paths = result["transcript"], result["files"]
        yield (
            render_stage(done_text(transcript, time.monotonic() - started), "ok"),
            segment_rows(transcript),
            gr.File(value=[str(paths[fmt]) for fmt in OUTPUT_FORMATS if fmt in paths], visible=True),
        )

    # Default concurrency (1): transcriptions share the one preloaded model, so they take turns in
    # Gradio's queue; every other event (timer, buttons) has its own unlimited lane.
    tx.button.click(
        transcribe,
        [tx.audio, tx.model, tx.language, tx.device],
        [tx.stage, tx.segments, tx.files],
        show_progress="minimal",
        show_progress_on=[tx.stage],
        **PRIVATE,
    )


def _wait(work: Callable[[], Any], describe: Callable[[], str], every_s: float = 0.5) -> Iterator[str]:
    """Run ``work`` in a thread; yield ``describe()`` whenever it changes; re-raise its error."""
    future: Future = Future()

    def runner() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)

    threading.Thread(target=runner, name="ui-work", daemon=True).start()
    last = None
    while True:
        try:
            future.result(timeout=every_s)
            return
        except TimeoutError:
            text = describe()
            if text != last:
                last = text
                yield text


def _loading_stage(services: Services, model_id: str) -> str:
    """Words for what the preload is doing: downloading (with progress) or loading."""
    state = services.preload.status().get("state")
    if state == "downloading":
        try:
            m = services.downloads.describe(services.catalog.get(model_id))
        except ModelMgrError:
            return "Downloading the models…"
        if m["status"] in IN_FLIGHT:
            p = m["progress"]
            return (
                f"Downloading {model_id}: {format_percent(p.get('percent'))} "
                f"({human_speed(p.get('speed_bps'))}, ETA {format_eta(p.get('eta_s'))})"
            )
        return "Downloading the alignment model…"
    if state == "loading":
        return f"Loading {model_id} into memory…"
    return "Preparing the models…"
