"""Sizes before download: hub metadata fetched in the background and cached, approximate
sizes marked as such, disk sizes once fetched, and the UI's fit warning."""

from __future__ import annotations

import json
import time

import httpx

from modelmgr.core.errors import HubUnreachable
from modelmgr.core.settings import Settings
from modelmgr.models.remote import Remote
from modelmgr.models.sizes import SizeCatalog, approximate_size
from modelmgr.services import Services
from modelmgr.web.ui.views import disk_fit, render_fit, render_models_table
from tests.conftest import run_server, wait_until
from tests.hub import FakeHub
from tests.nginx import free_port

TINY = "Systran/faster-whisper-tiny"


def _tiny_bytes(hub: FakeHub, settings: Settings) -> int:
    """What a download of tiny fetches, as the hub lists it (asked directly, not through our cache)."""
    services = Services.build(settings)
    return services.downloads.remote.resolve(services.catalog.get("tiny")).total_bytes


def _metadata_requests(hub: FakeHub) -> int:
    return sum(1 for _, path in hub.requests if path.startswith(f"/api/models/{TINY}"))


def test_every_model_has_a_size_before_download_marked_approximate(services: Services) -> None:
    models = services.downloads.snapshot()
    assert all(m["size_bytes"] and m["size_source"] == "approximate" for m in models), [
        m["id"] for m in models if not m["size_bytes"]
    ]
    large = next(m for m in models if m["id"] == "large-v3")
    assert 2.5e9 < large["size_bytes"] < 3.5e9  # "large-v3 is 3 GB" is visible before Download
    assert "≈ 3.1 GB" in render_models_table([large])


def test_hub_sizes_arrive_in_the_background_and_are_cached_on_disk(settings: Settings, hub: FakeHub) -> None:
    expected = _tiny_bytes(hub, settings)
    hub.reset_counters()
    on = settings.model_copy(update={"fetch_sizes": True})
    with run_server(on) as live:

        def tiny() -> dict:
            return httpx.get(f"{live.url}/api/models/tiny").json()

        wait_until(lambda: tiny()["size_source"] == "hub", 120, "the hub's size of tiny")
        assert tiny()["size_bytes"] == expected
        assert tiny()["status"] == "not_downloaded"  # metadata only: no byte of the model moved
        assert not [p for _, p in hub.requests if "/resolve/" in p]
        # Repos the hub does not have keep their approximate size (other tests publish some
        # repos on the shared hub, so pick one it does not serve).
        absent = next(
            s.id
            for s in live.services.catalog.all()
            if s.kind == "whisper" and s.repo_id not in hub._repos and s.id.startswith("large")
        )
        assert httpx.get(f"{live.url}/api/models/{absent}", timeout=60).json()["size_source"] == "approximate"
    cached = json.loads((settings.state_dir / "sizes.json").read_text())
    assert cached["sizes"]["tiny"] == expected and cached["endpoint"] == settings.hf_endpoint

    # A new process reads the cache and does not ask again within a day.
    asked = _metadata_requests(hub)
    fresh = SizeCatalog(on, Services.build(settings).catalog, Remote(on))
    assert fresh.size(Services.build(settings).catalog.get("tiny")) == (expected, "hub")
    assert not fresh.stale()
    assert fresh.stale(now=time.time() + on.sizes_refresh_s + 1)
    fresh.start()
    fresh.stop()
    assert _metadata_requests(hub) == asked


def test_refresh_runs_again_once_the_cache_is_older_than_the_interval(
    settings: Settings, hub: FakeHub
) -> None:
    on = settings.model_copy(update={"fetch_sizes": True, "sizes_refresh_s": 0.5})
    services = Services.build(on)
    services.sizes.start()
    try:
        first = wait_until(lambda: services.sizes.fetched_at, 120, "the first refresh")
        wait_until(lambda: services.sizes.fetched_at > first, 120, "a second refresh")
    finally:
        services.shutdown()


def test_an_unreachable_hub_keeps_approximate_sizes(settings: Settings) -> None:
    away = settings.model_copy(
        update={"hf_endpoint": f"http://127.0.0.1:{free_port()}", "download_retries": 0}
    )
    services = Services.build(away)
    try:
        services.sizes.refresh()
        raise AssertionError("refresh should have failed")
    except HubUnreachable as exc:
        assert "cannot reach" in exc.message
    tiny = services.downloads.describe(services.catalog.get("tiny"))
    assert tiny["size_source"] == "approximate" and tiny["size_bytes"] == approximate_size(
        services.catalog.get("tiny")
    )
    offline = Services.build(settings.model_copy(update={"offline": True, "fetch_sizes": True}))
    offline.sizes.start()
    assert offline.sizes._thread is None  # offline: never asks


def test_a_downloaded_model_reports_its_size_from_disk(services: Services, hub: FakeHub) -> None:
    services.downloads.start("tiny", with_align=False)
    wait_until(lambda: services.downloads.describe(services.catalog.get("tiny"))["status"] == "downloaded")
    tiny = services.downloads.describe(services.catalog.get("tiny"))
    assert tiny["size_source"] == "disk" and tiny["size_bytes"] == tiny["progress"]["bytes_total"]


def test_fit_shows_size_and_free_disk_and_warns_when_it_would_not_fit() -> None:
    model = {
        "id": "large-v3",
        "status": "not_downloaded",
        "size_bytes": 3_090_000_000,
        "size_source": "approximate",
        "progress": {"bytes_done": 0},
    }
    roomy = render_fit(model, free_bytes=100_000_000_000, reserve_bytes=256 * 2**20)
    assert 'data-fits="true"' in roomy and "≈ 3.1 GB" in roomy and "100.0 GB" in roomy and "⚠" not in roomy
    tight = render_fit(model, free_bytes=2_000_000_000, reserve_bytes=0)
    assert 'data-fits="false"' in tight and "would not fit" in tight and "1.1 GB more" in tight
    half = {**model, "status": "incomplete", "progress": {"bytes_done": 2_000_000_000}}
    assert disk_fit(half, 1_500_000_000)["fits"] is True  # only the missing bytes count
    assert disk_fit({**model, "status": "downloaded"}, 0)["fits"] is True
    assert disk_fit({**model, "size_bytes": None}, 10)["fits"] is None
