"""The studio's Gradio Blocks: a thin layer over the managers in ``Services``.

Deliberate choices (keep them):

* **One timer, no browser state.** A single top-level ``gr.Timer`` redraws the
  models table, the manager panel, the preload card, the System tab and the
  buttons' ``interactive`` flags from ``downloads.snapshot()`` and
  ``preload.status()`` on every tick: about once a second while something is
  in flight, every few seconds when idle, never while the tab is in the
  background (Gradio's Timer dispatches no tick while ``document.visibilityState``
  is ``hidden``; a tab shown again asks for a redraw at once, ``page_shown``,
  rather than at its next tick). Nothing in a component or a
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
* **Transcriptions are jobs.** The Transcribe button copies the files into the
  TranscriptionManager's queue and returns at once: no Gradio event is held while
  a job runs (each open tab holding one would use up the browser's ~6 connections
  per host and freeze the page). The jobs table is drawn by the same timer from
  ``transcriptions.snapshot()``, so the queue, its progress and the result links
  survive a reload and show in every tab. Its Show/Cancel/Remove buttons are plain
  HTML: one delegated listener (``js_on_load``) sends a ``job_action`` event with
  the job id, and the handler calls the manager.
* **Which job's segments are shown** is the only thing a page remembers (two
  hidden textboxes, never ``gr.State``: any State makes Gradio keep a heartbeat
  stream open per page, which over HTTP/1.1 freezes the sixth tab; they hold
  the job picked with Show, and the one drawn now, so a tick
  re-renders the table only when that changes). Without a pick it is the newest
  finished job.
* Helpers named ``format_*``/``render_*``/``human_*`` are pure functions of a
  snapshot, so they are unit tested without a browser (tests/web/test_ui.py).

The CSS lives in ``assets/studio.css``; it is injected with a ``<style>`` element
because ``gr.mount_gradio_app`` overwrites ``Blocks.css``.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from modelmgr.asr.jobs import Job, JobOptions
from modelmgr.asr.loaders import auto_device_hint
from modelmgr.asr.manager import JobManager
from modelmgr.asr.system import system_report
from modelmgr.core.errors import ModelMgrError, PayloadTooLarge
from modelmgr.services import Services
from modelmgr.web.api.transcriptions import result_links
from modelmgr.web.ui.views import (
    AUTO,
    DEFAULT_MODEL,
    IDLE_TICK_S,
    button_states,
    describe_start,
    device_choices,
    esc,
    find_model,
    human_bytes,
    job_option_fields,
    job_title,
    job_to_show,
    language_arg,
    model_choice_label,
    parse_speaker_names,
    render_badge,
    render_fit,
    render_jobs_table,
    render_models_table,
    render_panel,
    render_preload,
    render_segments,
    render_stage,
    render_system,
    render_workers,
    segment_rows,
    segment_speakers,
    segments_key,
    submitted_text,
    tick_interval,
)

log = logging.getLogger(__name__)

# In a checkout the assets sit beside the package; an installed wheel carries them inside it.
_PACKAGE = Path(__file__).resolve().parents[2]  # modelmgr/
ASSETS = _PACKAGE / "assets" if (_PACKAGE / "assets").is_dir() else _PACKAGE.parent / "assets"
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
JS_DISABLE_TRANSCRIBE = """(...inputs) => {
  const btn = document.querySelector('#transcribe-btn');
  if (btn) btn.disabled = true;
  return inputs;
}"""


def _js_row_actions(event: str, key: str) -> str:
    """A table's buttons: one delegated listener on the component's element (which outlives every
    redraw of its content) sends ``event`` with the button's action and its ``data-<key>``."""
    return f"""
element.addEventListener('click', (event) => {{
  const button = event.target.closest('button[data-action][data-{key}]');
  if (!button || button.disabled) return;
  button.disabled = true;
  trigger('{event}', {{action: button.dataset.action, {key}: button.dataset.{key}}});
}});
"""


