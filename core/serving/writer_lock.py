"""One writer at a time per models folder: an exclusive ``flock`` on ``FOLDER/.lock``.

Every writer of a models folder (an export, recording an evaluation in its manifest) holds the lock for as long
as it writes, so an export's clean-up of stale staging folders only ever meets folders whose writer is gone. The
holder writes its pid and command into the lock file; a writer that does not get the lock within ``WAIT_SECONDS``
is refused with ``FolderBusy``, naming them, and changes nothing. The holder deletes the lock file as it lets go
(a waiter that then locks the deleted file opens the new one instead); a killed holder's lock is released with its
process, and the file it leaves is taken over by the next writer. POSIX only (``fcntl``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from core.serving.models import PolicyLoadError

LOCK = ".lock"
WAIT_SECONDS = 3.0  # how long a writer waits for the lock before it is refused
POLL_SECONDS = 0.05
HOLDER_CHARS = 200  # of the holder's command, in a refusal


class FolderBusy(PolicyLoadError):
    """Another writer holds the models folder's lock."""


def _holder(handle: int) -> str:
    """What the holder wrote into the lock file ("pid N: COMMAND"), on one line."""
    text = " ".join(os.pread(handle, 4 * HOLDER_CHARS, 0).decode(errors="replace").split())
    return text[:HOLDER_CHARS] or "a writer that has not named itself yet"


def _still_there(handle: int, path: Path) -> bool:
    """``handle`` is the file at ``path`` (not one a former holder deleted as it let go)."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(handle)
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)


def _acquire(path: Path, wait: float) -> int:
    """An open handle of ``path`` holding its exclusive lock, trying every ``POLL_SECONDS`` for ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(handle)
            os.close(handle)
            if time.monotonic() >= deadline:
                raise FolderBusy(f"{path.parent}: another writer is changing this models folder ({holder}); "
                                 f"waited {wait:g} s and changed nothing: try again when it has finished") from None
            time.sleep(POLL_SECONDS)
            continue
        if _still_there(handle, path):
            return handle
        os.close(handle)


@contextlib.contextmanager
def writer_lock(folder: Path, command: str = "", wait: float | None = None) -> Iterator[None]:
    """Hold the writer lock of the existing ``folder``, naming this process and ``command`` (default: this
    process's arguments) in the lock file; ``FolderBusy`` if another writer keeps it ``wait`` seconds (default
    ``WAIT_SECONDS``)."""
    folder = Path(folder)
    wait = WAIT_SECONDS if wait is None else wait
    if not folder.is_dir():
        raise PolicyLoadError(f"{folder}: not a models folder (no such folder)")
    path = folder / LOCK
    handle = _acquire(path, wait)
    try:
        os.ftruncate(handle, 0)
        os.pwrite(handle, f"pid {os.getpid()}: {command or ' '.join(sys.argv)}".encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still locked: no other writer can be holding this file
        os.close(handle)
