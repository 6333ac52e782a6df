"""A full disk is a fault of its own: never retried, always said plainly.

Both the partial (``pwrite``) and the range record are written while bytes arrive; either
may be the write that meets a full disk, and both must say so the same way.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

from modelmgr.core.errors import DiskFull


@contextlib.contextmanager
def disk_full_is_fatal(path: str) -> Iterator[None]:
    """Turn ENOSPC inside the block into ``DiskFull`` naming ``path`` (other errors pass as they are)."""
    try:
        yield
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFull(f"the disk is full while writing {path}") from exc
        raise
