"""The OpenAI-compatible audio API, driven by the official `openai` package, unchanged.

Plus the fresh-process tests: a new `python app.py` with nothing imported or
preloaded, used with the API's defaults while two pollers hit the status pages
every 20 ms (a half-imported torch once made them answer 500).
"""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from openai import APIStatusError, AuthenticationError, NotFoundError, OpenAI
from pydantic import SecretStr

from modelmgr.core.settings import Settings
from tests.conftest import LiveServer, run_server, wait_until
from tests.fresh import Poller, fresh_server

TIMEOUT = 300
SRT_CUE = re.compile(r"^\d+\n\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}\n", re.M)


def client(url: str, key: str = "unused") -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key=key, timeout=TIMEOUT, max_retries=0)


def check_verbose_with_words(result) -> None:
    assert result.language == "zh" and result.duration == pytest.approx(3.0)
    assert result.text == "你好世界 hello world"
    assert [s.text for s in result.segments] == ["你好世界", "hello world"]
    assert all(s.start <= s.end for s in result.segments)
    assert result.words, "timed words for timestamp_granularities=['word']"
    starts = [w.start for w in result.words]
    assert starts == sorted(starts) and all(w.start <= w.end for w in result.words)
    assert "".join(w.word for w in result.words[:4]) == "你好世界"


def test_the_openai_client_works_unchanged(live_server: LiveServer, tiny) -> None:
    openai = client(live_server.url)
    with tiny.wav.open("rb") as f:
        verbose = openai.audio.transcriptions.create(
            model="tiny", file=f, response_format="verbose_json", timestamp_granularities=["word"]
        )
    check_verbose_with_words(verbose)
    with tiny.wav.open("rb") as f:
        srt = openai.audio.transcriptions.create(model="tiny", file=f, response_format="srt", language="zh")
    assert isinstance(srt, str) and len(SRT_CUE.findall(srt)) == 2 and "你好世界" in srt
    with tiny.wav.open("rb") as f:
        plain = openai.audio.transcriptions.create(model="Systran/faster-whisper-tiny", file=f)
    assert plain.text == "你好世界 hello world"
    with tiny.wav.open("rb") as f:
        text = openai.audio.transcriptions.create(model="tiny", file=f, response_format="text")
    assert text.strip() == "你好世界 hello world"
    with tiny.wav.open("rb") as f:
        vtt = openai.audio.translations.create(model="tiny", file=f, response_format="vtt")
    assert vtt.startswith("WEBVTT")
    models = [m.id for m in openai.models.list()]
    assert models == ["tiny"], "the downloaded Whisper models"


def test_streaming_gives_deltas_then_the_whole_text(live_server: LiveServer, tiny) -> None:
    with tiny.wav.open("rb") as f:
        stream = client(live_server.url).audio.transcriptions.create(
            model="tiny", file=f, language="zh", stream=True
        )
        events = list(stream)
    types = [e.type for e in events]
    assert types == ["transcript.text.delta", "transcript.text.delta", "transcript.text.done"], types
    assert [e.delta for e in events[:2]] == ["你好世界", " hello world"]
    assert events[-1].text == "你好世界 hello world"
    assert live_server.services.bus.subscriber_count == 0


def test_errors_come_in_openais_shape_and_the_token_is_the_api_key(settings: Settings, tiny) -> None:
    settings = settings.model_copy(update={"auth_token": SecretStr("s3cret")})
    with run_server(settings) as live:
        with tiny.wav.open("rb") as f, pytest.raises(AuthenticationError) as denied:
            client(live.url, "wrong").audio.transcriptions.create(model="tiny", file=f)
        assert denied.value.status_code == 401 and denied.value.body["code"] == "unauthorized"
        openai = client(live.url, "s3cret")
        with tiny.wav.open("rb") as f, pytest.raises(NotFoundError) as missing:
            openai.audio.transcriptions.create(model="no-such-model", file=f)
        assert missing.value.body["code"] == "model_not_found" and missing.value.body["type"]
        with tiny.wav.open("rb") as f, pytest.raises(APIStatusError) as bad:
            openai.audio.transcriptions.create(model="tiny", file=f, language="klingon")
        assert bad.value.status_code == 400 and bad.value.body["code"] == "unknown_language"
        assert openai.models.list().data == []
        assert live.services.transcriptions.jobs() == []


# --------------------------------------------------------------------------- fresh processes


def status_pollers(url: str, headers: dict[str, str] | None = None) -> Poller:
    return Poller([f"{url}/api/preload/status", f"{url}/api/system"], 0.02, headers or {})


@pytest.mark.slow
def test_fresh_server_transcribes_with_the_jobs_api_defaults(
    settings: Settings, tmp_path: Path, tiny
) -> None:
    with fresh_server(settings, tmp_path) as app, status_pollers(app.url) as pollers:
        with tiny.wav.open("rb") as f:  # every default except model and language
            created = httpx.post(
                f"{app.url}/api/transcriptions",
                files={"file": ("speech.wav", f, "audio/wav")},
                data={"model": "tiny", "language": "zh"},
                timeout=60,
            )
        assert created.status_code == 202, created.text
        job_url = f"{app.url}/api/transcriptions/{created.json()['id']}"
        done = wait_until(
            lambda: (
                (j := httpx.get(job_url, timeout=30).json())["status"] in ("done", "error", "cancelled") and j
            ),
            TIMEOUT,
            "the job to finish",
        )
        assert done["status"] == "done", f"{done['error']}\n{app.output()}"
        assert done["device"] == "cpu"
        srt = httpx.get(f"{job_url}/result?format=srt", timeout=30)
        assert srt.status_code == 200 and len(SRT_CUE.findall(srt.text)) == 2
    assert pollers.polls > 20 and pollers.failures == [], pollers.failures[:5]


@pytest.mark.slow
def test_fresh_server_serves_the_openai_client(settings: Settings, tmp_path: Path, tiny) -> None:
    with fresh_server(settings, tmp_path) as app, status_pollers(app.url) as pollers:
        with tiny.wav.open("rb") as f:
            verbose = client(app.url).audio.transcriptions.create(
                model="tiny", file=f, response_format="verbose_json", timestamp_granularities=["word"]
            )
        check_verbose_with_words(verbose)
    assert pollers.polls > 20 and pollers.failures == [], pollers.failures[:5]
