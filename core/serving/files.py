"""Durable, atomic file writes: a file is written to a temporary name in its own folder, flushed
to disk (fsync), renamed over the final name in one ``os.replace`` and the folder fsynced, so a
reader sees the old file or the new one, never a mix or a truncated file. Temporary names are
hidden (``.NAME.RANDOM.tmp``); a failed write removes its own, and ``remove_temporaries`` clears
those a killed process left behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMPORARY = ".*.tmp"  # glob of the temporary names below


def fsync_file(path: Path) -> None:
    """Flush a written file's data to disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries (creations, renames) to disk. POSIX only: Windows cannot open a
    folder, and there this is a no-op."""
    if os.name != "posix":
        return
    fsync_file(folder)


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Replace ``path`` with what ``write`` writes to a binary file, atomically and durably."""
    path = Path(path)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        temporary.chmod(0o644)  # mkstemp's 0o600 would hide the file from other readers
        os.replace(temporary, path)
        fsync_folder(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    write_atomic(path, lambda file: file.write(data))


def write_json_atomic(path: Path, data: object) -> None:
    """``data`` as indented JSON (floats of numpy types included)."""
    write_bytes_atomic(path, json.dumps(data, indent=2, default=float).encode())


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that an interrupted ``write_atomic`` left in ``folder``."""
    stale = [path for path in Path(folder).glob(TEMPORARY) if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
