"""What the studio shows, as pure functions of the managers' snapshots.

No Gradio here: every helper turns a snapshot (``downloads.snapshot()``,
``preload.status()``, ``transcriptions.snapshot()``, ``system_report()``, a
``Transcript``) into text or HTML,
so it is unit tested without a browser (tests/web/test_ui.py). ``wiring.py`` wires
them to components.
"""

from __future__ import annotations

import hashlib
import html
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from modelmgr.asr.jobs import IN_FLIGHT as JOB_IN_FLIGHT
from modelmgr.core.errors import InvalidInput

IN_FLIGHT = frozenset({"queued", "downloading", "verifying"})
PRELOAD_BUSY = frozenset({"downloading", "loading"})
FAST_TICK_S = 1.0  # while anything is queued, downloading, verifying, loading or transcribing
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
    "corrupt": "corrupt",
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


def format_size(m: dict[str, Any]) -> str:
    """A model's size; ``≈`` marks the approximate table's guess (not yet asked of the hub)."""
    size = m.get("size_bytes") or (m.get("progress") or {}).get("bytes_total")
    if size and m.get("size_source") == "approximate":
        return f"≈ {human_bytes(size)}"
    return human_bytes(size)


def disk_fit(model: dict[str, Any] | None, free_bytes: int | None, reserve_bytes: int = 0) -> dict[str, Any]:
    """Would downloading ``model`` fit? ``needed`` counts only the bytes not on disk yet."""
    if model is None or free_bytes is None:
        return {"fits": None, "needed": None}
    size = model.get("size_bytes")
    if model["status"] == "downloaded":
        return {"fits": True, "needed": 0}
    if not size:
        return {"fits": None, "needed": None}
    needed = max(0, int(size) - int((model.get("progress") or {}).get("bytes_done") or 0))
    return {"fits": free_bytes - needed >= reserve_bytes, "needed": needed}


def render_fit(model: dict[str, Any] | None, free_bytes: int | None, reserve_bytes: int = 0) -> str:
    """Size and free disk side by side, with a warning when the download would not fit."""
    if model is None:
        return '<div class="mm-fit" data-fits="unknown"></div>'
    fit = disk_fit(model, free_bytes, reserve_bytes)
    source = {"approximate": " (approximate)", "hub": " (from the hub)", "disk": ""}.get(
        model.get("size_source") or "", ""
    )
    parts = [
        f"Size <b>{esc(format_size(model))}</b>{source}",
        f"Free disk <b>{esc(human_bytes(free_bytes))}</b>",
    ]
    state = {True: "true", False: "false", None: "unknown"}[fit["fits"]]
    if fit["fits"] is False:
        short = fit["needed"] + reserve_bytes - (free_bytes or 0)
        parts.append(
            f'<span class="mm-error-text">⚠ {esc(model["id"])} would not fit: '
            f"{esc(human_bytes(short))} more space needed</span>"
        )
    return f'<div class="mm-fit" data-fits="{state}">{" · ".join(parts)}</div>'


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
                format_size(m),
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


