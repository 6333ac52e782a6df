"""The jobs API's options (``POST /api/transcriptions``): what a client sets is what the job stores.

Diarization's form fields (``diarize``, ``num_speakers``, ``min_speakers``, ``max_speakers``,
``diarize_model``) next to the older ones; a bad value is a JSON 4xx that stores nothing.
The hub is paused, so no job gets past downloading its model: these tests are about the
request, not the transcription (nothing here depends on the diarizer itself).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from modelmgr.core.settings import Settings
from tests.conftest import LiveServer, predownload_diarizer, run_server, wait_until
from tests.hub import FakeHub

DIARIZER = "pyannote/speaker-diarization-3.1"  # settings.diarize_model's default
FINISHED = ("done", "error", "cancelled")


def post_job(live: LiveServer, audio: Path, fields: dict[str, Any]) -> httpx.Response:
    with audio.open("rb") as f:
        return httpx.post(
            f"{live.url}/api/transcriptions",
            files={"file": (audio.name, f, "audio/wav")},
            data={k: str(v) for k, v in fields.items()},
            timeout=60,
        )


def stored_options(live: LiveServer, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{live.url}/api/transcriptions/{job_id}", timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["options"]


def cancel_all(live: LiveServer) -> None:
    """Cancel every job and wait until each has ended (none gets past the paused download)."""
    for job in httpx.get(f"{live.url}/api/transcriptions", timeout=60).json()["jobs"]:
        httpx.delete(f"{live.url}/api/transcriptions/{job['id']}", timeout=60)

    def ended() -> bool:
        jobs = httpx.get(f"{live.url}/api/transcriptions", timeout=60).json()["jobs"]
        return all(j["status"] in FINISHED for j in jobs)

    wait_until(ended, 120, "every job to end after its cancel")


def test_diarization_and_decoding_fields_land_in_the_stored_job_options(
    diarize_settings, gated_hub: FakeHub, tiny
) -> None:
    with run_server(diarize_settings) as live:
        predownload_diarizer(live.services)  # on disk: no up-front probe of the gated repos
        _fields_land_in_the_stored_options(live, gated_hub, tiny)


def _fields_land_in_the_stored_options(live_server: LiveServer, hub: FakeHub, tiny) -> None:
    hub.pause()  # the model download cannot finish: the jobs stay in flight until cancelled
    try:
        ranged = post_job(
            live_server,
            tiny.wav,
            {
                "model": "tiny",
                "language": "zh",
                "task": "transcribe",
                "vad": "false",
                "batch_size": 2,
                "initial_prompt": "Ada, Grace",
                "diarize": "true",
                "min_speakers": 1,
                "max_speakers": 3,
            },
        )
        assert ranged.status_code == 202, ranged.text
        options = stored_options(live_server, ranged.json()["id"])
        assert options["diarize"] is True
        assert (options["num_speakers"], options["min_speakers"], options["max_speakers"]) == (None, 1, 3)
        assert options["diarize_model"] == DIARIZER, "the default diarizer is named on the job"
        assert (options["task"], options["vad"], options["batch_size"]) == ("transcribe", False, 2)
        assert options["initial_prompt"] == "Ada, Grace"

        exact = post_job(
            live_server,
            tiny.wav,
            {"model": "tiny", "diarize": "1", "num_speakers": 2, "diarize_model": DIARIZER},
        )
        assert exact.status_code == 202, exact.text
        options = stored_options(live_server, exact.json()["id"])
        assert options["diarize"] is True and options["num_speakers"] == 2
        assert (options["min_speakers"], options["max_speakers"], options["diarize_model"]) == (
            None,
            None,
            DIARIZER,
        )
        assert options["vad"] is True, "the API's default"

        plain = post_job(live_server, tiny.wav, {"model": "tiny", "diarize": ""})
        assert plain.status_code == 202, plain.text
        options = stored_options(live_server, plain.json()["id"])
        assert options["diarize"] is False
        assert [options[k] for k in ("num_speakers", "min_speakers", "max_speakers", "diarize_model")] == [
            None
        ] * 4
    finally:
        hub.resume()
        cancel_all(live_server)


def test_bad_diarization_fields_get_a_json_4xx_and_store_nothing(
    live_server: LiveServer, settings: Settings, tiny
) -> None:
    on = {"model": "tiny", "diarize": "true"}
    cases: list[tuple[dict[str, Any], int, str, str]] = [
        ({**on, "min_speakers": 3, "max_speakers": 2}, 400, "invalid_input", "min_speakers (3) is more than"),
        ({**on, "num_speakers": 0}, 400, "invalid_input", "num_speakers must be a whole number from 1 to 50"),
        ({**on, "min_speakers": -1}, 400, "invalid_input", "min_speakers must be a whole number"),
        ({**on, "max_speakers": 51}, 400, "invalid_input", "max_speakers must be a whole number"),
        ({**on, "max_speakers": "abc"}, 400, "invalid_input", "max_speakers"),
        ({**on, "num_speakers": "2.5"}, 400, "invalid_input", "num_speakers"),
        ({**on, "num_speakers": 4, "max_speakers": 3}, 400, "invalid_input", "outside min_speakers..max"),
        ({**on, "diarize_model": "tiny"}, 400, "invalid_input", "not a diarization pipeline"),
        ({**on, "diarize": "maybe"}, 400, "invalid_input", "diarize"),
        ({"model": "tiny", "num_speakers": 2}, 400, "invalid_input", "set diarize to true"),
        ({"model": "tiny", "diarize_model": DIARIZER}, 400, "invalid_input", "set diarize to true"),
    ]
    for fields, status, code, words in cases:
        answer = post_job(live_server, tiny.wav, fields)
        assert answer.status_code == status, (fields, answer.text)
        error = answer.json()["error"]
        assert error["code"] == code, (fields, error)
        assert words in error["message"], (fields, error)
    assert httpx.get(f"{live_server.url}/api/transcriptions", timeout=60).json() == {"jobs": []}
    assert live_server.services.downloads.transfers_started == 0
    jobs_dir = settings.jobs_dir
    assert not jobs_dir.exists() or not list(jobs_dir.iterdir()), "no job folder, no stray upload"
