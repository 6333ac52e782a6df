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


def test_transcribe_files_into_subtitles_in_a_folder(settings, hub: FakeHub, tiny, tmp_path, capsys) -> None:
    second = tmp_path / "second take.wav"
    second.write_bytes(tiny.wav.read_bytes())
    out = tmp_path / "subs"
    code = main(
        [
            "transcribe",
            str(tiny.wav),
            str(second),
            "--model",
            "tiny",
            "--language",
            "zh",
            "--format",
            "srt,txt",
            "--out",
            str(out),
        ],
        settings,
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == [
        "second take.srt",
        "second take.txt",
        "speech.srt",
        "speech.txt",
    ]
    assert (out / "speech.srt").read_text().startswith("1\n00:00:00,000 --> ")
    assert (out / "speech.txt").read_text().splitlines() == ["你好世界", "hello world"]
    assert "100%" in captured.err and "done" in captured.err, "a progress bar per file"
    assert tiny.wav.exists() and second.exists(), "the inputs are left where they were"
    assert not list(settings.state_dir.glob("transcriptions-*")), "no private job folder left behind"
    assert hub.get_count("Systran/faster-whisper-tiny", "model.bin") == 1


def test_transcribe_bad_input_exits_2_and_writes_nothing(settings, tmp_path, capsys) -> None:
    not_audio = tmp_path / "notes.txt"
    not_audio.write_text("hello")
    out = tmp_path / "subs"
    assert main(["transcribe", str(tmp_path / "missing.wav"), "--out", str(out)], settings) == 2
    assert main(["transcribe", str(not_audio), "--model", "tiny", "--out", str(out)], settings) == 2
    assert "not an audio" in capsys.readouterr().err
    assert main(["transcribe", str(not_audio), "--format", "docx", "--out", str(out)], settings) == 2
    assert not out.exists()
