"""Transcript data model and subtitle writers (SRT, WebVTT, JSON, plain text).

Pure Python on purpose: the UI and API can import it to re-render results
without pulling in torch or whisperx.

Speakers: a diarized transcript labels segments and words with pyannote's ids
(``SPEAKER_00``...); ``Transcript.speaker_names`` maps ids to the names a person gave them
afterwards. The ids stay in the data and every writer shows the name, so a rename is a
re-render, never a re-run: SRT prefixes cues with ``[Alice]``, WebVTT wraps them in
``<v Alice>`` voice tags, JSON gives ``speaker`` (the name) and ``speaker_id``, and plain text
becomes speaker turns.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = [
    "ALIGNMENTS",
    "Segment",
    "Transcript",
    "Word",
    "format_timestamp",
    "rename_speakers",
    "from_json",
    "to_dict",
    "to_json",
    "to_srt",
    "to_txt",
    "to_vtt",
    "write_all",
]


@dataclass(frozen=True)
class Word:
    """One aligned word; times/score are None when the aligner could not place it."""

    text: str
    start: float | None
    end: float | None
    score: float | None
    speaker: str | None = None  # diarization id (SPEAKER_00), when diarized


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    # Whisper's decoding statistics (None when unknown), kept for verbose JSON clients.
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    compression_ratio: float | None = None
    temperature: float | None = None
    speaker: str | None = None  # diarization id of who speaks most of the segment


_SEGMENT_STATS = ("avg_logprob", "no_speech_prob", "compression_ratio", "temperature")


# How the words got their times: a wav2vec2 aligner (whisperx), Whisper's own
# cross-attention timings (faster-whisper word_timestamps), or none (segment times only).
ALIGNMENTS = ("wav2vec2", "whisper", "none")


@dataclass(frozen=True)
class Transcript:
    language: str
    duration: float
    segments: tuple[Segment, ...] = ()
    alignment: str = "none"  # one of ALIGNMENTS
    # speaker id -> the name to show (ids without one show as themselves)
    speaker_names: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def speakers(self) -> tuple[str, ...]:
        """Every speaker id, in order of first appearance (segments, then their words)."""
        seen: dict[str, None] = {}
        for seg in self.segments:
            for label in (seg.speaker, *(w.speaker for w in seg.words)):
                if label is not None:
                    seen.setdefault(label, None)
        return tuple(seen)

    def name(self, speaker: str | None) -> str | None:
        return None if speaker is None else self.speaker_names.get(speaker) or speaker


def rename_speakers(t: Transcript, names: dict[str, str]) -> Transcript:
    """``t`` with ``names`` (id -> name) applied; an empty name gives the id back its own label."""
    merged = {**t.speaker_names, **names}
    return replace(t, speaker_names={k: v for k, v in merged.items() if v and v != k})


def _to_millis(seconds: float | None) -> int:
    """Round once to whole milliseconds so 59.9996 s becomes 01:00.000, never 59.1000."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return 0
    return int(round(seconds * 1000))


def format_timestamp(seconds: float, *, decimal_marker: str = ",") -> str:
    """HH:MM:SS<marker>mmm; hours keep growing past 99 rather than wrapping."""
    ms = _to_millis(seconds)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal_marker}{ms:03d}"


def _cue_text(text: str) -> str:
    """Cue payload: stripped, without blank lines (a blank line ends a cue)."""
    lines = [line.strip() for line in text.strip().splitlines()]
    return "\n".join(line for line in lines if line)


def _cues(t: Transcript) -> list[tuple[int, int, str, str | None]]:
    """(start_ms, end_ms, text, speaker name) per non-empty segment: in order, never overlapping,
    never past the audio.

    Players show two overlapping cues at once (stacked), so a cue starts no earlier than
    the previous one ends; an aligner's last word can run a few ms past the file's end.
    """
    cues = []
    limit = _to_millis(t.duration) if t.duration and t.duration > 0 else None
    previous_end = 0
    for seg in t.segments:
        text = _cue_text(seg.text)
        if not text:
            continue
        start = max(_to_millis(seg.start), previous_end)
        end = max(start, _to_millis(seg.end))
        if limit is not None:
            start, end = min(start, limit), min(end, limit)
        cues.append((start, end, text, t.name(seg.speaker)))
        previous_end = end
    return cues


def _ms(ms: int, marker: str) -> str:
    return format_timestamp(ms / 1000, decimal_marker=marker)


def _one_line(name: str) -> str:
    """A speaker name as it may appear inside a cue: one line, no blank."""
    return " ".join(name.split())


def to_srt(t: Transcript) -> str:
    """SubRip: 1-based cue numbers, HH:MM:SS,mmm, cues separated by a blank line; ``[name] `` first
    when diarized (SubRip has no speaker field; bracketed names are what players and editors show)."""
    blocks = [
        f"{i}\n{_ms(start, ',')} --> {_ms(end, ',')}\n{f'[{_one_line(speaker)}] ' if speaker else ''}{text}\n"
        for i, (start, end, text, speaker) in enumerate(_cues(t), start=1)
    ]
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    # WebVTT cue text is markup: escape it, and "-->" may not appear in a cue at all.
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text.replace("--&gt;", "-&gt;")


