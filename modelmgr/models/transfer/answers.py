"""What an HTTP answer means for a part: go on, retry, switch to one stream, or fail.

The signals below never leave the package: a part's fetcher turns them into a retry, a
one-stream restart or a fresh resolve of the URL; ``check_status`` turns the final ones into
the errors the rest of the program knows.
"""

from __future__ import annotations

import httpx

from modelmgr.core.errors import AccessDenied, AuthRequired, DownloadFailed, GatedRepo, RemoteNotFound


class Retryable(Exception):
    """A server hiccup (5xx, short body, stall) worth another ranged attempt."""


class NoRanges(Exception):
    """The server answered 200 to a ranged request: fetch this file as one stream."""


class Reresolve(Exception):
    """The signed (redirected) URL expired: resolve the original URL again."""


def check_content_range(response: httpx.Response, start: int, size: int) -> None:
    value = response.headers.get("content-range", "")
    try:
        unit, _, rest = value.partition(" ")
        first = int(rest.split("-", 1)[0])
        total = rest.rsplit("/", 1)[1]
    except (ValueError, IndexError):
        raise Retryable(f"bad Content-Range {value!r}") from None
    if unit != "bytes" or first != start or total not in ("*", str(size)):
        raise Retryable(f"Content-Range {value!r} does not start at byte {start} of {size}")


def check_status(response: httpx.Response, url: str) -> None:
    code = response.status_code
    if code in (200, 206):
        return
    gated = response.headers.get("x-error-code") == "GatedRepo"
    if code == 401:  # no token, or one the hub does not accept (worker.py names the repo's page)
        raise AuthRequired(f"{url} answered 401: the hub wants a token (HF_TOKEN, or `hf auth login`)")
    if code == 403 and gated:
        raise GatedRepo(f"{url} answered 403: the token's owner has not accepted the repo's conditions")
    if code == 403:
        raise AccessDenied(f"access denied to {url}: is HF_TOKEN set and accepted?")
    if code == 404:
        raise RemoteNotFound(f"{url} was not found")
    if code >= 500 or code == 429:
        raise Retryable(f"server answered {code}")
    raise DownloadFailed(f"{url}: unexpected HTTP {code}")
