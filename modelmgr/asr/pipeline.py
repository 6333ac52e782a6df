"""Transcription pipeline: decode -> faster-whisper -> whisperx alignment -> (diarization) -> Transcript.

torch, whisperx, faster_whisper and nltk are imported inside the functions:
importing this module must stay cheap (the UI imports it at start-up, and the
heavy imports take tens of seconds on a small CPU box).  The pipeline never
loads or downloads models itself; the model manager hands them in.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelmgr.asr.diarize import SpeakerCounts, assign_speakers, diarize
from modelmgr.asr.subtitles import Segment, Transcript, Word
from modelmgr.core.errors import AlignUnavailable, Cancelled

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "AudioDecodeError",
    "MissingNltkDataError",
    "Options",
    "align",
    "decode_audio",
    "detect_language",
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


@dataclass(frozen=True)
class Options:
    """How to transcribe; every field concrete (the manager resolves "auto" before this)."""

    language: str | None = None  # None: detect
    task: Literal["transcribe", "translate"] = "transcribe"
    word_timestamps: bool = True  # whisperx alignment (faster-whisper's own timings for translate)
    vad: bool = False  # Silero VAD filter (always on in the batched path)
    batch_size: int = 1  # > 1: faster-whisper's BatchedInferencePipeline
    initial_prompt: str | None = None
    temperature: float | None = None  # None: faster-whisper's fallback ladder
    beam_size: int = 5
    condition_on_previous_text: bool = True  # faster-whisper's default (whisperx turns it off)


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
    task: str = "transcribe",
    batch_size: int = 1,
    initial_prompt: str | None = None,
    temperature: float | None = None,
    word_timestamps: bool = False,
    condition_on_previous_text: bool = True,
    on_progress: Callable[[float], None] | None = None,
    on_segment: Callable[[dict], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[list[dict], str]:
    """Run a faster-whisper `WhisperModel`; return whisperx-style segments and the language.

    Segments are {"start", "end", "text", ...stats}, sorted, clamped to the audio and
    with blank texts dropped (they would become empty subtitle cues).  The
    language is `language` if given, else the one Whisper detected.  With
    ``batch_size > 1`` faster-whisper's BatchedInferencePipeline runs (its bundled
    Silero VAD cuts the audio into chunks decoded in batches, as WhisperX does).
    ``on_progress`` hears the percent of audio time done; ``cancel`` stops between segments.
    """
    duration = _duration(audio)
    kwargs: dict[str, Any] = {
        "language": language,
        "beam_size": beam_size,
        "task": task,
        "initial_prompt": initial_prompt or None,
        "word_timestamps": word_timestamps,
        "condition_on_previous_text": condition_on_previous_text,
    }
    if temperature is not None:
        kwargs["temperature"] = temperature
    if batch_size > 1:
        from faster_whisper import BatchedInferencePipeline

        raw_segments, info = BatchedInferencePipeline(whisper_model).transcribe(
            audio, batch_size=batch_size, **kwargs
        )
    else:
        raw_segments, info = whisper_model.transcribe(audio, vad_filter=vad_filter, **kwargs)
    segments: list[dict] = []
    for seg in raw_segments:  # a generator: decoding happens while iterating
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        end_seen = _finite(seg.end)
        if on_progress is not None and end_seen is not None and duration > 0:
            on_progress(_clamp(100.0 * end_seen / duration, 0.0, 100.0))
        text = seg.text
        if not text or not text.strip():
            continue
        start = _clamp(_finite(seg.start) or 0.0, 0.0, duration)
        end = _clamp(_finite(seg.end) or start, start, duration)
        out = {"start": round(start, 3), "end": round(end, 3), "text": text}
        for key in ("avg_logprob", "no_speech_prob", "compression_ratio", "temperature"):
            value = _finite(getattr(seg, key, None))
            if value is not None:
                out[key] = value
        if word_timestamps and getattr(seg, "words", None):
            out["words"] = [
                {
                    "word": w.word,
                    "start": _finite(w.start),
                    "end": _finite(w.end),
                    "score": _finite(w.probability),
                }
                for w in seg.words
            ]
        segments.append(out)
        if on_segment is not None:
            on_segment(out)
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


RawWord = tuple[str, float | None, float | None, float | None]  # text, start, end, score


def _fill_word_times(
    words: Sequence[RawWord],
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


_STATS = ("avg_logprob", "no_speech_prob", "compression_ratio", "temperature")


def _with_stats(segment: Segment, source: dict) -> Segment:
    """Carry Whisper's per-segment statistics (for verbose JSON) onto a built segment."""
    stats = {k: source[k] for k in _STATS if source.get(k) is not None}
    return dataclasses.replace(segment, **stats) if stats else segment


