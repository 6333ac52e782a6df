"""`modelmgr download` of gated diarization models, in-process and through a server (issue 15).

The hub's refusals (401 auth_required, 403 gated_repo) are a failed download (exit 1) that says
what to do, never the "server refused the token" of the studio's own 401 (exit 3).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelmgr.cli.commands import EXIT_FAILED, EXIT_OK, main
from tests import tiny_models
from tests.conftest import ACCEPTED_TOKEN, DIARIZER, UNACCEPTED_TOKEN, hub_settings, run_server
from tests.hub import FakeHub
from tests.models.test_gated import publish_pyannote

SEGMENTATION = tiny_models.PYANNOTE_SEGMENTATION
EMBEDDING = tiny_models.PYANNOTE_EMBEDDING


@pytest.fixture
def private_hub(tiny_pyannote: tiny_models.TinyPyannote) -> Iterator[FakeHub]:
    with FakeHub() as hub:
        yield publish_pyannote(hub, tiny_pyannote)


@pytest.mark.parametrize("where", ["in-process", "server"])
@pytest.mark.parametrize(
    "token,code,status", [(None, "auth_required", 401), (UNACCEPTED_TOKEN, "gated_repo", 403)]
)
def test_a_refused_gated_download_exits_1_saying_what_to_do(
    gated_hub: FakeHub, tmp_path: Path, capsys, where: str, token: str | None, code: str, status: int
) -> None:
    settings = hub_settings(gated_hub, tmp_path, hf_token=token)
    if where == "in-process":
        assert main(["download", DIARIZER], settings) == EXIT_FAILED
    else:
        with run_server(settings) as live:
            assert main(["--url", live.url, "download", DIARIZER], settings) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{gated_hub.url}/{DIARIZER}" in err
    assert ("HF_TOKEN" if code == "auth_required" else "has not accepted") in err
    if where == "server":
        assert f"({code}, HTTP {status})" in err
    assert gated_hub.get_count(DIARIZER, "config.yaml") == 0


@pytest.mark.parametrize("where", ["in-process", "server"])
def test_the_accepted_token_downloads_the_pipeline_and_follows_its_models(
    gated_hub: FakeHub, tmp_path: Path, capsys, where: str
) -> None:
    settings = hub_settings(gated_hub, tmp_path, hf_token=ACCEPTED_TOKEN)
    args = ["download", DIARIZER, "--no-align", "--json"]  # --no-align: the pipeline's models come anyway
    if where == "in-process":
        assert main(args, settings) == EXIT_OK
    else:
        with run_server(settings) as live:
            assert main(["--url", live.url, *args], settings) == EXIT_OK
    models = json.loads(capsys.readouterr().out)["models"]
    assert [m["id"] for m in models] == [DIARIZER, SEGMENTATION, EMBEDDING]
    assert all(m["status"] == "downloaded" for m in models), models
    assert main(["list"], settings) == EXIT_OK
    listed = capsys.readouterr().out
    assert f"{SEGMENTATION}" in listed and "diarization" in listed


@pytest.mark.parametrize("where", ["in-process", "server"])
def test_a_refusal_in_the_background_is_said_in_words(
    private_hub: FakeHub, tmp_path: Path, capsys, where: str
) -> None:
    """A hub that gates its API, for the model the catalog lists as open: the download starts and
    fails in the background; the CLI says why."""
    private_hub.gate(EMBEDDING, api_too=True)
    settings = hub_settings(private_hub, tmp_path)
    if where == "in-process":
        assert main(["download", EMBEDDING], settings) == EXIT_FAILED
    else:
        with run_server(settings) as live:
            assert main(["--url", live.url, "download", EMBEDDING], settings) == EXIT_FAILED
    err = capsys.readouterr().err
    assert f"{private_hub.url}/{EMBEDDING}" in err and "HF_TOKEN" in err
