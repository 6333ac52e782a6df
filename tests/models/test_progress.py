"""Progress that tells the truth: after a kill -9 in the middle of an 8-part download, the
Models tab's source (``describe``), ``GET /api/models`` and the CLI show the bytes the range
record says are on disk, not the length of a partial with holes; and the speed meter never
shows a negative speed when a retried part's bytes are taken back out."""

from __future__ import annotations

import json
import os
import random
import signal
from pathlib import Path

import httpx

from modelmgr.cli.commands import EXIT_OK, main
from modelmgr.core.settings import Settings
from modelmgr.models import transfer
from modelmgr.models.downloads.jobs import SpeedMeter
from modelmgr.services import Services
from tests.conftest import run_server, wait_until
from tests.fresh import fresh_server
from tests.hub import FakeHub

MiB = 1024 * 1024
REPO = "Systran/faster-whisper-base"  # catalog id "base"; served with a 16 MiB model.bin here
PART = 2 * MiB


def _ranges_record(settings: Settings) -> Path | None:
    blobs = settings.hf_home / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
    found = sorted(blobs.glob(f"*{transfer.RANGES_SUFFIX}")) if blobs.is_dir() else []
    return found[0] if found else None


def _finished_blobs(settings: Settings) -> list[Path]:
    blobs = settings.hf_home / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
    in_flight = (".incomplete", transfer.RANGES_SUFFIX, ".tmp")
    return [p for p in blobs.glob("*") if not p.name.endswith(in_flight)]


def _parts(record: Path | None) -> list[list[int]] | None:
    try:
        return json.loads(record.read_text())["parts"] if record else None
    except (OSError, ValueError):
        return None


def test_after_kill_9_mid_8_part_download_every_surface_shows_the_recorded_bytes(
    settings: Settings, hub: FakeHub, tiny, tmp_path: Path, capsys
) -> None:
    files = {p.name: p.read_bytes() for p in tiny.whisper.iterdir() if p.is_file()}
    files["model.bin"] = random.Random(16).randbytes(16 * MiB)
    hub.add_repo(REPO, files)
    try:
        hub.set_throttle(1_000_000)  # per connection: every part moves for seconds
        env = {"MODELMGR_DOWNLOAD_PART_BYTES": str(PART), "MODELMGR_DOWNLOAD_CONNECTIONS": "8"}
        with fresh_server(settings, tmp_path, **env) as app:
            assert httpx.post(f"{app.url}/api/models/base/download", json={}, timeout=60).status_code == 202

            def holes_on_disk() -> list[list[int]] | None:
                """A later part has bytes while an earlier one is unfinished: the partial's
                length is then more than the bytes in it."""
                parts = _parts(_ranges_record(settings))
                if not parts or len(parts) != 8 or len(_finished_blobs(settings)) != len(files) - 1:
                    return None  # (and every small file done: the figure below counts them whole)
                started = [d > 0 for _, _, d in parts]
                unfinished = [d < e - s for s, e, d in parts]
                later = any(started[i] and any(unfinished[:i]) for i in range(1, 8))
                return parts if later and sum(d for _, _, d in parts) >= 2 * MiB else None

            wait_until(holes_on_disk, 120, "parts of model.bin under way past an unfinished one")
            os.kill(app.process.pid, signal.SIGKILL)
            app.process.wait(30)
        hub.pause()  # nothing may move from here on: the figures below are the disk's
        record = _ranges_record(settings)
        recorded = sum(d for _, _, d in _parts(record))
        partial = record.with_name(record.name.removesuffix(transfer.RANGES_SUFFIX))
        assert partial.stat().st_size > recorded, "the partial has holes (the case this test is about)"
        small = sum(len(v) for k, v in files.items() if k != "model.bin")
        expected = small + recorded

        quiet = settings.model_copy(update={"resume_on_start": False})
        services = Services.build(quiet)
        try:
            model = services.downloads.describe(services.catalog.get("base"))
            assert model["status"] == "incomplete", model
            assert model["progress"]["bytes_done"] == expected, (model["progress"], expected)
            total = model["progress"]["bytes_total"]
            assert model["progress"]["percent"] == round(100.0 * expected / total, 1)
        finally:
            services.shutdown()
        with run_server(quiet) as live:
            listed = httpx.get(f"{live.url}/api/models", timeout=60).json()["models"]
            assert next(m for m in listed if m["id"] == "base")["progress"]["bytes_done"] == expected
        assert main(["status", "base", "--json"], quiet) == EXIT_OK
        assert json.loads(capsys.readouterr().out)["progress"]["bytes_done"] == expected
    finally:
        hub.resume()
        hub.set_throttle(None)
        hub.add_repo_from_dir(REPO, tiny.whisper)  # the session hub serves the original again


def test_speed_is_never_negative_when_discarded_bytes_are_taken_back() -> None:
    meter = SpeedMeter(window_s=3.0)
    assert meter.update(0.0, 0) is None  # one sample: no speed yet
    assert meter.update(1.0, 4 * MiB) == 4 * MiB
    after_discard = meter.update(4.5, 1 * MiB)  # a retried part's 3 MiB taken back out
    assert after_discard is None or after_discard >= 0, after_discard
    assert meter.update(5.5, 2 * MiB) == 1 * MiB, "measured from the lower count"
    for t, done in ((6.0, 2 * MiB - 1), (6.5, 2 * MiB - 2), (7.0, 2 * MiB - 3)):
        speed = meter.update(t, done)
        assert speed is None or speed >= 0, speed
