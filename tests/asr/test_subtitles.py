"""Subtitle writers: exact formatting, since players are picky about SRT/VTT syntax."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelmgr.asr.subtitles import (
    Segment,
    Transcript,
    Word,
    format_timestamp,
    from_json,
    rename_speakers,
    to_json,
    to_srt,
    to_txt,
    to_vtt,
    write_all,
)


def _transcript() -> Transcript:
    return Transcript(
        language="en",
        duration=3725.5,
        segments=(
            Segment(
                start=0.0,
                end=1.5,
                text=" Hello world.",
                words=(Word("Hello", 0.0, 0.6, 0.9), Word("world.", 0.7, 1.5, 0.8)),
            ),
            Segment(
                start=3723.0004,
                end=3725.4996,
                text=" Room 101 <b> & -->",
                words=(
                    Word("Room", 3723.0, 3723.4, 0.7),
                    Word("101", None, None, None),
                    Word("<b>", 3724.0, 3724.2, 0.5),
                ),
            ),
        ),
    )


@pytest.mark.parametrize(
    ("seconds", "srt", "vtt"),
    [
        (0.0, "00:00:00,000", "00:00:00.000"),
        (1.0004, "00:00:01,000", "00:00:01.000"),
        (1.0006, "00:00:01,001", "00:00:01.001"),
        (59.9996, "00:01:00,000", "00:01:00.000"),  # rounds up across the minute
        (61.234, "00:01:01,234", "00:01:01.234"),
        (3725.5, "01:02:05,500", "01:02:05.500"),
        (360000.0, "100:00:00,000", "100:00:00.000"),  # hours do not wrap
        (-1.0, "00:00:00,000", "00:00:00.000"),
        (float("nan"), "00:00:00,000", "00:00:00.000"),
    ],
)
def test_format_timestamp(seconds: float, srt: str, vtt: str) -> None:
    assert format_timestamp(seconds) == srt
    assert format_timestamp(seconds, decimal_marker=".") == vtt


def test_srt_exact() -> None:
    assert to_srt(_transcript()) == (
        "1\n"
        "00:00:00,000 --> 00:00:01,500\n"
        "Hello world.\n"
        "\n"
        "2\n"
        "01:02:03,000 --> 01:02:05,500\n"
        "Room 101 <b> & -->\n"
    )


def test_vtt_exact_and_escaped() -> None:
    assert to_vtt(_transcript()) == (
        "WEBVTT\n"
        "\n"
        "00:00:00.000 --> 00:00:01.500\n"
        "Hello world.\n"
        "\n"
        "01:02:03.000 --> 01:02:05.500\n"
        "Room 101 &lt;b&gt; &amp; -&gt;\n"
    )


def test_cue_numbering_skips_blank_segments_and_fixes_reversed_times() -> None:
    t = Transcript(
        "en",
        10.0,
        (
            Segment(0.0, 1.0, "one"),
            Segment(1.0, 2.0, "   "),
            Segment(2.0, 3.0, "two\n\nlines"),
            Segment(5.0, 4.0, "reversed"),
        ),
    )
    srt = to_srt(t)
    blocks = srt.strip("\n").split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["1", "2", "3"]
    assert blocks[1].splitlines()[2:] == ["two", "lines"]  # no blank line inside a cue
    assert blocks[2].splitlines()[1] == "00:00:05,000 --> 00:00:05,000"
    assert to_txt(t) == "one\ntwo lines\nreversed\n"


def test_json_round_trip_and_schema() -> None:
    t = _transcript()
    text = to_json(t)
    data = json.loads(text)
    assert set(data) == {"language", "duration", "alignment", "segments"}
    assert set(data["segments"][0]) == {"start", "end", "text", "words"}
    assert set(data["segments"][0]["words"][0]) == {"word", "start", "end", "score"}
    assert data["segments"][1]["words"][1] == {"word": "101", "start": None, "end": None, "score": None}
    back = from_json(text)
    assert back.language == t.language and back.duration == t.duration
    assert [s.text for s in back.segments] == [s.text for s in t.segments]
    assert back.segments[0] == t.segments[0]
    assert back.segments[1].start == pytest.approx(3723.0, abs=1e-3)
    assert back.segments[1].words == t.segments[1].words
    assert to_json(back) == text  # stable after one round


def test_json_never_emits_nan() -> None:
    t = Transcript("en", 1.0, (Segment(0.0, 1.0, "x", (Word("x", float("nan"), 1.0, None),)),))
    data = json.loads(to_json(t))  # json.loads rejects nothing, so check the text too
    assert "NaN" not in to_json(t)
    assert data["segments"][0]["words"][0]["start"] is None


def test_non_ascii_kept_readable() -> None:
    t = Transcript("zh", 1.0, (Segment(0.0, 1.0, "你好世界", (Word("你", 0.0, 0.2, 0.5),)),))
    assert "你好世界" in to_json(t)
    assert "你好世界" in to_srt(t) and "你好世界" in to_vtt(t) and to_txt(t) == "你好世界\n"


def test_empty_transcript() -> None:
    t = Transcript(language="en", duration=0.0, segments=())
    assert to_srt(t) == ""
    assert to_vtt(t) == "WEBVTT\n"
    assert to_txt(t) == ""
    assert json.loads(to_json(t)) == {"language": "en", "duration": 0.0, "alignment": "none", "segments": []}
    assert from_json(to_json(t)) == t


def test_write_all(tmp_path: Path) -> None:
    t = _transcript()
    paths = write_all(t, tmp_path / "out", "talk")
    assert set(paths) == {"srt", "vtt", "json", "txt"}
    for ext, path in paths.items():
        assert path == tmp_path / "out" / f"talk.{ext}"
        assert path.is_file()
    assert paths["srt"].read_text(encoding="utf-8") == to_srt(t)
    assert from_json(paths["json"].read_text(encoding="utf-8")).segments[0] == t.segments[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "talk.json",
        "talk.srt",
        "talk.txt",
        "talk.vtt",
    ]  # no temp files left behind


@pytest.mark.parametrize("stem", ["", "..", "a/b", "a\\b"])
def test_write_all_rejects_path_like_stems(tmp_path: Path, stem: str) -> None:
    with pytest.raises(ValueError):
        write_all(_transcript(), tmp_path, stem)


def test_subtitles_module_is_light() -> None:
    """The UI re-renders results with it; it must not drag in torch or whisperx."""
    code = (
        "import sys, modelmgr.asr.subtitles; "
        "sys.exit(bool({'torch', 'numpy', 'whisperx'} & set(sys.modules)))"
    )
    root = Path(__file__).resolve().parents[2]
    assert subprocess.run([sys.executable, "-c", code], cwd=root, check=False).returncode == 0


def test_cues_never_overlap_and_never_run_past_the_audio() -> None:
    """An aligner's segments may overlap by a few ms or end after the file; players stack such cues."""
    t = Transcript(
        language="en",
        duration=5.0,
        segments=(
            Segment(start=0.0, end=2.4, text="one"),
            Segment(start=2.1, end=3.0, text="two"),  # starts before "one" ends
            Segment(start=4.5, end=5.3, text="three"),  # ends after the audio
        ),
    )
    srt = to_srt(t)
    assert "00:00:02,400 --> 00:00:03,000\ntwo" in srt
    assert "00:00:04,500 --> 00:00:05,000\nthree" in srt
    assert "00:00:02.400 --> 00:00:03.000\ntwo" in to_vtt(t)


