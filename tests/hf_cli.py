"""huggingface_hub's own `hf` CLI on a studio's cache: the judge of whether our cache is theirs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modelmgr.core.settings import Settings
from tests.hub import FakeHub

HF_CLI = Path(sys.executable).with_name("hf")


def hf_env(settings: Settings, hub: FakeHub) -> dict[str, str]:
    """The environment that points `hf` at ``hub`` and the studio's cache."""
    return {
        **os.environ,
        "HF_ENDPOINT": hub.url,
        "HF_HUB_CACHE": str(settings.hub_cache),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "NO_COLOR": "1",
    }


def hf(settings: Settings, hub: FakeHub, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``hf *args`` on the studio's cache; its output is returned, not judged."""
    return subprocess.run(
        [str(HF_CLI), *args], env=hf_env(settings, hub), capture_output=True, text=True, timeout=120
    )


def assert_hf_cache_verify_clean(settings: Settings, hub: FakeHub, repo: str, *, strict: bool = True) -> str:
    """`hf cache verify repo` (``strict``: ``--fail-on-missing-files``) exits 0; its output."""
    done = hf(settings, hub, "cache", "verify", repo, *(["--fail-on-missing-files"] if strict else []))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr
