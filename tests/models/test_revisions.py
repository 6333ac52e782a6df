"""Old revisions: an update during a running job leaves its files until the job ends, then removes them."""

from __future__ import annotations

import pytest

from modelmgr.asr.jobs import JobOptions
from modelmgr.services import Services
from tests.asr.test_jobs import Gate
from tests.hf_cli import assert_hf_cache_verify_clean
from tests.hub import FakeHub
from tests.live import wait_until
from tests.models.test_hardening import _download

REPO = "Systran/faster-whisper-base"
TIMEOUT = 300


def test_an_update_during_a_job_removes_the_old_revision_when_the_job_ends(
    services: Services, hub: FakeHub, settings, tiny, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _download(services, "base") == "downloaded"
    spec = services.catalog.get("base")
    old = services.store.local_commit(spec)
    repo_dir = services.store.repo_dir(spec)
    gate = Gate(monkeypatch)
    upload = tmp_path / "upload.wav"
    upload.write_bytes(tiny.wav.read_bytes())
    job = services.transcriptions.submit(upload, "a.wav", JobOptions(model="base", language="zh"))
    files = {p.name: p.read_bytes() for p in tiny.whisper.iterdir() if p.is_file()}
    files["config.json"] = files["config.json"].rstrip()[:-1] + b', "revision_note": "v4"}'
    try:
        assert gate.entered.wait(TIMEOUT), job.error  # the job holds its lease on revision `old`
        new = hub.add_repo(REPO, files)
        update = services.downloads.update("base")
        assert update.job is not None and update.job.done.wait(60) and update.job.status == "downloaded"
        assert (repo_dir / "refs" / "main").read_text() == new
        assert (repo_dir / "snapshots" / old).is_dir(), "the running job's revision was kept"
        assert services.downloads.revisions.pending() == [{"model": "base", "revision": old}]
        gate.open.set()
        assert job.done.wait(TIMEOUT) and job.status == "done", job.error
        wait_until(lambda: not (repo_dir / "snapshots" / old).exists(), 30, "the old revision removed")
        assert services.downloads.revisions.pending() == []
        removed = [e.data for e in services.bus._replay if e.name == "revision_removed"]
        assert removed and removed[-1]["model"] == "base" and removed[-1]["revision"] == old
        assert removed[-1]["freed_bytes"] > 0  # config.json's old blob went with it
        assert services.downloads.describe(spec)["status"] == "downloaded"
        assert_hf_cache_verify_clean(settings, hub, REPO)
    finally:
        gate.open.set()
        hub.add_repo_from_dir(REPO, tiny.whisper)  # the session hub serves the original again
