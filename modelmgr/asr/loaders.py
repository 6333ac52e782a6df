"""Turning files on disk into model objects. The only place that imports torch.

Heavy imports have one owner (``heavy()``): torch, faster_whisper and whisperx are
imported once, under a lock, from a worker thread, and ``torch_ready()`` turns
true only after those imports have *finished*. Status pages and the UI timer ask
``torch_ready()``; they never read ``sys.modules`` (another thread may be halfway
through importing torch, and a half-imported module has no ``cuda`` yet).
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from modelmgr.core.catalog import ModelSpec
from modelmgr.core.errors import PreloadFailed, UnknownDevice

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Heavy:
    torch: ModuleType
    faster_whisper: ModuleType
    whisperx: ModuleType


# _import_lock guards the one-time import below; _heavy is written once, under it, after every import
# has returned, so a reader that sees it non-None sees fully initialised modules.
_import_lock = threading.Lock()
_heavy: Heavy | None = None
_pyannote: ModuleType | None = None  # pyannote.audio, imported on the first diarization only (also under it)


def heavy() -> Heavy:
    """torch + faster_whisper + whisperx, imported once (tens of seconds the first time).

    Call from worker threads only, never from the event loop.
    """
    global _heavy
    if _heavy is not None:
        return _heavy
    with _import_lock:
        if _heavy is None:
            import faster_whisper
            import torch
            import whisperx

            _heavy = Heavy(torch, faster_whisper, whisperx)
    return _heavy


def pyannote() -> ModuleType:
    """pyannote.audio, imported once after torch (seconds more; only jobs that diarize pay it)."""
    global _pyannote
    heavy()
    if _pyannote is not None:
        return _pyannote
    with _import_lock:
        if _pyannote is None:
            import pyannote.audio

            _pyannote = pyannote.audio
    return _pyannote


@contextmanager
def pyannote_checkpoints() -> Iterator[None]:
    """Let ``torch.load(weights_only=True)`` read pyannote checkpoints, for this block only.

    Since torch 2.6 ``torch.load`` unpickles plain tensors and containers only; pyannote's
    checkpoints also hold its task specifications (a dataclass and two enums) and the torch
    version they were saved with. Exactly those four classes are allowed, inside this block:
    the safety stays on for every other class, and for the whole process outside it
    (``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` is never set).
    """
    torch = heavy().torch
    pyannote()
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from torch.torch_version import TorchVersion

    with torch.serialization.safe_globals([TorchVersion, Specifications, Problem, Resolution]):
        yield


def load_diarizer(config: Path, models: dict[str, Path], device: str) -> Any:
    """A pyannote pipeline from its downloaded config.yaml, its models replaced by local files.

    ``models`` maps each repo id the config names to that model's downloaded checkpoint, so
    pyannote reads files and never calls the Hub (no token, no second downloader).
    """
    import yaml

    torch = heavy().torch
    Pipeline = pyannote().Pipeline  # noqa: N806 (pyannote's class)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    params = data["pipeline"].setdefault("params", {})
    for key, value in list(params.items()):
        if isinstance(value, str) and value in models:
            params[key] = str(models[value])
    with tempfile.TemporaryDirectory(prefix="diarizer-") as folder:
        resolved = Path(folder) / "config.yaml"
        resolved.write_text(yaml.safe_dump(data), encoding="utf-8")
        with pyannote_checkpoints():
            pipeline = Pipeline.from_pretrained(str(resolved))
    if pipeline is None:  # pyannote prints and returns None when a model cannot be had
        raise PreloadFailed(f"pyannote could not build the pipeline from {config}")
    return pipeline.to(torch.device(device))


def torch_ready() -> ModuleType | None:
    """torch, if its import has finished; None otherwise (never imports, never blocks)."""
    loaded = _heavy
    return loaded.torch if loaded is not None else None


def cuda_available() -> bool:
    return bool(heavy().torch.cuda.is_available())


def check_device(device: str) -> str:
    """Reject unknown device names up front (cheap: no torch import)."""
    if device not in DEVICES:
        raise UnknownDevice(f"{device!r} is not one of {', '.join(DEVICES)}")
    return device


def resolve_device(device: str) -> tuple[str, str]:
    """``auto|cpu|cuda`` -> (device, CTranslate2 compute type); resolved once, at the manager boundary."""
    check_device(device)
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    elif device == "cuda" and not cuda_available():
        raise PreloadFailed("CUDA was requested but no CUDA device is available on this machine")
    return device, ("float16" if device == "cuda" else "int8")


def auto_device_hint() -> str:
    """What ``auto`` resolves to, for labels: exact once torch is loaded, a driver check before."""
    torch = torch_ready()
    if torch is not None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if os.path.exists("/proc/driver/nvidia/version") else "cpu"


def load_whisper(path: Path, device: str, compute_type: str) -> Any:
    return heavy().faster_whisper.WhisperModel(str(path), device=device, compute_type=compute_type)


def load_aligner(spec: ModelSpec, language: str, path: Path, device: str, nltk_dir: Path) -> tuple[Any, dict]:
    """whisperx's own loader, pointed at our files so it never goes to the network."""
    whisperx = heavy().whisperx
    import nltk

    if str(nltk_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_dir))  # whisperx.align finds punkt_tab here, offline

    if spec.source == "torchaudio":
        return whisperx.load_align_model(
            language, device, model_name=spec.repo_id, model_dir=str(path.parent)
        )
    return whisperx.load_align_model(language, device, model_name=str(path))


def memory_report() -> dict[str, Any]:
    """Process RSS, plus CUDA memory once torch has finished importing and a GPU exists."""
    import psutil

    report: dict[str, Any] = {"rss_bytes": psutil.Process().memory_info().rss, "cuda": None}
    torch = torch_ready()
    if torch is not None and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        report["cuda"] = {
            "allocated_bytes": torch.cuda.memory_allocated(),
            "reserved_bytes": torch.cuda.memory_reserved(),
            "free_bytes": free,
            "total_bytes": total,
        }
    return report


def release_memory() -> None:
    import gc

    gc.collect()
    torch = torch_ready()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
