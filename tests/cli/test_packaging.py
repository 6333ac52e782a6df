"""The project installs as a package (`uv tool install .` / `pip install .`) with its console scripts."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("uv") is None, reason="uv is not on PATH")
def test_wheel_has_the_console_scripts_the_package_and_its_assets(tmp_path: Path) -> None:
    built = subprocess.run(
        ["uv", "build", "--wheel", "--out-dir", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("whisperx_studio-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    entry_points = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    )
    assert "whisperx-studio = modelmgr.web.studio:main" in entry_points
    assert "modelmgr = modelmgr.cli.commands:run" in entry_points
    for needed in (
        "modelmgr/cli/commands.py",
        "modelmgr/assets/studio.css",
        "modelmgr/models/approx_sizes.json",
    ):
        assert needed in names, needed
    assert not [n for n in names if n.startswith("tests/")]
