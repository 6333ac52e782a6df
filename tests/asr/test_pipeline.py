"""The transcription pipeline against tiny but real models, fully offline.

The models come from tests/tiny_models.py: a scripted CTranslate2 Whisper model
(always "你好世界" over 0-1 s and " hello world" over 1-2 s, language "zh"), a
random tiny wav2vec2 CTC aligner, and an empty-table nltk punkt_tab.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from modelmgr.asr.pipeline import (
    SAMPLE_RATE,
    AudioDecodeError,
    MissingNltkDataError,
    align,
    decode_audio,
    ensure_nltk_path,
    run_pipeline,
    transcribe,
    unaligned_transcript,
)
from modelmgr.asr.subtitles import Transcript, write_all
from tests import tiny_models

ROOT = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def tiny_world(tiny: tiny_models.TinyModels) -> tiny_models.TinyModels:
    """The session's tiny models (tests/conftest.py builds them once)."""
    return tiny


@pytest.fixture
def punkt(tiny_world: tiny_models.TinyModels, monkeypatch: pytest.MonkeyPatch) -> Path:
    """punkt_tab on nltk.data.path for one test only (other tests may test its absence)."""
    import nltk

    monkeypatch.setattr(nltk.data, "path", list(nltk.data.path))
    ensure_nltk_path(tiny_world.nltk_root)
    return tiny_world.nltk_root


@pytest.fixture(scope="session")
def whisper_model(tiny_world: tiny_models.TinyModels) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(tiny_world.whisper), device="cpu", compute_type="int8", cpu_threads=2)


@pytest.fixture(scope="session")
def aligners(tiny_world: tiny_models.TinyModels) -> dict[str, tuple[Any, dict]]:
    import whisperx

    return {
        lang: whisperx.load_align_model(lang, "cpu", model_name=str(tiny_world.wav2vec2))
        for lang in ("zh", "en")
    }


@pytest.fixture(scope="session")
def audio(tiny_world: tiny_models.TinyModels) -> np.ndarray:
    return decode_audio(tiny_world.wav)


