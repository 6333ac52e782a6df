"""nltk's ``punkt_tab``, which ``whisperx.align`` needs, provided by us.

whisperx loads punkt and, when it is missing, calls ``nltk.download`` at
transcription time, which fails (or hangs) offline. So the manager fetches the
data together with the alignment models, into a folder it controls, from a
configurable URL (nltk's own by default, a mirror or the test hub otherwise).
If that fails, it writes minimal empty tables: sentence splitting still works,
without the abbreviation list, and the log says so. Those placeholders are marked
(``punkt_tab/.placeholder``) so they never pass for the real data: the next call
fetches again (at most once every few minutes per source) and replaces them.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import zipfile
from pathlib import Path, PurePosixPath

import httpx

from modelmgr.core.settings import Settings

log = logging.getLogger(__name__)
PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")
_MAX_ZIP_BYTES = 64 * 1024 * 1024
PLACEHOLDER = ".placeholder"
RETRY_AFTER_S = 300.0
_failed_at: dict[tuple[str, str], float] = {}  # (folder, url) -> last failed fetch; guarded by _failed_lock
_failed_lock = threading.Lock()


def punkt_dir(nltk_dir: Path) -> Path:
    return nltk_dir / "tokenizers" / "punkt_tab"


def punkt_present(nltk_dir: Path) -> bool:
    english = punkt_dir(nltk_dir) / "english"
    return all((english / name).is_file() for name in PUNKT_FILES)


def punkt_is_placeholder(nltk_dir: Path) -> bool:
    return (punkt_dir(nltk_dir) / PLACEHOLDER).exists()


def ensure_punkt(settings: Settings) -> Path:
    """Make ``settings.nltk_dir`` hold punkt_tab; returns the folder for ``nltk.data.path``."""
    nltk_dir = settings.nltk_dir
    if punkt_present(nltk_dir) and not punkt_is_placeholder(nltk_dir):
        return nltk_dir
    key = (str(nltk_dir), settings.nltk_punkt_url)
    with _failed_lock:
        recently_failed = time.monotonic() - _failed_at.get(key, -RETRY_AFTER_S) < RETRY_AFTER_S
    if not settings.offline and not recently_failed:
        try:
            _fetch(settings.nltk_punkt_url, nltk_dir, settings.download_timeout_s)
            (punkt_dir(nltk_dir) / PLACEHOLDER).unlink(missing_ok=True)  # the real data replaced them
        except (httpx.HTTPError, zipfile.BadZipFile, OSError, ValueError) as exc:
            with _failed_lock:
                _failed_at[key] = time.monotonic()
            log.warning("could not fetch nltk punkt_tab from %s (%s)", settings.nltk_punkt_url, exc)
    if not punkt_present(nltk_dir):
        log.warning("using minimal punkt tables: sentence splits may break after abbreviations")
        english = punkt_dir(nltk_dir) / "english"
        english.mkdir(parents=True, exist_ok=True)
        for name in PUNKT_FILES:
            (english / name).touch()
        (punkt_dir(nltk_dir) / PLACEHOLDER).touch()  # never mistaken for the real data
    return nltk_dir


def _fetch(url: str, nltk_dir: Path, timeout_s: float) -> None:
    with httpx.stream("GET", url, follow_redirects=True, timeout=timeout_s) as response:
        response.raise_for_status()
        buffer = io.BytesIO()
        for chunk in response.iter_bytes():
            buffer.write(chunk)
            if buffer.tell() > _MAX_ZIP_BYTES:
                raise ValueError("punkt_tab archive is implausibly large")
    target = nltk_dir / "tokenizers"
    with zipfile.ZipFile(buffer) as archive:
        for member in archive.infolist():
            path = PurePosixPath(member.filename)
            if path.is_absolute() or ".." in path.parts or not path.parts or path.parts[0] != "punkt_tab":
                continue  # only punkt_tab/..., never a path that escapes the folder
            destination = target.joinpath(*path.parts)
            if member.is_dir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(archive.read(member))
