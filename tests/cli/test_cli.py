"""The CLI: in-process managers or a running server (--url), JSON for scripts, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from modelmgr.cli.commands import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, main
from tests.conftest import ZH_ALIGN, LiveServer, wait_until
from tests.hub import FakeHub
from tests.nginx import free_port


def test_download_verify_list_delete(settings, hub: FakeHub, capsys) -> None:
    assert main(["download", "tiny", "--languages", "zh"], settings) == 0
    assert hub.get_count("Systran/faster-whisper-tiny", "model.bin") == 1
    assert hub.get_count(ZH_ALIGN, "config.json") == 1
    assert main(["verify", "tiny"], settings) == 0
    assert main(["list", "--downloaded"], settings) == 0
    listed = capsys.readouterr().out
    assert "tiny " in listed and ZH_ALIGN in listed
    assert main(["download", "tiny", "--languages", "zh"], settings) == 0
    assert "already_downloaded" in capsys.readouterr().err
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


def test_list_and_status_json_parse(settings, hub: FakeHub, capsys) -> None:
    assert main(["download", "tiny", "--no-align", "--json"], settings) == EXIT_OK
    downloaded = json.loads(capsys.readouterr().out)
    assert [m["status"] for m in downloaded["models"]] == ["downloaded"]
    assert main(["list", "--json"], settings) == EXIT_OK
    models = json.loads(capsys.readouterr().out)["models"]
    assert {"id", "kind", "size_bytes", "status", "progress"} <= set(models[0])
    assert next(m for m in models if m["id"] == "tiny")["status"] == "downloaded"
    assert main(["status", "tiny", "--json"], settings) == EXIT_OK
    tiny = json.loads(capsys.readouterr().out)
    assert tiny["id"] == "tiny" and tiny["progress"]["percent"] == 100.0
    assert main(["status", "nope", "--json"], settings) == EXIT_BAD_INPUT
    assert capsys.readouterr().out == ""  # errors never pollute stdout


def test_download_through_a_running_server_shows_its_progress(
    live_server: LiveServer, settings, hub: FakeHub, capsys
) -> None:
    hub.set_throttle(1_000_000)  # several progress events
    url = ["--url", live_server.url]
    assert main([*url, "download", "tiny", "--languages", "zh", "--json"], settings) == EXIT_OK
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert [m["id"] for m in result["models"]] == ["tiny", ZH_ALIGN]
    assert all(m["status"] == "downloaded" for m in result["models"])
    assert "tiny" in captured.err and "100%" in captured.err  # tqdm's bar, on stderr
    assert hub.get_count("Systran/faster-whisper-tiny", "model.bin") == 1  # the server did it
    assert main([*url, "status", "tiny", "--json"], settings) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["status"] == "downloaded"
    # Again: nothing moves, and it still ends.
    assert main([*url, "download", "tiny", "--languages", "zh"], settings) == EXIT_OK
    assert "already_downloaded" in capsys.readouterr().err
    assert hub.get_count("Systran/faster-whisper-tiny", "model.bin") == 1


def test_cancel_through_a_running_server(live_server: LiveServer, settings, hub: FakeHub, capsys) -> None:
    hub.set_throttle(20_000)
    services = live_server.services
    services.downloads.start("tiny", with_align=False)
    url = ["--url", live_server.url]
    assert main([*url, "cancel", "tiny"], settings) == EXIT_OK
    wait_until(lambda: services.downloads.describe(services.catalog.get("tiny"))["status"] == "cancelled")
    assert main([*url, "cancel", "tiny"], settings) == EXIT_FAILED  # 409: not downloading
    assert "not downloading" in capsys.readouterr().err


def test_exit_codes_for_a_server_that_is_away_or_refuses(live_server: LiveServer, settings, capsys) -> None:
    away = f"http://127.0.0.1:{free_port()}"
    assert main(["--url", away, "list"], settings) == EXIT_UNREACHABLE
    assert "cannot reach" in capsys.readouterr().err
    assert main(["--url", live_server.url, "status", "no-such-model"], settings) == EXIT_BAD_INPUT


def test_wrong_token_exits_3(settings, capsys) -> None:
    from pydantic import SecretStr

    from tests.conftest import run_server

    with run_server(settings.model_copy(update={"auth_token": SecretStr("right")})) as live:
        assert main(["--url", live.url, "--token", "wrong", "list"], settings) == EXIT_UNREACHABLE
        assert main(["--url", live.url, "--token", "right", "list", "--json"], settings) == EXIT_OK
    assert json.loads(capsys.readouterr().out)["models"]


def test_preload_through_a_running_server(live_server: LiveServer, settings, hub: FakeHub, capsys) -> None:
    url = ["--url", live_server.url]
    assert main([*url, "preload", "tiny", "--language", "zh", "--device", "cpu", "--json"], settings) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state"] == "ready" and status["whisper"]["id"] == "tiny"
    assert live_server.services.preload.status()["state"] == "ready"


def test_console_script_talks_to_a_server(live_server: LiveServer, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "modelmgr"
    assert script.exists(), "the project is not installed as a package (uv sync)"
    done = subprocess.run(
        [str(script), "--url", live_server.url, "list", "--json"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert any(m["id"] == "tiny" for m in json.loads(done.stdout)["models"])
    env = {"PATH": "/usr/bin:/bin", "HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    bad = subprocess.run(
        [str(script), "status", "no-such-model"], capture_output=True, text=True, timeout=120, env=env
    )
    assert bad.returncode == EXIT_BAD_INPUT


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


def test_transcribe_through_a_running_server(
    live_server: LiveServer, settings, hub: FakeHub, tiny, tmp_path, capsys
):
    out = tmp_path / "subs"
    argv = ["--url", live_server.url, "transcribe", str(tiny.wav), "--model", "tiny", "--language", "zh"]
    code = main([*argv, "--device", "cpu", "--format", "srt,txt", "--out", str(out)], settings)
    captured = capsys.readouterr()
    assert code == EXIT_OK, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["speech.srt", "speech.txt"]
    assert (out / "speech.srt").read_text().startswith("1\n00:00:00,000 --> ")
    assert "100%" in captured.err and "done" in captured.err  # the server's progress, as a bar
    assert live_server.services.transcriptions.jobs(), "the server ran the job"
    bad = main(["--url", live_server.url, "transcribe", str(tiny.wav), "--model", "nope"], settings)
    assert bad == EXIT_BAD_INPUT
