"""``modelmgr transcribe``'s diarization options, in-process and through a server (``--url``).

The options are what is tested, not the diarizer: each job is cancelled as soon as the test
has read its options (the hub is paused, so it never gets past downloading its model).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from modelmgr.asr.jobs import Job, TranscriptionManager
from modelmgr.cli.commands import EXIT_BAD_INPUT, EXIT_FAILED, main
from modelmgr.services import Services
from tests.conftest import LiveServer, predownload_diarizer, run_server, wait_until
from tests.hub import FakeHub

TINY_REPO = "Systran/faster-whisper-tiny"
DIARIZER = "pyannote/speaker-diarization-3.1"


def spy_submits(monkeypatch: pytest.MonkeyPatch) -> list[tuple[TranscriptionManager, Job]]:
    """Every (manager, job) the in-process CLI submits (its manager and folder are private)."""
    seen: list[tuple[TranscriptionManager, Job]] = []
    real = TranscriptionManager.submit

    def submit(self: TranscriptionManager, *args: Any, **kwargs: Any) -> Job:
        job = real(self, *args, **kwargs)
        seen.append((self, job))
        return job

    monkeypatch.setattr(TranscriptionManager, "submit", submit)
    return seen


class CancelFirstJob:
    """In a thread: wait for the first job, keep its options as stored, cancel it (a job that has
    already ended is left as it is), then resume the hub."""

    def __init__(self, jobs: Callable[[], list[Job]], cancel: Callable[[str], object], hub: FakeHub) -> None:
        self.options: dict[str, Any] | None = None
        self.failure: BaseException | None = None

        def run() -> None:
            try:
                job = wait_until(lambda: next(iter(jobs()), None), 120, "the CLI's job")
                self.options = job.describe()["options"]
                cancel(job.id)
            except BaseException as exc:  # reported by the test, not lost in the thread
                self.failure = exc
            finally:
                hub.resume()

        self.thread = threading.Thread(target=run, name="cancel-first-job", daemon=True)
        self.thread.start()

    def result(self) -> dict[str, Any]:
        self.thread.join(180)
        assert not self.thread.is_alive(), "the watcher never saw the job"
        assert self.failure is None, self.failure
        assert self.options is not None
        return self.options


def test_min_speakers_above_max_exits_2_with_the_reason_and_creates_no_job(
    settings, hub: FakeHub, tiny, tmp_path, capsys, monkeypatch
) -> None:
    submitted = spy_submits(monkeypatch)
    out = tmp_path / "subs"
    argv = ["transcribe", str(tiny.wav), "--model", "tiny", "--out", str(out)]
    code = main([*argv, "--diarize", "--min-speakers", "3", "--max-speakers", "2"], settings)
    assert code == EXIT_BAD_INPUT
    assert "min_speakers (3) is more than max_speakers (2)" in capsys.readouterr().err
    # Counts without --diarize are refused too, in words.
    assert main([*argv, "--min-speakers", "3", "--max-speakers", "2"], settings) == EXIT_BAD_INPUT
    assert "diarization option" in capsys.readouterr().err
    assert main([*argv, "--diarize", "--diarize-model", "tiny"], settings) == EXIT_BAD_INPUT
    assert "not a diarization pipeline" in capsys.readouterr().err
    assert submitted == [], "refused before any job"
    assert hub.get_count(TINY_REPO, "model.bin") == 0, "nothing was downloaded"
    assert not out.exists()
    assert not list(settings.state_dir.glob("transcriptions-*")), "no private job folder left behind"


def test_min_speakers_above_max_through_a_server_exits_2_and_the_server_stores_nothing(
    live_server: LiveServer, settings, tiny, tmp_path, capsys
) -> None:
    argv = ["--url", live_server.url, "transcribe", str(tiny.wav), "--model", "tiny"]
    code = main([*argv, "--diarize", "--min-speakers", "3", "--max-speakers", "2"], settings)
    assert code == EXIT_BAD_INPUT
    assert "min_speakers (3) is more than max_speakers (2)" in capsys.readouterr().err
    assert live_server.services.transcriptions.jobs() == []
    assert live_server.services.downloads.transfers_started == 0


def test_diarize_with_num_speakers_puts_the_options_on_the_in_process_job(
    diarize_settings, gated_hub: FakeHub, tiny, tmp_path, capsys, monkeypatch
) -> None:
    settings, hub = diarize_settings, gated_hub
    services = Services.build(settings)  # the CLI's in-process manager shares this model cache
    try:
        predownload_diarizer(services)
    finally:
        services.shutdown()
    submitted = spy_submits(monkeypatch)
    hub.pause()  # the job waits on its model download until the watcher has cancelled it
    watcher = CancelFirstJob(
        lambda: [job for _, job in submitted], lambda job_id: submitted[0][0].cancel(job_id), hub
    )
    argv = ["transcribe", str(tiny.wav), "--model", "tiny", "--out", str(tmp_path / "subs")]
    code = main([*argv, "--diarize", "--num-speakers", "2"], settings)
    options = watcher.result()
    # Cancelled by the watcher (or failed on the paused hub first): never done, so exit 1.
    assert code == EXIT_FAILED, capsys.readouterr().err
    assert options["diarize"] is True and options["num_speakers"] == 2
    assert (options["min_speakers"], options["max_speakers"]) == (None, None)
    assert options["diarize_model"] == DIARIZER, "the default pipeline, named on the job"
    assert len(submitted) == 1


def test_diarize_options_reach_the_server_s_job_through_the_form(
    diarize_settings, gated_hub: FakeHub, tiny, tmp_path, capsys
) -> None:
    settings, hub = diarize_settings, gated_hub
    with run_server(settings) as live_server:
        predownload_diarizer(live_server.services)
        manager = live_server.services.transcriptions
        hub.pause()
        watcher = CancelFirstJob(manager.jobs, manager.cancel, hub)
        argv = ["--url", live_server.url, "transcribe", str(tiny.wav), "--model", "tiny"]
        flags = ["--diarize", "--min-speakers", "1", "--max-speakers", "3", "--diarize-model", DIARIZER]
        code = main([*argv, *flags, "--out", str(tmp_path / "subs")], settings)
        options = watcher.result()
        jobs = [j.options.diarize for j in manager.jobs()]
    assert code == EXIT_FAILED, capsys.readouterr().err
    assert options["diarize"] is True
    assert (options["num_speakers"], options["min_speakers"], options["max_speakers"]) == (None, 1, 3)
    assert options["diarize_model"] == DIARIZER
    assert jobs == [True]
