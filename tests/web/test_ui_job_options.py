"""The Transcribe tab's Options (task, VAD, batch size, prompt, diarize and speaker counts), without
a browser: the pure helpers in views.py and the Transcribe button's handler in wiring.py.
tests/e2e/test_job_options.py drives the same through chromium."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from modelmgr.core.errors import InvalidInput
from modelmgr.core.settings import Settings
from modelmgr.services import Services
from modelmgr.web.ui import views as ui_view
from modelmgr.web.ui import wiring as ui
from tests.tiny_models import make_wav

DIARIZER = "pyannote/speaker-diarization-3.1"


def job_with(**options: Any) -> dict[str, Any]:
    return {"options": {"model": "tiny", "language": "zh", "device": "auto", **options}}


def test_option_fields_are_the_api_defaults_when_nothing_is_set():
    fields = ui_view.job_option_fields("transcribe", True, "", "", False, "", "", "")
    assert fields == {
        "task": "transcribe",
        "vad": True,
        "batch_size": None,
        "initial_prompt": None,
        "diarize": False,
        "num_speakers": None,
        "min_speakers": None,
        "max_speakers": None,
    }
    assert ui_view.job_option_fields(None, None, None, None, None, None, None, None) == fields


def test_option_fields_take_whole_numbers_and_drop_counts_while_diarize_is_off():
    fields = ui_view.job_option_fields("translate", False, " 4 ", "Ada", True, "", "1", 3.0)
    assert fields["task"] == "translate" and fields["vad"] is False and fields["initial_prompt"] == "Ada"
    assert fields["batch_size"] == 4 and isinstance(fields["batch_size"], int)
    assert (fields["diarize"], fields["num_speakers"], fields["min_speakers"], fields["max_speakers"]) == (
        True,
        None,
        1,
        3,
    )
    assert isinstance(fields["min_speakers"], int)
    # Unticked, the (disabled) count inputs keep their values, which do not count.
    off = ui_view.job_option_fields("transcribe", True, "", "", False, "2", "1", "abc")
    assert (off["diarize"], off["num_speakers"], off["min_speakers"], off["max_speakers"]) == (
        False,
        None,
        None,
        None,
    )
    assert ui_view.whole_number("  ", "Speakers") is None
    assert ui_view.whole_number("-1", "Speakers") == -1, "the range is the manager's to check"
    for bad in ("abc", "2.5", 2.5, "1e3"):
        with pytest.raises(InvalidInput, match="Min speakers must be a whole number"):
            ui_view.whole_number(bad, "Min speakers")


def test_the_job_line_says_diarize_and_its_speaker_counts():
    assert ui_view.job_settings_text(job_with()) == "tiny · zh · auto"
    assert ui_view.job_settings_text(job_with(diarize=True)) == "tiny · zh · auto · diarize"
    assert ui_view.job_settings_text(job_with(diarize=True, num_speakers=2)).endswith("diarize: 2 speakers")
    ranged = ui_view.job_settings_text(job_with(diarize=True, min_speakers=1, max_speakers=3))
    assert ranged.endswith("diarize: 1–3 speakers")
    assert ui_view.job_settings_text(job_with(diarize=True, min_speakers=2)).endswith("diarize: ≥ 2 speakers")
    assert ui_view.job_settings_text(job_with(task="translate", vad=False)) == (
        "tiny · zh · auto · translate · no VAD"
    )
    diarizing = {**job_with(diarize=True), "id": "a" * 32, "status": "diarizing", "progress": 40.0}
    assert ui_view.job_stage_text(diarizing) == "finding who speaks 40%"


@pytest.fixture
def offline_services(tmp_path):
    settings = Settings(hf_home=tmp_path / "hf", hf_endpoint="http://127.0.0.1:9", offline=True)
    services = Services.build(settings)
    yield services
    services.shutdown()


def transcribe_handler(services: Services):
    demo = ui.build_ui(services)
    button = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "transcribe-btn")
    return next(d.fn for d in demo.fns.values() if any(t[0] == button._id for t in d.targets))


def test_the_options_are_folded_away_and_the_counts_wait_for_diarize(offline_services):
    demo = ui.build_ui(offline_services)
    by_id = {b.elem_id: b for b in demo.blocks.values() if getattr(b, "elem_id", None)}
    assert by_id["tx-options"].open is False, "the defaults are not cluttered"
    assert by_id["tx-vad"].value is True and by_id["tx-diarize"].value is False
    assert by_id["tx-task"].value == "transcribe" and by_id["tx-batch-size"].value == ""
    for count in ("tx-num-speakers", "tx-min-speakers", "tx-max-speakers"):
        assert by_id[count].interactive is False and by_id[count].value == ""
    assert DIARIZER in by_id["tx-diarize"].info


def test_the_transcribe_button_queues_the_options_it_was_given(offline_services, tmp_path):
    manager = offline_services.transcriptions  # offline: the job ends in an error, which does not matter
    submit = transcribe_handler(offline_services)
    wav = make_wav(tmp_path / "in" / "talk.wav", seconds=1.0)
    options = ("translate", False, "2", "Ada, Grace", True, "", "1", "3")
    stage, *_ = submit([str(wav)], None, "tiny", "zh", "cpu", *options)
    assert "Queued 1 file" in stage, stage
    [job] = manager.jobs()
    stored = job.describe()["options"]
    assert (stored["task"], stored["vad"], stored["batch_size"]) == ("translate", False, 2)
    assert stored["initial_prompt"] == "Ada, Grace"
    assert (stored["diarize"], stored["num_speakers"], stored["min_speakers"], stored["max_speakers"]) == (
        True,
        None,
        1,
        3,
    )
    assert stored["diarize_model"] == DIARIZER


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (("transcribe", True, "", "", True, "", "3", "2"), "min_speakers (3) is more than max_speakers (2)"),
        (("transcribe", True, "", "", True, "0", "", ""), "num_speakers must be a whole number from 1"),
        (("transcribe", True, "", "", True, "two", "", ""), "Speakers must be a whole number"),
        (("transcribe", True, "0", "", False, "", "", ""), "batch_size must be between 1 and 256"),
        (("translate", True, "", "", False, "", "", ""), "English-only model: it cannot translate"),
    ],
)
def test_bad_options_are_said_on_the_page_and_queue_nothing(offline_services, tmp_path, options, words):
    submit = transcribe_handler(offline_services)
    wav = make_wav(tmp_path / "in" / "talk.wav", seconds=1.0)
    model = "tiny.en" if options[0] == "translate" else "tiny"
    with warnings.catch_warnings():  # gr.Warning outside a page is a Python warning
        warnings.simplefilter("ignore")
        stage, files, recording, _button = submit([str(wav)], None, model, "auto", "auto", *options)
    assert 'data-kind="err"' in stage, stage
    assert words in stage, stage
    assert offline_services.transcriptions.jobs() == []
    assert wav.exists(), "the file stays in the input for another try"
