"""The CLI drives the same managers: download with bundled alignment, verify, delete, errors."""

from __future__ import annotations

from modelmgr.cli import main
from tests.conftest import ZH_ALIGN
from tests.hub import FakeHub


def test_download_verify_list_delete(settings, hub: FakeHub, capsys) -> None:
    assert main(["download", "tiny", "--languages", "zh"], settings) == 0
    assert hub.get_count("Systran/faster-whisper-tiny", "model.bin") == 1
    assert hub.get_count(ZH_ALIGN, "config.json") == 1
    assert main(["verify", "tiny"], settings) == 0
    assert main(["list", "--downloaded"], settings) == 0
    listed = capsys.readouterr().out
    assert "tiny " in listed and ZH_ALIGN in listed
    assert main(["download", "tiny", "--languages", "zh"], settings) == 0
    assert "already_downloaded" in capsys.readouterr().out
    assert hub.get_count("Systran/faster-whisper-tiny", "model.bin") == 1
    assert main(["delete", "tiny"], settings) == 0
    assert main(["verify", "tiny"], settings) == 1


def test_verify_catches_a_corrupted_file(settings, hub: FakeHub, capsys) -> None:
    assert main(["download", "tiny", "--no-align"], settings) == 0
    blob = next(
        (settings.hub_cache / "models--Systran--faster-whisper-tiny" / "snapshots").rglob("model.bin")
    )
    data = bytearray(blob.resolve().read_bytes())
    data[100] ^= 0xFF
    blob.resolve().write_bytes(bytes(data))
    assert main(["verify", "tiny"], settings) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_bad_input_exits_2_with_a_message(settings, capsys) -> None:
    assert main(["download", "no-such-model"], settings) == 2
    assert "no model called" in capsys.readouterr().err
    assert main(["download", "tiny", "--languages", "xx"], settings) == 2
