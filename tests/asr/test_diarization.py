"""Diarization in the job pipeline: the real pyannote and whisperx code on tiny random models.

Random weights say nothing about who really speaks: these tests check the plumbing (models
fetched once through the manager, loaded under the job's lease, a ``diarizing`` stage with
progress, a speaker on every segment and timed word, renames re-rendered in every format) and,
with a known diarization, whisperx's assignment rule. Speech is the real tiny.en on espeak-ng.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelmgr.asr import diarize as diarize_module
from modelmgr.asr.diarize import Turn, assign_speakers
from modelmgr.asr.job_options import validate_options
from modelmgr.asr.jobs import JobOptions
from modelmgr.asr.subtitles import Segment, Transcript, Word
from modelmgr.core.errors import InvalidInput, ModelInUse
from modelmgr.services import Services
from tests import tiny_models
from tests.conftest import ACCEPTED_TOKEN, DIARIZER, LiveServer, run_server, wait_until
from tests.fresh import Poller, fresh_server
from tests.speech import wer

TIMEOUT = 600  # the first diarizing job imports torch, whisperx and pyannote on a loaded 2-core box
LABEL = re.compile(r"^SPEAKER_\d\d$")
PARTS = (tiny_models.PYANNOTE_SEGMENTATION, tiny_models.PYANNOTE_EMBEDDING)


def _word(text: str, start: float, end: float) -> Word:
    return Word(text, start, end, 0.9)


def test_each_word_goes_to_the_speaker_whose_turn_covers_it() -> None:
    """A known diarization (Alice 0-4 s, Bob 4-9 s, Alice again 9-12 s) and one segment spanning
    the first change: whisperx's rule gives each word its own speaker, the segment the speaker it
    overlaps most, and nothing to a word no turn touches."""
    transcript = Transcript(
        "en",
        14.0,
        (
            Segment(
                1.0,
                6.0,
                "hello there how are you",
                (
                    _word("hello", 1.0, 1.5),
                    _word("there", 2.0, 3.5),
                    _word("how", 4.2, 4.6),
                    _word("are", 4.7, 5.0),
                    _word("you", 5.1, 6.0),
                ),
            ),  # fmt: skip
            Segment(6.5, 8.5, "fine thanks", (_word("fine", 6.5, 7.0), _word("thanks", 7.5, 8.5))),
            Segment(9.5, 11.0, "good", (_word("good", 9.5, 11.0),)),
            Segment(12.5, 13.5, "hmm", (_word("hmm", 12.5, 13.5), Word("42", None, None, None))),
        ),
    )
    turns = [Turn(0.0, 4.0, "SPEAKER_00"), Turn(4.0, 9.0, "SPEAKER_01"), Turn(9.0, 12.0, "SPEAKER_00")]
    out = assign_speakers(transcript, turns)
    words = [(w.text, w.speaker) for seg in out.segments for w in seg.words]
    assert words == [
        ("hello", "SPEAKER_00"), ("there", "SPEAKER_00"), ("how", "SPEAKER_01"), ("are", "SPEAKER_01"),
        ("you", "SPEAKER_01"), ("fine", "SPEAKER_01"), ("thanks", "SPEAKER_01"), ("good", "SPEAKER_00"),
        ("hmm", None), ("42", None),
    ]  # fmt: skip
    # 1-6 s: 3 s with SPEAKER_00 (1-4), 2 s with SPEAKER_01 (4-6)
    assert [seg.speaker for seg in out.segments] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_00", None]
    assert out.speakers == ("SPEAKER_00", "SPEAKER_01")
    assert assign_speakers(transcript, []) == transcript  # no turns: nothing assigned, nothing lost


def _submit(services: Services, audio: Path, tmp_path: Path, **options: Any):
    upload = tmp_path / f"upload-{len(list(tmp_path.iterdir()))}.wav"
    upload.write_bytes(audio.read_bytes())
    return services.transcriptions.submit(upload, "meeting.wav", JobOptions(model="tiny.en", **options))


def test_a_diarizing_job_fetches_the_gated_models_once_and_gives_everything_a_speaker(
    diarize_settings, gated_hub, english, dialogue, tiny_pyannote, tmp_path: Path
) -> None:
    tiny = tiny_pyannote
    services = Services.build(diarize_settings)
    events: list[dict] = []
    publish = services.bus.publish

    def recording(name: str, data: dict) -> Any:
        if name == "transcription":
            events.append(dict(data))
        return publish(name, data)

    services.bus.publish = recording  # type: ignore[method-assign]
    try:
        first = _submit(services, english.path, tmp_path, diarize=True, num_speakers=2)
        assert first.done.wait(TIMEOUT) and first.status == "done", first.error
        second = _submit(services, dialogue.path, tmp_path, diarize=True, min_speakers=1, max_speakers=3)
        assert second.done.wait(TIMEOUT) and second.status == "done", second.error
        events = [e for e in events if e["id"] == first.id]
        folders = {DIARIZER: tiny.pipeline, PARTS[0]: tiny.segmentation, PARTS[1]: tiny.embedding}
        for repo, folder in folders.items():
            wanted = "config.yaml" if repo == DIARIZER else "pytorch_model.bin"
            size = (folder / wanted).stat().st_size
            assert gated_hub.bytes_sent(repo, wanted) == size, f"{repo} fetched once for two jobs"
            assert services.downloads.describe(services.catalog.get(repo))["status"] == "downloaded"
        loaded = services.preload.status()["diarizers"]
        assert loaded == [{"id": DIARIZER, "models": list(PARTS)}], "loaded once, kept for the next job"
        data = json.loads(first.result_path("json").read_text())
        assert data["speakers"] and all(LABEL.match(s["id"]) for s in data["speakers"])
        assert {s["id"] for s in data["speakers"]} <= {"SPEAKER_00", "SPEAKER_01"}  # num_speakers=2
        assert all(LABEL.match(seg["speaker_id"]) for seg in data["segments"]), "every segment has a speaker"
        timed = [w for seg in data["segments"] for w in seg["words"] if w["start"] is not None]
        assert timed and all(LABEL.match(w["speaker_id"]) for w in timed), "every timed word has a speaker"
        text = " ".join(seg["text"] for seg in data["segments"])
        assert wer(english.script, text) <= 0.15, "diarizing changes no word"
        assert first.describe()["speakers"] == data["speakers"]
        stages = [e["status"] for e in events]
        assert "diarizing" in stages and stages.index("diarizing") > stages.index("transcribing")
        progress = [e["progress"] for e in events if e["status"] == "diarizing"]
        assert progress == sorted(progress) and len(set(progress)) >= 3 and progress[-1] >= 90, progress
        srt = first.result_path("srt").read_text()
        cues = re.findall(r"^\[(SPEAKER_\d\d)\] \S", srt, re.M)
        assert len(cues) == len(data["segments"])
        vtt = first.result_path("vtt").read_text()
        assert len(re.findall(r"^<v SPEAKER_\d\d>.+</v>$", vtt, re.M)) == len(data["segments"])
    finally:
        services.shutdown()


def _cached_files(settings: Any) -> list[str]:
    return sorted(str(p) for p in Path(settings.hub_cache).rglob("*") if p.is_file())


def test_the_diarizer_cannot_be_deleted_or_cleared_while_a_job_uses_it(
    diarize_settings, dialogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    real = diarize_module.diarize

    def held(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        assert release.wait(TIMEOUT), "the test never released the job"
        return real(*args, **kwargs)

    monkeypatch.setattr("modelmgr.asr.pipeline.diarize", held)
    services = Services.build(diarize_settings)
    try:
        job = _submit(services, dialogue.path, tmp_path, diarize=True)
        assert entered.wait(TIMEOUT), job.error
        assert job.status == "diarizing"
        files_before = _cached_files(diarize_settings)
        for model in (DIARIZER, *PARTS):
            with pytest.raises(ModelInUse):
                services.downloads.delete(model)
        with pytest.raises(ModelInUse):
            services.preload.clear_cache()
        assert _cached_files(diarize_settings) == files_before
        release.set()
        assert job.done.wait(TIMEOUT) and job.status == "done", job.error
        services.preload.clear_cache()
        assert services.preload.status()["diarizers"] == []
        services.downloads.delete(tiny_models.PYANNOTE_SEGMENTATION)  # free again once no job holds it
    finally:
        release.set()
        services.shutdown()


def test_a_job_cancelled_while_diarizing_stops_there(
    diarize_settings, dialogue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reached = threading.Event()
    real = diarize_module.diarize

    def slow(pipeline: Any, audio: Any, counts: Any, **kwargs: Any) -> Any:
        reached.set()
        wait_until(lambda: kwargs["cancel"].is_set(), TIMEOUT, "the cancel")
        return real(pipeline, audio, counts, **kwargs)  # pyannote's first hook call sees the cancel

    monkeypatch.setattr("modelmgr.asr.pipeline.diarize", slow)
    services = Services.build(diarize_settings)
    try:
        job = _submit(services, dialogue.path, tmp_path, diarize=True)
        assert reached.wait(TIMEOUT), job.error
        services.transcriptions.cancel(job.id)
        assert job.done.wait(TIMEOUT)
        assert job.status == "cancelled"
        assert not job.result_path("json").exists()
    finally:
        services.shutdown()


def test_bad_speaker_options_are_refused_before_anything_is_stored(services: Services, tiny) -> None:
    bad = [
        {"diarize": True, "min_speakers": 3, "max_speakers": 2},
        {"diarize": True, "num_speakers": 0},
        {"diarize": True, "max_speakers": -1},
        {"diarize": True, "num_speakers": 5, "max_speakers": 3},
        {"num_speakers": 2},  # a count without diarize
        {"diarize": True, "diarize_model": "tiny"},  # a Whisper model cannot diarize
        {"diarize": True, "diarize_model": tiny_models.PYANNOTE_SEGMENTATION},  # a part, not a pipeline
    ]
    for options in bad:
        with pytest.raises(InvalidInput) as caught:
            services.transcriptions.validate(JobOptions(model="tiny", **options))
        assert caught.value.message, options
    assert services.transcriptions.jobs() == []
    options = JobOptions(model="tiny", diarize=True, min_speakers=2, max_speakers=2)
    ok = validate_options(services.catalog, options)  # (the manager then refuses it: no token here)
    assert ok.diarize_model == DIARIZER


def _diarized_job(live: LiveServer, audio: Path, **fields: Any) -> dict:
    with audio.open("rb") as f:
        created = httpx.post(
            f"{live.url}/api/transcriptions",
            files={"file": ("meeting.wav", f, "audio/wav")},
            data={"model": "tiny.en", "diarize": "true", **{k: str(v) for k, v in fields.items()}},
            timeout=60,
        )
    assert created.status_code == 202, created.text
    url = f"{live.url}/api/transcriptions/{created.json()['id']}"
    done = wait_until(
        lambda: (j := httpx.get(url, timeout=30).json())["status"] in ("done", "error", "cancelled") and j,
        TIMEOUT,
        "the diarizing job",
    )
    assert done["status"] == "done", done["error"]
    return done


def test_renamed_speakers_show_in_every_format_and_bad_renames_change_nothing(
    diarize_settings, dialogue
) -> None:
    with run_server(diarize_settings) as live:
        job = _diarized_job(live, dialogue.path, num_speakers=2)
        url = f"{live.url}/api/transcriptions/{job['id']}"
        first = job["speakers"][0]["id"]
        before = {fmt: httpx.get(f"{url}/result?format={fmt}", timeout=30).text for fmt in ("srt", "json")}
        for body, status in (
            ({"SPEAKER_99": "Zed"}, 400),
            ({first: "x" * 81}, 400),
            ({first: "line\x00break"}, 400),
            ({first: 7}, 400),
            ({}, 400),
            (["Alice"], 422),
        ):
            answer = httpx.patch(f"{url}/speakers", json=body, timeout=30)
            assert answer.status_code in (status, 422) and answer.json()["error"]["message"], (
                body,
                answer.text,
            )
        assert {fmt: httpx.get(f"{url}/result?format={fmt}", timeout=30).text for fmt in before} == before
        renamed = httpx.patch(f"{url}/speakers", json={first: "Alice  Smith"}, timeout=30)
        assert renamed.status_code == 200, renamed.text
        assert {"id": first, "name": "Alice Smith"} in renamed.json()["speakers"]
        srt = httpx.get(f"{url}/result?format=srt", timeout=30).text
        vtt = httpx.get(f"{url}/result?format=vtt", timeout=30).text
        txt = httpx.get(f"{url}/result?format=txt", timeout=30).text
        data = httpx.get(f"{url}/result?format=json", timeout=30).json()
        assert "[Alice Smith] " in srt and f"[{first}]" not in srt
        assert "<v Alice Smith>" in vtt
        assert re.search(r"^Alice Smith: \S", txt, re.M)
        named = [seg for seg in data["segments"] if seg["speaker_id"] == first]
        assert named and all(seg["speaker"] == "Alice Smith" for seg in named)
        assert httpx.get(url, timeout=30).json()["speakers"] == renamed.json()["speakers"]
        back = httpx.patch(f"{url}/speakers", json={first: ""}, timeout=30)  # an empty name: the label again
        assert back.status_code == 200 and {"id": first, "name": first} in back.json()["speakers"]
        assert f"[{first}] " in httpx.get(f"{url}/result?format=srt", timeout=30).text


def test_the_openai_client_gets_diarized_json(diarize_settings, dialogue) -> None:
    from openai import OpenAI
    from openai.types.audio import TranscriptionDiarized

    with run_server(diarize_settings) as live:
        client = OpenAI(base_url=f"{live.url}/v1", api_key="unused", timeout=TIMEOUT, max_retries=0)
        with dialogue.path.open("rb") as f:
            result = client.audio.transcriptions.create(
                model="tiny.en", file=f, response_format="diarized_json", extra_body={"num_speakers": 2}
            )
        assert isinstance(result, TranscriptionDiarized)
        assert result.segments and all(LABEL.match(seg.speaker) for seg in result.segments)
        assert all(seg.type == "transcript.text.segment" and seg.end >= seg.start for seg in result.segments)
        # The words, not their quality (tests/asr/test_real_speech.py measures that): on these two
        # sentences tiny.en itself gets 5 of 28 words wrong ("round fox", "stellar").
        assert wer(dialogue.script, result.text) <= 0.25
        assert abs(result.duration - dialogue.duration) < 0.5
        with dialogue.path.open("rb") as f:
            bad = httpx.post(
                f"{live.url}/v1/audio/transcriptions",
                files={"file": ("a.wav", f, "audio/wav")},
                data={
                    "model": "tiny.en",
                    "response_format": "diarized_json",
                    "min_speakers": "3",
                    "max_speakers": "2",
                },
                timeout=60,
            )
        assert bad.status_code == 400 and "max_speakers" in bad.json()["error"]["message"]


@pytest.mark.slow
def test_a_fresh_server_with_hf_token_diarizes_with_the_api(
    diarize_settings, gated_hub, dialogue, tiny_pyannote, tmp_path
) -> None:
    """As a new user: `HF_TOKEN=... uv run app.py`, one request with diarize=true, a second client
    polling; the gated models come down once, the subtitles name speakers, the token is in no log."""
    settings = diarize_settings.model_copy(update={"hf_token": None})
    with fresh_server(settings, tmp_path, HF_TOKEN=ACCEPTED_TOKEN) as app:
        with Poller(
            [f"{app.url}/api/models", f"{app.url}/api/transcriptions", f"{app.url}/api/preload/status"]
        ) as polls:
            job = _diarized_job(app, dialogue.path)  # type: ignore[arg-type]
        srt = httpx.get(f"{app.url}/api/transcriptions/{job['id']}/result?format=srt", timeout=30).text
        assert re.search(r"^\[SPEAKER_\d\d\] \S", srt, re.M), srt[:300]
        assert polls.polls > 20 and polls.failures == [], polls.failures[:5]
        size = (tiny_pyannote.segmentation / "pytorch_model.bin").stat().st_size
        assert gated_hub.bytes_sent(tiny_models.PYANNOTE_SEGMENTATION, "pytorch_model.bin") == size
        assert ACCEPTED_TOKEN not in app.output()
    assert ACCEPTED_TOKEN not in app.output()


def test_without_a_token_a_diarizing_job_is_refused_up_front_saying_what_to_do(
    gated_hub, tmp_path: Path, tiny
) -> None:
    from tests.conftest import hub_settings

    settings = hub_settings(gated_hub, tmp_path)  # no token anywhere
    with run_server(settings) as live:
        with tiny.wav.open("rb") as f:
            refused = httpx.post(
                f"{live.url}/api/transcriptions",
                files={"file": ("meeting.wav", f, "audio/wav")},
                data={"model": "tiny", "language": "zh", "diarize": "true"},
                timeout=60,
            )
        assert refused.status_code == 401, refused.text
        error = refused.json()["error"]
        assert error["code"] == "auth_required"
        assert "HF_TOKEN" in error["message"] and f"{gated_hub.url}/{DIARIZER}" in error["message"]
        assert httpx.get(f"{live.url}/api/transcriptions", timeout=30).json()["jobs"] == []
        assert not [path for _, path in gated_hub.requests if "pyannote" in path], "no hub request"
        assert not list(live.services.transcriptions.root.iterdir()), "no upload kept"
