"""A local, stdlib-only Hugging Face Hub look-alike for tests.

It speaks just enough of the Hub protocol for `huggingface_hub` 2.4 (`snapshot_download`,
`hf_hub_download`, `model_info`, `list_repo_tree`, `get_paths_info`) and for our own httpx
downloader, and lets tests inject slowness, stalls, truncated bodies and HTTP errors so the
model manager's resume/retry/progress logic can be exercised without the network.

Never point `huggingface_hub` at it only through `constants.ENDPOINT`: `hf_hub_url` formats the
import-time `HUGGINGFACE_CO_URL_TEMPLATE`, so pass `endpoint=hub.url` or use `patch_hf_client`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

CHUNK = 64 * 1024
LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth")
LAST_MODIFIED = "2024-01-01T00:00:00.000Z"
LFS_SPEC = "https://git-lfs.github.com/spec/v1"
REPO_COMMIT = "X-Repo-Commit"


def git_blob_sha1(data: bytes) -> str:
    """Git object id of a blob: the ETag the Hub sends for non-LFS files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def patch_hf_client(monkeypatch, url: str) -> None:
    """Point every `huggingface_hub` default URL at `url` and stop its agent-registry probe."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _detect_agent

    monkeypatch.setattr(constants, "ENDPOINT", url)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", url + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(_detect_agent, "_registry", _detect_agent._EMPTY_REGISTRY)


@dataclass(frozen=True)
class _File:
    data: bytes
    blob_id: str  # git oid of what git stores: the blob itself, or its LFS pointer
    sha256: str | None  # set only for LFS files
    pointer_size: int = 0

    @classmethod
    def make(cls, data: bytes, lfs: bool) -> _File:
        if not lfs:
            return cls(data, git_blob_sha1(data), None)
        sha = hashlib.sha256(data).hexdigest()
        pointer = f"version {LFS_SPEC}\noid sha256:{sha}\nsize {len(data)}\n".encode()
        return cls(data, git_blob_sha1(pointer), sha, len(pointer))

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id

    def tree_entry(self, path: str) -> dict:
        entry = {"type": "file", "path": path, "size": len(self.data), "oid": self.blob_id}
        if self.sha256:
            entry["lfs"] = {"oid": self.sha256, **self._lfs_sizes()}
        return entry

    def sibling(self, path: str) -> dict:
        sib = {"rfilename": path, "size": len(self.data), "blobId": self.blob_id}
        if self.sha256:  # siblings name the LFS hash `sha256`, tree entries name it `oid`
            sib["lfs"] = {"sha256": self.sha256, **self._lfs_sizes()}
        return sib

    def _lfs_sizes(self) -> dict:
        return {"size": len(self.data), "pointerSize": self.pointer_size}


class _HubError(Exception):
    """An HTTP error in the Hub's shape (`X-Error-Code` drives the client's exception type)."""

    def __init__(self, status: int, code: str | None, message: str, **headers: str):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


class FakeHub:
    """Threaded HTTP server holding repos (every published commit is kept) and static files."""

    def __init__(self) -> None:
        self.url = ""
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._repos: dict[str, dict] = {}  # id -> {"refs": {name: sha}, "commits": {sha: files}}
        self._static: dict[str, bytes] = {}
        self._throttle: int | None = None
        self._cuts: dict[str, list[int]] = {}  # path -> [nbytes, times left]
        self._fails: dict[str, list[int]] = {}  # path -> [status, times left]
        self._gets: dict[tuple[str | None, str], int] = {}
        self._sent: dict[tuple[str | None, str], int] = {}
        self._unpaused = threading.Event()
        self._unpaused.set()
        self._stopping = threading.Event()
        self._conns: set[socket.socket] = set()
        self._server: ThreadingHTTPServer | None = None
        self._ranged = _RangeOptions()
        # gated repos (as the Hub gates pyannote's): repo id -> whether the API is gated too
        self._gated: dict[str, bool] = {}
        self.accepted_tokens: set[str] = set()  # tokens whose owners accepted the conditions
        # Tokens the Hub does not know (revoked, expired, mistyped): like the Hub, every request
        # carrying one is answered 401 "Invalid credentials", public repos too.
        self.invalid_tokens: set[str] = set()
        self.authorizations: list[str] = []  # every Authorization header the hub was sent
        # a mirror without hashes: repo id (None: every repo) -> whether files lose their ETags too
        self._stripped: dict[str | None, bool] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        self._stopping.clear()
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self.url

    def stop(self) -> None:
        """Return promptly even mid-transfer: wake paused/throttled senders, then kill sockets."""
        self._stopping.set()
        self._unpaused.set()
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server = None

    def __enter__(self) -> FakeHub:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- content ---------------------------------------------------------------------------
    def add_repo(self, repo_id: str, files: dict[str, bytes], *, lfs_min_size: int = 1024) -> str:
        """Publish a new commit as `main`; the sha depends only on the files, like a git tree."""
        built = {
            path: _File.make(data, len(data) >= lfs_min_size or path.endswith(LFS_SUFFIXES))
            for path, data in sorted(files.items())
        }
        sha = hashlib.sha1("".join(f"{p}\0{f.blob_id}\n" for p, f in built.items()).encode()).hexdigest()
        with self._lock:
            repo = self._repos.setdefault(repo_id, {"refs": {}, "commits": {}})
            repo["commits"][sha] = built
            repo["refs"]["main"] = sha
        return sha

    def gate(self, repo_id: str, *, api_too: bool = False) -> None:
        """Gate ``repo_id`` like the Hub: files answer 401 ``GatedRepo`` without a token and 403
        with one whose owner is not in ``accepted_tokens``. The Hub still answers ``model_info``
        (with ``gated: "auto"``); ``api_too`` gates that as well, as some mirrors do."""
        with self._lock:
            self._gated[repo_id] = api_too

    def strip_hashes(self, on: bool = True, *, etags: bool = False, repo_id: str | None = None) -> None:
        """Answer ``model_info`` like a mirror that lists sizes without hashes (no ``blobId``,
        no ``lfs``) for ``repo_id`` (None: every repo); the tree API keeps them (``hf cache
        verify`` reads it). ``etags`` also sends files without ``ETag`` / ``X-Linked-Etag``: no
        digest anywhere. ``on=False`` forgets the setting for ``repo_id``."""
        with self._lock:
            if on:
                self._stripped[repo_id] = etags
            else:
                self._stripped.pop(repo_id, None)

    def _strip(self, repo_id: str) -> tuple[bool, bool]:
        """(hashes stripped from model_info, ETags stripped from files) for ``repo_id``."""
        with self._lock:
            etags = self._stripped.get(repo_id, self._stripped.get(None))
        return etags is not None, bool(etags)

    def _check_gate(self, repo_id: str, authorization: str, api: bool) -> None:
        token = authorization.removeprefix("Bearer ").strip()
        with self._lock:
            api_too = self._gated.get(repo_id)
            if authorization:
                self.authorizations.append(authorization)
            invalid = token in self.invalid_tokens
        if invalid:  # the Hub's answer: no X-Error-Code, this exact X-Error-Message
            message = "Invalid credentials in Authorization header"
            raise _HubError(401, None, message, **{"X-Error-Message": message})
        if api_too is None or (api and not api_too):
            return
        if not token:
            raise _HubError(
                401,
                "GatedRepo",
                f"Access to model {repo_id} is restricted. You must have access to it and be "
                "authenticated to access it. Please log in.",
            )
        if token not in self.accepted_tokens:
            raise _HubError(
                403,
                "GatedRepo",
                f"Access to model {repo_id} is restricted and you are not in the authorized list. "
                f"Visit {self.url}/{repo_id} to ask for access.",
            )

    def add_repo_from_dir(self, repo_id: str, directory: Path, **kw) -> str:
        """Publish every file under `directory`, keyed by its relative posix path."""
        directory = Path(directory)
        files = {
            p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()
        }
        return self.add_repo(repo_id, files, **kw)

    def add_static(self, url_path: str, data: bytes) -> None:
        """Serve a non-Hub download (torchaudio, nltk) at `url_path`; its path for faults too."""
        with self._lock:
            self._static["/" + url_path.lstrip("/")] = data

    # -- fault and load injection ----------------------------------------------------------
    def set_throttle(self, bytes_per_second: int | None) -> None:
        """Per-connection body rate, applied from the next chunk on (so it can change mid-body)."""
        self._throttle = bytes_per_second

    def pause(self) -> None:
        """Freeze bodies after their current (or first) chunk: a stalled-but-open connection."""
        self._unpaused.clear()

    def resume(self) -> None:
        self._unpaused.set()

    def cut_after(self, path: str, nbytes: int, times: int = 1) -> None:
        """Next `times` GETs promise the full length but die after `nbytes`: a dropped link."""
        with self._lock:
            self._cuts[path.lstrip("/")] = [nbytes, times]

    def fail(self, path: str, status: int, times: int = 1) -> None:
        """Next `times` GETs of `path` answer `status` (e.g. 503) instead of the body."""
        with self._lock:
            if times > 0:
                self._fails[path.lstrip("/")] = [status, times]
            else:
                self._fails.pop(path.lstrip("/"), None)

    def clear_faults(self) -> None:
        """Forget every pending `fail` and `cut_after` (tests share one hub)."""
        self._ranged = _RangeOptions()
        with self._lock:
            self._fails.clear()
            self._cuts.clear()
            self._stripped.clear()

    # -- ranges and redirects (parallel ranged transfers) ----------------------------------
    def set_range_mode(self, mode: str | None) -> None:
        """None: honour Range. "ignore": 200 + whole body, no Accept-Ranges (a server without
        ranges). "slice200": 200 + only the asked bytes, no Content-Range (a broken proxy)."""
        assert mode in (None, "ignore", "slice200")
        self._ranged.mode = mode

    def cut_range(self, path: str, start: int, nbytes: int, times: int = 1) -> None:
        """Next `times` GETs of `path` whose Range starts at `start` die after `nbytes`."""
        with self._lock:
            self._ranged.cuts[(path.lstrip("/"), start)] = [nbytes, times]

    def redirect_resolve(self, host: str, *, expire_after: int | None = None) -> None:
        """`/resolve/` answers 302 to a signed URL on `host` (same port: e.g. 'localhost' for a
        hub on 127.0.0.1), like the Hub's CDN redirect. A signed URL answers 403 after
        `expire_after` GETs (an expired signature); a new resolve signs a new one."""
        self._ranged.redirect_host = host
        self._ranged.expire_after = expire_after

    def ranges(self, repo_id: str | None, path: str) -> list[str | None]:
        """The Range header of every body GET of `path`, in order (None: no Range)."""
        with self._lock:
            return [r for (repo, p, r) in self._ranged.log if (repo, p) == (repo_id, path.lstrip("/"))]

    @property
    def redirects(self) -> int:
        """302s issued to signed URLs since the last `reset_counters`."""
        return self._ranged.redirects

    @property
    def signed_requests(self) -> list[dict[str, str]]:
        """Headers (host, authorization) of the requests that reached a signed URL."""
        return list(self._ranged.signed_seen)

    def reset_counters(self) -> None:
        with self._lock:
            self._ranged.log.clear()
            self._ranged.redirects = 0
            self._ranged.signed_seen.clear()
            self._gets.clear()
            self._sent.clear()
            self.requests.clear()
            self.authorizations.clear()

    def get_count(self, repo_id: str | None, path: str) -> int:
        """GETs of a body (HEADs excluded) so tests can prove nothing is downloaded twice."""
        with self._lock:
            return self._gets.get((repo_id, path.lstrip("/")), 0)

    def bytes_sent(self, repo_id: str | None, path: str) -> int:
        with self._lock:
            return self._sent.get((repo_id, path.lstrip("/")), 0)

    # -- internals used by the handler -----------------------------------------------------
    def _take(self, table: dict[str, list[int]], path: str) -> int | None:
        """Consume one use of an injected fault for `path`, returning its value."""
        with self._lock:
            entry = table.get(path)
            if not entry:
                return None
            entry[1] -= 1
            if entry[1] <= 0:
                del table[path]
            return entry[0]

    def _commit(self, repo_id: str, rev: str) -> tuple[str, dict[str, _File]]:
        with self._lock:
            repo = self._repos.get(repo_id)
            if repo is None:
                raise _HubError(404, "RepoNotFound", "Repository not found")
            sha = repo["refs"].get(rev, rev if rev in repo["commits"] else None)
            if sha is None:
                raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return sha, repo["commits"][sha]

    def _count(self, key: tuple[str | None, str], gets: int = 0, sent: int = 0) -> None:
        with self._lock:
            self._gets[key] = self._gets.get(key, 0) + gets
            self._sent[key] = self._sent.get(key, 0) + sent


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address) -> None:
        """Stay quiet about clients that hang up mid-body (they do, on purpose, in tests)."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


