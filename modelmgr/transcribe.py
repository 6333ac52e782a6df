"""Transcription pipeline: decode -> faster-whisper -> whisperx alignment -> Transcript.

torch, whisperx, faster_whisper and nltk are imported inside the functions:
importing this module must stay cheap (the UI imports it at start-up, and the
heavy imports take tens of seconds on a small CPU box).  The pipeline never
loads or downloads models itself; the model manager hands them in.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmgr.subtitles import Segment, Transcript, Word

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "AudioDecodeError",
    "MissingNltkDataError",
    "align",
    "decode_audio",
    "ensure_nltk_path",
    "run_pipeline",
    "transcribe",
    "unaligned_transcript",
]

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
# whisperx.alignment.LANGUAGES_WITHOUT_SPACES: words are single characters there.
_NO_SPACE_LANGUAGES = frozenset({"ja", "zh"})
_PUNKT_RESOURCE = "tokenizers/punkt_tab/english/"


class AudioDecodeError(ValueError):
    """The file could not be decoded as audio (missing, corrupt, no audio stream, empty)."""


class MissingNltkDataError(LookupError):
    """nltk's punkt_tab tables are not on nltk.data.path (whisperx would try to download them)."""


# --------------------------------------------------------------------------- audio


def decode_audio(path: str | Path) -> np.ndarray:
    """Decode any PyAV-readable file to 16 kHz mono float32 (no ffmpeg binary needed)."""
    path = Path(path)
    if not path.is_file():
        raise AudioDecodeError(f"cannot read audio file {path.name!r}: file not found")
    from faster_whisper.audio import decode_audio as fw_decode_audio

    try:
        audio = fw_decode_audio(str(path), sampling_rate=SAMPLE_RATE)
    except Exception as exc:  # PyAV raises a zoo of error types (av.error.*, OSError, ...)
        raise AudioDecodeError(
            f"cannot read audio file {path.name!r}: not a supported audio/video file ({exc})"
        ) from exc
    if audio.ndim != 1 or audio.size == 0:
        raise AudioDecodeError(f"cannot read audio file {path.name!r}: it contains no audio")
    return audio


def _duration(audio: Any) -> float:
    return float(len(audio)) / SAMPLE_RATE


def _finite(value: Any) -> float | None:
    """float(value) if it is a real number, else None (whisperx mixes None, NaN and numpy)."""
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _clamp(value: float, lo: float, hi: float) -> float:
    return min(max(value, lo), hi)


# --------------------------------------------------------------------------- whisper


def transcribe(
    audio: Any,
    whisper_model: Any,
    *,
    language: str | None,
    beam_size: int = 5,
    vad_filter: bool = False,
) -> tuple[list[dict], str]:
    """Run a faster-whisper `WhisperModel`; return whisperx-style segments and the language.

    Segments are {"start", "end", "text"}, sorted, clamped to the audio and
    with blank texts dropped (they would become empty subtitle cues).  The
    language is `language` if given, else the one Whisper detected.
    """
    duration = _duration(audio)
    raw_segments, info = whisper_model.transcribe(
        audio, language=language, beam_size=beam_size, vad_filter=vad_filter
    )
    segments: list[dict] = []
    for seg in raw_segments:  # a generator: decoding happens while iterating
        text = seg.text
        if not text or not text.strip():
            continue
        start = _clamp(_finite(seg.start) or 0.0, 0.0, duration)
        end = _clamp(_finite(seg.end) or start, start, duration)
        segments.append({"start": round(start, 3), "end": round(end, 3), "text": text})
    segments.sort(key=lambda s: (s["start"], s["end"]))
    return segments, language or info.language


# --------------------------------------------------------------------------- nltk


def ensure_nltk_path(nltk_dir: Path) -> None:
    """Put `nltk_dir` first on nltk.data.path (idempotent).

    whisperx.align loads punkt and, if it is missing, calls nltk.download(), which
    fails or hangs offline; the model manager ships the data in `nltk_dir`.
    """
    import nltk

    entry = str(Path(nltk_dir))
    paths = nltk.data.path
    while entry in paths:
        paths.remove(entry)
    paths.insert(0, entry)


