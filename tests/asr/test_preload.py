"""Preload through the HTTP API with the tiny models on CPU: idempotent, joins downloads, frees memory."""

from __future__ import annotations

import gc
import weakref

import httpx

from tests.conftest import LiveServer, wait_until
from tests.hub import FakeHub

TINY = "Systran/faster-whisper-tiny"
ZH_ALIGN = "jonatasgrosman/wav2vec2-large-xlsr-53-chinese-zh-cn"
LOAD_TIMEOUT = 300  # importing torch + whisperx on a loaded 2-core machine is slow


def preload_state(live: LiveServer) -> dict:
    return httpx.get(f"{live.url}/api/preload/status", timeout=60).json()


def wait_state(live: LiveServer, *states: str) -> dict:
    return wait_until(
        lambda: (s := preload_state(live))["state"] in states and s, LOAD_TIMEOUT, f"preload state {states}"
    )


def test_preload_loads_once_and_clear_cache_releases_the_models(
    live_server: LiveServer, hub: FakeHub
) -> None:
    body = {"model": "tiny", "language": "zh", "device": "cpu"}
    first = httpx.post(f"{live_server.url}/api/preload/start", json=body, timeout=60)
    assert first.status_code == 202 and first.json()["state"] in ("downloading", "loading")
    ready = wait_state(live_server, "ready", "error")
    assert ready["state"] == "ready", ready["error"]
    assert ready["whisper"]["id"] == "tiny" and ready["whisper"]["device"] == "cpu"
    assert ready["align"] == {"id": ZH_ALIGN, "language": "zh"}
    assert ready["memory"]["rss_bytes"] > 0
    preload = live_server.services.preload
    assert preload.loads == 1

    again = httpx.post(f"{live_server.url}/api/preload/start", json=body, timeout=60)
    assert again.status_code == 202 and again.json()["state"] == "ready"
    assert preload.loads == 1, "a second start does not reload"

    with preload.lease("tiny", "zh", "cpu") as lease:
        assert preload.loads == 1, "a lease on the loaded model loads nothing"
        whisper_ref = weakref.ref(lease.whisper)
        aligner = lease.aligner(preload.catalog.get(ZH_ALIGN), "zh")
        assert aligner is not None
        aligner_ref = weakref.ref(aligner[0])
        del aligner
    del lease
    cleared = httpx.post(f"{live_server.url}/api/preload/clear-cache", timeout=60)
    assert cleared.status_code == 200
    assert set(cleared.json()["freed"]["models"]) == {"tiny", ZH_ALIGN}
    assert preload_state(live_server)["state"] == "idle"
    gc.collect()
    assert whisper_ref() is None and aligner_ref() is None, "the model objects were released"


def test_preload_joins_a_running_download_instead_of_fetching_again(
    live_server: LiveServer, hub: FakeHub
) -> None:
    hub.pause()
    started = httpx.post(
        f"{live_server.url}/api/models/tiny/download", json={"with_align": False}, timeout=60
    )
    assert started.json()["status"] == "started"
    preload = httpx.post(
        f"{live_server.url}/api/preload/start", json={"model": "tiny", "device": "cpu"}, timeout=60
    )
    assert preload.json()["state"] == "downloading"
    hub.resume()
    ready = wait_state(live_server, "ready", "error")
    assert ready["state"] == "ready", ready["error"]
    assert hub.get_count(TINY, "model.bin") == 1
    assert live_server.services.downloads.transfers_started == 1


def test_busy_preload_refuses_a_different_request_and_delete_of_loaded_model(
    live_server: LiveServer, hub: FakeHub
) -> None:
    hub.pause()
    httpx.post(f"{live_server.url}/api/preload/start", json={"model": "tiny", "device": "cpu"}, timeout=60)
    other = httpx.post(
        f"{live_server.url}/api/preload/start", json={"model": "base", "device": "cpu"}, timeout=60
    )
    assert other.status_code == 409 and other.json()["error"]["code"] == "model_busy"
    busy_clear = httpx.post(f"{live_server.url}/api/preload/clear-cache", timeout=60)
    assert busy_clear.status_code == 409
    hub.resume()
    assert wait_state(live_server, "ready", "error")["state"] == "ready"
    delete = httpx.delete(f"{live_server.url}/api/models/tiny", timeout=60)
    assert delete.status_code == 409 and "loaded" in delete.json()["error"]["message"]


def test_cuda_on_a_machine_without_it_is_a_clear_error(live_server: LiveServer, hub: FakeHub) -> None:
    import torch

    if torch.cuda.is_available():
        import pytest

        pytest.skip("this machine has CUDA")
    httpx.post(f"{live_server.url}/api/preload/start", json={"model": "tiny", "device": "cuda"}, timeout=60)
    failed = wait_state(live_server, "ready", "error")
    assert failed["state"] == "error" and "CUDA" in failed["error"]


def test_preload_on_cuda_reports_gpu_memory(live_server: LiveServer, hub: FakeHub) -> None:
    from modelmgr.asr.loaders import cuda_available

    if not cuda_available():
        import pytest

        pytest.skip("no CUDA device on this machine: the GPU path runs only where one exists")
    httpx.post(
        f"{live_server.url}/api/preload/start", json={"model": "tiny", "language": "zh", "device": "cuda"}
    )
    ready = wait_state(live_server, "ready", "error")
    assert ready["state"] == "ready", ready["error"]
    assert ready["device"] == "cuda" and ready["whisper"]["compute_type"] == "float16"
    assert ready["memory"]["cuda"]["total_bytes"] > 0
    system = httpx.get(f"{live_server.url}/api/system", timeout=60).json()
    assert system["gpu"]["available"] is True and system["gpu"]["free_bytes"] > 0
    cleared = httpx.post(f"{live_server.url}/api/preload/clear-cache", timeout=60).json()
    assert cleared["status"]["state"] == "idle"


def test_lease_loads_on_demand_and_reports_download_errors(services, hub: FakeHub) -> None:
    import pytest

    from modelmgr.core.errors import PreloadFailed

    states: list[str] = []
    with services.preload.lease("tiny", "zh", "auto", on_state=states.append) as lease:
        assert lease.device == "cpu", "auto is resolved once, before the libraries see it"
        assert lease.whisper is not None and lease.aligner(services.catalog.get(ZH_ALIGN), "zh") is not None
        assert services.preload.status()["leases"] == 1
    assert "downloading" in states or "loading" in states
    assert services.preload.status()["state"] == "ready"
    services.preload.clear_cache()
    hub.fail("model.bin", 404, times=5)
    services.downloads.delete("tiny")
    with (
        pytest.raises(PreloadFailed, match="could not be downloaded"),
        services.preload.lease("tiny", None, "cpu"),
    ):
        pass
    hub.fail("model.bin", 404, times=0)
    assert services.preload.status()["leases"] == 0
