"""The UI's pure helpers (no browser, no server) and that build_ui wires what the contract names."""

from __future__ import annotations

import re

import pytest

from modelmgr.asr import loaders
from modelmgr.asr.jobs import JobOptions
from modelmgr.asr.subtitles import Segment, Transcript, Word
from modelmgr.core.errors import InvalidAudio, PayloadTooLarge
from modelmgr.core.settings import Settings
from modelmgr.services import Services
from modelmgr.web.ui import views as ui_view
from modelmgr.web.ui import wiring as ui
from tests.tiny_models import make_wav


def model(
    model_id="tiny",
    status="not_downloaded",
    kind="whisper",
    done=0,
    total=None,
    speed=None,
    eta=None,
    percent=0.0,
    error=None,
    language=None,
    size=None,
):
    return {
        "id": model_id,
        "repo_id": f"Systran/faster-whisper-{model_id}" if kind == "whisper" else model_id,
        "kind": kind,
        "language": language,
        "size_bytes": size,
        "status": status,
        "progress": {
            "bytes_done": done,
            "bytes_total": total,
            "percent": percent,
            "speed_bps": speed,
            "eta_s": eta,
        },
        "error": error,
        "align_models": [],
    }


def job(
    job_id="a" * 32,
    status="queued",
    name="talk.wav",
    progress=0.0,
    position=None,
    download=None,
    error=None,
    finished_at=None,
    language=None,
    device=None,
    segments=None,
    duration=None,
):
    return {
        "id": job_id,
        "status": status,
        "progress": progress,
        "file": {"name": name, "size_bytes": 96_000},
        "options": {"model": "tiny", "language": "zh", "device": "auto", "formats": ["json", "srt"]},
        "device": device,
        "batch_size": None,
        "language": language,
        "duration_s": duration,
        "segments": segments,
        "download": download,
        "error": error,
        "created_at": 1.0,
        "started_at": None,
        "finished_at": finished_at,
        "formats": ["json", "srt"] if status == "done" else [],
        "queue_position": position,
    }


PRELOAD_IDLE = {"state": "idle", "whisper": None, "align": None, "memory": {"rss_bytes": 1, "cuda": None}}


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "—"),
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1_234_567, "1.2 MB"),
        (3.2e9, "3.2 GB"),
        (5e15, "5000.0 TB"),
    ],
)
def test_human_bytes(n, text):
    assert ui_view.human_bytes(n) == text


def test_human_speed():
    assert ui_view.human_speed(None) == "—"
    assert ui_view.human_speed(0) == "—"
    assert ui_view.human_speed(2_500_000) == "2.5 MB/s"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "—"),
        (-1, "—"),
        (float("nan"), "—"),
        (float("inf"), "—"),
        (0, "0 s"),
        (41.6, "42 s"),
        (185, "3 min 5 s"),
        (3720, "1 h 2 min"),
    ],
)
def test_format_eta(seconds, text):
    assert ui_view.format_eta(seconds) == text


@pytest.mark.parametrize(
    ("percent", "text"),
    [(None, "0%"), (0, "0%"), (42.7, "42%"), (99.99, "99%"), (100, "100%"), (120, "100%")],
)
def test_format_percent_floors_so_100_means_done(percent, text):
    assert ui_view.format_percent(percent) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (None, "?"),
        (0, "0:00.00"),
        (1.234, "0:01.23"),
        (83.456, "1:23.46"),
        (659.999, "11:00.00"),
        (3723.5, "1:02:03.50"),
        (-3, "0:00.00"),
    ],
)
def test_format_clock(seconds, text):
    assert ui_view.format_clock(seconds) == text


def test_status_words_follow_the_three_stages():
    assert ui_view.status_label("queued") == "waiting"
    assert ui_view.status_label("downloading") == "downloading"
    assert ui_view.status_label("not_downloaded") == "not downloaded"
    assert ui_view.status_label("something_new") == "something new"


def test_format_rows():
    snap = [
        model("tiny", "downloading", done=420, total=1000, percent=42.0, speed=150_000, eta=3.9),
        model("base", "downloaded", done=1000, total=1000, percent=100.0, size=145_000_000),
        model("small"),
        model(
            "zh-align", "error", kind="align", language="zh", done=10, total=100, percent=10.0, error="boom"
        ),
    ]
    assert ui_view.format_rows(snap) == [
        ["tiny", "whisper", "any", "1.0 kB", "downloading", "42%", "150.0 kB/s", "4 s"],
        ["base", "whisper", "any", "145.0 MB", "downloaded", "100%", "—", "—"],
        ["small", "whisper", "any", "—", "not downloaded", "—", "—", "—"],
        ["zh-align", "align", "zh", "100 B", "error", "10%", "—", "—"],
    ]