# A tab shown again redraws at once: its timer dispatched nothing while it was hidden.
JS_PAGE_SHOWN = """
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') trigger('page_shown');
});
"""
JS_JOB_ACTIONS = _js_row_actions("job_action", "job")  # the jobs table: Show, Cancel, Remove
JS_WORKER_ACTIONS = _js_row_actions("worker_action", "worker")  # System tab: a worker's Preload
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
        distributed=services.distributed,
        whisper=whisper_ids,
        default=DEFAULT_MODEL if DEFAULT_MODEL in whisper_ids else whisper_ids[0],
        models=[(model_choice_label(s.id, s.kind, s.language, s.is_diarizer), s.id) for s in specs],
        languages=[("auto", AUTO), *[(code, code) for code in services.catalog.languages]],
        devices=device_choices(auto_device_hint()),
        diarizer=services.catalog.default_diarizer,
    )
    with gr.Blocks(title="WhisperX Studio", fill_width=True, delete_cache=(3600, 24 * 3600)) as demo:
        _html(f"<style>{_read_asset(CSS_PATH)}</style>", elem_id="studio-css")
        header = _header()
        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=480), gr.Tabs(elem_id="main-tabs"):
                tx = _transcribe_tab(choices)
                models = _models_tab(choices)
                with gr.Tab("System", id="system", elem_id="tab-system"):
                    cluster = _cluster_controls(choices) if services.distributed else None
                    system_html = _html("", elem_id="system-info", js_on_load=JS_WORKER_ACTIONS)
            panel = _panel(choices)
        timer = gr.Timer(IDLE_TICK_S)
        # Per page, outside the Tabs (a non-Tab child of gr.Tabs duplicates its tab buttons). Hidden
        # textboxes, not gr.State: any gr.State makes Gradio hold a heartbeat stream open per page,
        # and six such pages use up a browser's HTTP/1.1 connections to the host (tabs freeze).
        tx.pinned = _page_value()  # the job picked with Show ("": follow the newest finished job)
        tx.shown = _page_value()  # segments_key of the table drawn now (the job, its speakers' names)
        tx.watch = _html("", elem_id="visibility-watch", js_on_load=JS_PAGE_SHOWN)
        live = _wire_live(services, demo, timer, header, models, panel, system_html, tx)
        _wire_actions(services, models, panel, live)
        _wire_transcribe(services, tx, live)
        if cluster is not None:
            _wire_cluster(services, cluster, system_html, live)
    return demo


def _page_value() -> gr.Textbox:
    """A value one page remembers (sent with its events), without gr.State's heartbeat connection."""
    return gr.Textbox(visible=False, elem_classes="mm-page-value")


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
            files = gr.File(
                file_count="multiple",
                type="filepath",
                label="Audio or video files (several at once queue up)",
                elem_id="audio-input",
                height=150,
            )
            recording = gr.Audio(
                sources=["microphone"], type="filepath", label="…or record", elem_id="mic-input"
            )
            with gr.Row():
                model = gr.Dropdown(choices.whisper, value=choices.default, label="Model", elem_id="tx-model")
                language = gr.Dropdown(choices.languages, value=AUTO, label="Language", elem_id="tx-language")
                device = gr.Dropdown(choices.devices, value=AUTO, label="Device", elem_id="tx-device")
            options = _transcribe_options(choices)
            button = gr.Button("Transcribe", variant="primary", elem_id="transcribe-btn")
            stage = _html(
                render_stage("Add audio files or record, then press Transcribe."), elem_id="transcribe-stage"
            )
        with gr.Column(scale=3, min_width=360):
            jobs = _html(render_jobs_table([]), elem_id="jobs-table", js_on_load=JS_JOB_ACTIONS)
            segments = _html(render_segments([]), elem_id="segments-table")
            with gr.Row(equal_height=True, elem_id="tx-rename"):
                speaker_names = gr.Textbox(
                    label="Speaker names (of the diarized job shown)",
                    placeholder="SPEAKER_00=Alice, SPEAKER_01=Bob",
                    elem_id="tx-speaker-names",
                    scale=4,
                )
                rename = gr.Button("Rename", elem_id="tx-rename-btn", scale=1, min_width=110)
            renamed = _html("", elem_id="tx-rename-said")
    return SimpleNamespace(
        files=files,
        recording=recording,
        model=model,
        language=language,
        device=device,
        options=options,
        button=button,
        stage=stage,
        jobs=jobs,
        segments=segments,
        speaker_names=speaker_names,
        rename=rename,
        renamed=renamed,
    )