def _check_punkt() -> None:
    import nltk

    try:
        nltk.data.find(_PUNKT_RESOURCE)
    except LookupError as exc:
        raise MissingNltkDataError(
            "nltk 'punkt_tab' data not found; the model manager must provide it and call "
            "ensure_nltk_path() before aligning (whisperx would otherwise try to download it)"
        ) from exc


# --------------------------------------------------------------------------- alignment


def _split_words(text: str, language: str) -> list[str]:
    if language in _NO_SPACE_LANGUAGES:
        return [ch for ch in text if not ch.isspace()]
    return text.split()


def _fill_word_times(
    words: Sequence[tuple[str, float | None, float | None, float | None]],
    seg_start: float,
    seg_end: float,
) -> tuple[Word, ...]:
    """Clamp word times into the segment, make them monotonic, interpolate missing ones.

    Untimed words (e.g. digits the aligner's vocabulary lacks, or a failed
    alignment) share the gap between their timed neighbours evenly and keep
    score None, so karaoke-style highlighting never sees a hole or a jump back.
    """
    spans: list[tuple[float, float] | None] = []
    for _text, start, end, _score in words:
        if start is None or end is None:
            spans.append(None)
            continue
        s = _clamp(start, seg_start, seg_end)
        spans.append((s, _clamp(end, s, seg_end)))
    n = len(spans)
    i = 0
    while i < n:
        if spans[i] is not None:
            i += 1
            continue
        j = i
        while j < n and spans[j] is None:
            j += 1
        prev_span = spans[i - 1] if i > 0 else None
        next_span = spans[j] if j < n else None
        lo = prev_span[1] if prev_span is not None else seg_start
        hi = max(lo, next_span[0] if next_span is not None else seg_end)
        step = (hi - lo) / (j - i)
        for k in range(i, j):
            spans[k] = (lo + step * (k - i), lo + step * (k - i + 1))
        i = j
    result = []
    prev_end = seg_start
    for (text, _s, _e, score), span in zip(words, spans, strict=True):
        assert span is not None
        s = round(max(span[0], prev_end), 3)
        e = round(max(span[1], s), 3)
        prev_end = e
        result.append(Word(text=text, start=s, end=e, score=score))
    return tuple(result)


def _segment_from_words(
    text: str,
    raw_words: Sequence[tuple[str, float | None, float | None, float | None]],
    start: float | None,
    end: float | None,
    bounds: tuple[float, float],
) -> Segment:
    lo, hi = bounds
    timed = [t for w in raw_words for t in (w[1], w[2]) if t is not None]
    s = start if start is not None else (min(timed) if timed else lo)
    e = end if end is not None else (max(timed) if timed else hi)
    s = round(_clamp(s, lo, hi), 3)
    e = round(_clamp(e, s, hi), 3)
    return Segment(start=s, end=e, text=text.strip(), words=_fill_word_times(raw_words, s, e))


def _unaligned_segment(seg: dict, language: str, bounds: tuple[float, float]) -> Segment:
    raw = [(w, None, None, None) for w in _split_words(seg["text"], language)]
    return _segment_from_words(seg["text"], raw, _finite(seg.get("start")), _finite(seg.get("end")), bounds)


def unaligned_transcript(segments: list[dict], language: str, duration: float) -> Transcript:
    """A Transcript from Whisper segments alone (words evenly spread, score None).

    For callers that have no aligner for a language but still want subtitles.
    """
    out = [_unaligned_segment(seg, language, (0.0, duration)) for seg in segments]
    return _finish(out, language, duration)


def _finish(segments: list[Segment], language: str, duration: float) -> Transcript:
    ordered = sorted((s for s in segments if s.text), key=lambda s: (s.start, s.end))
    return Transcript(language=language, duration=round(duration, 3), segments=tuple(ordered))


