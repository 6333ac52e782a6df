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

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from .errors import ModelMgrError, from_code
from .services import Services
from .subtitles import write_all
from .system import system_report
from .transcribe import run_pipeline
from .transcriptions import JobOptions
from .ui_view import (
    AUTO,
    DEFAULT_MODEL,
    DEVICES,
    IDLE_TICK_S,
    IN_FLIGHT,
    OUTPUT_FORMATS,
    button_states,
    describe_start,
    done_text,
    esc,
    format_eta,
    format_percent,
    human_bytes,
    human_speed,
    language_arg,
    output_stem,
    render_badge,
    render_models_table,
    render_panel,
    render_preload,
    render_segments,
    render_stage,
    render_system,
    render_workers,
    segment_rows,
    stage_text,
    tick_interval,
)

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
CSS_PATH = ASSETS / "studio.css"
LOGO_PATH = ASSETS / "logo.svg"


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
            segments = _html(render_segments([]), elem_id="segments-table")
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
            render_system(system_report(services.store), pre) + _workers_html(services),
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


def _workers_html(services: Services) -> str:
    """Distributed mode only: the queue's reachability and the connected workers (System tab)."""
    if not services.distributed:
        return ""
    manager: Any = services.transcriptions
    health = manager.health()
    try:
        workers = manager.workers() if health.get("redis") == "ok" else []
    except ModelMgrError as exc:  # Redis went away between the two calls
        health, workers = {"redis": "unreachable", "error": exc.message}, []
    return render_workers(health, workers)


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
            if services.distributed:  # a worker runs it: submit a job and follow it
                for item in run_as_job(services, audio_path, model_id, lang, device):
                    if isinstance(item, str):
                        yield (render_stage(esc(item)), *keep)
                    else:
                        result["transcript"], result["files"] = item
            else:
                for text in _wait(
                    lambda: preload.ensure_ready(model_id, lang, device),
                    lambda: _loading_stage(services, model_id),
                ):
                    yield (render_stage(esc(text)), *keep)
                for name in _wait(pipeline, lambda: stage_now["name"]):
                    yield (render_stage(esc(stage_text(name, model_id))), *keep)
        except ModelMgrError as exc:
            gr.Warning(exc.message)
            yield (render_stage(f"⚠️ {esc(exc.message)}", "err"), *keep)
            return
        except Exception as exc:  # the UI boundary: say it in words, keep the worker alive
            log.exception("transcription failed")
            gr.Warning(f"Transcription failed: {exc}")
            yield (render_stage(f"⚠️ Transcription failed: {esc(exc)}", "err"), *keep)
            return
        transcript, paths = result["transcript"], result["files"]
        yield (
            render_stage(done_text(transcript, time.monotonic() - started), "ok"),
            render_segments(segment_rows(transcript)),
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


def run_as_job(
    services: Services, audio_path: str, model_id: str, language: str | None, device: str
) -> Iterator[str | tuple[Any, dict[str, Path]]]:
    """Distributed mode: submit the audio as a job (a worker runs it) and follow it.

    Yields what is happening in words, then ``(transcript, {format: path})``; raises the
    job's error (or ``QueueUnavailable`` when Redis cannot be reached) as a ModelMgrError.
    """
    manager = services.transcriptions
    manager.root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=manager.root, prefix=".upload-")
    os.close(fd)
    try:
        shutil.copyfile(audio_path, tmp)
        options = JobOptions(model=model_id, language=language, device=device, formats=OUTPUT_FORMATS)
        job = manager.submit(Path(tmp), Path(audio_path).name, options)
    finally:
        Path(tmp).unlink(missing_ok=True)
    last = None
    while not job.done.wait(0.5):
        job = manager.get(job.id)
        text = _job_text(services, job.describe(), model_id)
        if text != last:
            last = text
            yield text
    if job.status != "done":
        error = job.error or {"code": job.status, "message": f"the transcription was {job.status}"}
        raise from_code(error["code"], error["message"])
    # Copies in a temp folder under the upload's name: Gradio serves files from there (not from
    # the shared data folder), as it does for the in-process path.
    out_dir = Path(tempfile.mkdtemp(prefix="whisperx-studio-"))
    files = {}
    for fmt in OUTPUT_FORMATS:
        files[fmt] = out_dir / f"{output_stem(audio_path)}.{fmt}"
        shutil.copyfile(manager.result(job.id, fmt), files[fmt])
    yield manager.transcript(job.id), files


def _job_text(services: Services, job: dict[str, Any], model_id: str) -> str:
    worker = f" on {job['worker']}" if job.get("worker") else ""
    status = job["status"]
    if status == "queued":
        if not services.transcriptions.workers():  # type: ignore[attr-defined]
            return "No worker is connected: the job waits as queued until one starts."
        return "Waiting for a free worker…"
    if status == "downloading":
        return f"Downloading {model_id}{worker}: {format_percent(job.get('progress'))}"
    if status == "loading":
        return f"Loading {model_id}{worker}…"
    return f"{stage_text(status, model_id)}{worker} {format_percent(job.get('progress'))}"


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
