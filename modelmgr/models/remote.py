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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from modelmgr.core.catalog import ModelSpec
from modelmgr.core.errors import AccessDenied, Cancelled, DownloadFailed, HubTimeout, Offline, RemoteNotFound
from modelmgr.core.settings import Settings
from modelmgr.models.netfaults import network_error, transport_error_types
from modelmgr.models.store import FileEntry, Manifest, select_files

T = TypeVar("T")


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
        self._token: str | bool = settings.hf_token.get_secret_value() if settings.hf_token else False

    @cached_property
    def api(self) -> Any:
        from huggingface_hub import HfApi

        return HfApi(endpoint=self.endpoint, token=self._token)

    @cached_property
    def headers(self) -> dict[str, str]:
        """Auth and user-agent headers for file downloads from the hub (never for other hosts)."""
        from huggingface_hub.utils import build_hf_headers

        return build_hf_headers(token=self._token, library_name="whisperx-studio")

    def resolve(self, spec: ModelSpec, cancel: threading.Event | None = None) -> Manifest:
        """Ask the hub (or mirror) what the model consists of, right now (cancellable)."""
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
        fn = self._resolve_torchaudio if spec.source == "torchaudio" else self._resolve_hf
        where = self.settings.torch_models_base_url if spec.source == "torchaudio" else self.endpoint
        try:
            # The helper's own socket deadline fires first; ours is the backstop for a slow trickle.
            return call_cancellable(lambda: fn(spec), cancel, 2 * timeout + 5, where)
        except (GatedRepoError, RevisionNotFoundError) as exc:
            if isinstance(exc, GatedRepoError):
                raise AccessDenied(f"{spec.repo_id} is gated or private: set HF_TOKEN") from exc
            raise RemoteNotFound(f"{spec.repo_id} has no revision {spec.revision!r}") from exc
        except RepositoryNotFoundError as exc:
            raise RemoteNotFound(f"{spec.repo_id} was not found at {self.endpoint}") from exc
        except OfflineModeIsEnabled as exc:
            raise Offline(str(exc)) from exc
        except HfHubHTTPError as exc:
            raise DownloadFailed(f"the hub refused the file list of {spec.repo_id}: {exc}") from exc
        except transport_error_types() as exc:  # httpx2 (huggingface_hub) and httpx (torchaudio HEAD)
            raise network_error(exc, where) from None
        except httpx.HTTPStatusError as exc:
            raise DownloadFailed(f"{where} answered {exc.response.status_code} for {spec.id}") from None

    def _resolve_hf(self, spec: ModelSpec) -> Manifest:
        # One request with a deadline: the commit plus every file's size and hash.
        info = self.api.model_info(
            spec.repo_id,
            revision=spec.revision,
            files_metadata=True,
            timeout=self.settings.download_timeout_s,
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

    def head_commit(self, spec: ModelSpec, cancel: threading.Event | None = None) -> str | None:
        """The commit the hub's revision points at now (None for torchaudio bundles)."""
        if spec.source != "hf":
            return None
        return self.resolve(spec, cancel).commit

    def _resolve_torchaudio(self, spec: ModelSpec) -> Manifest:
        assert spec.filename
        url = f"{self.settings.torch_models_base_url.rstrip('/')}/{spec.filename}"
        response = httpx.head(url, follow_redirects=True, timeout=self.settings.download_timeout_s)
        if response.status_code == 404:
            raise RemoteNotFound(f"{url} does not exist")
        response.raise_for_status()
        size = int(response.headers["content-length"])
        return Manifest(spec.id, spec.repo_id, None, (FileEntry(spec.filename, size, url),))
