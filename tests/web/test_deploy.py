"""The shipped deploy/ files work as written: Debian's nginx in front of the real app.

Every site file passes ``nginx -t``; through the proxy on a non-default port the API,
the event stream and the UI answer, Gradio's file links keep the port, a token in the
query string never reaches nginx's access log, the TLS site speaks HTTP/2 with a
self-signed certificate, and the systemd unit starts the studio as written.
"""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from httpx_sse import connect_sse
from pydantic import SecretStr

from modelmgr.core.settings import Settings
from tests.conftest import run_server, wait_until
from tests.hub import FakeHub
from tests.nginx import NGINX, SITE_FILES, SKIP_REASON, NginxProxy, free_port, render_site, run_nginx

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "whisperx-studio.service"
TOKEN = "s3cret-token-never-logged"

needs_nginx = pytest.mark.skipif(not NGINX.exists(), reason=SKIP_REASON)


@needs_nginx
@pytest.mark.parametrize("site", SITE_FILES)
def test_nginx_accepts_each_shipped_site_in_debians_config(site: str, tmp_path: Path) -> None:
    cert = key = None
    if "tls" in site:
        from tests.nginx import self_signed

        cert, key = self_signed(tmp_path)
    text = render_site(
        site, port=18080, app_port=7860, logs=tmp_path / "logs", tls_port=18443, cert=cert, key=key
    )
    result = NginxProxy(tmp_path, {site: text}).test_config()
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr


@needs_nginx
@pytest.mark.parametrize("site", SITE_FILES)
def test_a_token_in_the_url_never_reaches_nginxs_error_log_when_the_app_is_down(
    site: str, tmp_path: Path
) -> None:
    """nginx's error log quotes the request line when the upstream fails; the sites keep tokens out."""
    stopped = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the studio is down
    with run_nginx(tmp_path / "nginx", site, stopped) as proxy:
        base = proxy.url + ("/studio" if "subpath" in site else "")
        verify = ssl.create_default_context(cafile=str(proxy.cert)) if proxy.cert else True
        with httpx.Client(timeout=30, verify=verify) as client:
            assert client.get(f"{base}/?token={TOKEN}").status_code == 502
            assert client.get(f"{base}/api/events?token={TOKEN}&x=1").status_code == 502
            assert client.post(f"{base}/api/models/tiny/download?token={TOKEN}", json={}).status_code == 502
            assert client.get(f"{base}/api/health").status_code == 502
        error_log = (proxy.nginx.logs / "error.log").read_text()
    assert TOKEN not in error_log and "token=" not in error_log, error_log
    assert "connect() failed" in error_log and "/api/health" in error_log, "other failures are still logged"


def _sse_events(client: httpx.Client, url: str, until: str, limit: int = 500) -> list:
    """Read events from ``url`` until one named ``until`` arrives."""
    seen = []
    with connect_sse(client, "GET", url) as source:
        assert source.response.status_code == 200, source.response.read()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        for event in source.iter_sse():
            seen.append(event)
            if event.event == until and (until != "model_progress" or _done(event)):
                return seen
            assert len(seen) < limit, [e.event for e in seen]
    raise AssertionError(f"the stream ended before {until!r}: {[e.event for e in seen]}")


def _done(event) -> bool:
    return json.loads(event.data)["status"] == "downloaded"


