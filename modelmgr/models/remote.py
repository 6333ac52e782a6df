"""What to fetch: resolve a model into a manifest (commit, files, sizes, hashes).

huggingface_hub does the metadata calls (endpoint, auth headers, error types);
the byte moving is the ``transfer`` package's job. Torchaudio bundles are single files
on a plain web server (download.pytorch.org or a mirror): a HEAD gives the size.

Every metadata call has a deadline and can be cancelled: a hub that accepts the
connection and never answers must not hold a job (and the queue behind it). The
call runs in a helper thread with a connect+read timeout while the job's thread
waits on "done or cancelled"; a cancelled call is abandoned and ends by itself
when its timeout fires. One request (``model_info`` with ``files_metadata``)
gives the commit and every file's size and hash, so there is one deadline, not two.
A mirror may list sizes without hashes (no ``blobId``, no ``lfs``): then each such file gets
one HEAD, as huggingface_hub does before a download, and its digest is read from the answer's
``X-Linked-Etag`` / ``ETag`` (``manifests.digest_from_etag``), each HEAD with its own deadline.
A file whose headers name no digest either stays size-only (``Manifest.integrity`` says so).

Gated repos (pyannote's): the token comes from ``hub_token.HubToken``; ``check_access`` asks
the hub up front (a download request is refused at once, not in the background), and a
``GatedRepoError`` is told apart by its status: 401 ``AuthRequired``, 403 ``GatedRepo``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from modelmgr.core.catalog import ModelSpec
from modelmgr.core.errors import (
    AccessDenied,
    Cancelled,
    DownloadFailed,
    HubTimeout,
    Offline,
    RemoteNotFound,
)
from modelmgr.core.settings import Settings
from modelmgr.models.hub_token import HubToken, auth_required, gated_repo, token_refused
from modelmgr.models.manifests import digest_from_etag
from modelmgr.models.netfaults import network_error, transport_error_types
from modelmgr.models.store import FileEntry, Manifest, select_files

T = TypeVar("T")
log = logging.getLogger(__name__)
ACCESS_OK_TTL_S = 60.0  # a granted probe is trusted this long (a double click, a pipeline's parts)
PROBE_TIMEOUT_S = 5.0  # the up-front access probe answers a request: at most this per call


def call_cancellable(fn: Callable[[], T], cancel: threading.Event | None, deadline_s: float, where: str) -> T:
    """Run a blocking network call in a helper thread; return its result, or raise when
    ``cancel`` is set (``Cancelled``) or nothing came back within ``deadline_s`` (``HubTimeout``).

    The helper is a daemon: an abandoned call dies with its own socket timeout.
    """
    box: dict[str, Any] = {}
    finished = threading.Event()

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the waiting thread, which re-raises it
            box["error"] = exc
        finally:
            finished.set()

    threading.Thread(target=work, name=f"metadata:{where}", daemon=True).start()
    cancel = cancel or threading.Event()
    step = 0.05
    waited = 0.0
    while not finished.wait(step):
        if cancel.is_set():
            raise Cancelled("cancelled while waiting for the hub")
        waited += step
        if waited > deadline_s:
            raise HubTimeout(
                f"{where} did not answer within {deadline_s:.0f} s: the hub or mirror may be down; "
                "check HF_ENDPOINT and the proxy, then try again"
            )
    if "error" in box:
        raise box["error"]
    return box["value"]


class Remote:
    """huggingface_hub is imported on first use: it costs about a second of start-up."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.endpoint = settings.hf_endpoint.rstrip("/")
        self.token = HubToken(settings)
        # _lock guards _access_ok: (repo id, token digest) -> when the hub last granted access
        self._lock = threading.Lock()
        self._access_ok: dict[tuple[str, str], float] = {}

    @cached_property
    def api(self) -> Any:
        # No token of its own: every call passes ours (or False), so huggingface_hub never reads
        # a token file itself (it would raise from inside the request on one it cannot read).
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=False)

    def token_for(self, spec: ModelSpec) -> str | bool:
        """The token to send for ``spec``: a gated model raises ``TokenUnreadable`` on a broken
        token file; any other model goes without a token then (a warning is logged)."""
        if spec.gated:
            return self.token.get() or False
        return self.token.lenient()

    def headers_for(self, spec: ModelSpec) -> dict[str, str]:
        """Auth and user-agent headers for file downloads from the hub (never for other hosts)."""
        from huggingface_hub.utils import build_hf_headers

        return build_hf_headers(token=self.token_for(spec), library_name="whisperx-studio")

    def resolve(
        self, spec: ModelSpec, cancel: threading.Event | None = None, *, digests: bool = True
    ) -> Manifest:
        """Ask the hub (or mirror) what the model consists of, right now (cancellable).

        ``digests=False``: sizes and the commit are enough (no HEADs for a mirror without hashes).
        """
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if self.settings.offline:
            raise Offline(f"{spec.id} is not fully downloaded and offline mode (HF_HUB_OFFLINE) is on")
        timeout = self.settings.download_timeout_s
        where = self.settings.torch_models_base_url if spec.source == "torchaudio" else self.endpoint
        token: str | bool = False
        if spec.source == "torchaudio":
            fn = self._resolve_torchaudio
        else:
            token = self.token_for(spec)  # before any request: a broken token file is named

            def fn(spec: ModelSpec) -> Manifest:
                return self._resolve_hf(spec, token)

        try:
            # The helper's own socket deadline fires first; ours is the backstop for a slow trickle.
            manifest = call_cancellable(lambda: fn(spec), cancel, 2 * timeout + 5, where)
            if digests and spec.source == "hf" and manifest.size_only:
                manifest = self._digests_from_headers(manifest, token, cancel)
            return manifest
        except GatedRepoError as exc:
            raise self.refusal(spec, _status(exc), [spec.repo_id], bool(token)) from None
        except RevisionNotFoundError as exc:
            raise RemoteNotFound(f"{spec.repo_id} has no revision {spec.revision!r}") from exc
        except RepositoryNotFoundError as exc:
            raise RemoteNotFound(f"{spec.repo_id} was not found at {self.endpoint}") from exc
        except OfflineModeIsEnabled as exc:
            raise Offline(str(exc)) from exc
        except HfHubHTTPError as exc:
            if token and _token_refused(exc):
                raise token_refused(self.endpoint, spec.id, self.token.source()) from None
            raise DownloadFailed(f"the hub refused the file list of {spec.repo_id}: {exc}") from exc
        except transport_error_types() as exc:  # httpx2 (huggingface_hub) and httpx (torchaudio HEAD)
            raise network_error(exc, where) from None
        except httpx.HTTPStatusError as exc:
            raise DownloadFailed(f"{where} answered {exc.response.status_code} for {spec.id}") from None

    def refusal(self, spec: ModelSpec, status: int | None, repos: list[str], had_token: bool) -> AccessDenied:
        """The hub's 401/403 for ``repos`` (``spec`` itself, or the parts of a pipeline) in words."""
        source = self.token.source() if had_token else None
        if status == 403 and source is not None:
            return gated_repo(self.endpoint, spec.id, repos, source)
        if status in (401, 403):
            return auth_required(self.endpoint, spec.id, repos, source)
        return AccessDenied(f"{self.endpoint} refused access to {' and '.join(repos)} (HTTP {status})")

    def check_access(self, spec: ModelSpec, token: str, *, for_model: ModelSpec | None = None) -> bool:
        """Ask the hub, quickly, whether ``token`` may fetch the gated ``spec``: ``model_info``
        (which the Hub answers for gated repos too, saying ``gated``), then a HEAD of one file
        with the token. Raises ``AuthRequired`` (401) or ``GatedRepo`` (403) naming ``spec``'s
        repo as part of ``for_model`` when given. Any other outcome returns: True when the hub
        answered (granted, not gated), False when it could not say (unreachable, slow, not
        found); the download itself then reports what it meets.
        """
        from huggingface_hub import get_hf_file_metadata
        from huggingface_hub.errors import GatedRepoError

        key = (spec.repo_id, hashlib.sha256(token.encode()).hexdigest())
        with self._lock:
            if time.monotonic() - self._access_ok.get(key, -ACCESS_OK_TTL_S) < ACCESS_OK_TTL_S:
                return True
        timeout = min(self.settings.download_timeout_s, PROBE_TIMEOUT_S)

        def probe() -> None:
            info = self.api.model_info(spec.repo_id, revision=spec.revision, timeout=timeout, token=token)
            if not getattr(info, "gated", None):
                return
            chosen = select_files(spec, sorted(s.rfilename for s in info.siblings or []))
            if not chosen:
                return
            url = f"{self.endpoint}/{spec.repo_id}/resolve/{info.sha}/{quote(chosen[0])}"
            get_hf_file_metadata(url, token=token, timeout=timeout, library_name="whisperx-studio")

        try:
            call_cancellable(probe, None, 2 * timeout + 2, self.endpoint)
        except GatedRepoError as exc:
            owner = for_model or spec
            raise self.refusal(owner, _status(exc), [spec.repo_id], True) from None
        except Exception as exc:
            if _token_refused(exc):
                raise token_refused(self.endpoint, (for_model or spec).id, self.token.source()) from None
            # Unreachable, slow, not found: not ours to answer, the download says it.
            log.info(
                "access check of %s inconclusive (%s); the download goes ahead",
                spec.repo_id,
                type(exc).__name__,
            )
            return False
        with self._lock:
            self._access_ok[key] = time.monotonic()
        return True

    def _resolve_hf(self, spec: ModelSpec, token: str | bool) -> Manifest:
        # One request with a deadline: the commit plus every file's size and hash.
        info = self.api.model_info(
            spec.repo_id,
            revision=spec.revision,
            files_metadata=True,
            timeout=self.settings.download_timeout_s,
            token=token,
        )
        commit = info.sha
        tree = {s.rfilename: s for s in info.siblings or [] if s.size is not None}
        chosen = select_files(spec, sorted(tree))
        if not chosen:
            raise RemoteNotFound(f"{spec.repo_id} has none of the files a {spec.kind} model needs")
        files = []
        for path in chosen:
            item = tree[path]
            url = f"{self.endpoint}/{spec.repo_id}/resolve/{commit}/{quote(path)}"
            sha256 = item.lfs.sha256 if item.lfs else None
            files.append(
                FileEntry(path, item.size, url, sha256=sha256, git_sha1=None if sha256 else item.blob_id)
            )
        return Manifest(spec.id, spec.repo_id, commit, tuple(files))

    def _digests_from_headers(
        self, manifest: Manifest, token: str | bool, cancel: threading.Event | None
    ) -> Manifest:
        """Fill in the digests the file list left out, from one HEAD per such file (what
        huggingface_hub's ``get_hf_file_metadata`` reads: ``X-Linked-Etag``, else ``ETag``).
        A mirror that answers HEAD with 405/501 leaves the file size-only; other refusals raise."""
        from huggingface_hub import get_hf_file_metadata
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

        timeout = self.settings.download_timeout_s
        files = []
        for entry in manifest.files:
            if entry.expected_digest is None:

                def head(url: str = entry.url) -> Any:
                    return get_hf_file_metadata(
                        url, token=token, timeout=timeout, library_name="whisperx-studio"
                    )

                try:
                    etag = call_cancellable(head, cancel, 2 * timeout + 5, self.endpoint).etag
                except RepositoryNotFoundError:
                    raise  # gated, unknown: resolve() words it
                except HfHubHTTPError as exc:
                    status = _status(exc)
                    if status not in (405, 501):
                        raise DownloadFailed(
                            f"{self.endpoint} answered HTTP {status} to a HEAD of {entry.path} "
                            f"({manifest.repo_id}), asked for its digest"
                        ) from None
                    etag = None  # no HEAD at this mirror: the file stays size-only
                sha256, git_sha1 = digest_from_etag(etag)
                entry = replace(entry, sha256=sha256, git_sha1=git_sha1)
            files.append(entry)
        if any(f.expected_digest is None for f in files):
            log.warning(
                "%s: %s sent no digest for %s: verify can compare only their sizes",
                manifest.repo_id,
                self.endpoint,
                ", ".join(f.path for f in files if f.expected_digest is None),
            )
        return replace(manifest, files=tuple(files))

    def head_commit(self, spec: ModelSpec, cancel: threading.Event | None = None) -> str | None:
        """The commit the hub's revision points at now (None for torchaudio bundles)."""
        if spec.source != "hf":
            return None
        return self.resolve(spec, cancel, digests=False).commit

    def _resolve_torchaudio(self, spec: ModelSpec) -> Manifest:
        assert spec.filename
        url = f"{self.settings.torch_models_base_url.rstrip('/')}/{spec.filename}"
        response = httpx.head(url, follow_redirects=True, timeout=self.settings.download_timeout_s)
        if response.status_code == 404:
            raise RemoteNotFound(f"{url} does not exist")
        response.raise_for_status()
        size = int(response.headers["content-length"])
        return Manifest(spec.id, spec.repo_id, None, (FileEntry(spec.filename, size, url),))


def _token_refused(exc: Exception) -> bool:
    """The hub's 401 "Invalid credentials" (a plain ``HfHubHTTPError``): the token itself was
    refused. A 401 that huggingface_hub reads as "not found" (private or missing) is not this."""
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    plain = isinstance(exc, HfHubHTTPError) and not isinstance(exc, RepositoryNotFoundError)
    return plain and _status(exc) == 401


def _status(exc: Exception) -> int | None:
    """The HTTP status of a huggingface_hub error (None when it carries no response)."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)
