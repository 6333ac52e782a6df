"""Transcription as a service: jobs, leases, dedupe, bad input, restart, through the HTTP API."""

from __future__ import annotations

import threading
import time
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelmgr.asr import pipeline
from modelmgr.asr.jobs import JobOptions, TranscriptionManager
from modelmgr.core.settings import Settings
from tests.conftest import LiveServer, run_server, wait_until
from tests.hub import FakeHub

TIMEOUT = 300  # the first job imports torch + whisperx: slow on a loaded 2-core machine
FINISHED = ("done", "error", "cancelled")


def submit(live: LiveServer, audio: Path, **fields: Any) -> httpx.Response:
    with audio.open("rb") as f:
        return httpx.post(
            f"{live.url}/api/transcriptions",
            files={"file": (audio.name, f, "audio/wav")},
            data={k: str(v) for k, v in fields.items()},
            timeout=60,
        )


def job_state(live: LiveServer, job_id: str) -> dict:
    return httpx.get(f"{live.url}/api/transcriptions/{job_id}", timeout=30).json()


def wait_job(live: LiveServer, job_id: str, *statuses: str) -> dict:
    wanted = statuses or FINISHED
    return wait_until(
        lambda: (j := job_state(live, job_id))["status"] in wanted and j, TIMEOUT, f"job {job_id} {wanted}"
    )


