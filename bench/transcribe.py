"""Our transcription pipeline vs. whisperx's own, same model, same 60 s file, one run.

    uv run python bench/transcribe.py [--runs 3] [--seconds 60] [--theirs-batch 8]
    uv run python bench/transcribe.py --sweep 15   # ours only, models loaded: batch-size choice

Both sides use the tiny test Whisper (CTranslate2, int8, CPU) and the tiny
wav2vec2 aligner (language zh) from tests/tiny_models.py, built into a temporary
folder, and the same decoded 60 s speech-like audio (a numpy array: whisperx.load_audio
would need the ffmpeg binary).

* theirs: ``whisperx.load_model(dir, "cpu", compute_type="int8", vad_method="pyannote")``
  (its bundled pyannote VAD; needs TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 under torch 2.8)
  + ``model.transcribe(audio, batch_size=...)`` + ``whisperx.load_align_model`` + ``whisperx.align``.
* ours: ``modelmgr.loaders`` + ``modelmgr.transcribe.run_pipeline`` sequential (batch 1,
  no VAD), sequential with Silero VAD, and batched (BatchedInferencePipeline) 4, 8, 16.

Each repetition visits every variant (interleaved, in a rotating order, so drift in
machine load hits all of them alike) and measures:

* "all in": load Whisper + load aligner + transcribe + align (first call on fresh models);
* "loaded": transcribe + align again with those models already loaded.

torch/whisperx import time is paid once up front and counted in neither. The
process refuses every non-loopback connection, so nothing can reach the network.
Figures are medians; ratio = ours / theirs (goal <= 1.0x).
"""

from __future__ import annotations

import os

# Before any torch/whisperx import: whisperx 3.7.4's pyannote checkpoint does not
# unpickle under torch 2.8's weights_only default; and never ask a hub.
os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argparse  # noqa: E402
import gc  # noqa: E402
import ipaddress  # noqa: E402
import logging  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LANGUAGE = "zh"


def refuse_network() -> None:
    """Make every non-loopback connect() fail loudly: the bench must stay offline."""
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else None
        if host is not None:
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise OSError(f"bench/transcribe.py is offline: refused connection to {address!r}")
        return original(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]


@dataclass
class Variant:
    name: str
    run: Callable[[Any, Any], Any]  # (audio, paths) -> (load_s, first_s, warm_s, segments)
    all_in: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    segments: int = 0


def theirs(batch_size: int) -> Callable[[Any, Any], tuple[float, float, float, int]]:
    def run(audio: Any, paths: Any) -> tuple[float, float, float, int]:
        import whisperx

        t0 = time.perf_counter()
        model = whisperx.load_model(
            str(paths.whisper), "cpu", compute_type="int8", language=LANGUAGE, vad_method="pyannote"
        )
        align_model, metadata = whisperx.load_align_model(LANGUAGE, "cpu", model_name=str(paths.wav2vec2))
        load_s = time.perf_counter() - t0

        def once() -> int:
            result = model.transcribe(audio, batch_size=batch_size, language=LANGUAGE)
            aligned = whisperx.align(
                result["segments"], align_model, metadata, audio, "cpu", return_char_alignments=False
            )
            return len(aligned["segments"])

        t1 = time.perf_counter()
        once()
        t2 = time.perf_counter()
        n = once()
        t3 = time.perf_counter()
        return load_s, t2 - t1, t3 - t2, n

    return run


def ours(batch_size: int, vad: bool) -> Callable[[Any, Any], tuple[float, float, float, int]]:
    def run(audio: Any, paths: Any) -> tuple[float, float, float, int]:
        from modelmgr import loaders
        from modelmgr.transcribe import Options, run_pipeline

        t0 = time.perf_counter()
        whisper = loaders.load_whisper(paths.whisper, "cpu", "int8")
        aligner = loaders.load_aligner(
            SimpleNamespace(source="hf"),  # type: ignore[arg-type]  (only .source is read)
            LANGUAGE,
            paths.wav2vec2,
            "cpu",
            paths.nltk_root,
        )
        load_s = time.perf_counter() - t0
        options = Options(language=LANGUAGE, vad=vad, batch_size=batch_size)

        def once() -> int:
            transcript = run_pipeline(
                audio,
                language=LANGUAGE,
                device="cpu",
                get_whisper=lambda: whisper,
                get_aligner=lambda _lang: aligner,
                options=options,
            )
            return len(transcript.segments)

        t1 = time.perf_counter()
        once()
        t2 = time.perf_counter()
        n = once()
        t3 = time.perf_counter()
        return load_s, t2 - t1, t3 - t2, n

    return run


def build_world(root: Path, seconds: float) -> tuple[Any, Any]:
    from faster_whisper import decode_audio

    from tests import tiny_models

    models = tiny_models.build_all(root)
    wav = tiny_models.make_wav(root / f"speech-{int(seconds)}s.wav", seconds=seconds)
    audio = decode_audio(str(wav), sampling_rate=16_000)
    return models, audio