@pytest.fixture
def no_nltk_download(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import nltk

    def refuse(*args: object, **kwargs: object) -> bool:
        raise AssertionError(f"nltk.download{args} called: tests must stay offline")

    monkeypatch.setattr(nltk, "download", refuse)
    yield


# --------------------------------------------------------------------------- helpers


def assert_well_formed(t: Transcript) -> None:
    """Times finite, inside [0, duration], end >= start, ordered; words inside their segment."""
    prev_start = 0.0
    for seg in t.segments:
        assert 0.0 <= seg.start <= seg.end <= t.duration + 1e-9, seg
        assert seg.start >= prev_start, "segments out of order"
        prev_start = seg.start
        assert seg.text == seg.text.strip() and seg.text
        prev_end = seg.start
        for w in seg.words:
            if w.start is None or w.end is None:
                continue
            assert math.isfinite(w.start) and math.isfinite(w.end)
            assert seg.start <= w.start <= w.end <= seg.end, (w, seg)
            assert w.start >= prev_end - 1e-9, "words overlap or go back in time"
            prev_end = w.end


_SRT_TIME = r"(\d{2,}):(\d{2}):(\d{2}),(\d{3})"


def parse_srt(text: str) -> list[tuple[int, float, float, str]]:
    cues = []
    for block in text.strip("\n").split("\n\n"):
        lines = block.split("\n")
        m = re.fullmatch(f"{_SRT_TIME} --> {_SRT_TIME}", lines[1])
        assert m, lines[1]
        h1, m1, s1, ms1, h2, m2, s2, ms2 = map(int, m.groups())
        start = h1 * 3600 + m1 * 60 + s1 + ms1 / 1000
        end = h2 * 3600 + m2 * 60 + s2 + ms2 / 1000
        cues.append((int(lines[0]), start, end, "\n".join(lines[2:])))
    return cues


# --------------------------------------------------------------------------- tiny models


def test_tiny_models_are_small_and_quick(tiny_world: tiny_models.TinyModels) -> None:
    whisper_bytes = sum(p.stat().st_size for p in tiny_world.whisper.iterdir())
    w2v_bytes = sum(p.stat().st_size for p in tiny_world.wav2vec2.iterdir())
    assert whisper_bytes < 8_000_000
    assert w2v_bytes < 1_000_000
    for name in ("model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"):
        assert (tiny_world.whisper / name).is_file(), name
    for name in ("config.json", "vocab.json", "preprocessor_config.json", "tokenizer_config.json"):
        assert (tiny_world.wav2vec2 / name).is_file(), name
    # Generation is ~2 s of work; the bound is loose for a loaded 2-core CI box.
    assert tiny_world.build_seconds < 60


def test_tiny_whisper_is_deterministic(tmp_path: Path, tiny_world: tiny_models.TinyModels) -> None:
    again = tiny_models.build_tiny_whisper(tmp_path / "again")
    for name in ("model.bin", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_world.whisper / name).read_bytes(), name


def test_tiny_whisper_transcribes_to_segments(whisper_model: Any, audio: np.ndarray) -> None:
    assert whisper_model.model.is_multilingual
    segments, language = transcribe(audio, whisper_model, language="zh")
    assert language == "zh"
    assert len(segments) >= 1
    expected = [(start, end, "".join(pieces)) for start, end, pieces in tiny_models.WHISPER_SEGMENTS]
    assert [(s["start"], s["end"], s["text"]) for s in segments] == expected
    duration = len(audio) / SAMPLE_RATE
    assert all(0 <= s["start"] <= s["end"] <= duration for s in segments)


def test_language_detection(whisper_model: Any, audio: np.ndarray) -> None:
    segments, language = transcribe(audio, whisper_model, language=None, beam_size=1)
    assert language == tiny_models.WHISPER_DETECTED_LANGUAGE
    assert segments


def test_transcribe_clamps_and_drops_blank_segments() -> None:
    """Odd engine output (past the end, reversed, NaN, blank) never reaches the aligner."""
    raw = [
        SimpleNamespace(start=2.5, end=9.0, text=" tail"),
        SimpleNamespace(start=0.0, end=0.5, text="   "),
        SimpleNamespace(start=float("nan"), end=0.4, text=" head"),
        SimpleNamespace(start=1.0, end=0.8, text=" reversed"),
    ]

    class FakeWhisper:
        def transcribe(self, audio: Any, **kwargs: Any) -> tuple[Iterator[Any], Any]:
            assert kwargs["language"] is None and kwargs["beam_size"] == 5
            return iter(raw), SimpleNamespace(language="de")

    segments, language = transcribe(np.zeros(3 * SAMPLE_RATE, np.float32), FakeWhisper(), language=None)
    assert language == "de"
    assert segments == [
        {"start": 0.0, "end": 0.4, "text": " head"},
        {"start": 1.0, "end": 1.0, "text": " reversed"},
        {"start": 2.5, "end": 3.0, "text": " tail"},
    ]


# --------------------------------------------------------------------------- alignment


@pytest.mark.usefixtures("punkt", "no_nltk_download")
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_align_gives_ordered_word_timestamps(
    lang: str, whisper_model: Any, aligners: dict, audio: np.ndarray
) -> None:
    segments, _ = transcribe(audio, whisper_model, language="zh")
    model, metadata = aligners[lang]
    t = align(segments, audio, model, metadata, device="cpu")
    assert t.language == lang
    assert t.duration == pytest.approx(len(audio) / SAMPLE_RATE)
    assert_well_formed(t)
    words = [w for seg in t.segments for w in seg.words]
    assert any(w.start is not None and w.end is not None for w in words)
    assert any(w.score is not None for w in words)
    text = "".join(w.text for w in words)
    assert "你好世界" in text and "hello" in text and "world" in text
    if lang == "zh":  # no spaces in zh: one "word" per character
        assert [w.text for w in t.segments[0].words] == ["你", "好", "世", "界"]
    else:
        assert [w.text for w in t.segments[-1].words] == ["hello", "world"]


@pytest.mark.usefixtures("punkt", "no_nltk_download")
def test_align_odd_segments_never_crash(aligners: dict, audio: np.ndarray) -> None:
    """Digits (not in the aligner vocabulary), segments past the end, reversed or NaN times."""
    model, metadata = aligners["en"]
    duration = len(audio) / SAMPLE_RATE
    segments = [
        {"start": 2.9, "end": 7.0, "text": " see you at 10"},
        {"start": 0.2, "end": 1.4, "text": " room 101, two. Next sentence 42 here"},
        {"start": 10.0, "end": 12.0, "text": " beyond the end"},
        {"start": 1.6, "end": 1.5, "text": " backwards"},
        {"start": float("nan"), "end": 0.1, "text": " nan"},
        {"start": 0.5, "end": 0.6, "text": "   "},
        {"start": 1.0, "end": 1.01, "text": " a very long text in a tiny window"},
    ]
    t = align(segments, audio, model, metadata, device="cpu")
    assert_well_formed(t)
    texts = " ".join(seg.text for seg in t.segments)
    for needle in ("10", "101", "42", "beyond the end", "backwards", "nan", "tiny window"):
        assert needle in texts
    for seg in t.segments:  # untimed words get interpolated times, never holes
        assert all(w.start is not None and w.end is not None for w in seg.words)
    assert all(seg.end <= duration for seg in t.segments)


@pytest.mark.usefixtures("punkt")
def test_align_survives_whisperx_errors_and_garbage(
    monkeypatch: pytest.MonkeyPatch, aligners: dict, audio: np.ndarray
) -> None:
    import whisperx.alignment

    def fake_align(transcript: list[dict], *args: Any, **kwargs: Any) -> dict:
        seg = transcript[0]
        assert kwargs["return_char_alignments"] is False
        if "boom" in seg["text"]:
            raise RuntimeError("whisperx edge case")
        return {
            "segments": [
                {
                    "start": float("nan"),
                    "end": seg["end"] + 5,  # overshoots the segment
                    "text": seg["text"],
                    "words": [
                        {"word": "late", "start": seg["end"] + 1, "end": seg["end"] + 2, "score": 0.5},
                        {"word": "early", "start": seg["start"] - 1, "end": seg["start"], "score": 0.4},
                        {"word": "untimed"},
                        {"word": "half", "start": seg["start"] + 0.1},
                        {"word": "rev", "start": seg["end"] - 0.1, "end": seg["start"], "score": 0.3},
                    ],
                }
            ],
            "word_segments": [],
        }

    monkeypatch.setattr(whisperx.alignment, "align", fake_align)
    model, metadata = aligners["en"]
    segments = [
        {"start": 1.0, "end": 2.0, "text": " late early untimed half rev"},
        {"start": 0.0, "end": 0.8, "text": " boom goes the aligner"},
    ]
    t = align(segments, audio, model, metadata, device="cpu")
    assert_well_formed(t)
    first, second = t.segments
    assert first.text == "boom goes the aligner"
    assert [w.text for w in first.words] == ["boom", "goes", "the", "aligner"]
    assert all(w.score is None for w in first.words)
    assert first.words[0].start == 0.0 and first.words[-1].end == 0.8
    assert [w.text for w in second.words] == ["late", "early", "untimed", "half", "rev"]
    assert (second.start, second.end) == (1.0, 2.0)
    assert all(w.start is not None for w in second.words)


@pytest.mark.usefixtures("punkt")
def test_align_reports_a_broken_aligner(
    monkeypatch: pytest.MonkeyPatch, aligners: dict, audio: np.ndarray
) -> None:
    """If every segment fails it is the model/device, not the text: raise, do not degrade silently."""
    import whisperx.alignment

    def broken(*args: Any, **kwargs: Any) -> dict:
        raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(whisperx.alignment, "align", broken)
    model, metadata = aligners["en"]
    segments = [{"start": 0.0, "end": 1.0, "text": " one"}, {"start": 1.0, "end": 2.0, "text": " two"}]
    with pytest.raises(RuntimeError, match="every segment.*same device"):
        align(segments, audio, model, metadata, device="cpu")


def test_align_without_punkt_fails_clearly_and_offline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, aligners: dict, audio: np.ndarray, no_nltk_download: None
) -> None:
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    model, metadata = aligners["en"]
    with pytest.raises(MissingNltkDataError, match="ensure_nltk_path"):
        align([{"start": 0.0, "end": 1.0, "text": " hi"}], audio, model, metadata, device="cpu")