def test_button_states():
    snap = [
        model("tiny", "downloading"),
        model("base", "downloaded"),
        model("small"),
        model("zh", kind="align", status="downloaded"),
    ]
    busy = {"state": "loading"}
    assert ui_view.button_states(snap, "tiny") == {
        "download": False,
        "cancel": True,
        "delete": False,
        "preload": True,
        "clear_cache": True,
    }
    assert ui_view.button_states(snap, "base")["download"] is True  # comes back when done
    assert ui_view.button_states(snap, "base")["delete"] is True
    assert ui_view.button_states(snap, "small")["delete"] is False
    assert ui_view.button_states(snap, "zh")["preload"] is False  # alignment models are not preloaded alone
    assert ui_view.button_states(snap, "base", busy)["preload"] is False
    assert ui_view.button_states(snap, "base", busy)["clear_cache"] is False
    assert ui_view.button_states(snap, None) == {
        "download": False,
        "cancel": False,
        "delete": False,
        "preload": False,
        "clear_cache": True,
    }
    for status in ("queued", "verifying"):
        assert ui_view.button_states([model("tiny", status)], "tiny")["download"] is False
    for status in ("error", "cancelled", "incomplete"):
        assert ui_view.button_states([model("tiny", status)], "tiny")["download"] is True


def test_the_timer_ticks_fast_only_while_something_moves():
    assert ui_view.tick_interval([model("tiny")], PRELOAD_IDLE) == ui_view.IDLE_TICK_S
    assert ui_view.tick_interval([model("tiny", "queued")]) == ui_view.FAST_TICK_S
    assert ui_view.tick_interval([model("tiny", "downloaded")], {"state": "loading"}) == ui_view.FAST_TICK_S
    assert ui_view.FAST_TICK_S <= 1.0 < ui_view.IDLE_TICK_S
    for status in ("queued", "downloading", "loading", "transcribing", "aligning"):
        assert ui_view.tick_interval([], PRELOAD_IDLE, [job(status=status)]) == ui_view.FAST_TICK_S
    for status in ("done", "error", "cancelled"):
        assert ui_view.tick_interval([], PRELOAD_IDLE, [job(status=status)]) == ui_view.IDLE_TICK_S


def test_device_choices_say_what_auto_resolves_to():
    assert ui_view.device_choices("cpu") == [("auto (cpu)", "auto"), ("cpu", "cpu"), ("cuda", "cuda")]
    assert ui_view.device_choices("cuda")[0] == ("auto (cuda)", "auto")


def test_describe_start_in_words():
    assert ui_view.describe_start("tiny", "started") == "Downloading **tiny**."
    assert "alignment model for zh" in ui_view.describe_start("tiny", "started", ["zh"])
    assert "already downloading" in ui_view.describe_start("tiny", "already_downloading")
    assert "already downloaded" in ui_view.describe_start("tiny", "already_downloaded")
    assert "waiting" in ui_view.describe_start("tiny", "queued")


def test_models_table_rows_carry_hooks_bars_and_escape_text():
    snap = [
        model("tiny", "downloading", done=420, total=1000, percent=42.0),
        model("<b>x</b>", "error", error="<script>nope</script>", done=5, total=10, percent=50.0),
        model("zh", kind="align", language="zh"),
    ]
    table = ui_view.render_models_table(snap)
    assert '<tr data-model="tiny" data-status="downloading" data-bytes="420" class="st-downloading">' in table
    assert '<progress class="mm-bar" max="100" value="42.0">' in table
    assert ">42%<" in table
    assert "<script>" not in table and "&lt;script&gt;" in table
    assert "<b>x</b>" not in table
    assert "Whisper models" in table and "Alignment models" in table
    assert table.count('<tr data-model="zh"') == 1
    assert 'data-status="not_downloaded"' in table and table.count("<progress") == 2  # none when idle


def test_panel_lists_models_in_flight_or_on_disk():
    assert "No models on disk" in ui_view.render_panel([model("tiny")])
    panel = ui_view.render_panel(
        [
            model("tiny", "downloading", done=420_000, total=1_000_000, percent=42.0, speed=100_000, eta=5.8),
            model("base", "downloaded", done=10, total=10, percent=100.0, size=10),
            model("small"),
        ]
    )
    assert 'data-model="tiny"' in panel and 'data-model="base"' in panel and 'data-model="small"' not in panel
    assert "420.0 kB of 1.0 MB" in panel and "ETA 6 s" in panel and "100.0 kB/s" in panel
    assert panel.count("<progress") == 2


