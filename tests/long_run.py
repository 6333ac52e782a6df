"""One transcription in a process of its own, for peak-memory and CPU-time figures.

    python -m tests.long_run AUDIO WHISPER_DIR ALIGNER_DIR NLTK_ROOT

Runs ``run_pipeline`` with a job's CPU defaults (JobOptions, CPU_BATCH_SIZE) on the real
tiny.en and prints one JSON line: peak RSS (``ru_maxrss``), CPU seconds of the
transcription alone (all threads: steadier than wall time on a loaded machine), the
progress values the pipeline reported, and the transcript's word count.

Peak RSS is the kernel's VmHWM for this process: ``ru_maxrss`` would not do, since Linux
carries it over from the forking parent (a test runner of several GB) across exec.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main(audio: str, whisper_dir: str, aligner_dir: str, nltk_root: str) -> None:
    from modelmgr.asr import loaders
    from modelmgr.asr.jobs import CPU_BATCH_SIZE, JobOptions
    from modelmgr.asr.pipeline import Options, ensure_nltk_path, run_pipeline

    ensure_nltk_path(Path(nltk_root))
    whisper = loaders.load_whisper(Path(whisper_dir), "cpu", "int8")
    aligner = loaders.load_aligner(
        SimpleNamespace(source="hf"),  # type: ignore[arg-type]  (only .source is read)
        "en",
        Path(aligner_dir),
        "cpu",
        Path(nltk_root),
    )
    job = JobOptions(model="tiny.en")
    options = Options(
        language="en", vad=job.vad, batch_size=CPU_BATCH_SIZE, word_timestamps=job.word_timestamps
    )
    progress: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    transcript = run_pipeline(
        Path(audio),
        language="en",
        device="cpu",
        get_whisper=lambda: whisper,
        get_aligner=lambda _language: aligner,
        options=options,
        on_progress=progress.append,
    )
    cpu_s, wall_s = time.process_time() - cpu0, time.perf_counter() - wall0
    print(
        json.dumps(
            {
                "peak_rss_bytes": peak_rss_bytes(),
                "cpu_s": cpu_s,
                "wall_s": wall_s,
                "progress": progress,
                "words": sum(len(s.words) for s in transcript.segments),
                "duration": transcript.duration,
                "alignment": transcript.alignment,
            }
        )
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
