"""The assembled app: API before the Gradio mount, and the auth token guarding the UI too."""

from __future__ import annotations

import httpx
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