def _transcribe_options(choices: SimpleNamespace) -> SimpleNamespace:
    """The job options beyond model, language and device: folded away, every default as the API's.

    Empty numbers mean "decide for me" (batch size by device; speaker counts by the diarizer).
    The speaker counts are enabled only while Diarize is ticked (and ignored when it is not).
    """
    with gr.Accordion("Options", open=False, elem_id="tx-options"):
        task = gr.Radio(
            [("Transcribe", "transcribe"), ("Translate to English", "translate")],
            value="transcribe",
            label="Task",
            info="*.en models transcribe only",
            elem_id="tx-task",
        )
        with gr.Row(equal_height=True):
            vad = gr.Checkbox(
                value=True, label="Skip silence (VAD)", elem_id="tx-vad", scale=2, min_width=160
            )
            # Text, not gr.Number: a Gradio number input cannot be empty (it sends 0), and empty
            # is "auto" here (views.job_option_fields reads the text).
            batch_size = gr.Textbox(
                "",
                label="Batch size",
                placeholder="auto",
                max_lines=1,
                elem_id="tx-batch-size",
                scale=1,
                min_width=100,
            )
        prompt = gr.Textbox(
            label="Initial prompt",
            placeholder="names, spellings, style",
            max_lines=4,
            elem_id="tx-prompt",
        )
        diarize = gr.Checkbox(
            value=False,
            label="Diarize: who spoke when",
            info=f"{choices.diarizer}, gated on the Hub: HF_TOKEN with access",
            elem_id="tx-diarize",
        )
        with gr.Row(equal_height=True):
            count = {"placeholder": "auto", "max_lines": 1, "interactive": False, "min_width": 90}
            num_speakers = gr.Textbox("", label="Speakers", elem_id="tx-num-speakers", **count)
            min_speakers = gr.Textbox("", label="Min speakers", elem_id="tx-min-speakers", **count)
            max_speakers = gr.Textbox("", label="Max speakers", elem_id="tx-max-speakers", **count)
    counts = [num_speakers, min_speakers, max_speakers]
    diarize.change(
        lambda on: [gr.Textbox(interactive=bool(on)) for _ in counts],
        diarize,
        counts,
        queue=False,
        show_progress="hidden",
        **PRIVATE,
    )
    return SimpleNamespace(
        task=task,
        vad=vad,
        batch_size=batch_size,
        prompt=prompt,
        diarize=diarize,
        num_speakers=num_speakers,
        min_speakers=min_speakers,
        max_speakers=max_speakers,
        inputs=[task, vad, batch_size, prompt, diarize, *counts],
    )


