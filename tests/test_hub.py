"""The fake Hub must satisfy the real `huggingface_hub` client and inject faults on demand."""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile, RepoFolder

from tests.live import wait_until

try:  # works whether or not tests/ is a package
    from tests.hub import FakeHub, git_blob_sha1, patch_hf_client
except ImportError:
    from hub import FakeHub, git_blob_sha1, patch_hf_client

REPO = "org/model"
WAIT = 10.0  # generous deadline for anything that should happen "soon"
BIG = random.Random(0).randbytes(300_000)
FILES = {"model.bin": BIG, "config.json": b'{"a": 1}', "sub/x.txt": b"hello"}


@pytest.fixture
def hub(monkeypatch):
    with FakeHub() as h:
        patch_hf_client(monkeypatch, h.url)  # belt and braces: nothing may reach huggingface.co
        yield h


@pytest.fixture
def repo_sha(hub: FakeHub) -> str:
    return hub.add_repo(REPO, FILES)


def _stream_in_thread(url: str, on_first: threading.Event, done: threading.Event, out: dict):
    """Read a body chunk by chunk, signalling the first chunk and the end (or the error)."""

    def run():
        got = bytearray()
        try:
            with httpx.stream("GET", url, timeout=WAIT) as r:
                for chunk in r.iter_raw():
                    got += chunk
                    out["received"] = len(got)
                    on_first.set()
        except httpx.HTTPError as e:
            out["error"] = e
        out["body"] = bytes(got)
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_snapshot_download_roundtrip(hub: FakeHub, repo_sha: str, tmp_path: Path) -> None:
    folder = Path(snapshot_download(REPO, cache_dir=tmp_path, endpoint=hub.url))
    assert folder.name == repo_sha
    for name, data in FILES.items():
        assert (folder / name).read_bytes() == data
    assert ("GET", f"/api/models/{REPO}/revision/main") in hub.requests
    assert all(hub.get_count(REPO, name) == 1 for name in FILES)
    # Cached by etag: a second snapshot and a by-sha download fetch no bodies again.
    snapshot_download(REPO, cache_dir=tmp_path, endpoint=hub.url)
    path = hf_hub_download(REPO, "sub/x.txt", revision=repo_sha, cache_dir=tmp_path, endpoint=hub.url)
    assert Path(path).read_bytes() == b"hello"
    assert all(hub.get_count(REPO, name) == 1 for name in FILES)


def test_tree_info_and_paths_info(hub: FakeHub, repo_sha: str) -> None:
    api = HfApi(endpoint=hub.url)
    tree = {e.path: e for e in api.list_repo_tree(REPO, recursive=True)}
    assert set(tree) == {"config.json", "model.bin", "sub", "sub/x.txt"}
    assert isinstance(tree["sub"], RepoFolder)
    assert tree["model.bin"].size == len(BIG)
    assert tree["model.bin"].lfs.sha256 == hashlib.sha256(BIG).hexdigest()
    assert tree["config.json"].lfs is None
    assert tree["config.json"].blob_id == git_blob_sha1(FILES["config.json"])
    top = [e.path for e in api.list_repo_tree(REPO, revision=repo_sha)]
    assert top == ["config.json", "model.bin", "sub"]
    assert [e.path for e in api.list_repo_tree(REPO, path_in_repo="sub")] == ["sub/x.txt"]

    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == repo_sha
    sizes = {s.rfilename: s.size for s in info.siblings}
    assert sizes == {name: len(data) for name, data in FILES.items()}
    lfs = {s.rfilename: s.lfs for s in info.siblings}
    assert lfs["model.bin"].sha256 == hashlib.sha256(BIG).hexdigest() and lfs["sub/x.txt"] is None

    infos = api.get_paths_info(REPO, ["sub/x.txt", "sub", "missing"])
    assert [(type(i), i.path) for i in infos] == [(RepoFile, "sub/x.txt"), (RepoFolder, "sub")]

    # Republishing moves `main`; the old commit stays resolvable.
    new_sha = hub.add_repo(REPO, {"config.json": b"{}"})
    assert new_sha != repo_sha and api.model_info(REPO).sha == new_sha
    assert api.model_info(REPO, revision=repo_sha).sha == repo_sha


def test_errors_map_to_client_exceptions(hub: FakeHub, repo_sha: str, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub.url)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("org/missing", cache_dir=tmp_path, endpoint=hub.url)
    with pytest.raises(RemoteEntryNotFoundError) as err:
        hf_hub_download(REPO, "nope.txt", cache_dir=tmp_path, endpoint=hub.url)
    assert isinstance(err.value, EntryNotFoundError)
    assert err.value.response.headers["X-Repo-Commit"] == repo_sha
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(REPO, "config.json", revision="v9", cache_dir=tmp_path, endpoint=hub.url)


