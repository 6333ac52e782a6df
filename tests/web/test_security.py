"""Web security by default (issue 7): DNS rebinding, CSRF, CORS echo, the token and the logs.

The requests are the exact probes of the hostile review: a rebinding Host, bodiless and
empty-form cross-site POSTs, and a cross-origin multipart upload to Gradio.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from modelmgr.core.settings import Settings
from modelmgr.web.security import resolve_token
from tests.hub import FakeHub
from tests.live import LiveServer, run_server, wait_until

ROOT = Path(__file__).resolve().parents[2]
EVIL = "http://evil.example"


def _port(live: LiveServer) -> int:
    return int(live.url.rsplit(":", 1)[1])


def test_rebinding_host_cannot_read_or_delete(live_server: LiveServer, hub: FakeHub) -> None:
    services = live_server.services
    job = services.downloads.start("tiny", with_align=False).job
    assert job is not None and job.done.wait(60)
    port = _port(live_server)
    rebound = {"Host": f"evil.example:{port}"}
    listing = httpx.get(f"{live_server.url}/api/models", headers=rebound, timeout=60)
    assert listing.status_code == 403 and listing.json()["error"]["code"] == "forbidden_host"
    deleted = httpx.delete(f"{live_server.url}/api/models/tiny", headers=rebound, timeout=60)
    assert deleted.status_code == 403
    assert services.downloads.describe(services.catalog.get("tiny"))["status"] == "downloaded"
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost"):
        assert (
            httpx.get(f"{live_server.url}/api/health", headers={"Host": host}, timeout=60).status_code == 200
        ), host


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/api/models/tiny/download", {}),  # bodiless POST
        ("/api/models/tiny/download", {"data": {}}),  # empty <form> POST
        ("/api/models/tiny/download", {"content": b"", "headers": {"Content-Type": "text/plain"}}),
        ("/api/preload/clear-cache", {}),
        ("/api/models/tiny/cancel", {}),
    ],
    ids=["bodiless", "empty-form", "text-plain", "clear-cache", "cancel"],
)
def test_cross_site_posts_change_nothing(live_server: LiveServer, path: str, kwargs: dict) -> None:
    headers = {"Origin": EVIL, **kwargs.pop("headers", {})}
    answer = httpx.post(f"{live_server.url}{path}", headers=headers, **kwargs, timeout=60)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"]["code"] == "cross_origin"
    assert "access-control-allow-origin" not in answer.headers
    assert live_server.services.downloads.job("tiny") is None, "a cross-site POST started a download"


def test_cross_site_without_origin_is_refused_by_fetch_metadata(live_server: LiveServer) -> None:
    answer = httpx.post(
        f"{live_server.url}/api/models/tiny/download", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "cross_origin"
    opaque = httpx.post(f"{live_server.url}/api/preload/clear-cache", headers={"Origin": "null"}, timeout=60)
    assert opaque.status_code == 403


def test_same_origin_and_listed_origins_may_post(settings: Settings, hub: FakeHub) -> None:
    listed = settings.model_copy(update={"allowed_origins": ["https://studio.example"]})
    with run_server(listed) as live:
        port = _port(live)
        same = httpx.post(
            f"{live.url}/api/preload/clear-cache", headers={"Origin": f"http://127.0.0.1:{port}"}
        )
        assert same.status_code == 200, same.text
        other_port = httpx.post(
            f"{live.url}/api/preload/clear-cache", headers={"Origin": f"http://127.0.0.1:{port + 1}"}
        )
        assert other_port.status_code == 403
        ok = httpx.post(
            f"{live.url}/api/preload/clear-cache", headers={"Origin": "https://studio.example"}, timeout=60
        )
        assert ok.status_code == 200
        assert ok.headers.get("access-control-allow-origin") in (None, "https://studio.example")
        assert (
            httpx.post(f"{live.url}/api/preload/clear-cache", timeout=60).status_code == 200
        )  # curl, no Origin


def test_allowed_hosts_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("MODELMGR_ALLOWED_HOSTS", "studio.lan, gpu1.lan")
    monkeypatch.setenv("MODELMGR_ALLOWED_ORIGINS", "https://studio.lan")
    settings = Settings()
    assert settings.allowed_hosts == ["studio.lan", "gpu1.lan"]
    assert settings.allowed_origins == ["https://studio.lan"]


def test_gradio_upload_from_another_origin_writes_nothing_and_cors_is_not_echoed(
    settings: Settings, tmp_path: Path
) -> None:
    with run_server(settings, ui=True) as live:
        port = _port(live)
        files = {"files": ("x.txt", b"payload-from-evil", "text/plain")}
        for host, origin in ((f"evil.example:{port}", f"http://evil.example:{port}"), (None, EVIL)):
            headers = {"Origin": origin} | ({"Host": host} if host else {})
            answer = httpx.post(f"{live.url}/gradio_api/upload", headers=headers, files=files, timeout=60)
            assert answer.status_code == 403, answer.text
            assert "access-control-allow-origin" not in answer.headers
        # a cross-origin read of the page gets no CORS grant either
        page = httpx.get(f"{live.url}/config", headers={"Origin": EVIL}, timeout=60)
        assert "access-control-allow-origin" not in page.headers
        preflight = httpx.options(
            f"{live.url}/gradio_api/upload",
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 403 or "access-control-allow-origin" not in preflight.headers
        # the page itself may upload (same origin)
        same = httpx.post(
            f"{live.url}/gradio_api/upload", headers={"Origin": f"http://127.0.0.1:{port}"}, files=files
        )
        assert same.status_code == 200, same.text


def test_token_link_sets_a_cookie_and_the_sign_in_page_guards_the_ui(settings: Settings) -> None:
    guarded = settings.model_copy(update={"auth_token": SecretStr("s3cret-token")})
    with run_server(guarded, ui=True) as live, httpx.Client(base_url=live.url) as browser:
        page = browser.get("/", headers={"Accept": "text/html"})
        assert page.status_code == 401 and "token" in page.text.lower()
        assert browser.get("/api/models").json()["error"]["code"] == "unauthorized"
        assert browser.get("/api/health").status_code == 200
        link = browser.get("/?token=s3cret-token", headers={"Accept": "text/html"})
        assert link.status_code == 303 and link.headers["location"] == "/"
        assert "s3cret-token" not in link.headers["set-cookie"]  # the cookie holds a digest
        assert browser.get("/", headers={"Accept": "text/html"}).status_code == 200
        assert browser.get("/api/models").status_code == 200
        assert browser.get("/config").status_code == 200
    with run_server(guarded, ui=False) as live:
        assert httpx.get(f"{live.url}/api/models", params={"token": "wrong"}, timeout=60).status_code == 401
        bearer = {"Authorization": "Bearer s3cret-token"}
        assert httpx.get(f"{live.url}/api/models", headers=bearer, timeout=60).status_code == 200


def test_token_file_and_generation(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file\n")
    from_file, generated = resolve_token(Settings(auth_token_file=token_file), exposed=True)
    assert from_file.auth_token.get_secret_value() == "from-a-file" and not generated
    local, generated = resolve_token(Settings(), exposed=False)
    assert local.auth_token is None and not generated
    exposed, generated = resolve_token(Settings(), exposed=True)
    assert generated and len(exposed.auth_token.get_secret_value()) >= 32


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_app(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    log = log_path.open("w")
    return subprocess.Popen(
        [sys.executable, str(ROOT / "app.py"), "--no-ui", *args],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def _app_env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELMGR_", "HF_"))}
    return env | {
        "HF_HOME": str(settings.hf_home),
        "MODELMGR_HF_ENDPOINT": settings.hf_endpoint,
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "MODELMGR_RESUME_ON_START": "false",
        **extra,
    }


@pytest.mark.slow
def test_fresh_server_beyond_loopback_generates_a_token_and_never_logs_it(
    settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    log_path = tmp_path / "server.log"
    proc = _start_app(["--host", "0.0.0.0", "--port", str(port)], _app_env(settings), log_path)
    try:
        url = f"http://127.0.0.1:{port}"

        def token_line() -> str | None:
            return next((ln for ln in log_path.read_text().splitlines() if "?token=" in ln), None)

        line = wait_until(token_line, 60, "the open-URL line")
        token = line.split("?token=", 1)[1].strip()
        wait_until(lambda: _get(f"{url}/api/health") == 200, 60, "the server")
        assert _get(f"{url}/api/models") == 401
        assert _get(f"{url}/api/models?token={token}") == 200
        assert _get(f"{url}/api/models", {"Authorization": f"Bearer {token}"}) == 200
        time.sleep(0.5)  # let the access log line reach the file
    finally:
        _stop(proc)
    text = log_path.read_text()
    assert "GET /api/models?token=***" in text, text[-2000:]
    assert text.count(token) == 1, "the token appeared beyond the one open-URL line"


def test_token_from_the_environment_never_reaches_the_access_log(settings: Settings, tmp_path: Path) -> None:
    port = _free_port()
    log_path = tmp_path / "server.log"
    token = "env-token-123456789"
    proc = _start_app(["--port", str(port)], _app_env(settings, MODELMGR_AUTH_TOKEN=token), log_path)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _get(f"{url}/api/health") == 200, 60, "the server")
        assert _get(f"{url}/api/models?token={token}") == 200
        assert _get(f"{url}/api/models?x=1&token={token}&y=2") == 200
        time.sleep(0.5)
    finally:
        _stop(proc)
    logged = [ln for ln in log_path.read_text().splitlines() if " INFO " in ln or "HTTP/1.1" in ln]
    assert logged and not [ln for ln in logged if token in ln], logged


def _get(url: str, headers: dict | None = None) -> int:
    try:
        return httpx.get(url, headers=headers, timeout=5).status_code
    except httpx.TransportError:
        return 0


def test_status_routes_answer_200_while_a_first_preload_imports_torch(
    settings: Settings, tmp_path: Path
) -> None:
    """A fresh process, pollers every 20 ms, a first preload (torch and whisperx import)."""
    port = _free_port()
    log_path = tmp_path / "server.log"
    env = _app_env(settings, MODELMGR_NLTK_PUNKT_URL=settings.nltk_punkt_url,
                   MODELMGR_TORCH_MODELS_BASE_URL=settings.torch_models_base_url,
                   MODELMGR_TORCH_HOME=str(settings.torch_home))  # fmt: skip
    proc = _start_app(["--port", str(port)], env, log_path)
    url = f"http://127.0.0.1:{port}"
    answers: list[tuple[str, int]] = []
    try:
        wait_until(lambda: _get(f"{url}/api/health") == 200, 60, "the server")
        started = httpx.post(f"{url}/api/preload/start", json={"model": "tiny", "language": "zh"}, timeout=10)
        assert started.status_code == 202, started.text
        deadline = time.monotonic() + 240
        state = "downloading"
        with httpx.Client(timeout=10) as client:
            while state not in ("ready", "error") and time.monotonic() < deadline:
                for path in ("/api/preload/status", "/api/system"):
                    try:
                        response = client.get(f"{url}{path}")
                    except httpx.TransportError as exc:
                        raise AssertionError(f"{path}: {exc}\n{log_path.read_text()[-3000:]}") from None
                    answers.append((path, response.status_code))
                    if path == "/api/preload/status" and response.status_code == 200:
                        state = response.json()["state"]
                time.sleep(0.02)
    finally:
        _stop(proc)
    bad = [a for a in answers if a[1] != 200]
    assert not bad, f"{len(bad)} of {len(answers)} answers were not 200: {bad[:5]}"
    assert state == "ready", log_path.read_text()[-3000:]
