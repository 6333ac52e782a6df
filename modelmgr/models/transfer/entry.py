"""The one entry point: ``fetch`` brings a list of targets to their final paths, or raises.

It takes the files to write and knows nothing about jobs, queues or events. Small files of
one call are fetched concurrently (a thread each); every request holds one of the session's
``connections`` slots, so the total never exceeds the setting.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from modelmgr.core.errors import Cancelled
from modelmgr.models.cache_layout import Target, file_size
from modelmgr.models.transfer.file import FileTransfer
from modelmgr.models.transfer.session import ProgressFn, Session

DEFAULT_CONNECTIONS = 8
DEFAULT_PART_BYTES = 16 * 1024 * 1024


def fetch(
    targets: Sequence[Target],
    *,
    headers: dict[str, str],
    on_progress: ProgressFn,
    cancel: threading.Event,
    retries: int = 4,
    timeout_s: float = 30.0,
    connections: int = DEFAULT_CONNECTIONS,
    part_bytes: int = DEFAULT_PART_BYTES,
    stall_s: float = 30.0,
    hash_while_fetching: bool = True,
    ramp: bool = True,
) -> None:
    """Bring every target to its final path, whole and verified, or raise.

    ``ramp=False`` opens all ``connections`` at once instead of adding them while they pay.
    """
    pending = [t for t in targets if file_size(t.final) != t.entry.size]
    if not pending:
        return
    connections = max(1, connections)
    run = Session(
        headers=headers,
        on_progress=on_progress,
        cancel=cancel,
        retries=retries,
        timeout_s=timeout_s,
        part_bytes=max(64 * 1024, part_bytes),
        stall_s=stall_s,
        hash_while_fetching=hash_while_fetching,
        connections=connections,
        ramp=ramp,
    )
    try:
        run.start_watchdog()
        files = [FileTransfer(run, t) for t in pending]
        threads = [
            threading.Thread(target=f.run_guarded, name=f"fetch:{f.entry.path}", daemon=True) for f in files
        ]
        # Files run concurrently, but each request holds a slot: at most `connections` at once.
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        errors = [f.error for f in files if f.error is not None]
        if errors:
            cancelled = [e for e in errors if isinstance(e, Cancelled)]
            raise cancelled[0] if cancel.is_set() and cancelled else _first_real(errors)
    finally:
        run.close()


def _first_real(errors: list[BaseException]) -> BaseException:
    """The error to report: a real fault rather than the cancels it caused in other files."""
    for exc in errors:
        if not isinstance(exc, Cancelled):
            return exc
    return errors[0]