def sweep(rounds: int, seconds: float, batches: list[int]) -> None:
    """Our variants only, models loaded once: many short interleaved rounds, median and min.

    On a shared machine the minimum is the steadiest estimate of a variant's own cost
    (interference only ever adds time); the median shows what a user typically waits.
    """
    from modelmgr import loaders
    from modelmgr.transcribe import Options, ensure_nltk_path, run_pipeline

    configs = [("b=1 (sequential, no VAD)", 1, False), ("b=1 + VAD", 1, True)]
    configs += [(f"b={b} (batched, Silero VAD)", b, True) for b in batches]
    samples: dict[str, list[float]] = {name: [] for name, _b, _v in configs}
    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        paths, audio = build_world(Path(tmp), seconds)
        ensure_nltk_path(paths.nltk_root)
        whisper = loaders.load_whisper(paths.whisper, "cpu", "int8")
        aligner = loaders.load_aligner(
            SimpleNamespace(source="hf"),  # type: ignore[arg-type]
            LANGUAGE,
            paths.wav2vec2,
            "cpu",
            paths.nltk_root,
        )
        for rep in range(rounds + 1):  # round 0 warms every path up and is not counted
            shift = rep % len(configs)
            for name, batch_size, vad in configs[shift:] + configs[:shift]:
                started = time.perf_counter()
                run_pipeline(
                    audio,
                    language=LANGUAGE,
                    device="cpu",
                    get_whisper=lambda: whisper,
                    get_aligner=lambda _lang: aligner,
                    options=Options(language=LANGUAGE, vad=vad, batch_size=batch_size),
                )
                if rep:
                    samples[name].append(time.perf_counter() - started)
        loads.append(load_average())
    print(
        f"ours, models loaded, transcribe + align {seconds:.0f} s, {rounds} interleaved rounds; "
        f"load average {loads[0]} at start, {loads[-1]} at end"
    )
    print("\n| ours | median | min |\n|---|---:|---:|")
    for name, values in samples.items():
        print(f"| {name} | {statistics.median(values):.2f} s | {min(values):.2f} s |")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="repetitions per variant (median)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length")
    parser.add_argument("--theirs-batch", type=int, default=8, help="whisperx batch size (its CLI's default)")
    parser.add_argument("--ours-batches", default="4,8,16", help="batch sizes for our batched path")
    parser.add_argument(
        "--sweep",
        type=int,
        default=0,
        metavar="N",
        help="instead: load our models once, then N interleaved rounds of our variants (batch-size choice)",
    )
    args = parser.parse_args()

    refuse_network()
    logging.disable(logging.WARNING)  # whisperx/pyannote chatter; failures still raise
    warnings.filterwarnings("ignore")

    started = time.perf_counter()
    import faster_whisper  # noqa: F401
    import torch  # noqa: F401
    import whisperx  # noqa: F401

    from modelmgr import loaders

    loaders.heavy()
    import_s = time.perf_counter() - started

    batches = [int(x) for x in args.ours_batches.split(",") if x.strip()]
    if args.sweep:
        sweep(args.sweep, args.seconds, batches)
        return

    variants = [Variant(f"whisperx b={args.theirs_batch} (pyannote VAD)", theirs(args.theirs_batch))]
    variants.append(Variant("ours b=1 (sequential, no VAD)", ours(1, vad=False)))
    variants.append(Variant("ours b=1 + VAD", ours(1, vad=True)))
    for b in batches:
        variants.append(Variant(f"ours b={b} (batched, Silero VAD)", ours(b, vad=True)))

    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        paths, audio = build_world(Path(tmp), args.seconds)
        from modelmgr.transcribe import ensure_nltk_path

        ensure_nltk_path(paths.nltk_root)  # both sides: whisperx.align would call nltk.download
        for rep in range(args.runs):
            shift = rep % len(variants)
            for v in variants[shift:] + variants[:shift]:
                gc.collect()
                load_s, first_s, warm_s, v.segments = v.run(audio, paths)
                v.all_in.append(load_s + first_s)
                v.loaded.append(warm_s)
                print(
                    f"  rep {rep + 1} {v.name:34} all-in {load_s + first_s:6.2f} s  loaded {warm_s:6.2f} s",
                    file=sys.stderr,
                    flush=True,
                )
            loads.append(load_average())

    ref_all = statistics.median(variants[0].all_in)
    ref_loaded = statistics.median(variants[0].loaded)
    print(
        f"Tiny test Whisper (CTranslate2 int8, CPU) + tiny wav2vec2 aligner (zh), "
        f"{args.seconds:.0f} s audio, median of {args.runs} interleaved runs; "
        f"{os.cpu_count()} CPUs, load average (1/5/15 min) {loads[0]} at start, {loads[-1]} at end; "
        f"imports (paid once, not counted) {import_s:.1f} s."
    )
    print()
    print("| pipeline | segments | all in (load + transcribe + align) | ratio |", end="")
    print(" loaded (transcribe + align) | ratio |\n|---|---:|---:|---:|---:|---:|")
    for v in variants:
        a, lo = statistics.median(v.all_in), statistics.median(v.loaded)
        row = f"| {v.name} | {v.segments} | {a:.2f} s | {a / ref_all:.2f}x |"
        print(f"{row} {lo:.2f} s | {lo / ref_loaded:.2f}x |")


if __name__ == "__main__":
    main()
