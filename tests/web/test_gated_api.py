"""Gated diarization models over HTTP (issue 15): the POST's 401/403, the background refusal, the
Models tab, and a token that never shows in a log, a state file or a GET answer."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from httpx_sse import connect_sse
from pydantic import SecretStr

from modelmgr.web.ui.views import model_choice_label, render_models_table
from tests import tiny_models
from tests.conftest import ACCEPTED_TOKEN, DIARIZER, UNACCEPTED_TOKEN, hub_settings, run_server, wait_until
from tests.fresh import fresh_server
from tests.hub import FakeHub
from tests.models.test_gated import publish_pyannote

SEGMENTATION = tiny_models.PYANNOTE_SEGMENTATION
EMBEDDING = tiny_models.PYANNOTE_EMBEDDING
PYANNOTE = (DIARIZER, SEGMENTATION, EMBEDDING)
STUDIO_TOKEN = "studio-secret-token"


def model_url(base: str, model_id: str) -> str:
    return f"{base}/api/models/{quote(model_id, safe='/')}"


def pyannote_requests(hub: FakeHub) -> list[tuple[str, str]]:
    return [r for r in hub.requests if "pyannote" in r[1]]


@pytest.fixture
def private_hub(tiny_pyannote: tiny_models.TinyPyannote) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        yield publish_pyannote(hub, tiny_pyannote)


def test_post_without_a_hub_token_is_401_auth_required_not_the_studios_sign_in(
    gated_hub: FakeHub, tmp_path: Path
) -> None:
    settings = hub_settings(gated_hub, tmp_path, auth_token=SecretStr(STUDIO_TOKEN))
    with run_server(settings) as live:
        signed_in = {"Authorization": f"Bearer {STUDIO_TOKEN}"}
        answer = httpx.post(model_url(live.url, DIARIZER) + "/download", headers=signed_in, timeout=60)
        assert answer.status_code == 401, answer.text
        error = answer.json()["error"]
        assert error["code"] == "auth_required", "the hub's 401, not the studio's sign-in"
        assert "HF_TOKEN" in error["message"] and "hf auth login" in error["message"]
        assert f"{gated_hub.url}/{DIARIZER}" in error["message"]
        assert f"{gated_hub.url}/{SEGMENTATION}" in error["message"]
        assert "www-authenticate" not in answer.headers and "text/html" not in answer.headers["content-type"]
        # The studio's own 401 keeps its own code.
        unsigned = httpx.post(model_url(live.url, DIARIZER) + "/download", timeout=60)
        assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "unauthorized")
        assert pyannote_requests(gated_hub) == [], "refused without asking the hub"
        models = {m["id"]: m for m in httpx.get(f"{live.url}/api/models", headers=signed_in).json()["models"]}
        assert models[DIARIZER]["status"] == "error" and models[DIARIZER]["error_code"] == "auth_required"
        assert "HF_TOKEN" in models[DIARIZER]["error"]
        assert models[DIARIZER]["parts"] == [SEGMENTATION, EMBEDDING]
        for model_id in PYANNOTE:
            assert models[model_id]["progress"]["bytes_done"] == 0


def test_post_with_an_unaccepted_token_is_403_gated_repo(gated_hub: FakeHub, tmp_path: Path) -> None:
    with run_server(hub_settings(gated_hub, tmp_path, hf_token=UNACCEPTED_TOKEN)) as live:
        answer = httpx.post(model_url(live.url, DIARIZER) + "/download", timeout=60)
        assert answer.status_code == 403, answer.text
        error = answer.json()["error"]
        assert error["code"] == "gated_repo" and "has not accepted" in error["message"]
        assert f"{gated_hub.url}/{DIARIZER}" in error["message"]
        assert gated_hub.get_count(DIARIZER, "config.yaml") == 0
        model = httpx.get(model_url(live.url, DIARIZER), timeout=60).json()
        assert model["error_code"] == "gated_repo"


def test_post_with_the_accepted_token_downloads_the_pipeline_and_its_models(
    diarize_settings, gated_hub: FakeHub
) -> None:
    with run_server(diarize_settings) as live:
        answer = httpx.post(model_url(live.url, DIARIZER) + "/download", timeout=60)
        assert answer.status_code == 202 and answer.json()["status"] == "started"
        assert answer.json()["model"]["parts"] == [SEGMENTATION, EMBEDDING]
        for model_id in PYANNOTE:
            wait_until(
                lambda m=model_id: (
                    httpx.get(model_url(live.url, m), timeout=60).json()["status"] == "downloaded"
                ),
                120,
                f"{model_id} to download",
            )


def test_a_background_refusal_shows_its_code_in_get_api_models(private_hub: FakeHub, tmp_path: Path) -> None:
    """A hub that gates its API too, for a model the catalog lists as open: the POST starts it,
    the download fails in the background, and the listing says why in words, with the code."""
    private_hub.gate(EMBEDDING, api_too=True)
    with run_server(hub_settings(private_hub, tmp_path)) as live:
        answer = httpx.post(model_url(live.url, EMBEDDING) + "/download", timeout=60)
        assert answer.status_code == 202, answer.text

        def failed() -> dict | None:
            models = httpx.get(f"{live.url}/api/models", timeout=60).json()["models"]
            model = next(m for m in models if m["id"] == EMBEDDING)
            return model if model["status"] == "error" else None

        model = wait_until(failed, 60, "the background refusal")
        assert model["error_code"] == "auth_required"
        assert f"{private_hub.url}/{EMBEDDING}" in model["error"] and "HF_TOKEN" in model["error"]


def test_the_models_tab_shows_diarization_models_their_parts_and_errors(
    gated_hub: FakeHub, tmp_path: Path
) -> None:
    with run_server(hub_settings(gated_hub, tmp_path)) as live:
        httpx.post(model_url(live.url, DIARIZER) + "/download", timeout=60)
        snapshot = live.services.downloads.snapshot()
    html = render_models_table(snapshot)
    assert "Diarization models" in html
    assert f"with {SEGMENTATION}, {EMBEDDING}" in html
    assert "gated on the Hub" in html and "HF_TOKEN" in html
    row = html[html.index(f'data-model="{DIARIZER}"') :]
    assert 'data-status="error"' in row[:200] and "accept the conditions" in row.split("</tr>")[0]
    assert model_choice_label(DIARIZER, "diarization", None, True) == f"{DIARIZER} (diarization pipeline)"
    assert model_choice_label(SEGMENTATION, "diarization", None) == f"{SEGMENTATION} (diarization)"


def _get_routes(url: str) -> dict[str, str]:
    """Every GET answer a client can read (the SSE stream: its first snapshot)."""
    paths = ["/api/health", "/api/models", "/api/system", "/api/preload/status", "/api/workers",
             "/api/transcriptions", "/v1/models", "/openapi.json"]  # fmt: skip
    paths += [f"/api/models/{m}" for m in PYANNOTE] + [f"/api/models/{m}?check_update=1" for m in PYANNOTE]
    bodies = {p: httpx.get(url + p, timeout=60).text for p in paths}
    with httpx.Client(timeout=60) as client, connect_sse(client, "GET", url + "/api/events") as source:
        bodies["/api/events"] = next(iter(source.iter_sse())).data  # the snapshot
    return bodies


def test_the_token_never_shows_in_logs_state_files_or_get_answers(gated_hub: FakeHub, tmp_path: Path) -> None:
    """A fresh process reading `hf auth login`'s token file: first a token whose owner has not
    accepted (403 from the POST), then the accepted one (the file is read again at each request)."""
    settings = hub_settings(gated_hub, tmp_path)
    token_file = tmp_path / "login" / "token"
    token_file.parent.mkdir()
    token_file.write_text(UNACCEPTED_TOKEN)
    with fresh_server(settings, tmp_path, HF_TOKEN_PATH=str(token_file)) as server:
        refused = httpx.post(model_url(server.url, DIARIZER) + "/download", timeout=60)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "gated_repo", refused.text
        token_file.write_text(ACCEPTED_TOKEN + "\n")
        started = httpx.post(model_url(server.url, DIARIZER) + "/download", timeout=60)
        assert started.status_code == 202, started.text
        for model_id in PYANNOTE:
            wait_until(
                lambda m=model_id: (
                    httpx.get(model_url(server.url, m), timeout=60).json()["status"] == "downloaded"
                ),
                120,
                f"{model_id} to download",
            )
        bodies = _get_routes(server.url)
        bodies["refused POST"], bodies["started POST"] = refused.text, started.text
        log = server.output()
    assert gated_hub.authorizations, "the hub was sent the tokens"
    assert {f"Bearer {UNACCEPTED_TOKEN}", f"Bearer {ACCEPTED_TOKEN}"} <= set(gated_hub.authorizations)
    assert "download of pyannote/speaker-diarization-3.1 ended: downloaded" in log, log[-3000:]
    for token in (ACCEPTED_TOKEN, UNACCEPTED_TOKEN, ACCEPTED_TOKEN[3:20]):
        assert token not in log, "the token is in the server's output"
        for path, body in bodies.items():
            assert token not in body, path
        for path in settings.hf_home.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert token.encode() not in path.read_bytes(), path
    assert json.loads(bodies["/api/models"])["models"]