class Gate:
    """Holds every transcription at the pipeline's decoding step until the test opens the gate.

    A stand-in for a long transcription: the job holds its lease while it waits. It wraps
    ``transcribe`` (the step every path takes: sequential or batched, with or without VAD).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        real = pipeline.transcribe

        def held(audio: Any, whisper_model: Any, **kwargs: Any) -> Any:
            self.entered.set()
            assert self.open.wait(TIMEOUT), "the test never opened the gate"
            return real(audio, whisper_model, **kwargs)

        monkeypatch.setattr(pipeline, "transcribe", held)


def write_wav(path: Path, frames: bytes = b"") -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(frames)
    return path


# --------------------------------------------------------------------------- the happy path


def test_job_runs_through_every_stage_and_serves_every_format(live_server: LiveServer, tiny) -> None:
    created = submit(live_server, tiny.wav, model="tiny", language="zh")
    assert created.status_code == 202, created.text
    job = created.json()
    assert created.headers["location"] == f"/api/transcriptions/{job['id']}"
    assert job["status"] in ("queued", "downloading", "loading") and job["options"]["device"] == "auto"
    done = wait_job(live_server, job["id"])
    assert done["status"] == "done", done["error"]
    assert done["device"] == "cpu", "auto is resolved once, to a concrete device"
    assert done["language"] == "zh" and done["segments"] == 2 and done["progress"] == 100.0
    srt = httpx.get(
        f"{live_server.url}/api/transcriptions/{job['id']}/result", params={"format": "srt"}, timeout=60
    )
    assert srt.status_code == 200 and srt.text.startswith("1\n00:00:00,000 --> ")
    assert "你好世界" in srt.text
    vtt = httpx.get(f"{live_server.url}{done['results']['vtt']}", timeout=60)
    assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT")
    assert (
        "attachment" in vtt.headers["content-disposition"]
        and "speech.vtt" in vtt.headers["content-disposition"]
    )
    data = httpx.get(
        f"{live_server.url}/api/transcriptions/{job['id']}/result?format=json", timeout=60
    ).json()
    words = [w for seg in data["segments"] for w in seg["words"]]
    assert words and all(w["start"] <= w["end"] for w in words)
    txt = httpx.get(f"{live_server.url}/api/transcriptions/{job['id']}/result?format=txt", timeout=60).text
    assert txt.splitlines() == ["你好世界", "hello world"]

    # Every stage was published on the event bus, in order.
    stages = [
        e.data["status"]
        for e in live_server.services.bus._replay
        if e.name == "transcription" and e.data["id"] == job["id"]
    ]
    order = ["queued", "downloading", "loading", "transcribing", "aligning", "done"]
    seen = [s for s in dict.fromkeys(stages)]
    assert seen == [s for s in order if s in seen] and {"transcribing", "aligning", "done"} <= set(seen), (
        stages
    )

    listed = httpx.get(f"{live_server.url}/api/transcriptions", timeout=60).json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    removed = httpx.delete(f"{live_server.url}/api/transcriptions/{job['id']}", timeout=60)
    assert removed.json()["status"] == "deleted"
    assert httpx.get(f"{live_server.url}/api/transcriptions/{job['id']}", timeout=60).status_code == 404
    assert not any(live_server.services.settings.jobs_dir.iterdir()), "its folder is gone"


def test_twenty_concurrent_requests_for_a_missing_model_make_one_download_and_twenty_results(
    live_server: LiveServer, hub: FakeHub, tiny
) -> None:
    hub.set_throttle(2_000_000)  # the download is still running while all twenty arrive
    audio = tiny.wav.read_bytes()

    def one(i: int) -> httpx.Response:
        return httpx.post(
            f"{live_server.url}/v1/audio/transcriptions",
            files={"file": (f"clip-{i}.wav", audio, "audio/wav")},
            data={"model": "tiny", "language": "zh", "response_format": "json"},
            timeout=TIMEOUT,
        )

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(one, range(20)))
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers if a.status_code != 200]
    assert all(a.json()["text"] == "你好世界 hello world" for a in answers)
    assert hub.get_count("Systran/faster-whisper-tiny", "model.bin") == 1, "one transfer of the model"
    jobs = live_server.services.transcriptions.jobs()
    assert len(jobs) == 20 and all(j.status == "done" for j in jobs)


def test_a_job_for_a_model_still_downloading_joins_that_download(
    live_server: LiveServer, hub: FakeHub, tiny
) -> None:
    hub.set_throttle(300_000)
    started = httpx.post(
        f"{live_server.url}/api/models/tiny/download", json={"languages": ["zh"]}, timeout=60
    )
    assert started.json()["status"] == "started"
    job = submit(live_server, tiny.wav, model="tiny", language="zh").json()
    downloading = wait_job(live_server, job["id"], "downloading", *FINISHED)
    assert downloading["status"] == "downloading" and downloading["download"]["model"] == "tiny"
    hub.set_throttle(None)
    assert wait_job(live_server, job["id"])["status"] == "done"
    assert hub.get_count("Systran/faster-whisper-tiny", "model.bin") == 1


# --------------------------------------------------------------------------- leases


def test_clear_cache_delete_and_other_preloads_wait_for_a_running_job(
    live_server: LiveServer, hub: FakeHub, tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    url = live_server.url
    first = submit(live_server, tiny.wav, model="tiny", language="zh").json()
    assert gate.entered.wait(TIMEOUT), "the job never started transcribing"
    assert job_state(live_server, first["id"])["status"] == "transcribing"

    cleared = httpx.post(f"{url}/api/preload/clear-cache", timeout=60)
    assert cleared.status_code == 409 and cleared.json()["error"]["code"] == "model_in_use"
    deleted = httpx.delete(f"{url}/api/models/tiny", timeout=60)
    assert deleted.status_code == 409
    other = httpx.post(f"{url}/api/preload/start", json={"model": "base", "device": "cpu"}, timeout=60)
    assert other.status_code == 409 and other.json()["error"]["code"] == "model_in_use"
    same = httpx.post(
        f"{url}/api/preload/start", json={"model": "tiny", "language": "zh", "device": "cpu"}, timeout=60
    )
    assert same.status_code == 202 and same.json()["state"] == "ready", "the same model is simply ready"

    second = submit(live_server, tiny.wav, model="base", language="zh").json()
    assert job_state(live_server, second["id"])["status"] == "queued"
    status = httpx.get(f"{url}/api/preload/status", timeout=60).json()
    assert status["whisper"]["id"] == "tiny" and status["leases"] == 1

    gate.open.set()
    done = wait_job(live_server, first["id"])
    assert done["status"] == "done" and done["segments"] == 2, done
    after = wait_job(live_server, second["id"])
    assert after["status"] == "done", after["error"]
    status = httpx.get(f"{url}/api/preload/status", timeout=60).json()
    assert status["whisper"]["id"] == "base" and status["leases"] == 0
    assert httpx.post(f"{url}/api/preload/clear-cache", timeout=60).status_code == 200


def test_aligners_loaded_on_demand_are_recorded_and_freed(live_server: LiveServer, tiny) -> None:
    job = submit(live_server, tiny.wav, model="tiny").json()  # language auto: detected as zh
    done = wait_job(live_server, job["id"])
    assert done["status"] == "done" and done["language"] == "zh"
    status = httpx.get(f"{live_server.url}/api/preload/status", timeout=60).json()
    zh_align = "jonatasgrosman/wav2vec2-large-xlsr-53-chinese-zh-cn"
    assert {"id": zh_align, "language": "zh"} in status["aligners"]
    refused = httpx.delete(f"{live_server.url}/api/models/{zh_align}", timeout=60)
    assert refused.status_code == 409, "a loaded aligner cannot be deleted"
    freed = httpx.post(f"{live_server.url}/api/preload/clear-cache", timeout=60).json()["freed"]["models"]
    assert set(freed) == {"tiny", zh_align}


# --------------------------------------------------------------------------- cancel


def test_cancel_a_queued_and_a_running_job(
    live_server: LiveServer, tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = Gate(monkeypatch)
    running = submit(live_server, tiny.wav, model="tiny", language="zh").json()
    queued = submit(live_server, tiny.wav, model="tiny", language="zh").json()
    assert gate.entered.wait(TIMEOUT)
    answer = httpx.delete(f"{live_server.url}/api/transcriptions/{queued['id']}", timeout=60)
    assert answer.status_code == 200 and answer.json()["job"]["status"] == "cancelled"
    answer = httpx.delete(f"{live_server.url}/api/transcriptions/{running['id']}", timeout=60)
    assert answer.json()["status"] == "cancelling"
    gate.open.set()
    cancelled = wait_job(live_server, running["id"])
    assert cancelled["status"] == "cancelled"
    result = httpx.get(f"{live_server.url}/api/transcriptions/{running['id']}/result?format=srt", timeout=60)
    assert result.status_code == 409 and result.json()["error"]["code"] == "result_not_ready"
    assert httpx.get(f"{live_server.url}/api/preload/status", timeout=60).json()["leases"] == 0


# --------------------------------------------------------------------------- bad input


def _job_folders(settings: Settings) -> list[Path]:
    root = settings.jobs_dir
    return sorted(root.iterdir()) if root.exists() else []


def test_every_bad_upload_gets_a_clear_error_and_changes_nothing(
    settings: Settings, tmp_path: Path, tiny
) -> None:
    settings = settings.model_copy(update={"max_upload_bytes": 64 * 1024})
    not_audio = tmp_path / "notes.wav"
    not_audio.write_bytes(b"this is not audio at all" * 100)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    silent = write_wav(tmp_path / "zero.wav")
    small = write_wav(tmp_path / "short.wav", b"\x00\x01" * 8000)
    big = write_wav(tmp_path / "big.wav", b"\x00\x01" * 64 * 1024)
    jobs, v1 = "/api/transcriptions", "/v1/audio/transcriptions"
    ja_align = "jonatasgrosman/wav2vec2-large-xlsr-53-japanese"
    cases: list[tuple[str, dict, Path | None, int, str]] = [
        (jobs, {"model": "tiny"}, not_audio, 400, "invalid_audio"),
        (jobs, {"model": "tiny"}, empty, 400, "invalid_audio"),
        (jobs, {"model": "tiny"}, silent, 400, "invalid_audio"),
        (jobs, {"model": "tiny"}, big, 413, "payload_too_large"),
        (jobs, {"model": "nope"}, small, 404, "model_not_found"),
        (jobs, {"model": "tiny", "language": "xx"}, small, 400, "unknown_language"),
        (jobs, {"model": "tiny.en", "language": "zh"}, small, 400, "unknown_language"),
        (jobs, {"model": "tiny", "device": "tpu"}, small, 400, "unknown_device"),
        (jobs, {"model": "tiny", "task": "dance"}, small, 400, "invalid_input"),
        (jobs, {"model": "tiny", "formats": "srt,docx"}, small, 400, "unsupported_format"),
        (jobs, {"model": "tiny", "batch_size": "many"}, small, 400, "invalid_input"),
        (jobs, {"model": "tiny", "colour": "blue"}, small, 400, "invalid_input"),
        (
            "/api/transcriptions",
            {"model": ja_align},
            small,
            400,
            "invalid_input",
        ),
        (jobs, {"model": "tiny"}, None, 400, "invalid_input"),
        (
            "/v1/audio/transcriptions",
            {"model": "tiny", "response_format": "docx"},
            small,
            400,
            "unsupported_format",
        ),
        (v1, {"model": "nope"}, small, 404, "model_not_found"),
        (v1, {"model": "tiny"}, not_audio, 400, "invalid_audio"),
        (v1, {"model": "tiny"}, big, 413, "payload_too_large"),
        (v1, {"model": "tiny", "temperature": "hot"}, small, 400, "invalid_input"),
        (
            "/v1/audio/transcriptions",
            {"model": "tiny", "timestamp_granularities[]": "char"},
            small,
            400,
            "invalid_input",
        ),
    ]
    with run_server(settings) as live:
        before = httpx.get(f"{live.url}/api/models", timeout=60).json()
        for path, fields, audio, status, code in cases:
            files = {"file": (audio.name, audio.read_bytes(), "audio/wav")} if audio else {"x": ("x", b"")}
            answer = httpx.post(f"{live.url}{path}", data=fields, files=files, timeout=60)
            assert answer.status_code == status, (path, fields, answer.text)
            error = answer.json()["error"]
            assert error["code"] == code, (path, fields, error)
            assert error["message"]
            if path.startswith("/v1"):
                assert set(error) == {"message", "type", "param", "code"}, "OpenAI's error shape"
        boundary = "studio-test-boundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\ntiny\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()

        def chunked() -> Any:  # no Content-Length: the limit is counted while the body streams
            yield head
            for _ in range(16):
                yield b"\x00" * 8192
            yield f"\r\n--{boundary}--\r\n".encode()

        streamed = httpx.post(
            f"{live.url}/api/transcriptions",
            content=chunked(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
            timeout=60,
        )
        assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "payload_too_large"
        not_multipart = httpx.post(f"{live.url}/api/transcriptions", json={"model": "tiny"}, timeout=60)
        assert not_multipart.status_code == 400
        assert httpx.get(f"{live.url}/api/transcriptions/{'0' * 32}", timeout=60).status_code == 404
        assert httpx.get(f"{live.url}/api/transcriptions/../../etc", timeout=60).status_code == 404
        assert httpx.get(f"{live.url}/api/transcriptions", timeout=60).json() == {"jobs": []}
        assert httpx.get(f"{live.url}/api/models", timeout=60).json() == before
        assert live.services.downloads.transfers_started == 0
        assert httpx.get(f"{live.url}/v1/nope", timeout=60).json()["error"]["code"] == "not_found"
    assert [p.name for p in _job_folders(settings)] == [], "no job folder, no stray upload"


# --------------------------------------------------------------------------- restart and retention


def test_interrupted_jobs_run_again_after_a_restart_and_old_results_expire(
    services, tiny, tmp_path: Path
) -> None:
    manager = services.transcriptions
    upload = tmp_path / "upload.wav"
    upload.write_bytes(tiny.wav.read_bytes())
    job = manager.submit(upload, "meeting.wav", JobOptions(model="tiny", language="zh"))
    manager.shutdown()  # the job may not have started; either way it is kept for the next process
    record = (job.folder / "job.json").read_text()
    assert '"cancelled"' not in record and '"error"' not in record.replace('"error": null', "")

    again = TranscriptionManager(
        services.settings, services.catalog, services.downloads, services.preload, services.bus
    )
    again.start()
    try:
        resumed = again.get(job.id)
        assert resumed.done.wait(TIMEOUT) and resumed.status == "done", resumed.error
        assert again.result(job.id, "srt").read_text().startswith("1\n")
        assert not resumed.input_path.exists(), "the upload is removed once the job has finished"
    finally:
        again.shutdown()

    expired = services.settings.model_copy(update={"transcription_retention_s": 0.01})
    later = TranscriptionManager(
        expired, services.catalog, services.downloads, services.preload, services.bus
    )
    time.sleep(0.05)  # past the (tiny) retention period
    later.start()
    try:
        assert later.jobs() == [] and not job.folder.exists(), "finished jobs past retention are removed"
    finally:
        later.shutdown()


def test_a_job_submitted_before_start_runs_exactly_once(services, tiny, tmp_path: Path) -> None:
    upload = tmp_path / "upload.wav"
    upload.write_bytes(tiny.wav.read_bytes())
    job = services.transcriptions.submit(upload, "once.wav", JobOptions(model="tiny", language="zh"))
    assert job.done.wait(TIMEOUT) and job.status == "done", job.error
    services.transcriptions.shutdown()
    ends = [
        e.data["status"]
        for e in services.bus._replay
        if e.name == "transcription" and e.data["id"] == job.id and e.data["status"] in FINISHED
    ]
    assert ends == ["done"], "one run, not one per record of the job"
    assert len(services.transcriptions.jobs()) == 1
    assert '"status": "done"' in (job.folder / "job.json").read_text()
