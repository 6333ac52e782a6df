"""A small client for a running studio's REST + SSE API (the CLI's ``--url`` mode).

Errors keep the server's code and message (``ServerError``); a server that
cannot be reached is ``ServerUnreachable``, so the CLI can give each its exit
code. Progress comes from the server's own event stream (``/api/events``), the
same one the UI's snapshot is built from.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from httpx_sse import ServerSentEvent, connect_sse


class ServerError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class ServerUnreachable(Exception):
    pass


class StudioClient:
    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base = url.rstrip("/")
        # The stream's read deadline outlasts the server's 15 s heartbeat.
        self.http = httpx.Client(
            base_url=self.base, headers=headers, timeout=httpx.Timeout(timeout_s, read=max(timeout_s, 60.0))
        )

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"cannot reach {self.base}: {exc}") from exc
        if response.status_code >= 400:
            self._raise_for(response)
        return response.json()

    @staticmethod
    def _model_path(model_id: str) -> str:
        return "/api/models/" + quote(model_id, safe="/")

    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/api/models")["models"]

    def model(self, model_id: str) -> dict[str, Any]:
        return self._call("GET", self._model_path(model_id))

    def download(self, model_id: str, languages: list[str] | None, with_align: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"with_align": with_align}
        if languages:
            body["languages"] = languages
        return self._call("POST", self._model_path(model_id) + "/download", json=body)

    def cancel(self, model_id: str) -> dict[str, Any]:
        return self._call("POST", self._model_path(model_id) + "/cancel")

    def delete(self, model_id: str) -> dict[str, Any]:
        return self._call("DELETE", self._model_path(model_id))

    def preload(self, model_id: str, language: str | None, device: str) -> dict[str, Any]:
        return self._call(
            "POST", "/api/preload/start", json={"model": model_id, "language": language, "device": device}
        )

    def preload_status(self) -> dict[str, Any]:
        return self._call("GET", "/api/preload/status")

    def submit(self, path: Path, fields: dict[str, str]) -> dict[str, Any]:
        """Upload one audio file as a transcription job (202 + the job)."""
        with path.open("rb") as audio:
            return self._call("POST", "/api/transcriptions", data=fields, files={"file": (path.name, audio)})

    def job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/transcriptions/{quote(job_id)}")

    def result(self, job_id: str, fmt: str) -> bytes:
        try:
            response = self.http.get(f"/api/transcriptions/{quote(job_id)}/result", params={"format": fmt})
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"cannot reach {self.base}: {exc}") from exc
        if response.status_code >= 400:
            self._raise_for(response)
        return response.content

    @contextmanager
    def events(self) -> Iterator[Iterator[ServerSentEvent]]:
        """The server's event stream; the first event is a snapshot, then progress and pings."""
        try:
            with connect_sse(self.http, "GET", "/api/events") as source:
                if source.response.status_code >= 400:
                    source.response.read()
                    self._raise_for(source.response)
                yield source.iter_sse()
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"lost the event stream of {self.base}: {exc}") from exc

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        try:
            error = response.json()["error"]
        except (ValueError, KeyError, TypeError):
            raise ServerError(response.status_code, "http_error", response.text[:200]) from None
        raise ServerError(response.status_code, error["code"], error["message"])
