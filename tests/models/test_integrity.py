"""Integrity when the hub's file list has no hashes (issue 16, item 7).

A mirror may answer ``model_info(files_metadata=True)`` with sizes but no ``blobId`` / ``lfs``.
The digests then come from each file's HEAD (``X-Linked-Etag`` / ``ETag``, as huggingface_hub
reads them), so blobs get huggingface_hub's names and verify still finds a same-size corruption.
With no digest anywhere the model says ``integrity: "size-only"`` and no verify calls it verified.
Each test runs against a private ``FakeHub``: its stripping is the test's own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelmgr.cli.commands import EXIT_FAILED, EXIT_OK, main
from modelmgr.core.settings import Settings
from modelmgr.models.manifests import FileEntry, Manifest, digest_from_etag, verify_verdict
from modelmgr.services import Services
from modelmgr.web.ui.views import render_models_table
from tests import tiny_models
from tests.conftest import hub_settings
from tests.hf_cli import assert_hf_cache_verify_clean
from tests.hub import FakeHub, git_blob_sha1
from tests.live import run_server, wait_until

TINY_REPO = "Systran/faster-whisper-tiny"
BASE_REPO = "Systran/faster-whisper-base"


@pytest.fixture
def mirror_hub(tiny: tiny_models.TinyModels) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        hub.add_repo_from_dir(TINY_REPO, tiny.whisper)
        yield hub


def _services(hub: FakeHub, path: Path) -> tuple[Services, Settings]:
    settings = hub_settings(hub, path)
    return Services.build(settings), settings


def _download(services: Services, model_id: str = "tiny") -> dict:
    result = services.downloads.start(model_id, with_align=False)
    assert result.job is not None and result.job.done.wait(60), f"{model_id} did not finish"
    return services.downloads.describe(services.catalog.get(model_id))


def _verify(services: Services, model_id: str = "tiny") -> dict:
    job = services.downloads.verify(model_id)
    assert job.done.wait(60), "verify did not finish"
    return services.downloads.describe(services.catalog.get(model_id))


def _blobs(settings: Settings, repo: str) -> dict[str, str]:
    """Snapshot path -> the blob file name it links to."""
    snaps = settings.hub_cache / ("models--" + repo.replace("/", "--")) / "snapshots"
    return {p.name: p.resolve().name for p in snaps.rglob("*") if p.is_symlink()}


def _heads(hub: FakeHub) -> list[str]:
    return [path for method, path in hub.requests if method == "HEAD"]


def test_hashless_metadata_takes_digests_from_headers_and_names_blobs_like_huggingface_hub(
    mirror_hub: FakeHub, tmp_path: Path
) -> None:
    full, full_settings = _services(mirror_hub, tmp_path / "full")
    try:
        assert _download(full)["integrity"] == "digest"
        assert _heads(mirror_hub) == [], "full metadata: one model_info request, no HEADs"
        expected = _blobs(full_settings, TINY_REPO)
        full_manifest = full.store.load_manifest(full.catalog.get("tiny"))
    finally:
        full.shutdown()

    mirror_hub.strip_hashes(repo_id=TINY_REPO)
    mirror_hub.reset_counters()
    stripped, settings = _services(mirror_hub, tmp_path / "stripped")
    try:
        model = _download(stripped)
        assert model["status"] == "downloaded" and model["integrity"] == "digest", model
        assert _blobs(settings, TINY_REPO) == expected  # same names: sha256 (LFS) or git blob id
        assert stripped.store.load_manifest(stripped.catalog.get("tiny")) == full_manifest
        assert len(_heads(mirror_hub)) == len(expected), "one HEAD per file without a hash"
        assert any(len(name) == 40 for name in expected.values())  # a git blob id among them
        assert any(len(name) == 64 for name in expected.values())  # and an LFS sha256

        # huggingface_hub agrees: `hf cache verify` and a local-only download find every file.
        assert_hf_cache_verify_clean(settings, mirror_hub, TINY_REPO)
        from huggingface_hub import hf_hub_download

        local = hf_hub_download(TINY_REPO, "model.bin", cache_dir=settings.hub_cache, local_files_only=True)
        assert Path(local).resolve().name == expected["model.bin"]
    finally:
        stripped.shutdown()


def test_hashless_metadata_same_size_corruption_is_found_by_verify(
    mirror_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror_hub.strip_hashes(repo_id=TINY_REPO)
    services, settings = _services(mirror_hub, tmp_path)
    try:
        assert _download(services)["status"] == "downloaded"
        snap = services.store.model_path(services.catalog.get("tiny"))
        assert snap is not None
        for name in ("model.bin", "preprocessor_config.json"):  # an LFS file and a plain git blob
            blob = (snap / name).resolve()
            data = bytearray(blob.read_bytes())
            data[len(data) // 2] ^= 0x01  # one byte: the size stays right
            blob.write_bytes(bytes(data))

        assert main(["verify", "tiny"], settings) == EXIT_FAILED  # the CLI, before repair removes
        err = capsys.readouterr().err
        assert "model.bin: checksum mismatch" in err and "preprocessor_config.json: checksum mismatch" in err

        model = _verify(services)
        assert model["status"] == "corrupt", model
        assert "model.bin" in model["error"] and "preprocessor_config.json" in model["error"]
        assert model["verify"]["result"] == "corrupt"
    finally:
        services.shutdown()


def test_no_digest_anywhere_says_size_only_and_never_verified(
    mirror_hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mirror_hub.strip_hashes(etags=True)  # no blobId / lfs, and files without ETag / X-Linked-Etag
    services, settings = _services(mirror_hub, tmp_path)
    try:
        model = _download(services)
        assert model["status"] == "downloaded"
        assert model["integrity"] == "size-only", model
        assert model["verify"] is None
        assert "size-only" in render_models_table([model])  # the Models tab says so on the row

        model = _verify(services)
        assert model["status"] == "downloaded"  # nothing wrong was found ...
        assert model["verify"] == {
            "result": "size-only",
            "message": "size-only: sizes match, no digest to check",
        }
        assert "verified" not in json.dumps(model).lower()  # ... and nothing claims it was verified
        assert "verify: size-only: sizes match" in render_models_table([model])

        assert main(["verify", "tiny"], settings) == EXIT_OK
        out = capsys.readouterr().out
        assert "tiny: size-only: sizes match, no digest to check" in out
        assert "tiny: ok" not in out
    finally:
        services.shutdown()


def test_api_verify_of_a_size_only_model_says_sizes_only(mirror_hub: FakeHub, tmp_path: Path) -> None:
    mirror_hub.strip_hashes(etags=True)
    with run_server(hub_settings(mirror_hub, tmp_path)) as live:
        assert _download(live.services)["integrity"] == "size-only"
        url = f"{live.url}/api/models/tiny"
        assert httpx.get(url, timeout=60).json()["integrity"] == "size-only"
        answer = httpx.post(f"{url}/verify", timeout=60)
        assert answer.status_code == 202 and answer.json()["status"] == "verifying"

        def verified() -> dict | None:
            model = httpx.get(url, timeout=60).json()
            return model if model["status"] != "verifying" else None

        model = wait_until(verified, 60, "the verify to end")
        assert isinstance(model, dict) and model["status"] == "downloaded"
        assert model["verify"]["result"] == "size-only"
        assert "no digest to check" in model["verify"]["message"]


def test_size_only_files_of_one_size_are_two_blobs(tiny: tiny_models.TinyModels, tmp_path: Path) -> None:
    """Without digests two files of the same size once shared the blob ``size-<n>``: the second
    file's link pointed at the first one's bytes, and the model read as downloaded."""
    files = {p.name: p.read_bytes() for p in tiny.whisper.iterdir() if p.is_file()}
    config = files["config.json"]
    twin = config.replace(b"{", b" ", 1) if b"{" in config else bytes(reversed(config))
    assert len(twin) == len(config) and twin != config
    files["preprocessor_config.json"] = twin
    with FakeHub() as hub:
        hub.add_repo(BASE_REPO, files)
        hub.strip_hashes(etags=True)
        services, settings = _services(hub, tmp_path)
        try:
            assert _download(services, "base")["integrity"] == "size-only"
            snap = services.store.model_path(services.catalog.get("base"))
            assert snap is not None
            assert (snap / "config.json").read_bytes() == config
            assert (snap / "preprocessor_config.json").read_bytes() == twin
        finally:
            services.shutdown()


def test_digest_from_etag_takes_only_real_digests() -> None:
    sha256 = "a" * 64
    git_sha1 = git_blob_sha1(b"hello")
    assert digest_from_etag(sha256) == (sha256, None)  # X-Linked-Etag of an LFS file
    assert digest_from_etag(git_sha1) == (None, git_sha1)  # ETag of a plain file
    for etag in (None, "", "5e8f1a2b-1f4", "d41d8cd98f00b204e9800998ecf8427e", "A" * 64, "a" * 63):
        assert digest_from_etag(etag) == (None, None), etag  # a web server's, an md5, not hex


def test_verify_verdict_says_how_much_was_checked() -> None:
    hashed = FileEntry("model.bin", 3, "", sha256="a" * 64)
    plain = FileEntry("config.json", 2, "")
    whole = Manifest("m", "r", "c", (hashed,))
    mixed = Manifest("m", "r", "c", (hashed, plain))
    bare = Manifest("m", "r", "c", (plain,))
    assert (whole.integrity, mixed.integrity, bare.integrity) == ("digest", "mixed", "size-only")
    assert verify_verdict(whole, [])[0] == "verified"
    result, message = verify_verdict(mixed, [])
    assert result == "partly-verified" and "size-only: config.json" in message
    assert verify_verdict(bare, []) == ("size-only", "size-only: sizes match, no digest to check")
    assert verify_verdict(whole, ["model.bin: checksum mismatch"])[0] == "corrupt"
