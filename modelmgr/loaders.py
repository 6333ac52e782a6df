"""Turning files on disk into model objects. The only place that imports torch.

Everything here is imported lazily, inside functions, and only ever called from
worker threads: importing torch and whisperx takes tens of seconds and must not
touch start-up or the event loop.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .catalog import ModelSpec
from .errors import PreloadFailed, UnknownDevice

DEVICES = ("auto", "cpu", "cuda")


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def check_device(device: str) -> str:
    """Reject unknown device names up front (cheap: no torch import)."""
    if device not in DEVICES:
        raise UnknownDevice(f"{device!r} is not one of {', '.join(DEVICES)}")
    return device


def resolve_device(device: str) -> tuple[str, str]:
    """``auto|cpu|cuda`` -> (device, CTranslate2 compute type)."""
    check_device(device)
    if device == "auto":
        device = "cuda" if cuda_available() else "cpu"
    elif device == "cuda" and not cuda_available():
        raise PreloadFailed("CUDA was requested but no CUDA device is available on this machine")
    return device, ("float16" if device == "cuda" else "int8")


def load_whisper(path: Path, device: str, compute_type: str) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(path), device=device, compute_type=compute_type)


def load_aligner(spec: ModelSpec, language: str, path: Path, device: str, nltk_dir: Path) -> tuple[Any, dict]:
    """whisperx's own loader, pointed at our files so it never goes to the network."""
    import nltk
    import whisperx

    if str(nltk_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(nltk_dir))  # whisperx.align finds punkt_tab here, offline

    if spec.source == "torchaudio":
        return whisperx.load_align_model(
            language, device, model_name=spec.repo_id, model_dir=str(path.parent)
        )
    return whisperx.load_align_model(language, device, model_name=str(path))


def memory_report() -> dict[str, Any]:
    """Process RSS, plus CUDA memory when torch is already loaded and a GPU exists."""
    import psutil

    report: dict[str, Any] = {"rss_bytes": psutil.Process().memory_info().rss, "cuda": None}
    torch = sys.modules.get("torch")
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
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