def _vtt_voice(text: str, speaker: str | None) -> str:
    """WebVTT voice span ``<v Alice>...</v>``; the annotation is escaped like cue text."""
    if not speaker:
        return _vtt_escape(text)
    return f"<v {_vtt_escape(_one_line(speaker))}>{_vtt_escape(text)}</v>"


def to_vtt(t: Transcript) -> str:
    """WebVTT: "WEBVTT" header, HH:MM:SS.mmm timings, escaped cue text, voice tags when diarized."""
    blocks = ["WEBVTT\n"]
    blocks += [
        f"{_ms(start, '.')} --> {_ms(end, '.')}\n{_vtt_voice(text, speaker)}\n"
        for start, end, text, speaker in _cues(t)
    ]
    return "\n".join(blocks)


def _json_time(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 3)


def _speaker_fields(t: Transcript, speaker: str | None) -> dict:
    return {} if speaker is None else {"speaker": t.name(speaker), "speaker_id": speaker}


def to_dict(t: Transcript) -> dict:
    """``speakers`` (id and name), and ``speaker``/``speaker_id`` on segments and words, when diarized."""
    speakers = t.speakers
    return {
        "language": t.language,
        "duration": _json_time(t.duration),
        "alignment": t.alignment,
        **({"speakers": [{"id": s, "name": t.name(s)} for s in speakers]} if speakers else {}),
        "segments": [
            {
                "start": _json_time(seg.start),
                "end": _json_time(seg.end),
                "text": seg.text,
                **_speaker_fields(t, seg.speaker),
                "words": [
                    {
                        "word": w.text,
                        "start": _json_time(w.start),
                        "end": _json_time(w.end),
                        "score": _json_time(w.score),
                        **_speaker_fields(t, w.speaker),
                    }
                    for w in seg.words
                ],
                **{k: round(v, 4) for k in _SEGMENT_STATS if (v := getattr(seg, k)) is not None},
            }
            for seg in t.segments
        ],
    }


def to_json(t: Transcript) -> str:
    """JSON with a stable schema; None/NaN times become null (NaN is not valid JSON)."""
    return json.dumps(to_dict(t), ensure_ascii=False, indent=2) + "\n"


def _opt_float(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _speaker_of(item: dict) -> str | None:
    label = item.get("speaker_id", item.get("speaker"))
    return None if label is None else str(label)


def from_json(text: str) -> Transcript:
    """Inverse of `to_json`, so stored results can be re-rendered in other formats."""
    data = json.loads(text)
    names = {str(s["id"]): str(s["name"]) for s in data.get("speakers") or () if s.get("name") != s.get("id")}
    return Transcript(
        language=str(data.get("language") or ""),
        duration=float(data.get("duration") or 0.0),
        alignment=str(data.get("alignment") or "none"),
        speaker_names=names,
        segments=tuple(
            Segment(
                start=float(seg["start"]),
                end=float(seg["end"]),
                text=str(seg["text"]),
                words=tuple(
                    Word(
                        text=str(w["word"]),
                        start=_opt_float(w.get("start")),
                        end=_opt_float(w.get("end")),
                        score=_opt_float(w.get("score")),
                        speaker=_speaker_of(w),
                    )
                    for w in seg.get("words", ())
                ),
                speaker=_speaker_of(seg),
                **{k: float(seg[k]) for k in _SEGMENT_STATS if seg.get(k) is not None},
            )
            for seg in data.get("segments", ())
        ),
    )


def to_txt(t: Transcript) -> str:
    """Plain text, one segment per line; when diarized, speaker turns (``Alice: ...``, one paragraph
    per turn: consecutive segments of one speaker are one turn)."""
    if not t.speakers:
        lines = [_cue_text(seg.text).replace("\n", " ") for seg in t.segments]
        lines = [line for line in lines if line]
        return "\n".join(lines) + "\n" if lines else ""
    turns: list[tuple[str | None, list[str]]] = []
    for seg in t.segments:
        text = _cue_text(seg.text).replace("\n", " ")
        if not text:
            continue
        name = t.name(seg.speaker)
        if turns and turns[-1][0] == name:
            turns[-1][1].append(text)
        else:
            turns.append((name, [text]))
    paragraphs = [f"{_one_line(name) + ': ' if name else ''}{' '.join(texts)}" for name, texts in turns]
    return "\n\n".join(paragraphs) + "\n" if paragraphs else ""


_WRITERS = {"srt": to_srt, "vtt": to_vtt, "json": to_json, "txt": to_txt}
_BAD_STEM = re.compile(r"[/\\\x00]")


def _atomic_write(path: Path, content: str) -> None:
    """Write via a temp file + rename so a crash never leaves a half-written subtitle."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(content)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_all(t: Transcript, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write <stem>.srt/.vtt/.json/.txt into `out_dir`; returns {format: path}.

    `stem` must be a bare file name (it often comes from an uploaded file name).
    """
    if not stem or stem in {".", ".."} or _BAD_STEM.search(stem):
        raise ValueError(f"invalid output file stem: {stem!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for ext, writer in _WRITERS.items():
        path = out_dir / f"{stem}.{ext}"
        _atomic_write(path, writer(t))
        paths[ext] = path
    return paths
