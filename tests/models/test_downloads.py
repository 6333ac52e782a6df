"""DownloadManager behaviour against the local hub: dedupe, queueing, bundling, cancel, resume."""

from __future__ import annotations

import threading
from pathlib import Path

from modelmgr.services import Services
from tests.conftest import EN_BUNDLE_FILE, JA_ALIGN, ZH_ALIGN, wait_until
from tests.hub import FakeHub

TINY = "Systran/faster-whisper-tiny"
BASE = "Systran/faster-whisper-base"


def status(services: Services, model_id: str) -> str:
    return services.downloads.describe(services.catalog.get(model_id))["status"]


def wait_status(services: Services, model_id: str, *wanted: str, timeout: float = 60) -> str:
    return wait_until(
        lambda: (s := status(services, model_id)) in wanted and s,
        timeout,
        f"{model_id} to become {wanted}",
    )


WHISPER_FILES = ("config.json", "model.bin", "tokenizer.json", "preprocessor_config.json")


def partials(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".incomplete")]


def test_concurrent_starts_share_one_job_and_one_transfer(services: Services, hub: FakeHub) -> None:
    hub.pause()
    results: list[str] = []
    barrier = threading.Barrier(50)

    def ask() -> None:
        barrier.wait()
        results.append(services.downloads.start("tiny", with_align=False).status)

    threads = [threading.Thread(target=ask) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    hub.resume()
    assert results.count("started") == 1
    assert results.count("already_downloading") == 49
    wait_status(services, "tiny", "downloaded")
    assert services.downloads.transfers_started == 1
    for path in WHISPER_FILES:
        assert hub.get_count(TINY, path) == 1, path


def test_totals_are_known_before_the_first_byte_and_progress_rises(services: Services, hub: FakeHub) -> None:
    hub.pause()
    services.downloads.start("tiny", with_align=False)
    model = wait_until(
        lambda: (
            (m := services.downloads.describe(services.catalog.get("tiny")))["progress"]["bytes_total"] and m
        ),
        what="totals",
    )
    assert model["status"] == "downloading"
    assert model["progress"]["bytes_total"] > 3_000_000
    assert model["size_bytes"] == model["progress"]["bytes_total"]
    hub.set_throttle(2_000_000)
    hub.resume()
    seen: list[float] = []

    def sample() -> bool:
        m = services.downloads.describe(services.catalog.get("tiny"))
        seen.append(m["progress"]["percent"])
        return m["status"] == "downloaded"

    wait_until(sample, what="download to finish")
    assert seen == sorted(seen), "percent never goes backwards"
    assert seen[-1] == 100.0
    assert len(set(seen)) >= 3, "progress was reported on the way, not only at the end"


def test_whisper_download_bundles_alignment_model_after_it(services: Services, hub: FakeHub) -> None:
    result = services.downloads.start("tiny", languages=["zh"])
    assert result.status == "started"
    assert result.job is not None and result.job.bundle == (ZH_ALIGN,)
    wait_status(services, "tiny", "downloaded")
    wait_status(services, ZH_ALIGN, "downloaded")
    gets = [path for method, path in hub.requests if method == "GET" and "/resolve/" in path]
    last_whisper = max(i for i, p in enumerate(gets) if p.startswith(f"/{TINY}/"))
    first_align = min(i for i, p in enumerate(gets) if p.startswith(f"/{ZH_ALIGN}/"))
    assert last_whisper < first_align, "alignment model is fetched after the Whisper model"
    snapshot = services.store.model_path(services.catalog.get(ZH_ALIGN))
    assert snapshot is not None and (snapshot / "config.json").is_file()


def test_present_alignment_model_is_not_fetched_again_but_incomplete_one_is(
    services: Services, hub: FakeHub
) -> None:
    services.downloads.start(ZH_ALIGN)
    wait_status(services, ZH_ALIGN, "downloaded")
    hub.reset_counters()

    services.downloads.start("base", languages=["zh"])
    wait_status(services, "base", "downloaded")
    assert services.downloads.start(ZH_ALIGN).status == "already_downloaded"
    assert all(not p.startswith(f"/{ZH_ALIGN}/") for _, p in hub.requests if "/resolve/" in p)

    snapshot = services.store.model_path(services.catalog.get(ZH_ALIGN))
    assert snapshot is not None
    (snapshot / "vocab.json").resolve().unlink()  # the blob itself is gone, not only the link
    assert status(services, ZH_ALIGN) == "incomplete"
    services.downloads.delete("base")
    hub.reset_counters()
    services.downloads.start("base", languages=["zh"])
    wait_status(services, ZH_ALIGN, "downloaded")
    assert hub.get_count(ZH_ALIGN, "vocab.json") == 1
    assert hub.get_count(ZH_ALIGN, "config.json") == 0, "files still in place are not fetched again"


def test_several_languages_bring_each_alignment_model(services: Services, hub: FakeHub) -> None:
    services.downloads.start("tiny", languages=["zh", "ja"])
    for model_id in ("tiny", ZH_ALIGN, JA_ALIGN):
        wait_status(services, model_id, "downloaded")


def test_second_whisper_download_waits_as_queued(services: Services, hub: FakeHub) -> None:
    hub.pause()
    assert services.downloads.start("tiny", with_align=False).status == "started"
    assert services.downloads.start("base", with_align=False).status == "queued"
    assert status(services, "base") == "queued"
    assert services.downloads.transfers_started == 1
    hub.resume()
    wait_status(services, "tiny", "downloaded")
    wait_status(services, "base", "downloaded")
    assert services.downloads.transfers_started == 2


def test_alignment_download_runs_beside_a_whisper_download(services: Services, hub: FakeHub) -> None:
    hub.pause()
    assert services.downloads.start("tiny", with_align=False).status == "started"
    assert services.downloads.start(ZH_ALIGN).status == "started"
    hub.resume()
    wait_status(services, ZH_ALIGN, "downloaded")
    wait_status(services, "tiny", "downloaded")


def test_cancel_mid_download_leaves_no_partials_and_a_retry_succeeds(
    services: Services, hub: FakeHub, settings
) -> None:
    hub.set_throttle(300_000)
    services.downloads.start("tiny", with_align=False)
    wait_until(
        lambda: services.downloads.describe(services.catalog.get("tiny"))["progress"]["bytes_done"] > 0,
        what="some bytes",
    )
    services.downloads.cancel("tiny")
    wait_status(services, "tiny", "cancelled")
    assert partials(settings.hf_home) == []
    hub.set_throttle(None)
    assert services.downloads.start("tiny", with_align=False).status == "started"
    wait_status(services, "tiny", "downloaded")


def test_cancel_of_a_queued_download_removes_it_from_the_queue(services: Services, hub: FakeHub) -> None:
    hub.pause()
    services.downloads.start("tiny", with_align=False)
    services.downloads.start("base", with_align=False)
    services.downloads.cancel("base")
    assert status(services, "base") == "cancelled"
    hub.resume()
    wait_status(services, "tiny", "downloaded")
    assert services.downloads.transfers_started == 1


def test_cut_connection_resumes_with_range_instead_of_starting_over(services: Services, hub: FakeHub) -> None:
    hub.cut_after("model.bin", 1_000_000)
    services.downloads.start("tiny", with_align=False)
    wait_status(services, "tiny", "downloaded")
    size = services.store.load_manifest(services.catalog.get("tiny"))
    assert size is not None
    model_bin = next(f for f in size.files if f.path == "model.bin")
    assert hub.get_count(TINY, "model.bin") == 2
    # Starting over would send 1 MB + the whole file again; a resume sends the rest (give or take a chunk).
    assert hub.bytes_sent(TINY, "model.bin") <= model_bin.size + 64 * 1024


def test_server_errors_are_retried(services: Services, hub: FakeHub) -> None:
    hub.fail("tokenizer.json", 503, times=1)
    services.downloads.start("tiny", with_align=False)
    wait_status(services, "tiny", "downloaded")


def test_corrupt_partial_is_discarded_and_refetched(services: Services, hub: FakeHub) -> None:
    hub.pause()
    services.downloads.start("tiny", with_align=False)
    spec = services.catalog.get("tiny")
    manifest = wait_until(lambda: services.store.load_manifest(spec), what="manifest")
    services.downloads.cancel("tiny")
    hub.resume()
    wait_status(services, "tiny", "cancelled")
    target = next(t for t in services.store.targets(spec, manifest) if t.entry.path == "model.bin")
    target.partial.parent.mkdir(parents=True, exist_ok=True)
    target.partial.write_bytes(b"\0" * 1000)  # a partial that is not a prefix of the real file
    services.downloads.start("tiny", with_align=False)
    wait_status(services, "tiny", "downloaded")
    assert services.store.verify(spec) == []


def test_persistent_failure_becomes_an_error_a_person_can_read(services: Services, hub: FakeHub) -> None:
    hub.fail("model.bin", 500, times=10)
    services.downloads.start("tiny", with_align=False)
    wait_status(services, "tiny", "error")
    model = services.downloads.describe(services.catalog.get("tiny"))
    assert "model.bin" in model["error"] and "500" in model["error"]
    hub.fail("model.bin", 500, times=0)


def test_not_enough_disk_space_is_an_error_before_any_byte(services: Services, hub: FakeHub) -> None:
    services.settings.min_free_bytes = 1 << 60
    services.downloads.start("tiny", with_align=False)
    wait_status(services, "tiny", "error")
    assert "free" in services.downloads.describe(services.catalog.get("tiny"))["error"]
    assert hub.get_count(TINY, "model.bin") == 0


def test_offline_mode_reports_instead_of_reaching_out(settings, hub: FakeHub) -> None:
    services = Services.build(settings.model_copy(update={"offline": True}))
    services.downloads.start("tiny", with_align=False)
    wait_status(services, "tiny", "error")
    assert "offline" in services.downloads.describe(services.catalog.get("tiny"))["error"]
    assert hub.requests == []


def test_torchaudio_bundle_goes_to_the_torch_hub_cache(services: Services, hub: FakeHub, settings) -> None:
    services.downloads.start("tiny.en")  # English: bundled with torchaudio's WAV2VEC2_ASR_BASE_960H
    wait_status(services, "WAV2VEC2_ASR_BASE_960H", "downloaded")
    assert (settings.torch_home / "hub" / "checkpoints" / EN_BUNDLE_FILE).stat().st_size == 256 * 1200


def test_delete_removes_files_and_refuses_while_downloading(
    services: Services, hub: FakeHub, settings
) -> None:
    hub.pause()
    services.downloads.start("tiny", with_align=False)
    try:
        services.downloads.delete("tiny")
        raise AssertionError("delete during download must fail")
    except Exception as exc:
        assert getattr(exc, "code", "") == "model_busy"
    hub.resume()
    wait_status(services, "tiny", "downloaded")
    assert services.downloads.delete("tiny") > 1_000_000
    assert status(services, "tiny") == "not_downloaded"
    assert not services.store.repo_dir(services.catalog.get("tiny")).exists()


def test_an_update_while_the_model_is_being_deleted_is_refused_and_starts_nothing(
    services: Services, hub: FakeHub, monkeypatch
) -> None:
    services.downloads.start("tiny", with_align=False)
    wait_status(services, "tiny", "downloaded")
    finished = services.downloads.job("tiny")  # the download's job, kept as its outcome
    inside, release = threading.Event(), threading.Event()
    real = services.store.delete

    def held(spec):
        inside.set()
        assert release.wait(60), "the test never let the delete finish"
        return real(spec)

    monkeypatch.setattr(services.store, "delete", held)
    deleting = threading.Thread(target=services.downloads.delete, args=("tiny",), daemon=True)
    deleting.start()
    try:
        assert inside.wait(30)
        hub.reset_counters()
        try:
            services.downloads.update("tiny")
            raise AssertionError("an update during a delete must be refused")
        except Exception as exc:
            assert getattr(exc, "code", "") == "model_busy" and "being deleted" in str(exc), exc
        assert services.downloads.job("tiny") is finished, "no job was registered"
    finally:
        release.set()
        deleting.join(30)
    assert status(services, "tiny") == "not_downloaded"
    assert hub.get_count(TINY, "model.bin") == 0, "nothing was fetched back behind the delete"


def test_cache_written_by_us_is_readable_by_huggingface_hub(
    services: Services, hub: FakeHub, settings, tiny
) -> None:
    from huggingface_hub import scan_cache_dir, snapshot_download

    services.downloads.start("tiny", with_align=False)
    wait_status(services, "tiny", "downloaded")
    info = scan_cache_dir(settings.hub_cache)
    assert [r.repo_id for r in info.repos] == [TINY]
    local = snapshot_download(TINY, cache_dir=settings.hub_cache, local_files_only=True)
    assert (Path(local) / "model.bin").read_bytes() == (tiny.whisper / "model.bin").read_bytes()


def test_shutdown_keeps_partials_and_the_next_process_resumes(settings, hub: FakeHub) -> None:
    hub.set_throttle(500_000)
    first = Services.build(settings)
    first.downloads.start("tiny", with_align=False)
    spec = first.catalog.get("tiny")
    wait_until(lambda: first.downloads.describe(spec)["progress"]["bytes_done"] > 600_000, what="some bytes")
    first.shutdown()
    assert partials(settings.hf_home), "the interrupted download left its partial file"
    assert first.store.local_state(spec).status == "incomplete"
    hub.set_throttle(None)
    sent_before = sum(hub.bytes_sent(TINY, p) for p in WHISPER_FILES)
    second = Services.build(settings)
    try:
        second.downloads.start("tiny", with_align=False)
        wait_status(second, "tiny", "downloaded")
        total = second.store.load_manifest(spec).total_bytes
        sent = sum(hub.bytes_sent(TINY, p) for p in WHISPER_FILES)
        assert sent - sent_before < total - 500_000, "resumed, not started over"
        assert second.store.verify(spec) == []
    finally:
        second.shutdown()


def test_two_processes_sharing_a_cache_transfer_each_file_once(settings, hub: FakeHub) -> None:
    """Two managers on one cache stand in for two processes: the file lock lets one write."""
    hub.set_throttle(1_000_000)
    first, second = Services.build(settings), Services.build(settings)
    try:
        first.downloads.start("tiny", with_align=False)
        spec = first.catalog.get("tiny")
        wait_until(lambda: first.downloads.describe(spec)["progress"]["bytes_done"] > 0, what="first writer")
        second.downloads.start("tiny", with_align=False)
        wait_status(first, "tiny", "downloaded")
        wait_status(second, "tiny", "downloaded")
        assert second.downloads.describe(spec)["progress"]["percent"] == 100.0
        for path in WHISPER_FILES:
            assert hub.get_count(TINY, path) == 1, path
        assert first.store.verify(spec) == []
    finally:
        first.shutdown()
        second.shutdown()


def test_server_start_resumes_interrupted_downloads(settings, hub: FakeHub) -> None:
    from tests.live import run_server

    hub.set_throttle(500_000)
    crashed = Services.build(settings)
    crashed.downloads.start("tiny", with_align=False)
    spec = crashed.catalog.get("tiny")
    wait_until(
        lambda: crashed.downloads.describe(spec)["progress"]["bytes_done"] > 300_000, what="some bytes"
    )
    crashed.shutdown()
    hub.set_throttle(None)
    with run_server(settings) as live:
        wait_status(live.services, "tiny", "downloaded")
        assert live.services.store.verify(spec) == []
    untouched = Services.build(settings)
    assert untouched.downloads.resume_interrupted() == [], "nothing left to resume"