_SENTENCE_END = (".", "?", "!", "。", "？", "！")


def _sentences(raw: list[RawWord]) -> list[list[RawWord]]:
    """Words grouped into sentences (a word ending in . ? ! closes one), as whisperx.align splits."""
    groups: list[list[RawWord]] = [[]]
    for word in raw:
        groups[-1].append(word)
        if word[0].rstrip("\"')]»”").endswith(_SENTENCE_END):
            groups.append([])
    return [g for g in groups if g]


def _unaligned_segments(seg: dict, language: str, bounds: tuple[float, float]) -> list[Segment]:
    """A Whisper segment as subtitle segments, without an aligner.

    With faster-whisper's own word times (translation, or no aligner could be had) it is
    split into sentences timed by their words, as whisperx.align does with an aligner's:
    a batched segment is a whole VAD chunk, up to 30 s across pauses, which would make a
    cue that stays on screen through the silence. Without word times the words are spread
    evenly over the segment.
    """
    if not seg.get("words"):
        raw = [(w, None, None, None) for w in _split_words(seg["text"], language)]
        built = _segment_from_words(
            seg["text"], raw, _finite(seg.get("start")), _finite(seg.get("end")), bounds
        )
        return [_with_stats(built, seg)]
    raw = [(w["word"].strip(), _finite(w.get("start")), _finite(w.get("end")), _finite(w.get("score")))
           for w in seg["words"]]  # fmt: skip
    raw = [w for w in raw if w[0]]
    lo = _clamp(_finite(seg.get("start")) or bounds[0], *bounds)
    hi = _clamp(_finite(seg.get("end")) or bounds[1], lo, bounds[1])
    joiner = "" if language in _NO_SPACE_LANGUAGES else " "
    return [
        _with_stats(_segment_from_words(joiner.join(w[0] for w in group), group, None, None, (lo, hi)), seg)
        for group in _sentences(raw)
    ]


def _plain_segment(seg: dict, bounds: tuple[float, float]) -> Segment:
    """Segment-level timing only (word timestamps not wanted)."""
    lo, hi = bounds
    s = round(_clamp(_finite(seg.get("start")) or lo, lo, hi), 3)
    e = round(_clamp(_finite(seg.get("end")) or s, s, hi), 3)
    return _with_stats(Segment(start=s, end=e, text=str(seg.get("text") or "").strip()), seg)


def unaligned_transcript(segments: list[dict], language: str, duration: float) -> Transcript:
    """A Transcript from Whisper segments alone (words evenly spread, score None).

    For callers that have no aligner for a language but still want subtitles.
    """
    out = [part for seg in segments for part in _unaligned_segments(seg, language, (0.0, duration))]
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
                _with_stats(
                    _segment_from_words(
                        text, raw_words, _finite(sub.get("start")), _finite(sub.get("end")), bounds
                    ),
                    seg,
                )
            )
            produced = True
        if not produced:
            out.extend(_unaligned_segments(clean, language, bounds))
    if errors and len(errors) == attempted:
        # Every segment raised: a broken model or device, not an odd segment. Say so.
        raise RuntimeError(f"alignment failed for every segment: {errors[0]}") from errors[0]
    return _finish(out, language, duration)


# --------------------------------------------------------------------------- pipeline


def detect_language(audio: Any, whisper_model: Any, *, vad_filter: bool = False) -> str | None:
    """The language Whisper hears in the first 30 s (what ``transcribe`` would detect itself).

    English-only models answer "en" without looking. None when the model cannot tell
    apart from transcribing (a stand-in without ``detect_language``).
    """
    inner = getattr(whisper_model, "model", None)
    if inner is not None and getattr(inner, "is_multilingual", True) is False:
        return "en"
    detect = getattr(whisper_model, "detect_language", None)
    if detect is None:
        return None
    language, _probability, _all = detect(audio, vad_filter=vad_filter)
    return str(language)


def _aligner_or_fallback(
    get_aligner: Callable[[str], tuple[Any, dict] | None],
    language: str,
    on_warning: Callable[[str], None] | None,
) -> tuple[Any, dict] | None:
    """The aligner, or None (then Whisper times the words); a missing one is a warning, not a failure."""
    try:
        return get_aligner(language)
    except AlignUnavailable as exc:
        log.warning("word times from Whisper instead of an aligner: %s", exc.message)
        if on_warning is not None:
            on_warning(exc.message)
        return None