def test_align_empty_needs_nothing() -> None:
    t = align([], np.zeros(SAMPLE_RATE, np.float32), None, {"language": "en"}, device="cpu")
    assert t == Transcript(language="en", duration=1.0, segments=())


def test_ensure_nltk_path_is_idempotent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import nltk

    monkeypatch.setattr(nltk.data, "path", ["/a", str(tmp_path), "/b"])
    ensure_nltk_path(tmp_path)
    ensure_nltk_path(tmp_path)
    assert nltk.data.path == [str(tmp_path), "/a", "/b"]


def test_unaligned_transcript_spreads_words() -> None:
    t = unaligned_transcript([{"start": 0.0, "end": 2.0, "text": " one two"}], "en", 3.0)
    assert [(w.text, w.start, w.end, w.score) for w in t.segments[0].words] == [
        ("one", 0.0, 1.0, None),
        ("two", 1.0, 2.0, None),
    ]


@pytest.mark.usefixtures("punkt", "no_nltk_download")
def test_align_with_torchaudio_english_bundle(
    tmp_path_factory: pytest.TempPathFactory, audio: np.ndarray
) -> None:
    """whisperx's default English aligner (a torchaudio bundle) from a tiny local checkpoint."""
    import whisperx

    model_dir = tmp_path_factory.mktemp("torch-hub")
    ckpt = tiny_models.build_tiny_torchaudio_bundle(model_dir / tiny_models.TORCHAUDIO_EN_FILE)
    assert ckpt.stat().st_size < 200_000
    model, metadata = whisperx.load_align_model("en", "cpu", model_dir=str(model_dir))
    assert metadata["type"] == "torchaudio"
    t = align([{"start": 0.0, "end": 2.0, "text": " hello world 42"}], audio, model, metadata, device="cpu")
    del model
    assert_well_formed(t)
    assert [w.text for w in t.segments[0].words] == ["hello", "world", "42"]
    assert all(w.start is not None for w in t.segments[0].words)