def align(
    segments: list[dict],
    audio: Any,
    align_model: Any,
    align_metadata: dict,
    *,
    device: str,
) -> Transcript:
    """Word-align Whisper segments with whisperx; never fails on odd aligner output.

    Segments are aligned one at a time so one bad segment (whisperx raising, or
    returning NaN/None times) only loses its word timings, not the transcript.
    If *every* segment raises, the model or device is broken rather than the
    text, and a RuntimeError says so instead of silently returning untimed words;
    out-of-memory errors always propagate.  whisperx may split a segment into
    sentences; all results are clamped to the original segment's bounds and to
    [0, duration], and sorted by time.  Transcript.language is the aligner's.
    """
    import numpy as np
    import torch
    from whisperx.alignment import align as wx_align

    language = str(align_metadata.get("language") or "")
    duration = _duration(audio)
    if not segments:
        return _finish([], language, duration)
    _check_punkt()
    audio = np.ascontiguousarray(audio, dtype=np.float32)

    out: list[Segment] = []
    attempted = 0
    errors: list[Exception] = []
    for seg in segments:
        start = _clamp(_finite(seg.get("start")) or 0.0, 0.0, duration)
        end = _clamp(_finite(seg.get("end")) or start, start, duration)
        clean = {"start": start, "end": end, "text": str(seg.get("text") or "")}
        if not clean["text"].strip():
            continue
        bounds = (start, end)
        attempted += 1
        try:
            result = wx_align(
                [clean],
                align_model,
                align_metadata,
                audio,
                device,
                return_char_alignments=False,
            )
            aligned = result.get("segments") or []
        except (MemoryError, torch.OutOfMemoryError):
            raise  # not a property of this segment: let the caller free memory or retry
        except Exception as exc:  # an edge case of this segment: keep its text, untimed
            log.warning(
                "alignment failed for segment %r; keeping it unaligned", clean["text"][:80], exc_info=True
            )
            errors.append(exc)
            aligned = []
        produced = False
        for sub in aligned:
            text = str(sub.get("text") or "")
            if not text.strip():
                continue
            raw_words = [
                (
                    str(w.get("word", "")),
                    _finite(w.get("start")),
                    _finite(w.get("end")),
                    _finite(w.get("score")),
                )
                for w in sub.get("words") or []
                if str(w.get("word", "")).strip()
            ]
            if not raw_words:
                raw_words = [(w, None, None, None) for w in _split_words(text, language)]
            out.append(
                _segment_from_words(
                    text, raw_words, _finite(sub.get("start")), _finite(sub.get("end")), bounds
                )
            )
            produced = True
        if not produced:
            out.append(_unaligned_segment(clean, language, bounds))
    if errors and len(errors) == attempted:
        # Every segment raised: a broken model or device, not an odd segment. Say so.
        raise RuntimeError(f"alignment failed for every segment: {errors[0]}") from errors[0]
    return _finish(out, language, duration)


# --------------------------------------------------------------------------- pipeline


def run_pipeline(
    audio_path: str | Path,
    *,
    language: str | None,
    device: str,
    get_whisper: Callable[[], Any],
    get_aligner: Callable[[str], tuple[Any, dict] | None],
    on_stage: Callable[[str], None] | None = None,
) -> Transcript:
    """decode -> transcribe -> align; reports "decoding", "transcribing", "aligning", "done".

    The aligner is requested for the language actually used (given or
    detected), and only when there is something to align, so silence never
    costs an aligner load.
    """

    def stage(name: str) -> None:
        if on_stage is not None:
            on_stage(name)

    stage("decoding")
    audio = decode_audio(audio_path)
    stage("transcribing")
    segments, used_language = transcribe(audio, get_whisper(), language=language)
    stage("aligning")
    aligner = get_aligner(used_language) if segments else None
    if segments and aligner is None:
        # whisperx has no alignment model for this language: segment-level times only.
        transcript = unaligned_transcript(segments, used_language, _duration(audio))
    elif aligner is not None:
        align_model, align_metadata = aligner
        if not align_metadata.get("language"):
            align_metadata = {**align_metadata, "language": used_language}
        transcript = align(segments, audio, align_model, align_metadata, device=device)
        # The aligner may serve a related language (e.g. a "zh" model for "yue"); the
        # transcript reports the language Whisper transcribed.
        transcript = dataclasses.replace(transcript, language=used_language)
    else:
        transcript = _finish([], used_language, _duration(audio))
    stage("done")
    return transcript