def test_json_keeps_how_the_words_were_timed() -> None:
    t = Transcript(language="en", duration=1.0, segments=(Segment(0.0, 1.0, "hi"),), alignment="whisper")
    assert json.loads(to_json(t))["alignment"] == "whisper"
    assert from_json(to_json(t)).alignment == "whisper"
    assert from_json('{"language": "en", "duration": 1, "segments": []}').alignment == "none"


def _diarized() -> Transcript:
    return Transcript(
        language="en",
        duration=9.0,
        segments=(
            Segment(
                0.0, 2.0, " Hello there.", (Word("Hello", 0.0, 0.8, 0.9, "SPEAKER_00"),), speaker="SPEAKER_00"
            ),
            Segment(2.0, 4.0, " And you?", speaker="SPEAKER_00"),
            Segment(4.5, 6.0, " Fine <thanks>.", speaker="SPEAKER_01"),
            Segment(6.5, 8.0, " Noise.", speaker=None),
        ),
    )


def test_diarized_subtitles_name_their_speakers_in_each_format() -> None:
    t = rename_speakers(_diarized(), {"SPEAKER_01": "Bob <B>"})
    assert to_srt(t).splitlines()[2] == "[SPEAKER_00] Hello there."
    assert "[Bob <B>] Fine <thanks>." in to_srt(t)
    assert to_srt(t).splitlines()[-1] == "Noise."  # no speaker: no prefix
    vtt = to_vtt(t)
    assert "<v SPEAKER_00>Hello there.</v>" in vtt
    assert "<v Bob &lt;B&gt;>Fine &lt;thanks&gt;.</v>" in vtt  # the name is escaped like cue text
    assert to_txt(t) == "SPEAKER_00: Hello there. And you?\n\nBob <B>: Fine <thanks>.\n\nNoise.\n"
    data = json.loads(to_json(t))
    assert data["speakers"] == [
        {"id": "SPEAKER_00", "name": "SPEAKER_00"},
        {"id": "SPEAKER_01", "name": "Bob <B>"},
    ]
    assert [(s.get("speaker"), s.get("speaker_id")) for s in data["segments"]] == [
        ("SPEAKER_00", "SPEAKER_00"), ("SPEAKER_00", "SPEAKER_00"), ("Bob <B>", "SPEAKER_01"), (None, None)
    ]  # fmt: skip
    assert data["segments"][0]["words"][0]["speaker_id"] == "SPEAKER_00"
    assert from_json(to_json(t)) == t, "names and ids survive the round trip, so renames re-render"
    assert rename_speakers(t, {"SPEAKER_01": ""}).speaker_names == {}, "an empty name: the label again"


def test_a_transcript_without_speakers_renders_as_before() -> None:
    plain = Transcript("en", 3.0, (Segment(0.0, 1.0, " Hi."),))
    assert to_srt(plain) == "1\n00:00:00,000 --> 00:00:01,000\nHi.\n"
    assert "speakers" not in json.loads(to_json(plain))
    assert to_txt(plain) == "Hi.\n"
