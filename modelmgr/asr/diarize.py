"""Who spoke when: pyannote's pipeline on the job's audio, then whisperx's speaker assignment.

whisperx's ``DiarizationPipeline`` wraps the same pyannote call, but it neither reports
progress nor can be cancelled, and it decodes the file again. Here the pipeline runs on the
audio the job has already decoded, with pyannote's ``hook`` turned into progress (and into
the place a cancel is noticed); ``whisperx.diarize.assign_word_speakers`` then gives each
segment the speaker it overlaps most and each timed word the speaker whose turn covers it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from modelmgr.asr.subtitles import Transcript
from modelmgr.core.errors import Cancelled

SAMPLE_RATE = 16000
# Share of the stage each pyannote step takes on CPU (segmentation is a small model run
# over sliding windows; the embeddings of every (chunk, speaker) pair are most of the work).
_STEPS = {"segmentation": (0.0, 30.0), "embeddings": (30.0, 95.0)}


@dataclass(frozen=True)
class SpeakerCounts:
    """pyannote's hints: an exact count, or bounds (None: the pipeline decides)."""

    num: int | None = None
    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class Turn:
    start: float
    end: float
    speaker: str


def diarize(
    pipeline: Any,
    audio: Any,
    counts: SpeakerCounts,
    *,
    on_progress: Callable[[float], None] | None = None,
    cancel: threading.Event | None = None,
) -> list[Turn]:
    """Speaker turns of ``audio`` (16 kHz mono float32), in time order."""
    import torch

    def hook(step: str, _artifact: Any, file: Any = None, total: Any = None, completed: Any = None) -> None:
        if cancel is not None and cancel.is_set():
            raise Cancelled("cancelled")
        span = _STEPS.get(step)
        if span is None or on_progress is None:
            return
        low, high = span
        done = 1.0 if total in (None, 0) or completed is None else min(1.0, float(completed) / float(total))
        on_progress(round(low + (high - low) * done, 1))

    waveform = torch.from_numpy(audio[None, :].copy())
    annotation = pipeline(
        {"waveform": waveform, "sample_rate": SAMPLE_RATE},
        num_speakers=counts.num,
        min_speakers=counts.min,
        max_speakers=counts.max,
        hook=hook,
    )
    if on_progress is not None:
        on_progress(100.0)
    turns = [
        Turn(float(seg.start), float(seg.end), str(label))
        for seg, _, label in annotation.itertracks(yield_label=True)
    ]
    return sorted(turns, key=lambda t: (t.start, t.end))


def assign_speakers(transcript: Transcript, turns: list[Turn]) -> Transcript:
    """``transcript`` with ``speaker`` on each segment and timed word that a turn overlaps.

    whisperx's own rule: the speaker with the most overlap wins; a segment or word no turn
    touches keeps no speaker (whisperx's ``fill_nearest=False``, its default).
    """
    if not turns:
        return transcript
    import pandas as pd
    from whisperx.diarize import assign_word_speakers

    frame = pd.DataFrame(
        {
            "start": [t.start for t in turns],
            "end": [t.end for t in turns],
            "speaker": [t.speaker for t in turns],
        }
    )
    result = {
        "segments": [
            {
                "start": seg.start,
                "end": seg.end,
                "words": [
                    {"start": w.start, "end": w.end} if w.start is not None and w.end is not None else {}
                    for w in seg.words
                ],
            }
            for seg in transcript.segments
        ]
    }
    assigned = assign_word_speakers(frame, result)["segments"]
    segments = []
    for seg, out in zip(transcript.segments, assigned, strict=True):
        words = tuple(
            replace(w, speaker=_label(found.get("speaker")))
            for w, found in zip(seg.words, out["words"], strict=True)
        )
        segments.append(replace(seg, speaker=_label(out.get("speaker")), words=words))
    return replace(transcript, segments=tuple(segments))


def _label(value: Any) -> str | None:
    return None if value is None else str(value)
