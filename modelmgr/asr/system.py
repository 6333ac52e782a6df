"""Host resources for the System tab and ``GET /api/system``: cheap, no torch import."""

from __future__ import annotations

import os
from typing import Any

import psutil

from modelmgr.asr.loaders import auto_device_hint, torch_ready
from modelmgr.models.store import Store


def system_report(store: Store) -> dict[str, Any]:
    vm = psutil.virtual_memory()
    free, total = store.free_bytes(), store.disk_total_bytes()
    return {
        "cpu": {"count": os.cpu_count(), "percent": psutil.cpu_percent(interval=None)},
        "ram": {"total_bytes": vm.total, "available_bytes": vm.available, "percent": vm.percent},
        "gpu": _gpu(),
        "disk": {"path": str(store.hub_cache), "free_bytes": free, "total_bytes": total},
        "process": {"rss_bytes": psutil.Process().memory_info().rss},
    }


def _gpu() -> dict[str, Any] | None:
    """CUDA memory once torch has finished importing (we never import it just to look)."""
    torch = torch_ready()
    if torch is None:
        return {
            "available": None,
            "auto_device": auto_device_hint(),
            "note": "not probed until a model is loaded",
        }
    if not torch.cuda.is_available():
        return {"available": False}
    free, total = torch.cuda.mem_get_info()
    return {
        "available": True,
        "name": torch.cuda.get_device_name(0),
        "free_bytes": free,
        "total_bytes": total,
        "allocated_bytes": torch.cuda.memory_allocated(),
    }