def test_preload_card_and_badge():
    ready = {
        "state": "ready",
        "request": {"model": "tiny", "language": "zh", "device": "cpu"},
        "whisper": {"id": "tiny", "device": "cpu", "compute_type": "int8"},
        "align": {"id": "zh-align", "language": "zh"},
        "memory": {"rss_bytes": 300_000_000, "cuda": {"allocated_bytes": 2_000_000_000}},
        "error": None,
    }
    card = ui_view.render_preload(ready)
    assert 'data-preload-state="ready"' in card
    assert "tiny on cpu (int8)" in card and "zh-align (zh)" in card and "2.0 GB" in card
    failed = ui_view.render_preload({"state": "error", "error": "no <disk>", "request": {"model": "tiny"}})
    assert "no &lt;disk&gt;" in failed
    badge = ui_view.render_badge(
        [model("tiny", "downloading"), model("base", "queued"), model("x", "downloaded")], ready
    )
    assert re.findall(r">([^<]+)</span>", badge) == ["1 downloading", "1 waiting", "1 on disk", "tiny loaded"]
    with_jobs = ui_view.render_badge(
        [], PRELOAD_IDLE, [job(status="transcribing"), job(status="queued"), job(status="queued")]
    )
    assert re.findall(r">([^<]+)</span>", with_jobs) == ["0 on disk", "transcribing", "2 files queued"]


def test_system_gauges():
    report = {
        "cpu": {"count": 2, "percent": 50.0},
        "ram": {"total_bytes": 8_000_000_000, "available_bytes": 2_000_000_000, "percent": 75.0},
        "gpu": {
            "available": True,
            "name": "H100",
            "free_bytes": 10e9,
            "total_bytes": 80e9,
            "allocated_bytes": 5e9,
        },
        "disk": {"path": "/cache/hub", "free_bytes": 50e9},
        "process": {"rss_bytes": 400_000_000},
    }
    html = ui_view.render_system(
        report, {"whisper": {"id": "tiny", "device": "cuda"}, "align": None, "memory": {}}
    )
    assert html.count('class="mm-gauge"') == 6
    assert "6.0 GB used of 8.0 GB" in html and 'width:75.0%"' in html and "warn" in html
    assert "H100" in html and "70.0 GB used of 80.0 GB" in html and "crit" not in html.split("H100")[0]
    assert "50.0 GB free" in html and "/cache/hub" in html
    assert "Whisper <b>tiny</b> on cuda" in html
    no_gpu = ui_view.render_system({**report, "gpu": {"available": False}}, PRELOAD_IDLE)
    assert "No CUDA device" in no_gpu and "nothing loaded" in no_gpu
    with_total = ui_view.render_system(
        {**report, "disk": {"free_bytes": 25, "total_bytes": 100}}, PRELOAD_IDLE
    )
    assert 'width:75.0%"' in with_total


def test_transcript_helpers():
    transcript = Transcript(
        language="zh",
        duration=3.0,
        segments=(
            Segment(0.0, 1.0, " 你好 ", (Word("你", 0.0, 0.5, 0.9), Word("好", None, None, None))),
            Segment(1.0, 2.0, " hello world"),
        ),
    )
    assert ui_view.segment_rows(transcript) == [
        ["0:00.00", "0:01.00", "你好", "你 0.00–0.50 · 好 ?–?"],
        ["0:01.00", "0:02.00", "hello world", ""],
    ]
    table = ui_view.render_segments(ui_view.segment_rows(transcript), "<b>talk.wav</b>", "a" * 32)
    assert 'data-job="' + "a" * 32 + '"' in table
    assert '<div class="mm-seg-title"><b>talk.wav</b></div>' in table
    assert table.count("<tr data-row=") == 2 and "你 0.00–0.50" in table
    assert "No segments yet." in ui_view.render_segments([])
    assert "has no segments" in ui_view.render_segments([], "x", "b" * 32)
    assert (
        ui_view.language_arg("auto") is None
        and ui_view.language_arg(None) is None
        and ui_view.language_arg("zh") == "zh"
    )


