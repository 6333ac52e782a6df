"""Speakers in the Transcribe tab's segment table, without a browser: the pure helpers in views.py
and the timer's redraw in wiring.py. tests/e2e/test_diarization.py drives the same through chromium."""

from __future__ import annotations

import re
from typing import Any

import gradio as gr
import pytest

from modelmgr.asr.subtitles import Segment, Transcript, Word, rename_speakers
from modelmgr.core.errors import InvalidInput
from modelmgr.core.settings import Settings
from modelmgr.services import Services
from modelmgr.web.ui import views as ui_view
from modelmgr.web.ui import wiring as ui

JOB = "a" * 32


def diarized() -> Transcript:
    return Transcript(
        language="en",
        duration=6.0,
        segments=(
            Segment(
                0.0, 2.0, " hello there", (Word("hello", 0.0, 0.8, 0.9, "SPEAKER_01"),), speaker="SPEAKER_01"
            ),
            Segment(
                2.0, 4.0, " fine thanks", (Word("fine", 2.0, 2.5, 0.9, "SPEAKER_00"),), speaker="SPEAKER_00"
            ),
            Segment(4.5, 5.0, " hmm"),  # no turn covers it
        ),
    )


def cells(table: str) -> list[list[tuple[str, str]]]:
    """Per row: (the td's attributes, its text)."""
    rows = re.findall(r'<tr data-row="\d+">(.*?)</tr>', table)
    return [re.findall(r"<td([^>]*)>(.*?)</td>", row) for row in rows]


def test_a_table_without_diarization_looks_as_before():
    plain = Transcript("en", 2.0, (Segment(0.0, 1.0, " hi", (Word("hi", 0.0, 0.5, 0.9),)),))
    assert ui_view.segment_speakers(plain) is None
    rows = ui_view.segment_rows(plain)
    table = ui_view.render_segments(rows, "<b>a.wav</b>", JOB, ui_view.segment_speakers(plain))
    assert table == ui_view.render_segments(rows, "<b>a.wav</b>", JOB)
    assert re.findall(r"<th>(\w+)</th>", table) == ["start", "end", "text", "words"]
    assert "speaker" not in table
    assert ui_view.segments_key({"id": JOB, "speakers": None}) == JOB


def test_a_diarized_table_has_a_speaker_column_with_the_names_and_keeps_its_column_hooks():
    transcript = rename_speakers(diarized(), {"SPEAKER_01": "<Ada> & co"})
    speakers = ui_view.segment_speakers(transcript)
    assert speakers == [("SPEAKER_01", "<Ada> & co"), ("SPEAKER_00", "SPEAKER_00"), ("", "")]
    table = ui_view.render_segments(ui_view.segment_rows(transcript), "<b>a.wav</b>", JOB, speakers)
    assert re.findall(r"<th>(\w+)</th>", table) == ["start", "end", "speaker", "text", "words"]
    first, second, third = cells(table)
    assert first[2] == (' class="c-speaker" data-speaker="SPEAKER_01"', "&lt;Ada&gt; &amp; co")  # escaped
    assert second[2] == (' class="c-speaker" data-speaker="SPEAKER_00"', "SPEAKER_00")
    assert third[2] == (' class="c-speaker" data-speaker=""', "")
    # data-col 0-3 are still start, end, text, words (tests/e2e/conftest.py segment_cells reads them)
    cols = [(attrs, text) for attrs, text in first if "data-col" in attrs]
    assert cols == [
        (' data-col="0"', "0:00.00"),
        (' data-col="1"', "0:02.00"),
        (' data-col="2"', "hello there"),
        (' data-col="3"', "hello 0.00–0.80"),
    ]


def test_the_segments_key_changes_with_a_rename_and_only_then():
    speakers = [{"id": "SPEAKER_00", "name": "SPEAKER_00"}, {"id": "SPEAKER_01", "name": "SPEAKER_01"}]
    key = ui_view.segments_key({"id": JOB, "speakers": speakers})
    assert key.startswith(JOB) and key == ui_view.segments_key({"id": JOB, "speakers": list(speakers)})
    renamed = [{"id": "SPEAKER_00", "name": "Ada"}, speakers[1]]
    assert ui_view.segments_key({"id": JOB, "speakers": renamed}) != key
    assert ui_view.segments_key({"id": "b" * 32, "speakers": speakers}) != key
    assert ui_view.segments_key(None) is None


@pytest.fixture
def services(tmp_path):
    settings = Settings(hf_home=tmp_path / "hf", hf_endpoint="http://127.0.0.1:9", offline=True)
    services = Services.build(settings)
    yield services
    services.shutdown()


def timer_refresh(demo: gr.Blocks):
    """The timer's handler, and where the segment table and its key are among its outputs."""
    [tick] = [d for d in demo.fns.values() if any(t[1] == "tick" for t in d.targets)]
    ids = [getattr(block, "_id", block) for block in tick.outputs]
    table = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "segments-table")
    at = ids.index(table._id)
    return tick.fn, at


def test_the_page_draws_the_speakers_of_the_job_shown_and_redraws_them_after_a_rename(services, monkeypatch):
    state: dict[str, Any] = {"transcript": diarized()}

    def job() -> dict[str, Any]:
        t = state["transcript"]
        return {
            "id": JOB,
            "status": "done",
            "finished_at": 1.0,
            "file": {"name": "meeting.wav", "size_bytes": 10},
            "options": {"model": "tiny.en", "language": None, "device": "auto", "diarize": True},
            "language": "en",
            "device": "cpu",
            "segments": len(t.segments),
            "duration_s": t.duration,
            "speakers": [{"id": s, "name": t.name(s)} for s in t.speakers],
            "formats": ["srt", "vtt", "json", "txt"],
            "warnings": [],
        }

    transcriptions = services.transcriptions
    monkeypatch.setattr(transcriptions, "snapshot", lambda limit=50: [job()])
    monkeypatch.setattr(transcriptions, "transcript", lambda job_id: state["transcript"])
    refresh, at = timer_refresh(ui.build_ui(services))

    out = refresh(None, None, "", "")
    table, key = out[at], out[at + 1]
    assert key == ui_view.segments_key(job())
    assert (
        'data-speaker="SPEAKER_01">SPEAKER_01<' in table and 'data-speaker="SPEAKER_00">SPEAKER_00<' in table
    )
    assert "<th>speaker</th>" in table and 'data-job="' + JOB in table

    again = refresh(None, None, "", key)  # nothing changed: the (long) table is not sent again
    assert again[at] == gr.skip() and again[at + 1] == gr.skip()

    state["transcript"] = rename_speakers(state["transcript"], {"SPEAKER_01": "Alice"})
    renamed = refresh(None, None, "", key)
    assert 'data-speaker="SPEAKER_01">Alice<' in renamed[at] and renamed[at + 1] != key


def test_the_pages_speaker_names_become_the_rename_apis_object():
    parse = ui_view.parse_speaker_names
    assert parse("SPEAKER_00=Alice, SPEAKER_01 = Bob Smith\nSPEAKER_02=") == {
        "SPEAKER_00": "Alice",
        "SPEAKER_01": "Bob Smith",
        "SPEAKER_02": "",  # an empty name: the label again
    }
    for bad in ("", " , ", "Alice", "=Alice", "SPEAKER_00 Alice"):
        with pytest.raises(InvalidInput):
            parse(bad)