@needs_nginx
def test_api_and_event_stream_through_nginx_and_no_token_in_its_log(
    settings: Settings, hub: FakeHub, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"auth_token": SecretStr(TOKEN)})
    hub.set_throttle(2_000_000)  # a few progress events on the way
    with (
        run_server(settings) as live,
        run_nginx(tmp_path / "nginx", "whisperx-studio.conf", live.url) as proxy,
        httpx.Client(base_url=proxy.url, timeout=30) as client,
    ):
        assert client.get("/api/health").json() == {"status": "ok"}
        assert client.get("/api/models").status_code == 401
        assert client.get(f"/api/models?token={TOKEN}").status_code == 200
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert client.post("/api/models/tiny/download", json={}, headers=headers).status_code == 202
        # EventSource clients put the token in the query string: the stream works through nginx...
        events = _sse_events(client, f"/api/events?token={TOKEN}", until="model_progress")
        assert events[0].event == "snapshot"
        ids = [int(e.id) for e in events if e.id]
        assert ids == sorted(ids)
        assert any(json.loads(e.data)["status"] == "downloading" for e in events[1:])
        # ...and the access log has the request, without its query string.
        wait_until(lambda: "/api/events" in proxy.nginx.access_log(), 30, "nginx to log the stream")
        log = proxy.nginx.access_log()
    assert "GET /api/models HTTP/1.1" in log
    assert TOKEN not in log and "token=" not in log, log


@needs_nginx
def test_ui_and_gradio_file_links_keep_a_non_default_port(settings: Settings, tmp_path: Path) -> None:
    with (
        run_server(settings, ui=True) as live,
        run_nginx(tmp_path / "nginx", "whisperx-studio.conf", live.url) as proxy,
        httpx.Client(base_url=proxy.url, timeout=60) as client,
    ):
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()
        # Gradio builds every file link from "root": it must be the proxy's address, port included.
        config = client.get("/config").json()
        assert config["root"] == proxy.url, config["root"]
        uploaded = client.post(
            "/gradio_api/upload", files={"files": ("talk.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhi\n")}
        )
        assert uploaded.status_code == 200, uploaded.text
        link = f"{config['root']}/gradio_api/file={uploaded.json()[0]}"
        got = httpx.get(link, timeout=30)
        assert got.status_code == 200 and got.text.endswith("hi\n"), (link, got.status_code)


@needs_nginx
def test_tls_site_speaks_http2_with_a_self_signed_certificate(
    settings: Settings, hub: FakeHub, tmp_path: Path
) -> None:
    with (
        run_server(settings) as live,
        run_nginx(tmp_path / "nginx", "whisperx-studio-tls.conf", live.url) as proxy,
        httpx.Client(base_url=proxy.url, http2=True, verify=_trust(proxy.cert), timeout=30) as client,
    ):
        health = client.get("/api/health")
        assert health.http_version == "HTTP/2" and health.json() == {"status": "ok"}
        assert client.post("/api/models/tiny/download", json={}).status_code == 202
        events = _sse_events(client, "/api/events", until="model_progress")
        assert events[0].event == "snapshot"
        wait_until(lambda: "/api/health HTTP/2.0" in proxy.nginx.access_log(), 30, "the HTTP/2 log line")
        # Plain HTTP on the same site redirects to HTTPS.
        plain_port = int(
            next(
                line.split(":")[1].split()[0]
                for line in proxy.nginx.sites["whisperx-studio-tls.conf"].splitlines()
                if line.strip().startswith("listen 127.0.0.1:") and "ssl" not in line
            )
        )
        redirect = httpx.get(f"http://127.0.0.1:{plain_port}/api/health")
        assert redirect.status_code == 301
        assert redirect.headers["location"].startswith("https://127.0.0.1/api/health")


@needs_nginx
def test_subpath_site_serves_api_events_and_gradio_under_the_prefix(
    settings: Settings, hub: FakeHub, tiny, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"root_path": "/studio"})
    with (
        run_server(settings, ui=True) as live,
        run_nginx(tmp_path / "nginx", "whisperx-studio-subpath.conf", live.url) as proxy,
        httpx.Client(base_url=proxy.url, timeout=60) as client,
    ):
        assert client.get("/studio/api/health").json() == {"status": "ok"}
        assert client.get("/studio/api/nope").json()["error"]["code"] == "not_found"
        assert client.get("/studio").headers["location"].endswith("/studio/")
        assert _sse_events(client, "/studio/api/events", until="snapshot")[0].event == "snapshot"
        config = client.get("/studio/config").json()
        assert config["root"] == f"{proxy.url}/studio", config["root"]
        assert client.get("/studio/").status_code == 200
        assert client.get("/api/health").status_code == 404  # nothing of ours outside the prefix
        # A transcription job: its Location and result links carry the prefix and answer through nginx.
        form = {"model": "tiny", "language": "zh", "device": "cpu", "formats": "srt"}
        with tiny.wav.open("rb") as audio:
            submitted = client.post("/studio/api/transcriptions", data=form, files={"file": ("a.wav", audio)})
        assert submitted.status_code == 202, submitted.text
        location = submitted.headers["location"]
        assert location.startswith("/studio/api/transcriptions/")
        job = wait_until(
            lambda: (j := client.get(location).json())["status"] in ("done", "error", "cancelled") and j,
            240,
            "the job to finish",
        )
        assert job["status"] == "done", job
        srt = client.get(job["results"]["srt"])
        assert job["results"]["srt"].startswith("/studio/") and srt.status_code == 200 and "-->" in srt.text


