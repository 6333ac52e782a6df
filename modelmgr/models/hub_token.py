"""The Hugging Face token, and the words for a hub that wants one.

Where it comes from, first found wins:

1. ``settings.hf_token`` (``MODELMGR_HF_TOKEN`` or ``HF_TOKEN``, read once by Settings);
2. huggingface_hub's token file (``huggingface_hub.constants.HF_TOKEN_PATH``: ``$HF_HOME/token``
   or ``HF_TOKEN_PATH``), which ``hf auth login`` writes. It is read again at every use (a small
   file), so a login while the studio runs counts from the next download on.

huggingface_hub is never left to look for a token itself (it is always passed a string or
``False``): it would raise from deep inside a request on a token file it cannot read. Here an
unreadable file (a directory, bytes that are not UTF-8, no permission) is ``TokenUnreadable``
for a gated model, and a warning (once per problem) for every other model, which is then
fetched without a token. The token is never logged and never part of an error message; the
transfer sends it to the hub endpoint only (``transfer/part_fetch.py`` strips it on a redirect
to another host, as huggingface_hub does).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from modelmgr.core.errors import AuthRequired, GatedRepo, TokenUnreadable
from modelmgr.core.settings import Settings

log = logging.getLogger(__name__)

LOGIN_HINT = "set HF_TOKEN (or MODELMGR_HF_TOKEN) for the studio, or run `hf auth login` as its user"


def token_file() -> Path:
    """huggingface_hub's token file, as it names it now (tests and HF_TOKEN_PATH move it)."""
    from huggingface_hub import constants

    return Path(constants.HF_TOKEN_PATH)


class HubToken:
    """The token to send to the hub, from the settings or huggingface_hub's token file."""

    def __init__(self, settings: Settings) -> None:
        self._setting = settings.hf_token.get_secret_value().strip() if settings.hf_token else ""
        self._lock = threading.Lock()  # guards _warned (API threads and download threads read tokens)
        self._warned: set[str] = set()

    def get(self) -> str | None:
        """The token (None: there is none). Raises ``TokenUnreadable`` when the file is broken."""
        if self._setting:
            return self._setting
        path = token_file()
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:  # a directory, no permission, an I/O error
            raise self._unreadable(path, exc.strerror or type(exc).__name__) from None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self._unreadable(path, "it is not UTF-8 text") from None
        token = text.replace("\r", "").replace("\n", "").strip()  # as huggingface_hub cleans it
        return token or None

    def lenient(self) -> str | bool:
        """For models that are not gated: the token, or ``False`` (none, or the file is broken:
        logged once, and the model is fetched without a token)."""
        try:
            return self.get() or False
        except TokenUnreadable as exc:
            with self._lock:
                first = exc.message not in self._warned
                self._warned.add(exc.message)
            if first:
                log.warning("%s; downloading public models without a token", exc.message)
            return False

    def source(self) -> str:
        """Where the token comes from, in words for messages (never the token itself)."""
        return "HF_TOKEN (or MODELMGR_HF_TOKEN)" if self._setting else f"the token file {token_file()}"

    @staticmethod
    def _unreadable(path: Path, why: str) -> TokenUnreadable:
        return TokenUnreadable(
            f"the Hugging Face token file {path} cannot be read ({why}): fix or remove it "
            "(`hf auth login` writes it again), or set HF_TOKEN (or MODELMGR_HF_TOKEN) for the studio"
        )


def repo_page(endpoint: str, repo_id: str) -> str:
    """Where a person accepts a gated repo's conditions."""
    return f"{endpoint.rstrip('/')}/{repo_id}"


def _subject(model_id: str, repos: list[str]) -> str:
    """ "X is gated" or "X needs Y, which is gated" (a pipeline whose part is the gated one)."""
    others = [r for r in repos if r != model_id]
    if not others:
        return f"{model_id} is gated on the Hub"
    names = " and ".join(others)
    if model_id in repos:
        return (
            f"{model_id} and the model{'s' if len(others) > 1 else ''} it runs, {names}, are gated on the Hub"
        )
    which = "which are" if len(others) > 1 else "which is"
    return f"{model_id} needs {names}, {which} gated on the Hub"


def auth_required(endpoint: str, model_id: str, repos: list[str], token_source: str | None) -> AuthRequired:
    """No token (``token_source`` None), or the hub did not accept the one from ``token_source``."""
    pages = " and ".join(repo_page(endpoint, r) for r in repos)
    accept = f"accept the conditions at {pages} (signed in to the Hub)"
    if token_source is None:
        return AuthRequired(f"{_subject(model_id, repos)}: {accept}, then {LOGIN_HINT}, and try again")
    return AuthRequired(
        f"{_subject(model_id, repos)} and the hub did not accept the token from {token_source}: "
        f"check it (`hf auth whoami`), {accept}, then try again"
    )


def token_refused(endpoint: str, model_id: str, token_source: str) -> AuthRequired:
    """The hub refused the token itself (revoked, expired, mistyped). The Hub then answers every
    request that carries it with 401 "Invalid credentials", public repos too, so the words are
    about the token, not about any repo's conditions."""
    return AuthRequired(
        f"{endpoint} did not accept the token from {token_source} (invalid or expired) and so did not "
        f"serve {model_id}: check it (`hf auth whoami`), replace it (`hf auth login`, or a new "
        "HF_TOKEN) or remove it (public models need none), and try again"
    )


def gated_repo(endpoint: str, model_id: str, repos: list[str], token_source: str) -> GatedRepo:
    """A valid token whose owner has not accepted the conditions of ``repos``."""
    pages = " and ".join(repo_page(endpoint, r) for r in repos)
    its = "their" if len(repos) > 1 else "its"
    return GatedRepo(
        f"{_subject(model_id, repos)} and the owner of the token from {token_source} has not accepted "
        f"{its} conditions: accept them at {pages} while signed in as that user (or give the studio "
        "the token of a user who has), then try again"
    )