def _models_tab(choices: SimpleNamespace) -> SimpleNamespace:
    with gr.Tab("Models", id="models", elem_id="tab-models"):
        if choices.distributed:  # this tab and the panel act on the web process's own cache
            gr.Markdown(
                "**Cluster mode:** transcriptions run on the workers, each with its own model cache "
                "(see the **System** tab: *Download to all workers*, *Preload*). This tab manages "
                "the cache of this web process only.",
                elem_id="models-cluster-note",
                elem_classes="mm-msg",
            )
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
                        choices.devices,
                        value=AUTO,
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
                    # Re-hash the files (same-size damage shows only this way); always clickable.
                    verify = gr.Button("Verify", elem_id="verify-btn", **small)
                fit = _html("", elem_id="download-fit")
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
        verify=verify,
        message=message,
        fit=fit,
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
    tx: SimpleNamespace,
) -> SimpleNamespace:
    """The one timer (and the page load) redraw everything from the server's snapshot."""
    downloads, preload, transcriptions = services.downloads, services.preload, services.transcriptions
    key = results_key(services)
    outputs = [
        timer,
        header.badge,
        models.table,
        models.fit,
        models.preload_card,
        panel.models,
        panel.preload_card,
        system_html,
        tx.jobs,
        tx.segments,
        tx.shown,
        *models.buttons,
        *panel.buttons,
    ]
    selects = [models.model, panel.model]
    inputs = [*selects, tx.pinned, tx.shown]

    def buttons(snap: list[dict], pre: dict, selected: str | None, selected_panel: str | None) -> list:
        tab, side = button_states(snap, selected, pre), button_states(snap, selected_panel, pre)
        return [gr.Button(interactive=tab[k]) for k in TAB_BUTTON_KEYS] + [
            gr.Button(interactive=side[k]) for k in PANEL_BUTTON_KEYS
        ]

    def fit_html(snap: list[dict], selected: str | None, free: int | None = None) -> str:
        free = services.store.free_bytes() if free is None else free
        return render_fit(find_model(snap, selected), free, services.settings.min_free_bytes)

    def refresh(
        selected: str | None, selected_panel: str | None, pinned: str | None, shown: str | None
    ) -> list:
        snap, pre, jobs = downloads.snapshot(), preload.status(), transcriptions.snapshot()
        report = system_report(services.store)
        preload_html = render_preload(pre)
        pinned, shown = pinned or None, shown or None  # hidden textboxes hold "" for none
        show = job_to_show(jobs, pinned)
        show_id = show["id"] if show else None
        # The segment table is redrawn only when another job is to be shown (it can be long), or
        # its speakers were renamed: ``shown`` holds the drawn table's ``segments_key``.
        show_key = segments_key(show)
        if show_key == shown:
            segments = (gr.skip(), gr.skip())
        else:
            segments = (job_segments(transcriptions, show), show_key)
        return [
            gr.Timer(value=tick_interval(snap, pre, jobs)),
            render_badge(snap, pre, jobs),
            render_models_table(snap),
            fit_html(snap, selected, report["disk"]["free_bytes"]),
            preload_html,
            render_panel(snap),
            preload_html,
            render_system(report, pre) + _workers_html(services),
            render_jobs_table(jobs, {j["id"]: result_links(j, key) for j in jobs}, show_id),
            *segments,
            *buttons(snap, pre, selected, selected_panel),
        ]

    def refresh_buttons(selected: str | None, selected_panel: str | None) -> list:
        snap = downloads.snapshot()
        return [fit_html(snap, selected), *buttons(snap, preload.status(), selected, selected_panel)]

    def device_labels() -> list:
        # "auto (cpu)" becomes exact once torch has been imported: new pages get the exact word.
        devices = device_choices(auto_device_hint())
        return [gr.Dropdown(choices=devices), gr.Dropdown(choices=devices)]

    quiet = {"show_progress": "hidden", **PRIVATE}
    # queue=False: a tick is one short POST answered with the redraw. Through Gradio's queue it
    # would be a join plus a result stream held open per page, and twenty tabs sharing a browser's
    # six HTTP/1.1 connections to the host then wait on each other's streams.
    timer.tick(refresh, inputs, outputs, queue=False, **quiet)
    tx.watch.page_shown(refresh, inputs, outputs, queue=False, **quiet)
    demo.load(refresh, inputs, outputs, queue=False, **quiet)
    demo.load(device_labels, None, [tx.device, models.device], queue=False, **quiet)
    demo.load(None, js=JS_RESTORE_PANEL)
    for select in selects:
        select.change(
            refresh_buttons, selects, [models.fit, *models.buttons, *panel.buttons], queue=False, **quiet
        )
    return SimpleNamespace(refresh=refresh, inputs=inputs, outputs=outputs)


def results_key(services: Services) -> bytes | None:
    """The key that signs result links, derived from the auth token as routes.py does (None without one)."""
    token = services.settings.auth_token
    return hashlib.sha256(b"results:" + token.get_secret_value().encode()).digest() if token else None


def job_segments(transcriptions: JobManager, job: dict[str, Any] | None) -> str:
    """The segment table of a finished job (read from its result on disk)."""
    if job is None:
        return render_segments([])
    try:
        transcript = transcriptions.transcript(job["id"])
    except (ModelMgrError, OSError, ValueError) as exc:  # removed or expired meanwhile
        return render_segments([], f"{job_title(job)} · ⚠️ {exc}", job["id"])
    rows = segment_rows(transcript)
    return render_segments(rows, job_title(job), job["id"], segment_speakers(transcript))


def _workers_html(services: Services) -> str:
    """Distributed mode only: the queue's reachability and the connected workers (System tab)."""
    if not services.distributed:
        return ""
    manager: JobManager = services.transcriptions
    health = manager.health()
    try:
        workers = manager.workers() if health.get("redis") == "ok" else []
    except ModelMgrError as exc:  # Redis went away between the two calls
        health, workers = {"redis": "unreachable", "error": exc.message}, []
    return render_workers(health, workers)


def _said(action: Callable[[], str]) -> str:
    """Run a button's action and answer in words, never raise: a failed event would skip the
    refresh that follows it and leave a button disabled by the click's JavaScript until reload."""
    try:
        return action()
    except ModelMgrError as exc:
        gr.Warning(exc.message)
        return f"⚠️ {exc.message}"
    except Exception as exc:  # the UI boundary: a bug must still be said in words
        log.exception("UI action failed")
        gr.Warning(f"Unexpected error: {exc}")
        return f"⚠️ Unexpected error: {exc}"


