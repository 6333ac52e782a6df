"""Running one transcription job to its end: the model download, the lease, the pipeline, the aligner.

The same code runs a job in the embedded manager's worker thread and in a distributed worker's
Celery task (``TranscriptionManager.run_job``). Where its stage changes go (``job.json``, the
EventBus, and for a distributed worker Redis too) is not the runner's business: it reports them
to its host (``JobHost``), whose hooks a distributed worker overrides.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from modelmgr.asr.aligners import first_that_works
from modelmgr.asr.job_record import Job
from modelmgr.asr.preload import PreloadManager
from modelmgr.asr.results import speakers_of
from modelmgr.asr.subtitles import Transcript, write_all
from modelmgr.core.catalog import Catalog, ModelSpec
from modelmgr.core.errors import (
    AlignUnavailable,
    Cancelled,
    DownloadFailed,
    InvalidAudio,
    ModelMgrError,
    from_code,
)
from modelmgr.core.events import EventBus
from modelmgr.core.settings import Settings
from modelmgr.models.downloads import DownloadManager
from modelmgr.models.pipeline_parts import pipeline_parts

log = logging.getLogger(__name__)

CUDA_BATCH_SIZE = 16  # WhisperX's default on GPUs (not measured here: no GPU was lent)
# bench/transcribe.py with the real tiny.en on 6 min of espeak-ng speech, 2 CPUs (README,
# "Transcription speed and accuracy"): batched 8 with Silero VAD had the lowest word error
# rate (0.071, whisperx 0.080, sequential 0.091) at 0.58x whisperx's time; sequential
# decoding (the old default, chosen on random weights) was 1.2x whisperx's time.
CPU_BATCH_SIZE = 8


class JobHost(Protocol):
    """What a runner runs for and reports to: its manager (TranscriptionManager and subclasses)."""

    settings: Settings
    catalog: Catalog
    downloads: DownloadManager
    preload: PreloadManager
    bus: EventBus

    @property
    def stopping(self) -> bool:
        """Shutting down: an interrupted job is left queued, not cancelled."""
        ...

    def _set(self, job: Job, status: str, progress: float | None = None) -> None: ...

    def _save(self, job: Job) -> None: ...

    def _publish(self, job: Job, throttle: bool = False) -> None: ...

    def _finish(self, job: Job, status: str, error: dict[str, str] | None = None) -> None: ...


class JobRunner:
    """Runs jobs for its host, one call to ``run`` per job, in the caller's thread."""

    def __init__(self, host: JobHost) -> None:
        self.host = host
        self.settings, self.catalog, self.bus = host.settings, host.catalog, host.bus
        self.downloads, self.preload = host.downloads, host.preload

    def run(self, job: Job) -> None:
        """Run ``job`` in this thread. It never raises: the outcome is the job's status."""
        host = self.host
        job.started_at = time.time()
        try:
            spec = self.catalog.get(job.options.model)
            self.download(job, spec)
            diarizer = self.download_diarizer(job)
            host._set(job, "loading", progress=0.0)
            opts = job.options
            with self.preload.lease(
                spec.id,
                opts.language,
                opts.device,
                cancel=job.cancel,
                on_state=lambda state: host._set(job, "downloading" if state == "downloading" else "loading"),
            ) as lease:
                job.device = lease.device
                job.batch_size = (
                    opts.batch_size
                    or self.settings.batch_size
                    or (CUDA_BATCH_SIZE if lease.device == "cuda" else CPU_BATCH_SIZE)
                )
                # Loaded before any work, under this lease: deleting it meanwhile is refused (409).
                pipeline = lease.diarizer(diarizer) if diarizer is not None else None
                transcript = self._pipeline(job, lease, pipeline)
            job.language, job.duration_s = transcript.language, transcript.duration
            job.alignment = transcript.alignment
            if transcript.alignment != "wav2vec2":
                job.align_model = None
            job.segments = len(transcript.segments)
            job.text = " ".join(s.text for s in transcript.segments)
            if diarizer is not None:
                job.speakers = speakers_of(transcript)
            write_all(transcript, job.folder, "result")
            host._finish(job, "done")
        except Cancelled:
            if host.stopping and not job.cancel_requested:
                job.status, job.progress, job.started_at = "queued", 0.0, None  # runs again on the next start
                host._save(job)
                return
            host._finish(job, "cancelled")
        except ModelMgrError as exc:
            host._finish(job, "error", {"code": exc.code, "message": exc.message})
        except Exception as exc:  # a decoder or model failing on odd input: say it, keep the worker alive
            log.exception("transcription job %s failed", job.id)
            host._finish(
                job, "error", {"code": "transcription_failed", "message": f"transcription failed: {exc}"}
            )

    def _pipeline(self, job: Job, lease: Any, diarizer: Any | None) -> Transcript:
        from modelmgr.asr.diarize import SpeakerCounts
        from modelmgr.asr.pipeline import AudioDecodeError, Options, run_pipeline

        host, opts = self.host, job.options
        options = Options(
            language=opts.language,
            task=opts.task,
            word_timestamps=opts.word_timestamps,
            vad=opts.vad,
            batch_size=job.batch_size or 1,
            initial_prompt=opts.initial_prompt,
            temperature=opts.temperature,
        )

        def on_stage(name: str) -> None:
            if name in ("transcribing", "aligning", "diarizing"):
                host._set(job, name, progress=0.0)

        def on_progress(percent: float) -> None:
            job.progress = percent
            host._publish(job, throttle=True)

        def on_warning(message: str) -> None:
            job.warnings.append(message)
            host._save(job)
            self.bus.publish("transcription", {**job.describe(), "warning": message})

        def on_segment(segment: dict) -> None:
            self.bus.publish(
                "transcription",
                {**job.describe(), "segment": {k: segment[k] for k in ("start", "end", "text")}},
            )

        try:
            return run_pipeline(
                job.input_path,
                language=opts.language,
                device=lease.device,
                get_whisper=lambda: lease.whisper,
                get_aligner=lambda language: self.aligner(job, lease, language),
                on_stage=on_stage,
                options=options,
                on_progress=on_progress,
                on_segment=on_segment,
                on_warning=on_warning,
                cancel=job.cancel,
                get_diarizer=None if diarizer is None else lambda: diarizer,
                speakers=SpeakerCounts(opts.num_speakers, opts.min_speakers, opts.max_speakers),
            )
        except AudioDecodeError as exc:
            raise InvalidAudio(str(exc)) from exc

    def aligner(self, job: Job, lease: Any, language: str) -> tuple[Any, dict] | None:
        """The first aligner for ``language`` that can be had, downloading it if needed.

        None: whisperx has no aligner for the language. AlignUnavailable: it has, but none
        could be downloaded or loaded (e.g. download.pytorch.org unreachable behind a Hub
        mirror, offline): the pipeline then times the words with Whisper and warns.
        """
        candidates = self.catalog.align_candidates(language)
        if not candidates:
            return None

        def attempt(spec: ModelSpec) -> tuple[Any, dict]:
            self.download(job, spec)
            self.host._set(job, "loading")
            return lease.aligner(spec, language)

        spec, found, reasons = first_that_works(self.preload.prefer_present(candidates), attempt)
        if spec is not None:
            job.align_model = spec.id
            return found
        raise AlignUnavailable(
            f"no alignment model for {language!r} could be had ({'; '.join(reasons)}); "
            "word times come from Whisper instead"
        )

    def download_diarizer(self, job: Job) -> ModelSpec | None:
        """The job's diarization pipeline, downloaded with every model its config.yaml names (None:
        the job does not diarize). A gated pipeline without an accepted token fails the job here,
        before any transcribing, with the error that says what to do."""
        if not job.options.diarize:
            return None
        spec = self.catalog.diarizer(job.options.diarize_model or self.settings.diarize_model)
        self.download(job, spec)
        for part in pipeline_parts(self.catalog, self.downloads.store, spec):
            self.download(job, part)
        return spec

    def download(self, job: Job, spec: ModelSpec) -> None:
        """Fetch ``spec`` (alone) through the DownloadManager, showing its progress on the job."""
        result = self.downloads.start(spec.id, with_align=False)
        if result.job is None:
            return
        download = result.job
        job.download = {"model": spec.id, **download.progress()}
        self.host._set(job, "downloading", progress=job.download["percent"])
        while not download.done.wait(0.25):
            if job.cancel.is_set():
                raise Cancelled("cancelled")  # the download goes on: others may be waiting for it
            job.download = {"model": spec.id, **download.progress()}
            job.progress = job.download["percent"]
            self.host._publish(job, throttle=True)
        if download.status != "downloaded":
            # the download's own error type (auth_required, gated_repo, ...) so the job says what to do
            message = f"{spec.id} could not be downloaded: {download.error or download.status}"
            raise from_code(download.error_code or DownloadFailed.code, message)