def test_resolve_headers_and_ranges(hub: FakeHub, repo_sha: str) -> None:
    url = f"{hub.url}/{REPO}/resolve/main/model.bin"
    with httpx.Client(timeout=WAIT) as c:
        head = c.head(url)
        assert head.headers["X-Repo-Commit"] == repo_sha
        assert head.headers["ETag"] == f'"{hashlib.sha256(BIG).hexdigest()}"'
        assert head.headers["X-Linked-Size"] == head.headers["Content-Length"] == str(len(BIG))
        small = c.head(f"{hub.url}/{REPO}/resolve/{repo_sha}/sub/x.txt")
        assert small.headers["ETag"] == f'"{git_blob_sha1(b"hello")}"'
        assert "X-Linked-Etag" not in small.headers

        r = c.get(url, headers={"Range": "bytes=100-199"})
        assert r.status_code == 206 and r.content == BIG[100:200]
        assert r.headers["Content-Range"] == f"bytes 100-199/{len(BIG)}"
        assert c.get(url, headers={"Range": "bytes=299990-"}).content == BIG[299990:]
        assert c.get(url, headers={"Range": "bytes=-10"}).content == BIG[-10:]
        r = c.get(url, headers={"Range": f"bytes={len(BIG)}-"})
        assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(BIG)}"

        hub.add_static("/nltk/punkt_tab.zip", b"zipdata")
        r = c.get(f"{hub.url}/nltk/punkt_tab.zip", headers={"Range": "bytes=3-"})
        assert r.status_code == 206 and r.content == b"data"
        assert c.get(f"{hub.url}/nltk/other.zip").status_code == 404
    assert hub.get_count(None, "/nltk/punkt_tab.zip") == 1
    assert hub.bytes_sent(None, "/nltk/punkt_tab.zip") == 4


def test_counters_and_injected_failures(hub: FakeHub, repo_sha: str) -> None:
    url = f"{hub.url}/{REPO}/resolve/main/config.json"
    hub.fail("config.json", 503, times=2)
    with httpx.Client(timeout=WAIT) as c:
        c.head(url)  # HEAD neither counts nor consumes a failure
        assert [c.get(url).status_code for _ in range(3)] == [503, 503, 200]
    assert hub.get_count(REPO, "config.json") == 3
    assert hub.bytes_sent(REPO, "config.json") == len(FILES["config.json"])
    assert hub.get_count(REPO, "model.bin") == 0
    hub.reset_counters()
    assert hub.get_count(REPO, "config.json") == 0 and hub.requests == []


def test_cut_after_gives_short_read_then_recovers(hub: FakeHub, repo_sha: str) -> None:
    url = f"{hub.url}/{REPO}/resolve/main/model.bin"
    hub.cut_after("model.bin", 1000)
    got = bytearray()
    with pytest.raises(httpx.HTTPError), httpx.stream("GET", url, timeout=WAIT) as r:
        assert r.headers["Content-Length"] == str(len(BIG))
        for chunk in r.iter_raw():
            got += chunk
    assert len(got) == 1000
    assert httpx.get(url, timeout=WAIT).content == BIG  # only the next GET was cut
    assert hub.get_count(REPO, "model.bin") == 2
    # The server thread counts a body's bytes after the last write: the client may be done first.
    wait_until(lambda: hub.bytes_sent(REPO, "model.bin") == 1000 + len(BIG), WAIT, "the hub's byte count")


def test_real_client_recovers_from_cut(hub: FakeHub, repo_sha: str, tmp_path: Path) -> None:
    # hf reads in 10 MiB chunks, so a cut in a smaller file restarts from byte 0 (after a 1 s nap).
    hub.cut_after("model.bin", 70_000)
    path = hf_hub_download(REPO, "model.bin", cache_dir=tmp_path, endpoint=hub.url)
    assert Path(path).read_bytes() == BIG
    assert hub.get_count(REPO, "model.bin") == 2


def test_throttle_slows_bodies(hub: FakeHub) -> None:
    data = bytes(200_000)
    hub.add_static("/blob", data)
    rate = 400_000  # ~0.5 s for the body
    hub.set_throttle(rate)
    t0 = time.monotonic()
    assert httpx.get(f"{hub.url}/blob", timeout=WAIT).content == data
    assert time.monotonic() - t0 >= 0.5 * len(data) / rate
    hub.set_throttle(None)
    assert httpx.get(f"{hub.url}/blob", timeout=WAIT).content == data


def test_pause_blocks_stream_until_resume(hub: FakeHub, repo_sha: str) -> None:
    hub.pause()
    first, done, out = threading.Event(), threading.Event(), {}
    t = _stream_in_thread(f"{hub.url}/{REPO}/resolve/main/model.bin", first, done, out)
    assert first.wait(WAIT)  # headers and the first chunk still arrive
    assert not done.wait(0.3)
    assert out["received"] < len(BIG)
    hub.resume()
    assert done.wait(WAIT)
    t.join(WAIT)
    assert "error" not in out and out["body"] == BIG


def test_stop_is_prompt_while_transfer_paused(repo_sha: str, hub: FakeHub) -> None:
    hub.pause()
    first, done, out = threading.Event(), threading.Event(), {}
    _stream_in_thread(f"{hub.url}/{REPO}/resolve/main/model.bin", first, done, out)
    assert first.wait(WAIT)
    t0 = time.monotonic()
    hub.stop()
    assert time.monotonic() - t0 < 5
    assert done.wait(WAIT)  # the client sees the connection die instead of hanging
    assert isinstance(out.get("error"), httpx.HTTPError)
    assert len(out["body"]) < len(BIG)


def test_add_repo_from_dir(hub: FakeHub, tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.json").write_text(json.dumps({"k": 1}))
    (tmp_path / "w.pt").write_bytes(b"tiny")
    sha = hub.add_repo_from_dir("org/dir", tmp_path)
    assert sha == hub.add_repo("org/dir", {"d/a.json": b'{"k": 1}', "w.pt": b"tiny"})
    tree = {e.path: e for e in HfApi(endpoint=hub.url).list_repo_tree("org/dir", recursive=True)}
    assert tree["w.pt"].lfs is not None and tree["d/a.json"].lfs is None