def _cluster_controls(choices: SimpleNamespace) -> SimpleNamespace:
    """Distributed mode: act on the workers' own model caches (the web process has none of its own)."""
    with gr.Row(equal_height=True, elem_id="cluster-controls"):
        model = gr.Dropdown(choices.whisper, value=choices.default, label="Model", elem_id="cluster-model")
        language = gr.Dropdown(
            choices.languages,
            value=AUTO,
            label="Alignment language (auto: the model's defaults)",
            elem_id="cluster-language",
        )
        download = gr.Button(
            "Download to all workers",
            variant="primary",
            elem_id="cluster-download-btn",
            scale=0,
            min_width=200,
        )
    message = gr.Markdown(
        "Download the model on every connected worker, or press **Preload** on a worker's row.",
        elem_id="cluster-status",
        elem_classes="mm-msg",
    )
    return SimpleNamespace(model=model, language=language, download=download, message=message)


def _wire_cluster(
    services: Services, cluster: SimpleNamespace, system_html: gr.HTML, live: SimpleNamespace
) -> None:
    """ "Download to all workers" and each worker's "Preload": sent to the workers' own queues."""
    manager: JobManager = services.transcriptions
    said = _said

    def download_all(model_id: str, language: str) -> str:
        def run() -> str:
            languages = [language_arg(language)] if language_arg(language) else None
            names = manager.download_on_workers(model_id, languages)
            if not names:
                return "⚠️ No worker is connected: start one with `python -m modelmgr worker`."
            return f"Asked {len(names)} worker(s) ({', '.join(names)}) to download **{model_id}**."

        return said(run)

    def worker_action(evt: gr.EventData, model_id: str, language: str) -> str:
        action, name = getattr(evt, "action", None), str(getattr(evt, "worker", "") or "")

        def run() -> str:
            if action != "preload":
                return f"⚠️ Unknown action {action!r}."
            manager.preload_on_worker(name, model_id, language_arg(language), AUTO)
            return f"Asked **{name}** to preload **{model_id}** (it downloads it first if needed)."

        return said(run)

    act = {"concurrency_limit": None, "show_progress": "hidden", **PRIVATE}
    then = {"queue": False, "show_progress": "hidden", **PRIVATE}
    inputs = [cluster.model, cluster.language]
    cluster.download.click(download_all, inputs, cluster.message, **act).then(
        live.refresh, live.inputs, live.outputs, **then
    )
    system_html.worker_action(worker_action, inputs, cluster.message, **act).then(
        live.refresh, live.inputs, live.outputs, **then
    )


def _wire_actions(
    services: Services, models: SimpleNamespace, panel: SimpleNamespace, live: SimpleNamespace
) -> None:
    """Buttons call a manager and say what happened in words; the snapshot shows the rest."""
    downloads, preload = services.downloads, services.preload
    said = _said

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
            freed = downloads.delete(model_id)  # the manager refuses while loaded or busy
            return f"Deleted **{model_id}** ({human_bytes(freed)} freed)."

        return said(run)

    def verify(model_id: str) -> str:
        def run() -> str:
            downloads.verify(model_id)
            return f"Verifying **{model_id}**: the table shows the result; download repairs bad files."

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
    redraw = (live.refresh, live.inputs, live.outputs)
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
    models.verify.click(verify, models.model, models.message, **act).then(*redraw, **then)


