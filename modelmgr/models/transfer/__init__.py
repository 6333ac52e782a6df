"""How bytes move: parallel ranged parts, a range record for resume, verify, stall watchdog.

One function, ``fetch``, takes the files to write and knows nothing about jobs,
queues or events. Deliberate choices (keep them), and the module that keeps each:

* **Parts in file order** (``parts``, ``scheduler``). A file larger than ``part_bytes`` is
  cut into parts of that size; up to ``connections`` workers take the next part in file
  order, so many connections fill a per-connection-capped line and the finished prefix
  grows steadily. Connections are added 1, 2, 4, 8 while each step raises the rate
  (``ramp``). Small files of one call are fetched concurrently. Every request holds one of
  ``connections`` slots (``session``), so the total never exceeds the setting.
* **One probe per file** (``part_fetch``). The first part is requested alone; its answer
  tells the final URL after redirects (reused for every other part) and whether the server
  honours ``Range`` (``answers``). A 200 to a ranged request switches the file to one
  sequential stream. A 403/410 from a redirected URL means the signature expired: the part
  goes back to the original URL. The HF token is never sent to another host.
* **Range record** (``record``). Beside ``<blob>.incomplete`` lives
  ``<blob>.incomplete.ranges``; bytes are written before the record says so and the record
  is replaced atomically, so after ``kill -9`` a new process resumes every part where it
  stood.
* **Verify the prefix while fetching** (``hasher``). A thread follows the contiguous
  finished prefix and hashes it; the partial is renamed into place only when size and hash
  match (``file``).
* **Retries per part** (``part_fetch``). A cut, 5xx or stall retries that part alone, from
  the byte it reached; cancel, a full disk (``disk``) and access errors are not retried.
* **Stall watchdog and prompt cancel** (``watchdog``). Each request's socket is known; a
  watchdog thread shuts it down when the part moved no byte for ``stall_s``, or at once on
  cancel, so neither waits for the read deadline.
* **Progress never passes 100%.** A part reports only bytes inside its range, and bytes
  discarded are taken back out of the count with a negative ``on_progress``.

This package's face is the names below; the modules behind it are free to change.
"""

from __future__ import annotations

# `os` stays an attribute here: tests patch ``transfer.os.pwrite`` (the module is shared, so
# the patch reaches the ``os.pwrite`` that ``part_fetch`` looks up at each write).
import os  # noqa: F401

from modelmgr.models.transfer.entry import DEFAULT_CONNECTIONS, DEFAULT_PART_BYTES, fetch
from modelmgr.models.transfer.record import RANGES_SUFFIX, bytes_present, record_path
from modelmgr.models.transfer.session import ProgressFn

__all__ = [
    "DEFAULT_CONNECTIONS",
    "DEFAULT_PART_BYTES",
    "RANGES_SUFFIX",
    "ProgressFn",
    "bytes_present",
    "fetch",
    "record_path",
]