def run_pipeline(
    audio_path: str | Path | Any,
    *,
    language: str | None,
    device: str,
    get_whisper: Callable[[], Any],
    get_aligner: Callable[[str], tuple[Any, dict] | None],
    on_stage: Callable[[str], None] | None = None,
    options: Options | None = None,
    on_progress: Callable[[float], None] | None = None,
    on_segment: Callable[[dict], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    cancel: threading.Event | None = None,
    get_diarizer: Callable[[], Any] | None = None,
    speakers: SpeakerCounts | None = None,
) -> Transcript:
    """decode -> (aligner) -> transcribe -> align -> (diarize); reports "decoding", "transcribing",
    "aligning", "diarizing", "done".

    ``audio_path`` may also be an already decoded 16 kHz float32 array.

    Word times (``options.word_timestamps``) come from a wav2vec2 aligner when one can
    be had for the language (given, or detected first so it is detected once), else from
    faster-whisper's own cross-attention timings. The aligner is asked for *before*
    decoding speech, because Whisper must know whether to time the words itself.
    ``get_aligner`` returns None when no aligner exists for the language and raises
    AlignUnavailable when one exists but cannot be had (download or load failed); both
    fall back to Whisper's timings, the second with a warning (``on_warning``). Without
    word timestamps no aligner is asked for at all. Translations are always timed by
    Whisper: a wav2vec2 aligner of the spoken language cannot align English text.
    ``Transcript.alignment`` says which of "wav2vec2", "whisper" or "none" timed the words.
    With ``get_diarizer`` (a loaded pyannote pipeline), the decoded audio is diarized last and
    every segment and timed word gets its ``speaker`` (``speakers``: pyannote's count hints).
    """
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be resolved to cpu or cuda before the pipeline runs, not {device!r}")
    opts = options or Options(language=language)
    if options is not None and language is not None and options.language is None:
        opts = dataclasses.replace(options, language=language)

    def stage(name: str) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        if on_stage is not None:
            on_stage(name)

    stage("decoding")
    audio = audio_path if not isinstance(audio_path, (str, Path)) else decode_audio(audio_path)
    whisper = get_whisper()
    translating = opts.task == "translate"
    language = opts.language
    aligner = None
    asked = False  # the aligner was asked for (do not ask twice)
    if opts.word_timestamps and not translating:
        language = language or detect_language(audio, whisper, vad_filter=opts.vad)
        if language is not None:
            aligner, asked = _aligner_or_fallback(get_aligner, language, on_warning), True
    stage("transcribing")
    segments, used_language = transcribe(
        audio,
        whisper,
        language=language,
        beam_size=opts.beam_size,
        vad_filter=opts.vad,
        task=opts.task,
        batch_size=opts.batch_size,
        initial_prompt=opts.initial_prompt,
        temperature=opts.temperature,
        condition_on_previous_text=opts.condition_on_previous_text,
        word_timestamps=opts.word_timestamps and aligner is None,
        on_progress=on_progress,
        on_segment=on_segment,
        cancel=cancel,
    )
    duration = _duration(audio)
    text_language = "en" if translating else used_language

    def speakers_of(transcript: Transcript) -> Transcript:
        if get_diarizer is None or not transcript.segments:
            return transcript
        stage("diarizing")
        counts = speakers or SpeakerCounts()
        turns = diarize(get_diarizer(), audio, counts, on_progress=on_progress, cancel=cancel)
        return assign_speakers(transcript, turns)

    if not opts.word_timestamps:
        transcript = _finish(
            [_plain_segment(seg, (0.0, duration)) for seg in segments], text_language, duration
        )
        transcript = speakers_of(transcript)
        stage("done")
        return dataclasses.replace(transcript, language=used_language)
    if segments and not asked and not translating:  # the language was only known after decoding
        aligner = _aligner_or_fallback(get_aligner, used_language, on_warning)
    if aligner is not None and segments:
        stage("aligning")
        align_model, align_metadata = aligner
        if not align_metadata.get("language"):
            align_metadata = {**align_metadata, "language": used_language}
        transcript = align(segments, audio, align_model, align_metadata, device=device)
        method = "wav2vec2"
    else:
        # No wav2vec2 aligner for this text: Whisper's own word times (evenly spread if it gave none).
        transcript = unaligned_transcript(segments, text_language, duration)
        method = "whisper" if any(seg.get("words") for seg in segments) else "none"
    transcript = speakers_of(transcript)
    stage("done")
    # The aligner may serve a related language (e.g. a "zh" model for "yue"); the
    # transcript reports the language Whisper heard.
    return dataclasses.replace(transcript, language=used_language, alignment=method)