def _wire_transcribe(services: Services, tx: SimpleNamespace, live: SimpleNamespace) -> None:
    """Transcribe queues jobs and returns; the timer shows them; the table's buttons act on them."""
    manager = services.transcriptions

    def submit(
        files: list[str] | None,
        recording: str | None,
        model_id: str,
        language: str,
        device: str,
        *settings: Any,  # tx.options.inputs: task, vad, batch size, prompt, diarize, three counts
    ) -> tuple:
        paths = [Path(p) for p in (files or [])] + ([Path(recording)] if recording else [])
        # The click's JavaScript disabled the button in the page; saying "disabled" here too lets
        # the next step's "enabled" reach the page (an unchanged value would not be sent).
        again = gr.Button(interactive=False)
        if not paths:
            gr.Warning("Add audio files or record some audio first.")
            return render_stage(submitted_text([], []), "err"), gr.skip(), gr.skip(), again
        queued: list[str] = []
        failed: list[tuple[str, str]] = []
        try:
            options = manager.validate(
                JobOptions(
                    model=model_id,
                    language=language_arg(language),
                    device=device or AUTO,
                    **job_option_fields(*settings),
                )
            )
        except ModelMgrError as exc:
            gr.Warning(exc.message)
            return render_stage(f"⚠️ {esc(exc.message)}", "err"), gr.skip(), gr.skip(), again
        for path in paths:
            try:
                submit_copy(manager, path, path.name, options)
                queued.append(path.name)
            except ModelMgrError as exc:
                failed.append((path.name, exc.message))
            except Exception as exc:  # the UI boundary: a bug must still be said in words
                log.exception("queueing %s failed", path.name)
                failed.append((path.name, f"unexpected error: {exc}"))
        kind = "err" if failed else "ok"
        # Queued files leave the inputs, so a second click does not queue them twice.
        clear = (gr.File(value=None), gr.Audio(value=None)) if queued else (gr.skip(), gr.skip())
        return render_stage(submitted_text(queued, failed), kind), *clear, again

    def job_action(evt: gr.EventData, pinned: str | None) -> tuple:
        action, job_id = getattr(evt, "action", None), str(getattr(evt, "job", "") or "")
        try:
            job = manager.get(job_id)
            if action == "show":
                return render_stage(f"Showing <b>{esc(job.filename)}</b>.", "ok"), job_id
            if action == "cancel":
                manager.cancel(job_id)
                return render_stage(f"Cancelled <b>{esc(job.filename)}</b>.", "ok"), pinned
            if action == "remove":
                manager.delete(job_id)
                return render_stage(f"Removed <b>{esc(job.filename)}</b>.", "ok"), pinned
            return render_stage(f"⚠️ Unknown action {esc(action)}.", "err"), pinned
        except ModelMgrError as exc:
            return render_stage(f"⚠️ {esc(exc.message)}", "err"), pinned

    def rename_speakers(text: str | None, pinned: str | None) -> tuple:
        """Name the speakers of the job whose segments are shown (the same choice as the table's)."""
        show = job_to_show(manager.snapshot(), pinned or None)
        if show is None:
            return render_stage("⚠️ No finished transcription is shown.", "err"), gr.skip()
        try:
            job = manager.rename_speakers(show["id"], parse_speaker_names(text))
        except ModelMgrError as exc:
            return render_stage(f"⚠️ {esc(exc.message)}", "err"), gr.skip()
        return render_stage(f"Renamed the speakers of <b>{esc(job.filename)}</b>.", "ok"), ""

    act = {"concurrency_limit": None, "show_progress": "hidden", **PRIVATE}
    then = {"queue": False, "show_progress": "hidden", **PRIVATE}
    tx.rename.click(
        rename_speakers, [tx.speaker_names, tx.pinned], [tx.renamed, tx.speaker_names], **act
    ).then(live.refresh, live.inputs, live.outputs, **then)
    tx.button.click(
        submit,
        [tx.files, tx.recording, tx.model, tx.language, tx.device, *tx.options.inputs],
        [tx.stage, tx.files, tx.recording, tx.button],
        js=JS_DISABLE_TRANSCRIBE,
        **act,
    ).then(lambda: gr.Button(interactive=True), None, tx.button, **then).then(
        live.refresh, live.inputs, live.outputs, **then
    )
    tx.jobs.job_action(job_action, [tx.pinned], [tx.stage, tx.pinned], **act).then(
        live.refresh, live.inputs, live.outputs, **then
    )


def submit_copy(manager: JobManager, path: Path, filename: str, options: JobOptions) -> Job:
    """Queue a copy of an uploaded file (the manager moves what it is given; Gradio keeps its own)."""
    limit = manager.settings.max_upload_bytes
    if path.stat().st_size > limit:  # the same limit as the API's uploads
        raise PayloadTooLarge(f"{filename} is over the upload limit of {human_bytes(limit)}")
    manager.root.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=manager.root, prefix=".upload-")
    copy = Path(tmp)
    try:
        with open(fd, "wb") as out, path.open("rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        return manager.submit(copy, filename, options)
    finally:
        copy.unlink(missing_ok=True)