# --------------------------------------------------------------------------- pipeline


@pytest.mark.usefixtures("punkt", "no_nltk_download")
def test_run_pipeline_end_to_end_writes_valid_srt(
    tmp_path: Path, tiny_world: tiny_models.TinyModels, whisper_model: Any, aligners: dict
) -> None:
    stages: list[str] = []
    asked: list[str] = []

    def get_aligner(lang: str) -> tuple[Any, dict]:
        asked.append(lang)
        return aligners[lang]

    started = time.perf_counter()
    t = run_pipeline(
        tiny_world.wav,
        language=None,
        device="cpu",
        get_whisper=lambda: whisper_model,
        get_aligner=get_aligner,
        on_stage=stages.append,
    )
    elapsed = time.perf_counter() - started
    assert stages == ["decoding", "transcribing", "aligning", "done"]
    assert asked == ["zh"]  # the detected language picks the aligner
    assert t.language == "zh" and t.duration == pytest.approx(3.0)
    assert_well_formed(t)
    assert elapsed < 120

    paths = write_all(t, tmp_path, "speech")
    cues = parse_srt(paths["srt"].read_text(encoding="utf-8"))
    assert [c[0] for c in cues] == list(range(1, len(cues) + 1))
    assert [c[3] for c in cues] == ["你好世界", "hello world"]
    prev = 0.0
    for _n, start, end, _text in cues:
        assert 0.0 <= start <= end <= 3.0
        assert start >= prev
        prev = start
    vtt = paths["vtt"].read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT\n") and "你好世界" in vtt


@pytest.mark.usefixtures("punkt")
def test_run_pipeline_reports_the_transcribed_language(
    tiny_world: tiny_models.TinyModels, whisper_model: Any, aligners: dict
) -> None:
    """An aligner borrowed from another language does not relabel the transcript."""
    t = run_pipeline(
        tiny_world.wav,
        language="ja",
        device="cpu",
        get_whisper=lambda: whisper_model,
        get_aligner=lambda lang: aligners["zh"],
    )
    assert t.language == "ja"
    assert [w.text for w in t.segments[0].words] == ["你", "好", "世", "界"]


def test_run_pipeline_silence_skips_the_aligner(tiny_world: tiny_models.TinyModels) -> None:
    class SilentWhisper:
        def transcribe(self, audio: Any, **kwargs: Any) -> tuple[Iterator[Any], Any]:
            return iter(()), SimpleNamespace(language="fr")

    def no_aligner(lang: str) -> tuple[Any, dict]:
        raise AssertionError("aligner loaded for nothing")

    stages: list[str] = []
    t = run_pipeline(
        tiny_world.wav,
        language=None,
        device="cpu",
        get_whisper=SilentWhisper,
        get_aligner=no_aligner,
        on_stage=stages.append,
    )
    assert t.segments == () and t.language == "fr"
    assert stages == ["decoding", "transcribing", "done"]  # nothing to align: no aligning stage


