"""punkt_tab comes with the alignment models, from a configurable URL, never at transcription time."""

from __future__ import annotations

from modelmgr.models.nltk_data import PUNKT_FILES, ensure_punkt, punkt_dir, punkt_present
from modelmgr.services import Services
from tests.conftest import PUNKT_ZIP, ZH_ALIGN, wait_until
from tests.hub import FakeHub


def test_alignment_download_brings_punkt_tab_once(services: Services, hub: FakeHub) -> None:
    services.downloads.start(ZH_ALIGN)
    wait_until(lambda: services.downloads.describe(services.catalog.get(ZH_ALIGN))["status"] == "downloaded")
    assert punkt_present(services.settings.nltk_dir)
    assert hub.get_count(None, PUNKT_ZIP) == 1
    ensure_punkt(services.settings)
    assert hub.get_count(None, PUNKT_ZIP) == 1, "present data is not fetched again"


def test_unreachable_source_falls_back_to_minimal_tables(settings, hub: FakeHub) -> None:
    settings = settings.model_copy(update={"nltk_punkt_url": f"{hub.url}/nltk/missing.zip"})
    nltk_dir = ensure_punkt(settings)
    english = punkt_dir(nltk_dir) / "english"
    assert sorted(p.name for p in english.iterdir()) == sorted(PUNKT_FILES)


def test_offline_never_reaches_out(settings, hub: FakeHub) -> None:
    ensure_punkt(settings.model_copy(update={"offline": True}))
    assert punkt_present(settings.nltk_dir)
    assert hub.requests == []


def test_archive_paths_cannot_escape_the_data_folder(settings, hub: FakeHub, tmp_path) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../../evil.txt", "x")
        zf.writestr("punkt_tab/english/collocations.tab", "")
    hub.add_static("/nltk/evil.zip", buffer.getvalue())
    ensure_punkt(settings.model_copy(update={"nltk_punkt_url": f"{hub.url}/nltk/evil.zip"}))
    assert not any(p.name == "evil.txt" for p in tmp_path.rglob("*"))


def test_placeholders_after_a_failed_fetch_do_not_disable_the_real_data(settings, hub: FakeHub) -> None:
    failing = settings.model_copy(update={"nltk_punkt_url": f"{hub.url}/nltk/missing-once.zip"})
    ensure_punkt(failing)
    english = punkt_dir(settings.nltk_dir) / "english"
    assert all((english / name).stat().st_size == 0 for name in PUNKT_FILES)
    ensure_punkt(settings)  # the source answers now: the real tables replace the placeholders
    assert hub.get_count(None, PUNKT_ZIP) == 1
    assert any((english / name).stat().st_size > 0 for name in PUNKT_FILES)
    ensure_punkt(settings)
    assert hub.get_count(None, PUNKT_ZIP) == 1, "real data is not fetched again"
