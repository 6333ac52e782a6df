"""nltk's ``punkt_tab``, which ``whisperx.align`` needs, provided by us.

whisperx loads punkt and, when it is missing, calls ``nltk.download`` at
transcription time, which fails (or hangs) offline. So the manager fetches the
data together with the alignment models, into a folder it controls, from a
configurable URL (nltk's own by default, a mirror or the test hub otherwise).
If that fails, it writes minimal empty tables: sentence splitting still works,
without the abbreviation list, and the log says so.
"""

from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path, PurePosixPath

import httpx

from .settings import Settings

log = logging.getLogger(__name__)
PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")
_MAX_ZIP_BYTES = 64 * 1024 * 1024


def punkt_dir(nltk_dir: Path) -> Path:
    return nltk_dir / "tokenizers" / "punkt_tab"


def punkt_present(nltk_dir: Path) -> bool:
    english = punkt_dir(nltk_dir) / "english"
    return all((english / name).is_file() for name in PUNKT_FILES)


def ensure_punkt(settings: Settings) -> Path:
    """Make ``settings.nltk_dir`` hold punkt_tab; returns the folder for ``nltk.data.path``."""
    nltk_dir = settings.nltk_dir
    if punkt_present(nltk_dir):
        return nltk_dir
    if not settings.offline:
        try:
            _fetch(settings.nltk_punkt_url, nltk_dir, settings.download_timeout_s)
        except (httpx.HTTPError, zipfile.BadZipFile, OSError, ValueError) as exc:
            log.warning("could not fetch nltk punkt_tab from %s (%s)", settings.nltk_punkt_url, exc)
    if not punkt_present(nltk_dir):
        log.warning("using minimal punkt tables: sentence splits may break after abbreviations")
        english = punkt_dir(nltk_dir) / "english"
        english.mkdir(parents=True, exist_ok=True)
        for name in PUNKT_FILES:
            (english / name).touch()
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
