"""Debian's nginx in front of the studio, for tests: the shipped site files, rendered for 127.0.0.1.

``render_site`` turns a file from ``deploy/nginx/`` into one that listens on test
ports and logs into a temporary folder. It substitutes exact strings and fails
when one is missing, so the shipped file cannot drift from what is tested.
``NginxProxy`` runs ``/usr/sbin/nginx`` in the foreground with Debian's own
``/etc/nginx/nginx.conf`` (paths moved into the temporary prefix), the way the
site is used after ``ln -s`` into ``sites-enabled``.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

NGINX = Path(os.environ.get("STUDIO_NGINX", "/usr/sbin/nginx"))
DEBIAN_CONF = Path("/etc/nginx/nginx.conf")
SITES = Path(__file__).resolve().parent.parent / "deploy" / "nginx"
SITE_FILES = (
    "whisperx-studio.conf",
    "whisperx-studio-tls.conf",
    "whisperx-studio-subpath.conf",
    "whisperx-studio-cluster.conf",
)
CLUSTER_SITE = "whisperx-studio-cluster.conf"
SKIP_REASON = f"Debian's nginx is not installed at {NGINX} (apt-get install -y nginx)"

# Used when /etc/nginx/nginx.conf is absent: the parts of Debian's that matter here.
_FALLBACK_MAIN = """
worker_processes 1;
pid /run/nginx.pid;
error_log /var/log/nginx/error.log;
events { worker_connections 768; }
http {
    sendfile on;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /var/log/nginx/access.log;
    gzip on;
    include /etc/nginx/sites-enabled/*;
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _substitute(text: str, pairs: list[tuple[str, str]], what: str) -> str:
    for old, new in pairs:
        assert old in text, f"{what} no longer contains {old!r}: update tests/nginx.py with it"
        text = text.replace(old, new)
    return text


def render_site(
    name: str,
    *,
    port: int,
    app_port: int,
    logs: Path,
    tls_port: int | None = None,
    cert: Path | None = None,
    key: Path | None = None,
    app_ports: list[int] | None = None,
) -> str:
    """The shipped site file with test ports and paths (IPv6 listens dropped: no ::1 in CI).

    The cluster site names its replicas ``web:7860`` (compose's service): ``app_ports`` lists the
    test replicas that replace it (``app_port`` alone when not given).
    """
    pairs = [("listen 80 default_server;", f"listen 127.0.0.1:{port} default_server;")]
    if name == CLUSTER_SITE:
        servers = " ".join(f"server 127.0.0.1:{p};" for p in app_ports or [app_port])
        pairs.append(("server web:7860;", servers))
    else:
        pairs += [
            ("listen [::]:80 default_server;", "# listen [::]:80 (not in tests)"),
            ("server 127.0.0.1:7860;", f"server 127.0.0.1:{app_port};"),
        ]
    pairs.append(("/var/log/nginx/", f"{logs}/"))
    if "ssl" in (SITES / name).read_text():
        assert tls_port and cert and key, "the TLS site needs a port, a certificate and a key"
        pairs += [
            (
                "listen 443 ssl http2 default_server;",
                f"listen 127.0.0.1:{tls_port} ssl http2 default_server;",
            ),  # noqa: E501
            ("listen [::]:443 ssl http2 default_server;", "# listen [::]:443 (not in tests)"),
            ("/etc/ssl/certs/whisperx-studio.pem", str(cert)),
            ("/etc/ssl/private/whisperx-studio.key", str(key)),
        ]
    return _substitute((SITES / name).read_text(), pairs, name)


def render_main(prefix: Path) -> str:
    """Debian's nginx.conf with its pid, logs, temp files and sites-enabled moved into ``prefix``."""
    text = DEBIAN_CONF.read_text() if DEBIAN_CONF.is_file() else _FALLBACK_MAIN
    text = re.sub(r"^\s*user\s+[^;]+;", "", text, flags=re.M)
    text = re.sub(r"^\s*include\s+/etc/nginx/conf\.d/[^;]*;", "", text, flags=re.M)
    text = re.sub(r"^\s*worker_processes\s+[^;]+;", "worker_processes 1;", text, flags=re.M)
    text = re.sub(r"/run/nginx\.pid", str(prefix / "nginx.pid"), text)
    text = re.sub(r"/var/log/nginx/", f"{prefix}/logs/", text)
    text = re.sub(r"/etc/nginx/sites-enabled/", f"{prefix}/sites-enabled/", text)
    temp = "".join(
        f"    {kind}_temp_path {prefix}/temp/{kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = text.replace("http {", "http {\n" + temp, 1)
    # Workers of a root master run as "nobody", who cannot enter pytest's 0700 folders.
    return ("user root;\n" if os.geteuid() == 0 else "") + text


@dataclass
class NginxProxy:
    """One nginx serving the given rendered sites from a temporary prefix."""

    prefix: Path
    sites: dict[str, str]
    process: subprocess.Popen | None = None

    @property
    def logs(self) -> Path:
        return self.prefix / "logs"

    @property
    def conf(self) -> Path:
        return self.prefix / "nginx.conf"

    def write(self) -> None:
        for sub in ("logs", "sites-enabled", "temp"):
            (self.prefix / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(render_main(self.prefix))
        for name, text in self.sites.items():
            (self.prefix / "sites-enabled" / name).write_text(text)

    def _command(self, *extra: str) -> list[str]:
        error_log = str(self.logs / "error.log")
        return [str(NGINX), "-p", str(self.prefix), "-c", str(self.conf), "-e", error_log, *extra]

    def test_config(self) -> subprocess.CompletedProcess:
        """``nginx -t``: syntax and semantics of the whole configuration (it opens no ports)."""
        self.write()
        return subprocess.run(self._command("-t"), capture_output=True, text=True, timeout=30)

    def start(self, *ports: int) -> None:
        checked = self.test_config()
        assert checked.returncode == 0, checked.stderr
        self.process = subprocess.Popen(
            self._command("-g", "daemon off;"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        for port in ports:
            while True:
                assert self.process.poll() is None, self.process.stdout.read().decode()  # type: ignore[union-attr]
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"nginx did not open port {port}"
                    time.sleep(0.05)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # fast shutdown: open streams are closed
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def access_log(self) -> str:
        path = self.logs / "whisperx-studio.access.log"
        return path.read_text() if path.exists() else ""


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made with the openssl CLI."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@dataclass
class Proxied:
    nginx: NginxProxy
    url: str  # http://127.0.0.1:<port> (or https:// for the TLS site)
    port: int
    cert: Path | None = None


@contextmanager
def run_nginx(prefix: Path, site: str, app_url: str, *replicas: str) -> Iterator[Proxied]:
    """Debian's nginx with one shipped ``site`` in front of the app at ``app_url``, on free ports.

    ``replicas``: more app URLs (the cluster site balances over all of them).
    """
    if not NGINX.exists():
        pytest.skip(SKIP_REASON)
    app_port = int(app_url.rsplit(":", 1)[1])
    app_ports = [app_port, *(int(url.rsplit(":", 1)[1]) for url in replicas)]
    prefix.mkdir(parents=True, exist_ok=True)
    port = free_port()
    tls_port = cert = key = None
    if "tls" in site:
        tls_port = free_port()
        cert, key = self_signed(prefix)
    text = render_site(
        site,
        port=port,
        app_port=app_port,
        logs=prefix / "logs",
        tls_port=tls_port,
        cert=cert,
        key=key,
        app_ports=app_ports,
    )
    nginx = NginxProxy(prefix, {site: text})
    nginx.start(*(p for p in (port, tls_port) if p))
    try:
        if tls_port:
            yield Proxied(nginx, f"https://127.0.0.1:{tls_port}", tls_port, cert)
        else:
            yield Proxied(nginx, f"http://127.0.0.1:{port}", port)
    finally:
        nginx.stop()
