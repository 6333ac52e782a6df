"""The assembled app: API before the Gradio mount, and the auth token guarding the UI too."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from tests.live import run_server


def test_ui_and_api_share_one_port(settings) -> None:
    with run_server(settings, ui=True) as live:
        assert httpx.get(f"{live.url}/api/health", timeout=60).json() == {"status": "ok"}
        page = httpx.get(f"{live.url}/", timeout=60)
        assert page.status_code == 200 and "<html" in page.text.lower()
        missing = httpx.get(f"{live.url}/api/does-not-exist", timeout=60)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_auth_token_also_guards_the_ui(settings) -> None:
    guarded = settings.model_copy(update={"auth_token": SecretStr("s3cret")})
    with run_server(guarded, ui=True) as live, httpx.Client(base_url=live.url) as client:
        assert client.get("/config").status_code == 401
        assert client.post("/login", data={"username": "me", "password": "wrong"}).status_code >= 400
        assert client.post("/login", data={"username": "me", "password": "s3cret"}).status_code == 200
        assert client.get("/config").status_code == 200


@pytest.mark.slow
def test_two_studios_on_one_host_keep_their_uploads_apart(settings, tmp_path) -> None:
    """Gradio's shared /tmp/gradio let one studio's shutdown delete the upload another was queueing."""
    import tempfile
    from pathlib import Path

    from tests.fresh import fresh_server

    audio = b"RIFF-not-really-audio-but-the-same-bytes-in-both"

    def upload(url: str) -> Path:
        answer = httpx.post(f"{url}/gradio_api/upload", files={"files": ("speech.wav", audio)}, timeout=60)
        assert answer.status_code == 200, answer.text
        return Path(answer.json()[0])

    with fresh_server(settings, tmp_path, ui=True) as first:
        # (each its own job folder: one studio per state folder)
        with fresh_server(settings, tmp_path, ui=True, MODELMGR_DATA_DIR=str(tmp_path / "second")) as second:
            kept = upload(second.url)
            port = second.url.rsplit(":", 1)[1]
            assert kept.is_relative_to(Path(tempfile.gettempdir()) / f"whisperx-studio-uploads-{port}")
            gone = upload(first.url)
            assert gone != kept and gone.read_bytes() == kept.read_bytes() == audio
        assert gone.exists(), "the first studio still has its upload after the second one stopped"