def test_job_stage_words_follow_the_job():
    assert ui_view.job_stage_text(job(status="queued", position=2)) == "waiting (#2 in the queue)"
    downloading = job(status="downloading", progress=41.0, download={"model": "tiny", "percent": 42.7})
    assert ui_view.job_stage_text(downloading) == "downloading tiny 42%"
    assert ui_view.job_stage_text(job(status="loading")) == "loading the model"
    assert ui_view.job_stage_text(job(status="transcribing", progress=37.9)) == "transcribing 37%"
    assert ui_view.job_stage_text(job(status="aligning")) == "aligning the words"
    done = job(status="done", segments=3, duration=12.34)
    assert ui_view.job_stage_text(done) == "done: 3 segments from 12.3 s of audio"
    diarized = {
        **done,
        "speakers": [{"id": "SPEAKER_00", "name": "Alice"}, {"id": "SPEAKER_01", "name": "B"}],
    }
    assert ui_view.job_stage_text(diarized) == "done: 3 segments from 12.3 s of audio · 2 speakers"
    assert (
        ui_view.job_stage_text({**done, "status": "diarizing", "progress": 40.0}) == "finding who speaks 40%"
    )
    assert ui_view.job_stage_text(job(status="cancelled")) == "cancelled"
    assert ui_view.job_settings_text(job()) == "tiny · zh · auto"
    assert ui_view.job_settings_text(job(status="done", language="zh", device="cpu")) == "tiny · zh · cpu"


def test_jobs_table_rows_carry_hooks_bars_links_and_buttons_and_escape_text():
    assert "No transcriptions yet" in ui_view.render_jobs_table([])
    jobs = [
        job("1" * 32, "transcribing", progress=37.5),
        job("2" * 32, "queued", name="<b>evil</b>.wav", position=1),
        job("3" * 32, "done", segments=2, duration=3.0, finished_at=5.0),
        job("4" * 32, "error", error={"code": "invalid_audio", "message": "not <audio>"}),
    ]
    links = {"3" * 32: {"srt": "api/transcriptions/333/result?format=srt&download=1&sig=x"}}
    table = ui_view.render_jobs_table(jobs, links, shown="3" * 32)
    rows = re.findall(r'<tr data-job="(\w+)" data-status="(\w+)"', table)
    assert rows == [("1" * 32, "transcribing"), ("2" * 32, "queued"), ("3" * 32, "done"), ("4" * 32, "error")]
    assert table.count("<progress") == 1 and 'value="37.5"' in table and ">37%<" in table
    assert "waiting (#1 in the queue)" in table
    assert "<b>evil</b>" not in table and "&lt;b&gt;evil&lt;/b&gt;.wav" in table
    assert "not &lt;audio&gt;" in table
    assert 'href="api/transcriptions/333/result?format=srt&amp;download=1&amp;sig=x"' in table
    assert 'download="talk.srt"' in table and 'data-format="srt"' in table
    buttons = re.findall(r'data-action="(\w+)" data-job="(\w)', table)
    assert buttons == [("cancel", "1"), ("cancel", "2"), ("show", "3"), ("remove", "3"), ("remove", "4")]
    assert 'class="st-done mm-shown"' in table and ">Showing<" in table


def test_the_segments_shown_are_the_picked_job_else_the_newest_finished():
    jobs = [
        job("1" * 32, "transcribing"),
        job("2" * 32, "done", finished_at=20.0),
        job("3" * 32, "done", finished_at=30.0),
        job("4" * 32, "error", finished_at=40.0),
    ]
    assert ui_view.job_to_show(jobs, None)["id"] == "3" * 32
    assert ui_view.job_to_show(jobs, "2" * 32)["id"] == "2" * 32
    assert ui_view.job_to_show(jobs, "9" * 32)["id"] == "3" * 32  # removed meanwhile
    assert ui_view.job_to_show(jobs, "4" * 32)["id"] == "3" * 32  # a failed job has no segments
    assert ui_view.job_to_show(jobs[:1], None) is None


def test_submitted_text_names_queued_and_refused_files():
    assert ui_view.submitted_text(["a.wav", "b.wav"], []) == "Queued 2 files: <b>a.wav</b>, <b>b.wav</b>."
    text = ui_view.submitted_text(["a.wav"], [("<x>.txt", "not audio")])
    assert "Queued 1 file: <b>a.wav</b>." in text and "&lt;x&gt;.txt</b>: not audio" in text
    assert "first" in ui_view.submitted_text([], [])