_API = re.compile(r"^/api/models/(.+?)(?:/(revision|tree|paths-info)/([^/]+)(?:/(.*))?)?$")
_RESOLVE = re.compile(r"^/(.+?)/resolve/([^/]+)/(.+)$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: FakeHub

    def log_message(self, *args) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.hub._lock:
            self.hub._conns.add(self.connection)

    def finish(self) -> None:
        with self.hub._lock:
            self.hub._conns.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        with self.hub._lock:
            self.hub.requests.append((self.command, self.path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path.startswith("/_signed/"):
                return self._signed(url.path)
            if (static := self.hub._static.get(unquote(url.path))) is not None:
                return self._send_file(None, unquote(url.path).lstrip("/"), static, {})
            if m := _RESOLVE.match(url.path):
                return self._resolve(*map(unquote, m.groups()))
            if m := _API.match(url.path):
                repo_id, kind, rev, sub = (unquote(g) if g else g for g in m.groups())
                return self._api(repo_id, kind, rev or "main", sub or "", query, body)
            raise _HubError(404, None, "Not found")
        except _HubError as e:
            self._send_json(e.status, {"error": e.message}, e.code, e.headers)
        except OSError:  # client hung up, or we cut/stopped on purpose
            self.close_connection = True

    def _api(self, repo_id, kind, rev, sub, query, body) -> None:
        sha, files = self.hub._commit(repo_id, rev)
        self.hub._check_gate(repo_id, self.headers.get("Authorization", ""), api=True)
        if kind in (None, "revision"):
            blobs = query.get("blobs", "").lower() in ("1", "true")
            siblings = [f.sibling(p) if blobs else {"rfilename": p} for p, f in files.items()]
            if blobs and self.hub._strip(repo_id)[0]:  # sizes only, as some mirrors answer
                siblings = [{"rfilename": s["rfilename"], "size": s["size"]} for s in siblings]
            gated = "auto" if repo_id in self.hub._gated else False
            info = {"_id": sha[:24], "id": repo_id, "modelId": repo_id, "sha": sha,
                    "lastModified": LAST_MODIFIED, "private": False, "gated": gated,
                    "disabled": False, "tags": [], "siblings": siblings}  # fmt: skip
            return self._send_json(200, info)
        if kind == "tree":
            recursive = query.get("recursive", "").lower() in ("1", "true")
            entries = _tree(files, sub.strip("/"), recursive)
            if sub.strip("/") and not entries:
                raise _HubError(404, "EntryNotFound", f"{sub} does not exist", **{REPO_COMMIT: sha})
            return self._send_json(200, entries)
        wanted = parse_qs(body.decode()).get("paths", [])  # paths-info: form-encoded POST
        tree = {e["path"]: e for e in _tree(files, "", True)}
        self._send_json(200, [tree[p.strip("/")] for p in wanted if p.strip("/") in tree])

    def _resolve(self, repo_id: str, rev: str, path: str, signed: bool = False) -> None:
        sha, files = self.hub._commit(repo_id, rev)
        if not signed:
            self.hub._check_gate(repo_id, self.headers.get("Authorization", ""), api=False)
        opts = self.hub._ranged
        if opts.redirect_host and not signed and path in files:
            with self.hub._lock:
                opts.redirects += 1
                token = f"t{len(opts.tokens)}"
                opts.tokens[token] = 0
            port = self.server.server_address[1]
            location = f"http://{opts.redirect_host}:{port}/_signed/{token}/{repo_id}/resolve/{sha}/{path}"
            self.send_response(302)
            for name, value in {"Location": location, REPO_COMMIT: sha, "Content-Length": "0"}.items():
                self.send_header(name, value)
            self.end_headers()
            return
        f = files.get(path)
        if f is None:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist", **{REPO_COMMIT: sha})
        headers = {REPO_COMMIT: sha, "ETag": f'"{f.etag}"'}
        if f.sha256:
            headers |= {"X-Linked-Etag": f'"{f.sha256}"', "X-Linked-Size": str(len(f.data))}
        if self.hub._strip(repo_id)[1]:
            headers = {k: v for k, v in headers.items() if k not in ("ETag", "X-Linked-Etag")}
        self._send_file(repo_id, path, f.data, headers)

    def _signed(self, raw_path: str) -> None:
        """A signed CDN URL: valid for `expire_after` GETs, then 403 (expired signature)."""
        opts = self.hub._ranged
        _, _, token, rest = raw_path.split("/", 3)
        with self.hub._lock:
            opts.signed_seen.append(
                {"host": self.headers.get("Host", ""), "authorization": self.headers.get("Authorization", "")}
            )
            uses = opts.tokens.get(token)
            if uses is not None and self.command == "GET":
                opts.tokens[token] = uses + 1
        if uses is None or (opts.expire_after is not None and uses >= opts.expire_after):
            raise _HubError(403, None, "Request has expired")
        m = _RESOLVE.match("/" + rest)
        if not m:
            raise _HubError(404, None, "Not found")
        self._resolve(*map(unquote, m.groups()), signed=True)

    def _send_file(self, repo_id: str | None, path: str, data: bytes, headers: dict) -> None:
        """Serve a body honouring Range and the injected faults, pacing and pausing per chunk."""
        # Static files only (a repo file's headers are its own); not setdefault: it would hash every body.
        if repo_id is None and "ETag" not in headers:
            headers["ETag"] = f'"{hashlib.sha256(data).hexdigest()}"'
        headers |= {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        cut = None
        if self.command == "GET":
            self.hub._count((repo_id, path), gets=1)
            if (status := self.hub._take(self.hub._fails, path)) is not None:
                raise _HubError(status, None, f"injected failure {status}")
            cut = self.hub._take(self.hub._cuts, path)
            rng_cut = self._ranged_fault(repo_id, path)
            cut = rng_cut if rng_cut is not None else cut
        start, end, status = 0, len(data), 200
        mode = self.hub._ranged.mode
        if mode == "ignore":
            headers.pop("Accept-Ranges", None)
        if (rng := self.headers.get("Range")) and mode == "slice200":
            start, end = _parse_range(rng, len(data))  # the slice, but a 200 and no Content-Range
        elif rng and mode != "ignore":
            start, end = _parse_range(rng, len(data))
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        if self.command == "HEAD":
            return
        body = memoryview(data)[start:end]
        limit = len(body) if cut is None else min(cut, len(body))
        self._stream(body[:limit], (repo_id, path))
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def _ranged_fault(self, repo_id: str | None, path: str) -> int | None:
        """Log this GET's Range and consume a `cut_range` matching its start."""
        opts, rng = self.hub._ranged, self.headers.get("Range")
        with self.hub._lock:
            opts.log.append((repo_id, path, rng))
            m = re.match(r"\s*bytes=(\d+)-", rng or "bytes=0-")
            key = (path, int(m.group(1)) if m else -1)
            entry = opts.cuts.get(key)
            if not entry:
                return None
            entry[1] -= 1
            if entry[1] <= 0:
                del opts.cuts[key]
            return entry[0]

    def _stream(self, body: memoryview, key: tuple[str | None, str]) -> None:
        hub, sent, last = self.hub, 0, None
        while sent < len(body):
            bps = hub._throttle
            size = CHUNK if not bps else max(1024, min(CHUNK, bps // 20))  # ~50 ms per chunk
            if bps and last is not None:  # pace from the previous chunk; the first goes at once
                hub._stopping.wait(max(0.0, last[1] / bps - (time.monotonic() - last[0])))
            if hub._stopping.is_set():
                raise ConnectionAbortedError("hub stopping")
            chunk = body[sent : sent + size]
            last = (time.monotonic(), len(chunk))
            self.wfile.write(chunk)
            sent += len(chunk)
            hub._count(key, sent=len(chunk))
            while sent < len(body) and not hub._unpaused.wait(0.1):
                if hub._stopping.is_set():
                    raise ConnectionAbortedError("hub stopping")

    def _send_json(self, status: int, payload, code=None, headers=None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", str(payload.get("error", "")))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class _RangeOptions:
    """Range/redirect behaviour of a FakeHub; counters guarded by the hub's lock."""

    def __init__(self) -> None:
        self.mode: str | None = None
        self.cuts: dict[tuple[str, int], list[int]] = {}  # (path, range start) -> [nbytes, times]
        self.redirect_host: str | None = None
        self.expire_after: int | None = None
        self.tokens: dict[str, int] = {}  # signed token -> GETs served
        self.redirects = 0
        self.signed_seen: list[dict[str, str]] = []
        self.log: list[tuple[str | None, str, str | None]] = []  # (repo, path, Range header)


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """Parse a single `bytes=a-b`, `bytes=a-` or `bytes=-n`; return a half-open [start, end)."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not m or m.groups() == ("", ""):
        raise _HubError(416, None, f"bad range {header!r}", **{"Content-Range": f"bytes */{size}"})
    first, last = m.groups()
    if first == "":
        start, end = max(0, size - int(last)), size
    else:
        start, end = int(first), min(size, int(last) + 1) if last else size
    if start >= size or start >= end:
        raise _HubError(416, None, f"{header!r} not satisfiable", **{"Content-Range": f"bytes */{size}"})
    return start, end


def _tree(files: dict[str, _File], prefix: str, recursive: bool) -> list[dict]:
    """Tree listing under `prefix`: folders (fake but stable oids) and files, sorted by path."""
    entries: dict[str, dict] = {}
    base = f"{prefix}/" if prefix else ""
    for path, f in files.items():
        if not path.startswith(base):
            continue
        parts = path[len(base) :].split("/")
        depth = len(parts) if recursive else 1
        for i in range(1, min(depth, len(parts) - 1) + 1):
            folder = base + "/".join(parts[:i])
            oid = hashlib.sha1(f"tree {folder}".encode()).hexdigest()
            entries[folder] = {"type": "directory", "path": folder, "oid": oid, "size": 0}
        if recursive or len(parts) == 1:
            entries[path] = f.tree_entry(path)
    return [entries[p] for p in sorted(entries)]


class BlackHole:
    """A hub that accepts TCP connections and never answers (nor closes): a hung server.

    Separate from FakeHub so each fault stays small; ``accepted`` counts connections
    so a test knows a client is waiting on it.
    """

    def __init__(self) -> None:
        self.url = ""
        self.accepted = 0
        self._sock: socket.socket | None = None
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()  # guards accepted and _held

    def start(self) -> str:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._accept, args=(self._sock,), daemon=True).start()
        return self.url

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            with self._lock:
                self.accepted += 1
                self._held.append(conn)  # keep it open, read nothing, answer nothing

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        with self._lock:
            held, self._held = self._held, []
        for conn in held:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> BlackHole:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
