"""What to fetch: resolve a model into a manifest (commit, files, sizes, hashes).

huggingface_hub does the metadata calls (endpoint, auth headers, error types);
the byte moving is ``transfer.py``'s job. Torchaudio bundles are single files
on a plain web server (download.pytorch.org or a mirror): a HEAD gives the size.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any
from urllib.parse import quote

import httpx

from .catalog import ModelSpec
from .errors import AccessDenied, DownloadFailed, Offline, RemoteNotFound
from .settings import Settings
from .store import FileEntry, Manifest, select_files


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

    def resolve(self, spec: ModelSpec) -> Manifest:
        """Ask the hub (or mirror) what the model consists of, right now."""
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if self.settings.offline:
            raise Offline(f"{spec.id} is not fully downloaded and offline mode (HF_HUB_OFFLINE) is on")
        try:
            if spec.source == "torchaudio":
                return self._resolve_torchaudio(spec)
            return self._resolve_hf(spec)
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
        except httpx.HTTPError as exc:
            raise DownloadFailed(f"cannot reach {self.endpoint}: {exc}") from exc

    def _resolve_hf(self, spec: ModelSpec) -> Manifest:
        info = self.api.model_info(spec.repo_id, revision=spec.revision)
        commit = info.sha
        tree = {
            item.path: item
            for item in self.api.list_repo_tree(spec.repo_id, revision=commit, recursive=True)
            if getattr(item, "size", None) is not None and not hasattr(item, "tree_id")
        }
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

    def _resolve_torchaudio(self, spec: ModelSpec) -> Manifest:
        assert spec.filename
        url = f"{self.settings.torch_models_base_url.rstrip('/')}/{spec.filename}"
        response = httpx.head(url, follow_redirects=True, timeout=self.settings.download_timeout_s)
        if response.status_code == 404:
            raise RemoteNotFound(f"{url} does not exist")
        response.raise_for_status()
        size = int(response.headers["content-length"])
        return Manifest(spec.id, spec.repo_id, None, (FileEntry(spec.filename, size, url),))