def test_run_pipeline_bad_file_fails_while_decoding(tmp_path: Path) -> None:
    bad = tmp_path / "notes.mp3"
    bad.write_text("not audio at all", encoding="utf-8")
    stages: list[str] = []

    def never() -> Any:
        raise AssertionError("model loaded for an unreadable file")

    with pytest.raises(ValueError, match="notes.mp3"):
        run_pipeline(
            bad, language="en", device="cpu", get_whisper=never, get_aligner=never, on_stage=stages.append
        )
    assert stages == ["decoding"]


# --------------------------------------------------------------------------- decoding


def _encode(path: Path, fmt: str, codec: str, rate: int, seconds: float = 1.5) -> None:
    """Encode a stereo 440 Hz tone with PyAV (skip when this FFmpeg build lacks the encoder)."""
    import av

    try:
        av.codec.Codec(codec, "w")
    except Exception as exc:
        pytest.skip(f"PyAV has no {codec!r} encoder: {exc}")
    t = np.arange(int(rate * seconds)) / rate
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
    interleaved = np.stack([tone, tone], axis=1).reshape(1, -1)
    try:
        with av.open(str(path), "w", format=fmt) as out:
            stream = out.add_stream(codec, rate=rate, layout="stereo")
            frame = av.AudioFrame.from_ndarray(interleaved, format="s16", layout="stereo")
            frame.rate = rate
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except (av.error.FFmpegError, ValueError) as exc:
        pytest.skip(f"PyAV cannot encode {codec!r} into {fmt!r}: {exc}")


def test_decode_generated_wav(tiny_world: tiny_models.TinyModels) -> None:
    audio = decode_audio(tiny_world.wav)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 3 * SAMPLE_RATE
    assert 0.05 < float(np.abs(audio).max()) <= 1.0


@pytest.mark.parametrize(
    ("suffix", "fmt", "codec", "rate"),
    [
        ("wav", "wav", "pcm_s16le", 44100),
        ("flac", "flac", "flac", 44100),
        ("ogg", "ogg", "libvorbis", 44100),
        ("opus", "ogg", "libopus", 48000),
        ("mp3", "mp3", "libmp3lame", 44100),
        ("m4a", "ipod", "aac", 44100),
    ],
)
def test_decode_formats(tmp_path: Path, suffix: str, fmt: str, codec: str, rate: int) -> None:
    path = tmp_path / f"tone.{suffix}"
    _encode(path, fmt, codec, rate)
    audio = decode_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1  # stereo 44.1/48 kHz -> mono 16 kHz
    assert abs(len(audio) / SAMPLE_RATE - 1.5) < 0.1  # codecs add a little priming/padding
    assert 0.2 < float(np.abs(audio).max()) < 0.45


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("notes.wav", b"this is not a RIFF file" * 40),
        ("empty.mp3", b""),
        ("header-only.wav", None),
    ],
)
def test_decode_unreadable_raises_value_error(tmp_path: Path, name: str, content: bytes | None) -> None:
    path = tmp_path / name
    if content is None:  # a valid wav header with no samples
        import wave

        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match=re.escape(name)) as info:
        decode_audio(path)
    assert isinstance(info.value, AudioDecodeError)


def test_decode_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        decode_audio(tmp_path / "nope.wav")


def test_transcribe_module_import_is_light() -> None:
    """Importing the pipeline must not pay for torch/whisperx (tens of seconds here)."""
    code = (
        "import sys, modelmgr.asr.pipeline; "
        "heavy = {'torch', 'whisperx', 'faster_whisper', 'nltk', 'ctranslate2', 'numpy'} & set(sys.modules); "
        "sys.exit(', '.join(sorted(heavy)) or None)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_language_without_alignment_model_gives_segment_level_times(
    tiny_world: tiny_models.TinyModels, whisper_model: Any
) -> None:
    t = run_pipeline(
        tiny_world.wav,
        language="zh",
        device="cpu",
        get_whisper=lambda: whisper_model,
        get_aligner=lambda lang: None,  # e.g. Afrikaans: whisperx has no aligner for it
    )
    assert t.segments, "the transcript is kept, unaligned"
    assert_well_formed(t)
