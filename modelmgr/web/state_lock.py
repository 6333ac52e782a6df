"""One studio per state folder: a second ``app.py`` on the same folder stops at once.

Two embedded studios sharing ``MODELMGR_DATA_DIR`` (or ``$HF_HOME/modelmgr``) would each
re-queue the other's interrupted jobs and run them twice. The first studio takes an
exclusive ``filelock`` on ``<folder>/studio.lock`` for its whole life and writes who it is
(pid, host, port) beside it; the second finds the lock taken, reads that note and exits
with code 2 and a message naming the folder and the other studio's address.

Only the job folder is claimed: the model cache stays shareable (the CLI, ``hf`` and other
studios with their own data folder may use it), and the CLI's private job folder
(``transcriptions-<pid>``) never takes this lock. Distributed mode shares the folder between
web replicas on purpose and does not claim it. The OS drops the lock when the process dies,
so a kill -9 never leaves a folder claimed.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout

from modelmgr.core.settings import Settings

LOCK_NAME = "studio.lock"
OWNER_NAME = "studio.owner.json"


class StateFolderBusy(Exception):
    """Another studio holds the folder; ``message`` says which folder and who."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def state_folder(settings: Settings) -> Path:
    """The folder whose jobs one studio owns (the parent of ``settings.jobs_dir``)."""
    return settings.jobs_dir.parent


def claim_state_folder(settings: Settings) -> FileLock:
    """Take the folder's lock for this process (keep the returned lock referenced), or raise."""
    folder = state_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_NAME), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise StateFolderBusy(_busy_message(folder)) from None
    owner = {
        "pid": os.getpid(),
        "host": settings.host,
        "port": settings.port,
        "hostname": socket.gethostname(),
    }
    tmp = folder / f".{OWNER_NAME}.{os.getpid()}"
    tmp.write_text(json.dumps(owner), encoding="utf-8")
    os.replace(tmp, folder / OWNER_NAME)
    return lock


def _busy_message(folder: Path) -> str:
    try:
        owner = json.loads((folder / OWNER_NAME).read_text(encoding="utf-8"))
        who = f"the studio on {owner['host']}:{owner['port']} (pid {owner['pid']} on {owner['hostname']})"
    except (OSError, ValueError, KeyError, TypeError):
        who = "another studio"
    return (
        f"{who} already uses the state folder {folder}: two studios on one folder would run each "
        "other's interrupted jobs twice. Stop it, or give this one its own MODELMGR_DATA_DIR."
    )