def _trust(cert: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def _unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT)
    return parser


def test_systemd_unit_starts_the_studio_as_written(tmp_path: Path) -> None:
    """ExecStart (the installed console script) with the unit's environment, moved into tmp."""
    service = _unit()["Service"]
    install = "/opt/whisperx-studio"
    assert service["WorkingDirectory"] == install
    command = shlex.split(service["ExecStart"].replace(install, str(ROOT)))
    assert Path(command[0]).exists(), f"{command[0]}: the project is not installed (uv sync)"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELMGR_", "HF_"))}
    lines = Path(UNIT).read_text().splitlines()
    for line in lines:
        if line.startswith("Environment="):
            name, value = line.removeprefix("Environment=").split("=", 1)
            env[name] = value.replace("/var/lib/whisperx-studio", str(tmp_path))
    port = free_port()
    env |= {"MODELMGR_PORT": str(port), "HF_HUB_OFFLINE": "1", "MODELMGR_RESUME_ON_START": "false"}
    assert env["MODELMGR_HOST"] == "127.0.0.1"
    proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:

        def up() -> bool:
            assert proc.poll() is None, proc.stdout.read().decode()  # type: ignore[union-attr]
            try:
                return httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 120, "the studio to answer")
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 200  # UI included
    finally:
        proc.terminate()  # what systemd sends (KillSignal=SIGTERM)
        # uvicorn shuts down gracefully, then re-raises SIGTERM: systemd counts that as a clean stop.
        code = proc.wait(30)
        output = proc.stdout.read().decode()  # type: ignore[union-attr]
    assert code in (0, -15), output
    assert "Application shutdown complete" in output, output
    if shutil.which("systemd-analyze"):
        rendered = tmp_path / "whisperx-studio.service"
        rendered.write_text(Path(UNIT).read_text().replace(install, str(ROOT)))
        check = subprocess.run(
            ["systemd-analyze", "verify", str(rendered)], capture_output=True, text=True, timeout=60
        )
        # Outside a booted systemd it cannot check users; everything else it reports is ours.
        problems = [
            line
            for line in (check.stdout + check.stderr).splitlines()
            if "whisperx-studio.service" in line and "User" not in line and "Group" not in line
        ]
        assert not problems, check.stdout + check.stderr


@needs_nginx
def test_subpath_with_a_token_keeps_the_prefix_in_sign_in_redirects_and_errors(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"root_path": "/studio", "auth_token": SecretStr(TOKEN)})
    with (
        run_server(settings) as live,
        run_nginx(tmp_path / "nginx", "whisperx-studio-subpath.conf", live.url) as proxy,
        httpx.Client(base_url=proxy.url, timeout=30) as client,
    ):
        assert client.get("/studio/api/health").json() == {"status": "ok"}  # public
        refused = client.get("/studio/api/models")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
        opened = client.get(f"/studio/?token={TOKEN}", headers={"Accept": "text/html"})
        assert opened.status_code == 303 and opened.headers["location"] == "/studio/", opened.headers
        assert client.get("/studio/api/models").status_code == 200  # the session cookie works
        log = proxy.nginx.access_log()
    assert TOKEN not in log
