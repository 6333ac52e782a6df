"""The README cannot drift: its settings table and deploy files are generated and compared here."""

from __future__ import annotations

import re
from pathlib import Path

from modelmgr.cli.readme_gen import render, settings_table
from modelmgr.core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_generated_blocks_match_settings_and_shipped_files() -> None:
    assert render(README) == README, "README is stale: run `uv run python -m modelmgr.cli.readme_gen`"


def test_settings_table_lists_every_setting_with_its_variable_and_a_meaning() -> None:
    table = settings_table()
    for name in Settings.model_fields:
        row = next((line for line in table.splitlines() if f"`MODELMGR_{name.upper()}`" in line), None)
        assert row is not None, name
        assert row.rstrip(" |").split("|")[-1].strip(), f"{name} has no meaning"
    assert "`MODELMGR_HF_ENDPOINT` / `HF_ENDPOINT`" in table  # the ecosystem's names too
    assert table in README


def test_every_deploy_file_is_in_the_readme_and_every_path_it_names_exists() -> None:
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "deploy").rglob("*") if p.is_file()}
    named = set(re.findall(r"deploy/[\w./-]+\w", README))
    assert shipped <= named, shipped - named
    assert named <= shipped, named - shipped
    tls = (ROOT / "deploy/nginx/whisperx-studio-tls.conf").read_text()
    directives = [line.split("#")[0].strip() for line in tls.splitlines()]
    assert "listen 443 ssl http2 default_server;" in directives  # the form nginx 1.22 knows
    assert not [d for d in directives if d.startswith("http2 ")]  # "http2 on;" needs 1.25.1


def test_the_screenshot_is_committed_and_shown() -> None:
    shot = ROOT / "docs" / "screenshot.png"
    assert "](docs/screenshot.png)" in README
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
