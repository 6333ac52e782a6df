"""Checking a transcription request before anything is stored: its options, its format, its audio.

A bad request must change nothing, wherever the job would run: the embedded manager and the
web process in cluster mode both call these before they take the upload, so a request is
refused the same way (same error, same words) in both modes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from modelmgr.asr import loaders
from modelmgr.asr.job_record import FORMATS, JobOptions
from modelmgr.core.catalog import Catalog
from modelmgr.core.errors import InvalidAudio, InvalidInput, UnsupportedFormat

TASKS = ("transcribe", "translate")


def validate_options(catalog: Catalog, options: JobOptions) -> JobOptions:
    """Check every option up front: a bad request changes nothing. Returns them normalised."""
    spec = catalog.get(options.model)
    if spec.kind != "whisper":
        raise InvalidInput(f"{options.model} is an alignment model; transcribe with a Whisper model")
    language = options.language or None
    if language is not None:
        catalog.check_model_language(spec, language)
    elif options.task == "transcribe":
        language = spec.language  # "auto" with an English-only model is English
    loaders.check_device(options.device)
    if options.task not in TASKS:
        raise InvalidInput(f"task must be one of {', '.join(TASKS)}, not {options.task!r}")
    if options.task == "translate" and spec.language:
        raise InvalidInput(f"{spec.id} is an English-only model: it cannot translate")
    formats = tuple(dict.fromkeys(f.lower() for f in options.formats)) or FORMATS
    for fmt in formats:
        check_format(fmt)
    if options.batch_size is not None and not 1 <= options.batch_size <= 256:
        raise InvalidInput("batch_size must be between 1 and 256")
    if options.temperature is not None and not 0.0 <= options.temperature <= 1.0:
        raise InvalidInput("temperature must be between 0 and 1")
    if options.initial_prompt is not None and len(options.initial_prompt) > 4000:
        raise InvalidInput("initial_prompt is limited to 4000 characters")
    diarize_model = check_diarization(catalog, options)
    return replace(options, model=spec.id, language=language, formats=formats, diarize_model=diarize_model)


def check_diarization(catalog: Catalog, options: JobOptions) -> str | None:
    """Speaker counts are whole numbers of at least one, min <= num <= max; the diarizer must be one.

    Returns the diarization pipeline's catalog id (None when the job does not diarize).
    """
    counts = {"num_speakers": options.num_speakers, "min_speakers": options.min_speakers}
    counts["max_speakers"] = options.max_speakers
    for name, value in counts.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 50:
            raise InvalidInput(f"{name} must be a whole number from 1 to 50, not {value!r}")
        if not options.diarize:
            raise InvalidInput(f"{name} is a diarization option: set diarize to true to use it")
    low, high, exact = options.min_speakers, options.max_speakers, options.num_speakers
    if low is not None and high is not None and low > high:
        raise InvalidInput(f"min_speakers ({low}) is more than max_speakers ({high})")
    if exact is not None and ((low is not None and exact < low) or (high is not None and exact > high)):
        raise InvalidInput(f"num_speakers ({exact}) is outside min_speakers..max_speakers")
    if not options.diarize:
        if options.diarize_model:
            raise InvalidInput("diarize_model is a diarization option: set diarize to true to use it")
        return None
    return catalog.diarizer(options.diarize_model or catalog.default_diarizer).id


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UnsupportedFormat(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return fmt


def probe_audio(path: Path, filename: str) -> None:
    """Fail fast (InvalidAudio) for an empty file, a non-audio file or an audio stream with no samples.

    Decodes only up to the first frame with samples: cheap even for long files.
    """
    if not path.exists() or path.stat().st_size == 0:
        raise InvalidAudio(f"{filename!r} is empty")
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise InvalidAudio(f"{filename!r} has no audio stream")
            for frame in container.decode(audio=0):
                if frame.samples > 0:
                    return
    except InvalidAudio:
        raise
    except Exception as exc:  # PyAV raises a zoo of error types (av.error.*, OSError, ValueError)
        raise InvalidAudio(
            f"{filename!r} is not an audio or video file this server can read ({exc})"
        ) from exc
    raise InvalidAudio(f"{filename!r} contains no audio (zero length)")
