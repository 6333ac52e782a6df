"""--share opens Gradio's tunnel to our own port, and a failed tunnel never stops the app."""

from __future__ import annotations

import logging
import socket

import pytest

from modelmgr.web import share


@pytest.fixture
def listening_port():
    server = socket.create_server(("127.0.0.1", 0))
    yield server.getsockname()[1]
    server.close()


def test_tunnel_failure_is_reported_in_words(monkeypatch, listening_port, caplog) -> None:
    from gradio import networking

    def offline(*args, **kwargs):
        raise RuntimeError("Could not get share link from Gradio API Server.")

    monkeypatch.setattr(networking, "setup_tunnel", offline)
    with caplog.at_level(logging.WARNING):
        assert share.open_share_link("127.0.0.1", listening_port) is None
    assert "keeps running locally" in caplog.text


def test_tunnel_targets_the_whole_local_port(monkeypatch, listening_port) -> None:
    from gradio import networking

    seen = {}

    def tunnel(host, port, token, address, certificate):
        seen.update(host=host, port=port, token=token)
        return "https://abc.gradio.live"

    monkeypatch.setattr(networking, "setup_tunnel", tunnel)
    assert share.open_share_link("0.0.0.0", listening_port) == "https://abc.gradio.live"
    assert seen["host"] == "127.0.0.1" and seen["port"] == listening_port and len(seen["token"]) > 20