def test_submit_copy_queues_a_copy_and_refuses_bad_files_without_storing_them(tmp_path):
    settings = Settings(hf_home=tmp_path / "hf", hf_endpoint="http://127.0.0.1:9", offline=True)
    services = Services.build(settings)
    manager = services.transcriptions  # offline: its job ends in an error, which does not matter here
    wav = make_wav(tmp_path / "in" / "talk.wav", seconds=1.0)
    options = manager.validate(JobOptions(model="tiny", language="zh"))

    queued = ui.submit_copy(manager, wav, wav.name, options)
    assert wav.exists(), "Gradio's own copy must stay where it is"
    assert queued.filename == "talk.wav" and queued.input_path.exists()
    assert [j["id"] for j in manager.snapshot()] == [queued.id]

    text = tmp_path / "in" / "notes.wav"
    text.write_text("not audio at all")
    with pytest.raises(InvalidAudio):
        ui.submit_copy(manager, text, text.name, options)
    settings.max_upload_bytes = 10
    with pytest.raises(PayloadTooLarge):
        ui.submit_copy(manager, wav, wav.name, options)
    assert [j["id"] for j in manager.snapshot()] == [queued.id]
    assert sorted(p.name for p in manager.root.iterdir()) == [queued.id]  # no stray uploads
    services.shutdown()


def test_build_ui_has_the_contract_hooks_and_one_private_timer(tmp_path):
    settings = Settings(hf_home=tmp_path / "hf", hf_endpoint="http://127.0.0.1:9", offline=True)
    demo = ui.build_ui(Services.build(settings))
    ids = {block.elem_id for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    contract = {
        "models-table",
        "model-select",
        "language-select",
        "download-btn",
        "cancel-btn",
        "delete-btn",
        "preload-btn",
        "clear-cache-btn",
        "panel-toggle",
        "model-panel",
        "model-select-panel",
        "download-btn-panel",
        "cancel-btn-panel",
        "audio-input",
        "mic-input",
        "tx-model",
        "tx-language",
        "tx-device",
        "transcribe-btn",
        "transcribe-stage",
        "jobs-table",
        "segments-table",
    }
    assert contract <= ids
    devices = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "tx-device"][0]
    assert devices.value == "auto"
    assert devices.choices[0] == (f"auto ({loaders.auto_device_hint()})", "auto")
    assert [t[1] for d in demo.fns.values() for t in d.targets].count("job_action") == 1
    # Anything but a Tab directly inside gr.Tabs (a gr.State, say) duplicates the tab buttons.
    tabs = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "main-tabs"][0]
    assert {type(child).__name__ for child in tabs.children} == {"Tab"}
    timers = [b for b in demo.blocks.values() if b.__class__.__name__ == "Timer"]
    assert len(timers) == 1
    ticks = [d for d in demo.fns.values() if any(t[1] == "tick" for t in d.targets)]
    assert len(ticks) == 1
    assert ticks[0].queue is False  # a short POST per tick: no result stream held per page
    assert ticks[0].api_visibility == "private"
    assert ticks[0].show_progress == "hidden"
    assert all(d.api_visibility == "private" for d in demo.fns.values())


def test_pages_hold_no_heartbeat_connection(tmp_path):
    """gr.State (or an unload event) makes every page keep /gradio_api/heartbeat open: over HTTP/1.1
    the sixth tab of a browser then waits forever for a connection (tests/e2e/test_many_tabs.py)."""
    settings = Settings(hf_home=tmp_path / "hf", hf_endpoint="http://127.0.0.1:9", offline=True)
    demo = ui.build_ui(Services.build(settings))
    assert demo.get_config_file()["connect_heartbeat"] is False


def test_workers_table_says_what_a_worker_s_preload_is_doing_and_why_it_failed():
    base = {"name": "gpu1-7", "device": "cuda", "loaded": ["tiny"], "models_on_disk": ["tiny"]}
    failed = base | {
        "preload": "error",
        "preload_model": "large-v3",
        "preload_error": {"code": "out_of_memory", "message": "CUDA out of <b>memory</b>"},
    }
    html = ui_view.render_workers({"redis": "ok"}, [failed, base | {"name": "gpu2-8", "preload": "loading"}])
    assert "preload of large-v3 failed: CUDA out of &lt;b&gt;memory&lt;/b&gt;" in html  # escaped
    assert html.count('data-action="preload"') == 2 and 'data-worker="gpu2-8"' in html
    assert "loading" in html and html.count("failed") == 1


def test_a_job_retried_after_its_worker_was_lost_says_so_in_the_table():
    job = {
        "id": "a" * 32,
        "status": "transcribing",
        "progress": 40.0,
        "worker": "gpu2",
        "attempt": 2,
        "retries": [{"attempt": 2, "lost_worker": "gpu1", "at": 0}],
    }
    assert ui_view.job_stage_text(job) == "transcribing 40% · on gpu2 · attempt 2 (gpu1 lost)"
    assert ui_view.job_stage_text({"id": "b" * 32, "status": "loading"}) == "loading the model"
