"""One studio per state folder: a second one on the same folder exits 2 and says who holds it."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from modelmgr.cli.commands import main as cli_main
from modelmgr.web.state_lock import StateFolderBusy, claim_state_folder, state_folder
from tests.fresh import ROOT, app_env, free_port, fresh_server


def test_a_second_claim_names_the_folder_and_the_first_studio(settings) -> None:
    first = claim_state_folder(settings.model_copy(update={"port": 7861}))
    try:
        with pytest.raises(StateFolderBusy) as busy:
            claim_state_folder(settings)
        message = busy.value.message
        assert str(state_folder(settings)) in message and "127.0.0.1:7861" in message
        other = settings.model_copy(update={"data_dir": settings.hf_home / "elsewhere"})
        claim_state_folder(other).release()  # another data folder on the same model cache is fine
    finally:
        first.release()
    claim_state_folder(settings).release()  # free again once the first let go


def test_a_killed_studio_leaves_the_folder_free(settings) -> None:
    code = (
        "import sys; from modelmgr.core.settings import Settings; "
        "from modelmgr.web.state_lock import claim_state_folder; "
        f"lock = claim_state_folder(Settings(hf_home={str(settings.hf_home)!r})); "
        "print('held', flush=True); sys.stdin.read()"  # holds the lock until killed
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(StateFolderBusy):
            claim_state_folder(settings)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
    claim_state_folder(settings).release()


@pytest.mark.slow
def test_a_second_app_on_the_same_folder_exits_2_and_the_cli_still_works(
    settings, hub, tiny, tmp_path: Path
) -> None:
    with fresh_server(settings, tmp_path) as first:
        port = free_port()
        second = subprocess.run(
            [sys.executable, "app.py", "--no-ui", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=app_env(settings), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert second.returncode == 2, second.stdout + second.stderr
        first_port = first.url.rsplit(":", 1)[1]
        assert f"127.0.0.1:{first_port}" in second.stderr and str(state_folder(settings)) in second.stderr
        assert "Traceback" not in second.stderr
        # The CLI's private job folder is not the studio's: it transcribes beside the running server.
        out = tmp_path / "subs"
        code = cli_main(
            ["transcribe", str(tiny.wav), "--model", "tiny", "--language", "zh", "--format", "txt",
             "--out", str(out)],
            settings,
        )  # fmt: skip
        assert code == 0 and (out / "speech.txt").exists()