def busy(
    snapshot: Sequence[dict[str, Any]],
    preload: dict[str, Any] | None = None,
    jobs: Sequence[dict[str, Any]] = (),
) -> bool:
    """Is anything in flight (so the timer should tick fast)?"""
    return (
        any(m["status"] in IN_FLIGHT for m in snapshot)
        or bool(preload and preload.get("state") in PRELOAD_BUSY)
        or any(j["status"] in JOB_IN_FLIGHT for j in jobs)
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


def tick_interval(
    snapshot: Sequence[dict[str, Any]],
    preload: dict[str, Any] | None = None,
    jobs: Sequence[dict[str, Any]] = (),
) -> float:
    return FAST_TICK_S if busy(snapshot, preload, jobs) else IDLE_TICK_S


def device_choices(auto_resolves_to: str) -> list[tuple[str, str]]:
    """The device dropdown says what "auto" means on this machine; the value stays "auto"."""
    return [(f"auto ({auto_resolves_to})", AUTO), *[(d, d) for d in DEVICES if d != AUTO]]


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


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _bar(percent: float | None) -> str:
    value = 0.0 if percent is None else max(0.0, min(100.0, float(percent)))
    return f'<progress class="mm-bar" max="100" value="{value:.1f}"></progress>'


def _row_attrs(m: dict[str, Any]) -> str:
    p = m.get("progress") or {}
    return (
        f'data-model="{esc(m["id"])}" data-status="{esc(m["status"])}" '
        f'data-bytes="{int(p.get("bytes_done") or 0)}" class="st-{esc(m["status"])}"'
    )


SECTION_TITLES = {
    "whisper": "Whisper models",
    "align": "Alignment models",
    "diarization": "Diarization models",
}


def model_choice_label(model_id: str, kind: str, language: str | None, pipeline: bool = False) -> str:
    """A model in the Models tab's dropdown: Whisper models by id, the others with their kind."""
    if kind == "whisper":
        return model_id
    if kind == "align":
        return f"{model_id} (align · {language})"
    return f"{model_id} ({kind}{' pipeline' if pipeline else ''})"


def render_models_table(snapshot: Sequence[dict[str, Any]]) -> str:
    """The Models tab's table (HTML, so each row carries data-* hooks and a progress bar)."""
    head = "".join(f"<th>{h}</th>" for h in TABLE_HEADERS)
    body = []
    section = None
    for m, row in zip(snapshot, format_rows(snapshot), strict=True):
        if m["kind"] != section:
            section = m["kind"]
            title = SECTION_TITLES.get(section, f"{section} models")
            body.append(f'<tr class="mm-section"><td colspan="{len(TABLE_HEADERS)}">{title}</td></tr>')
        model_id, kind, language, size, status, percent, speed, eta = row
        p = m.get("progress") or {}
        partial = m["status"] in ("incomplete", "cancelled", "error", "corrupt") and bool(p.get("bytes_done"))
        show_bar = m["status"] in IN_FLIGHT or partial
        status_cell = f'<span class="mm-status mm-status-text">{esc(status)}</span>'
        if show_bar:
            status_cell += _bar(p.get("percent"))
        if m.get("error"):
            status_cell += f'<div class="mm-error-text">{esc(m["error"])}</div>'
        repo = "" if m["repo_id"] == m["id"] else f'<div class="mm-sub">{esc(m["repo_id"])}</div>'
        if m.get("parts"):  # a diarization pipeline: the models it brings, as a Whisper model its aligners
            repo += f'<div class="mm-sub">with {esc(", ".join(m["parts"]))}</div>'
        if m.get("gated"):
            repo += '<div class="mm-sub">gated on the Hub: accept its conditions, then HF_TOKEN</div>'
        if (note := _integrity_note(m)) is not None:
            repo += f'<div class="mm-sub mm-integrity">{esc(note)}</div>'
        body.append(
            f"<tr {_row_attrs(m)}>"
            f'<td class="c-id">{esc(model_id)}{repo}</td><td class="c-kind">{esc(kind)}</td>'
            f'<td class="c-lang">{esc(language)}</td><td class="c-num c-size">{esc(size)}</td>'
            f'<td class="c-status">{status_cell}</td><td class="c-num c-percent">{esc(percent)}</td>'
            f'<td class="c-num c-speed">{esc(speed)}</td><td class="c-num c-eta">{esc(eta)}</td></tr>'
        )
    return (
        '<div class="mm-table-wrap"><table class="mm-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _integrity_note(m: dict[str, Any]) -> str | None:
    """A row's word on what verify can check: a verify's verdict short of ``verified``, else
    ``size-only`` / ``mixed`` integrity (the hub sent no digest); None when there is nothing to say."""
    verdict = m.get("verify") or {}
    if verdict.get("result") in ("size-only", "partly-verified"):
        return f"verify: {verdict.get('message')}"
    if m.get("integrity") == "size-only":
        return "size-only: no digest was published, verify compares sizes"
    if m.get("integrity") == "mixed":
        return "partly size-only: some files came without a digest"
    return None


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
        error = f'<div class="mm-error-text">{esc(m["error"])}</div>' if m.get("error") else ""
        cards.append(
            f'<div {_row_attrs(m)}><div class="mm-card">'
            f'<div class="mm-card-head"><span class="mm-name">{esc(model_id)}</span>'
            f'<span class="mm-status mm-status-text">{esc(status)}</span></div>{_bar(p.get("percent"))}'
            f'<div class="mm-meta"><span class="c-percent">{esc(percent)}</span>'
            f" · {esc(' · '.join(details))}</div>"
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
    items = [("State", f'<span class="mm-status">{esc(state)}</span>')]
    if request and state != "ready":
        lang = request.get("language") or "auto"
        items.append(("Request", esc(f"{request.get('model')} · {lang} · {request.get('device')}")))
    if whisper:
        items.append(
            (
                "Whisper",
                esc(f"{whisper.get('id')} on {whisper.get('device')} ({whisper.get('compute_type')})"),
            )
        )
    if align:
        items.append(("Alignment", esc(f"{align.get('id')} ({align.get('language')})")))
    if memory.get("rss_bytes"):
        items.append(("Process RAM", esc(human_bytes(memory["rss_bytes"]))))
    if cuda:
        items.append(("CUDA allocated", esc(human_bytes(cuda.get("allocated_bytes")))))
    if status.get("error"):
        items.append(("Error", f'<span class="mm-error-text">{esc(status["error"])}</span>'))
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return (
        f'<div class="st-{esc(state)}" data-preload-state="{esc(state)}"><h4>Preloaded</h4>'
        f'<dl class="mm-kv">{rows}</dl></div>'
    )


def render_badge(
    snapshot: Sequence[dict[str, Any]], preload: dict[str, Any], jobs: Sequence[dict[str, Any]] = ()
) -> str:
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
    running = sum(1 for j in jobs if j["status"] in JOB_IN_FLIGHT and j["status"] != "queued")
    waiting = sum(1 for j in jobs if j["status"] == "queued")
    if running:
        pills.append(("busy", "transcribing"))
    if waiting:
        pills.append(("busy", f"{waiting} file{'s' if waiting != 1 else ''} queued"))
    return "".join(f'<span class="mm-pill {cls}">{esc(text)}</span>' for cls, text in pills)


def _gauge(title: str, big: str, sub: str, percent: float | None) -> str:
    meter = ""
    if percent is not None:
        pct = max(0.0, min(100.0, float(percent)))
        level = "crit" if pct >= 90 else "warn" if pct >= 75 else ""
        meter = f'<div class="mm-meter {level}"><div style="width:{pct:.1f}%"></div></div>'
    return (
        f'<div class="mm-gauge"><h4>{esc(title)}</h4><div class="mm-big">{esc(big)}</div>'
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
            esc(f"{cpu.get('count')} cores"),
            cpu.get("percent"),
        )
    )
    ram = report.get("ram") or {}
    total, available = ram.get("total_bytes") or 0, ram.get("available_bytes") or 0
    cards.append(
        _gauge(
            "RAM",
            f"{ram.get('percent', 0):.0f}%",
            esc(f"{human_bytes(total - available)} used of {human_bytes(total)}"),
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
                esc(
                    f"{human_bytes(used)} used of {human_bytes(g_total)}; "
                    f"{human_bytes(gpu.get('allocated_bytes'))} by models"
                ),
                100 * used / g_total if g_total else None,
            )
        )
    else:
        note = "No CUDA device" if gpu.get("available") is False else (gpu.get("note") or "unknown")
        cards.append(_gauge("GPU", "—", esc(note), None))
    disk = report.get("disk") or {}
    d_free, d_total = disk.get("free_bytes"), disk.get("total_bytes")
    d_pct = 100 * (d_total - d_free) / d_total if d_total and d_free is not None else None
    cards.append(
        _gauge(
            "Model cache disk",
            f"{human_bytes(d_free)} free",
            esc(disk.get("path", "")) + (esc(f" · {human_bytes(d_total)} total") if d_total else ""),
            d_pct,
        )
    )
    rss = (report.get("process") or {}).get("rss_bytes")
    cards.append(
        _gauge(
            "This process",
            human_bytes(rss),
            esc(f"{100 * rss / total:.1f}% of RAM") if rss and total else "",
            100 * rss / total if rss and total else None,
        )
    )
    loaded = []
    whisper, align = preload.get("whisper") or {}, preload.get("align") or {}
    if whisper:
        loaded.append(f"Whisper <b>{esc(whisper.get('id'))}</b> on {esc(whisper.get('device'))}")
    if align:
        loaded.append(f"Alignment <b>{esc(align.get('id'))}</b> ({esc(align.get('language'))})")
    cuda = (preload.get("memory") or {}).get("cuda") or {}
    if cuda:
        loaded.append(f"CUDA allocated {esc(human_bytes(cuda.get('allocated_bytes')))}")
    cards.append(
        _gauge(
            "Loaded models",
            str(len([x for x in (whisper, align) if x])),
            "<br>".join(loaded) or "nothing loaded",
            None,
        )
    )
    return f'<div class="mm-gauges">{"".join(cards)}</div>'


def render_workers(health: dict[str, Any], workers: Sequence[dict[str, Any]]) -> str:
    """System tab, distributed mode: is the queue reachable, which workers are connected, doing what."""
    if health.get("redis") != "ok":
        return (
            '<div id="workers-info" class="mm-stage err">⚠️ The job queue is unavailable '
            f"(Redis cannot be reached): new transcriptions are refused until it is back. "
            f"{esc(health.get('error') or '')}</div>"
        )
    if not workers:
        return (
            '<div id="workers-info" class="mm-stage err">No worker is connected: jobs wait as '
            "<b>queued</b> until one starts (<code>python -m modelmgr worker</code>).</div>"
        )
    rows = "".join(
        "<tr>"
        f"<td>{esc(w.get('name'))}</td>"
        f"<td>{esc(w.get('resolved_device') or w.get('device'))}</td>"
        f"<td>{esc(', '.join(w.get('loaded') or []) or '—')}{_worker_preload(w)}</td>"
        f"<td>{esc(', '.join(w.get('models_on_disk') or []) or '—')}</td>"
        f"<td>{esc(w.get('current_job') or 'idle')}"
        f"{esc(' · ' + w['current_status']) if w.get('current_status') else ''}</td>"
        f"<td>{float(w.get('heartbeat_age_s') or 0):.0f} s ago</td>"
        f"<td>{_worker_button('preload', str(w.get('name') or ''), 'Preload')}</td>"
        "</tr>"
        for w in workers
    )
    return (
        '<div id="workers-info"><h4>Workers</h4><table class="mm-table"><thead><tr><th>Worker</th>'
        "<th>Device</th><th>Loaded</th><th>On disk</th><th>Current job</th><th>Heartbeat</th>"
        f"<th></th></tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _worker_preload(worker: dict[str, Any]) -> str:
    """A worker's preload in progress or failed (a Preload pressed here runs there, out of sight)."""
    state, model = worker.get("preload"), worker.get("preload_model")
    if state == "error":
        error = worker.get("preload_error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
        return f'<div class="mm-sub mm-err">⚠️ preload of {esc(model)} failed: {esc(message)}</div>'
    if state in ("downloading", "loading"):
        return f'<div class="mm-sub">{esc(state)} {esc(model or "")}…</div>'
    return ""


def _worker_button(action: str, worker: str, label: str) -> str:
    """A button of the workers table; the System tab's listener sends ``worker_action`` with these."""
    return (
        f'<button type="button" class="mm-job-btn mm-worker-{action}" data-action="{action}" '
        f'data-worker="{esc(worker)}" title="{esc(label)} the model chosen above on {esc(worker)}">'
        f"{esc(label)}</button>"
    )


def segment_rows(transcript: Any) -> list[list[str]]:
    """Transcript -> rows for the segment table: start, end, text, words with timings."""
    rows = []
    for seg in transcript.segments:
        words = " · ".join(
            f"{w.text.strip()} {format_seconds(w.start)}–{format_seconds(w.end)}" for w in seg.words or ()
        )
        rows.append([format_clock(seg.start), format_clock(seg.end), seg.text.strip(), words])
    return rows


def segment_speakers(transcript: Any) -> list[tuple[str, str]] | None:
    """(speaker id, display name) per segment of a diarized transcript ("" for a segment no turn
    covers); None when the transcript was not diarized (its table has no Speaker column)."""
    if not transcript.speakers:
        return None
    return [(seg.speaker or "", transcript.name(seg.speaker) or "") for seg in transcript.segments]


def segments_key(job: dict[str, Any] | None) -> str | None:
    """What the segment table on screen depends on: the job, and its speakers' names (a rename
    redraws it). The page keeps the key of the table it shows and redraws when it changes."""
    if job is None:
        return None
    names = [f"{s.get('id')}={s.get('name')}" for s in job.get("speakers") or ()]
    if not names:
        return job["id"]
    return f"{job['id']}:{hashlib.sha256(chr(0).join(names).encode()).hexdigest()[:12]}"


def render_segments(
    rows: Sequence[Sequence[str]],
    title: str = "",
    job_id: str | None = None,
    speakers: Sequence[tuple[str, str]] | None = None,
) -> str:
    """The segment table as HTML (gr.Dataframe would import pandas and matplotlib, ~1 s of start-up).

    ``title`` names the job shown (HTML, escaped by the caller); ``data-job`` says which one it is.
    ``speakers`` (``segment_speakers``: one (id, name) per row) adds a Speaker column after the
    times for a diarized job. Its cells carry ``data-speaker`` (the id) and no ``data-col``:
    ``data-col`` 0-3 stay start, end, text and words whether a job was diarized or not.
    """
    caption = f'<div class="mm-seg-title">{title}</div>' if title else ""
    attrs = f' data-job="{esc(job_id)}"' if job_id else ""
    if not rows:
        empty = "No segments yet." if not title else "This transcription has no segments."
        return f'<div class="mm-table-wrap mm-segments"{attrs}>{caption}<p class="mm-sub">{empty}</p></div>'
    headers = list(SEGMENT_HEADERS)
    if speakers is not None:
        headers.insert(2, "speaker")

    def cells(i: int, row: Sequence[str]) -> str:
        tds = [f'<td data-col="{j}">{esc(cell)}</td>' for j, cell in enumerate(row)]
        if speakers is not None:
            speaker, name = speakers[i] if i < len(speakers) else ("", "")
            tds.insert(2, f'<td class="c-speaker" data-speaker="{esc(speaker)}">{esc(name)}</td>')
        return "".join(tds)

    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(f'<tr data-row="{i}">{cells(i, row)}</tr>' for i, row in enumerate(rows))
    return (
        f'<div class="mm-table-wrap mm-segments"{attrs}>{caption}<table class="mm-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def render_stage(text: str, kind: str = "") -> str:
    return f'<div class="mm-stage {esc(kind)}" data-kind="{esc(kind or "running")}">{text}</div>'


def language_arg(language: str | None) -> str | None:
    return None if not language or language == AUTO else language


# ----------------------------------------------------------------------------
# Transcription jobs (``transcriptions.snapshot()``: newest first)
# ----------------------------------------------------------------------------
JOB_HEADERS = ["File", "Status", "Progress", "Results", ""]
JOB_LABELS = {
    "queued": "waiting",
    "downloading": "downloading",
    "loading": "loading",
    "transcribing": "transcribing",
    "aligning": "aligning",
    "diarizing": "diarizing",
    "done": "done",
    "error": "error",
    "cancelled": "cancelled",
}


def job_stage_text(job: dict[str, Any]) -> str:
    """What a job is doing, in words: the stage, how far along where that is known, and (cluster
    mode) on which worker, and whether it is a retry after its worker was lost."""
    text = _job_stage_words(job)
    if job.get("worker"):
        text += f" · on {job['worker']}"
    lost = [r.get("lost_worker") for r in job.get("retries") or [] if r.get("lost_worker")]
    if lost:
        text += f" · attempt {job.get('attempt') or len(lost) + 1} ({', '.join(lost)} lost)"
    return text


def _job_stage_words(job: dict[str, Any]) -> str:
    status = job["status"]
    percent = format_percent(job.get("progress"))
    if status == "queued":
        position = job.get("queue_position")
        return f"waiting (#{position} in the queue)" if position else "waiting"
    if status == "downloading":
        download = job.get("download") or {}
        model = download.get("model") or (job.get("options") or {}).get("model") or "the model"
        return f"downloading {model} {format_percent(download.get('percent', job.get('progress')))}"
    if status == "loading":
        return "loading the model"
    if status == "transcribing":
        return f"transcribing {percent}"
    if status == "aligning":
        return "aligning the words"
    if status == "diarizing":
        return f"finding who speaks {percent}"
    if status == "done":
        n = job.get("segments") or 0
        audio = f" from {job['duration_s']:.1f} s of audio" if job.get("duration_s") is not None else ""
        timing = alignment_text(job)
        speakers = job.get("speakers")
        who = "" if speakers is None else f" · {len(speakers)} speaker{'s' if len(speakers) != 1 else ''}"
        return f"done: {n} segment{'s' if n != 1 else ''}{audio}{who}" + (f" · {timing}" if timing else "")
    if status == "cancelled":
        return "cancelled"
    if status == "error":
        return "error"
    return status.replace("_", " ")


def alignment_text(job: dict[str, Any]) -> str:
    """How a finished job's words were timed, in words ("" for a record from before this was kept)."""
    alignment = job.get("alignment")
    if alignment == "wav2vec2":
        return f"words timed by the aligner {job.get('align_model') or ''}".rstrip()
    if alignment == "whisper":
        why = " (no aligner could be had)" if job.get("warnings") else ""
        return f"words timed by Whisper{why}"
    if alignment == "none":
        return "segment times only"
    return ""


def job_settings_text(job: dict[str, Any]) -> str:
    """Model · language (asked for, or detected) · device (resolved once the job has run), then
    what differs from the defaults: translate, no VAD, diarize (with its speaker counts)."""
    options = job.get("options") or {}
    language = job.get("language") or options.get("language") or "auto"
    device = job.get("device") or options.get("device") or AUTO
    parts = [options.get("model", "?"), language, device]
    if options.get("task") == "translate":
        parts.append("translate")
    if options.get("vad") is False:
        parts.append("no VAD")
    if options.get("diarize"):
        parts.append(diarize_text(options))
    return " · ".join(str(x) for x in parts)


def diarize_text(options: Mapping[str, Any]) -> str:
    """'diarize', with the speaker counts asked for: '2 speakers', '1–3 speakers', '≥ 2', '≤ 3'."""
    exact, low, high = (options.get(k) for k in ("num_speakers", "min_speakers", "max_speakers"))
    if exact is not None:
        return f"diarize: {exact} speaker{'s' if exact != 1 else ''}"
    if low is not None and high is not None:
        return f"diarize: {low}–{high} speakers"
    if low is not None:
        return f"diarize: ≥ {low} speakers"
    if high is not None:
        return f"diarize: ≤ {high} speakers"
    return "diarize"


def job_option_fields(
    task: str | None,
    vad: bool | None,
    batch_size: str | float | None,
    prompt: str | None,
    diarize: bool | None,
    num_speakers: str | float | None,
    min_speakers: str | float | None,
    max_speakers: str | float | None,
) -> dict[str, Any]:
    """The Transcribe tab's Options as ``JobOptions`` fields (checked by the manager's validate).

    The numbers are text boxes, because Gradio's number input cannot be empty (it sends 0): empty
    is None ("decide for me": batch size by device, speakers by the diarizer). The speaker
    counts count only while Diarize is ticked (their disabled inputs keep what was typed).
    InvalidInput, in words, for text that is not a whole number.
    """
    on = bool(diarize)
    return {
        "task": task or "transcribe",
        "vad": True if vad is None else bool(vad),
        "batch_size": whole_number(batch_size, "Batch size"),
        "initial_prompt": prompt if prompt and prompt.strip() else None,
        "diarize": on,
        "num_speakers": whole_number(num_speakers, "Speakers") if on else None,
        "min_speakers": whole_number(min_speakers, "Min speakers") if on else None,
        "max_speakers": whole_number(max_speakers, "Max speakers") if on else None,
    }


def whole_number(value: str | float | None, label: str) -> int | None:
    """A typed number: None when empty, else a whole number (InvalidInput naming ``label``);
    its range is the manager's validation to check (and word)."""
    if value is None:
        return None
    if isinstance(value, float | int) and not isinstance(value, bool):
        if float(value).is_integer():
            return int(value)
    else:
        text = str(value).strip()
        if not text:
            return None
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
    raise InvalidInput(f"{label} must be a whole number (or empty for auto), not {value!r}")


def newest_done(jobs: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The most recently finished successful job (the snapshot is newest first by submission)."""
    done = [j for j in jobs if j["status"] == "done"]
    return max(done, key=lambda j: j.get("finished_at") or 0.0) if done else None


def parse_speaker_names(text: str | None) -> dict[str, str]:
    """The page's "SPEAKER_00=Alice, SPEAKER_01=Bob" (pairs apart by commas or new lines) as the
    rename API's object. An empty name gives a speaker its label back; the manager checks ids and
    names. InvalidInput when nothing is given or a pair has no ``=``."""
    pairs = [p.strip() for p in re.split(r"[,\n]", text or "") if p.strip()]
    if not pairs:
        raise InvalidInput("write the names as SPEAKER_00=Alice, SPEAKER_01=Bob")
    names: dict[str, str] = {}
    for pair in pairs:
        speaker, eq, name = pair.partition("=")
        if not eq or not speaker.strip():
            raise InvalidInput(f"{pair!r} is not SPEAKER_00=Name")
        names[speaker.strip()] = name.strip()
    return names


def job_to_show(jobs: Sequence[dict[str, Any]], pinned: str | None) -> dict[str, Any] | None:
    """The job whose segments are shown: the one the user picked while it exists, else the newest done."""
    chosen = next((j for j in jobs if j["id"] == pinned and j["status"] == "done"), None)
    return chosen or newest_done(jobs)


def job_title(job: dict[str, Any]) -> str:
    """The caption above a job's segment table (HTML)."""
    return f"<b>{esc(job['file']['name'])}</b> · {esc(job_settings_text(job))}"


def _job_button(action: str, job_id: str, label: str) -> str:
    return (
        f'<button type="button" class="mm-job-btn mm-job-{action}" data-action="{action}" '
        f'data-job="{esc(job_id)}">{esc(label)}</button>'
    )


def render_jobs_table(
    jobs: Sequence[dict[str, Any]],
    links: Mapping[str, Mapping[str, str]] | None = None,
    shown: str | None = None,
) -> str:
    """The transcription queue: one row per job (``tr[data-job][data-status]``), newest first.

    ``links`` maps a job id to its result URLs by format (signed by the caller); ``shown`` is
    the job whose segments are on screen. The buttons carry ``data-action``/``data-job``;
    wiring.py turns a click on one into a manager call.
    """
    if not jobs:
        return (
            '<div class="mm-table-wrap mm-jobs"><p class="mm-empty">No transcriptions yet. '
            "Add audio files and press Transcribe.</p></div>"
        )
    links = links or {}
    head = "".join(f"<th>{h}</th>" for h in JOB_HEADERS)
    body = []
    for job in jobs:
        status, job_id = job["status"], job["id"]
        active = status in JOB_IN_FLIGHT and status != "queued"
        status_cell = (
            f'<span class="mm-status mm-status-text">{esc(JOB_LABELS.get(status, status))}</span>'
            f'<div class="mm-stage-text">{esc(job_stage_text(job))}</div>'
        )
        if active:
            percent = (job.get("download") or {}).get("percent", job.get("progress"))
            status_cell += _bar(percent if status in ("downloading", "transcribing", "diarizing") else None)
        if job.get("error"):
            status_cell += f'<div class="mm-error-text">{esc(job["error"].get("message", ""))}</div>'
        for warning in job.get("warnings") or ():
            status_cell += f'<div class="mm-warn-text">{esc(warning)}</div>'
        if status == "done":
            percent_text = "100%"
        elif status in ("downloading", "transcribing", "diarizing"):
            percent_text = format_percent((job.get("download") or {}).get("percent", job.get("progress")))
        else:
            percent_text = "—"
        name = job["file"]["name"]
        results = " ".join(
            f'<a class="mm-result" href="{esc(url)}" download="{esc(_stem(name))}.{esc(fmt)}" '
            f'data-format="{esc(fmt)}">{esc(fmt.upper())}</a>'
            for fmt, url in (links.get(job_id) or {}).items()
        )
        actions = []
        if status == "done":
            actions.append(_job_button("show", job_id, "Showing" if job_id == shown else "Show"))
        if status in JOB_IN_FLIGHT:
            actions.append(_job_button("cancel", job_id, "Cancel"))
        else:
            actions.append(_job_button("remove", job_id, "Remove"))
        classes = f"st-{esc(status)}" + (" mm-shown" if job_id == shown else "")
        body.append(
            f'<tr data-job="{esc(job_id)}" data-status="{esc(status)}" class="{classes}">'
            f'<td class="c-file"><span class="mm-name">{esc(name)}</span>'
            f'<div class="mm-sub c-model">{esc(job_settings_text(job))}</div>'
            f'<div class="mm-sub">{esc(human_bytes(job["file"].get("size_bytes")))}</div></td>'
            f'<td class="c-status">{status_cell}</td>'
            f'<td class="c-num c-percent">{esc(percent_text)}</td>'
            f'<td class="c-results">{results or "—"}</td>'
            f'<td class="c-actions">{"".join(actions)}</td></tr>'
        )
    return (
        '<div class="mm-table-wrap mm-jobs"><table class="mm-table">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _stem(name: str) -> str:
    stem = name.rsplit(".", 1)[0].strip() if "." in name else name.strip()
    return stem or "transcript"


def submitted_text(queued: Sequence[str], failed: Sequence[tuple[str, str]]) -> str:
    """What the Transcribe button did, in words (HTML)."""
    parts = []
    if queued:
        names = ", ".join(f"<b>{esc(n)}</b>" for n in queued)
        parts.append(f"Queued {len(queued)} file{'s' if len(queued) != 1 else ''}: {names}.")
    for name, message in failed:
        parts.append(f"⚠️ <b>{esc(name)}</b>: {esc(message)}")
    return "<br>".join(parts) or "Add audio files or record some audio first."
