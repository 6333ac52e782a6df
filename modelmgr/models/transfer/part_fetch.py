"""One part over HTTP: the ranged request, its answer, the bytes written, and its retries.

* **One probe per file.** The probe's answer tells the final URL after redirects (reused for
  every other part: the Hub redirects to a signed CDN URL) and whether the server honours
  ``Range``. A 200 to a ranged request switches the file to one sequential stream (adopting
  that body when it is the whole file). A 403/410 from a redirected URL means the signature
  expired: the part goes back to the original URL, which resolves it again. The HF token is
  never sent to another host.
* **Retries per part.** A cut, 5xx or stall retries that part alone, from the byte it reached.
  The attempt counter resets whenever an attempt delivered bytes (like huggingface_hub's
  ``http_get``), so a link that drops every minute still finishes a big file. Cancel, a full
  disk and access errors are not retried.
* **Progress never passes 100%.** A part reports only bytes inside its range.
"""

from __future__ import annotations

import os
import threading
import time
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from modelmgr.core.errors import Cancelled, DownloadFailed, HubTimeout
from modelmgr.models.netfaults import network_error
from modelmgr.models.transfer.answers import NoRanges, Reresolve, Retryable, check_content_range, check_status
from modelmgr.models.transfer.disk import disk_full_is_fatal
from modelmgr.models.transfer.parts import Part

if TYPE_CHECKING:
    from modelmgr.models.transfer.file import FileTransfer


class PartFetcher:
    """Fetches the parts of one file; the file holds the state they share."""

    def __init__(self, file: FileTransfer) -> None:
        self._file = file
        self._run = file.run
        self._entry = file.entry

    def fetch(self, part: Part, probe: threading.Event | None) -> None:
        """Bring ``part`` to its end, retrying from the byte it reached, or raise."""
        file, run = self._file, self._run
        attempt = 0
        while True:
            with file.lock:
                if file.single and part is not file.parts[0]:
                    part = file.parts[0]  # a 200 turned the file into one stream: that is our part now
            if part.finished:
                return
            run.check()
            file.check()
            before = part.done
            run.acquire_slot(file.check)  # before the try: only a slot we hold is released
            try:
                part = self._request(part, probe)
                if not part.finished:
                    raise Retryable(f"connection closed at {part.pos} of {part.end} bytes")
            except Reresolve:
                continue  # the original URL resolves to a fresh signed URL
            except httpx.TooManyRedirects as exc:
                raise DownloadFailed(f"{self._entry.url} redirects in a loop: check HF_ENDPOINT") from exc
            except (httpx.TransportError, Retryable) as exc:
                run.check()
                file.check()
                if part.done > before:
                    attempt = 0  # bytes arrived: this was progress, not a failing link
                attempt += 1
                if attempt > run.retries:
                    raise self._give_up(part, exc) from exc
                if run.cancel.wait(min(0.25 * 2**attempt, 8.0)):
                    raise Cancelled("cancelled") from None
            finally:
                run.slots.release()
                file.save_record(force=part.finished)

    def _give_up(self, part: Part, exc: BaseException) -> BaseException:
        where = f"{urlsplit(self._file.url).netloc} ({self._entry.path})"
        if part.stalled:
            return HubTimeout(
                f"{where} sent no bytes for {self._run.stall_s:g} s, {self._run.retries} times: "
                "the hub or mirror may be overloaded; try again, or check HF_ENDPOINT and the proxy"
            )
        if isinstance(exc, httpx.TransportError):
            return network_error(exc, where)
        return DownloadFailed(f"{self._entry.path}: gave up after {self._run.retries} retries ({exc})")

    def _request(self, part: Part, probe: threading.Event | None) -> Part:
        """One GET for a part; returns the part written (another one if the file went single)."""
        file, run, entry = self._file, self._run, self._entry
        url = file.url
        headers = dict(run.headers)
        headers["Accept-Encoding"] = "identity"  # bytes as stored: ranges and hashes refer to them
        if urlsplit(url).netloc != urlsplit(entry.url).netloc:
            headers.pop("authorization", None)  # never send the HF token to the CDN
            headers.pop("Authorization", None)
        whole = part.start == 0 and part.end == entry.size
        ranged = not (whole and part.done == 0)
        if ranged:
            last = "" if file.single else str(part.end - 1)
            headers["Range"] = f"bytes={part.pos}-{last}"
        part.stalled = part.interrupted = False
        part.sock = None
        part.last_byte_at = time.monotonic()
        run.watchdog.watch(part)
        try:
            with run.client.stream("GET", url, headers=headers) as response:
                code = response.status_code
                if code in (403, 410) and url != entry.url:
                    with file.lock:
                        if file.url == url:
                            file.url = entry.url
                    raise Reresolve()
                if code == 416:  # our partial no longer matches the remote file
                    file.discard()
                    raise Retryable("range not satisfiable; restarting the file")
                check_status(response, entry.url)
                if url == entry.url and response.history:
                    with file.lock:
                        file.url = str(response.url)  # the redirect target, reused by every other part
                if code == 200 and ranged:
                    full = response.headers.get("content-length") in (None, str(entry.size))
                    if not (full and (probe is not None or file.single)):
                        raise NoRanges()
                    if not file.single or part.done:  # adopt this whole body as one stream
                        file.go_single()
                        part = self._adopt(part, file.parts[0])
                elif code == 206:
                    check_content_range(response, part.pos, entry.size)
                if probe is not None:
                    probe.set()
                self._copy(part, response)
                return part
        finally:
            run.watchdog.unwatch(part)
            if part.interrupted and not part.stalled:  # the watchdog closed it: say why
                run.check()
                file.check()

    def _adopt(self, probe: Part, stream: Part) -> Part:
        """``stream`` takes over ``probe``'s request: its socket and the watchdog's eye (the probe
        part gets no more bytes, and watched it would look stalled and cut the stream)."""
        watchdog = self._run.watchdog
        stream.sock, stream.last_byte_at = probe.sock, time.monotonic()
        watchdog.unwatch(probe)
        watchdog.watch(stream)
        return stream

    def _copy(self, part: Part, response: httpx.Response) -> None:
        file, run = self._file, self._run
        fd = file.fd
        assert fd is not None
        try:
            with disk_full_is_fatal(self._entry.path):
                for chunk in response.iter_raw():  # as received: a cut loses nothing already written
                    if run.stopped() or file.stop.is_set():
                        run.check()
                        file.check()
                    room = part.end - part.pos
                    if len(chunk) > room:
                        chunk = chunk[:room]  # never past the part (nor 100%)
                    if chunk:
                        os.pwrite(fd, chunk, part.pos)
                        file.wrote(part, len(chunk))
                        part.last_byte_at = time.monotonic()
                        run.progress(len(chunk))
                        file.save_record()
                    if part.finished:
                        return
        except httpx.TransportError as exc:
            if part.stalled:
                raise Retryable(f"no bytes for {run.stall_s:g} s") from exc
            raise
