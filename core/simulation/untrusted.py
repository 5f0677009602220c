"""Helpers for what a user hands the lab: show any value in a short one-line message, check a name,
and read a file whose size is capped before it is read (scenarios, sales history, manifests, models)."""

from __future__ import annotations

import os
import reprlib
import stat
import unicodedata
from pathlib import Path
from typing import Any

from core.simulation.limits import MAX_NAME_LENGTH

BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_FORBIDDEN_CATEGORIES = {"Cc": "control character", "Cs": "lone surrogate", "Zl": "line separator",
                         "Zp": "paragraph separator"}
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6
_REPR.maxlevel = 2
_REPR.maxlong = 40


class InputFileError(ValueError):
    """A file cannot be read, is not a regular file, is too large or is not UTF-8 text."""


def _escaped(text: str) -> str:
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def one_line(text: str, limit: int = 500) -> str:
    """``text`` with every non-printable character escaped, cut to ``limit`` characters."""
    escaped = _escaped(text[:limit])
    return escaped if len(text) <= limit and len(escaped) <= limit else escaped[: limit - 3] + "..."


def shown(value: Any) -> str:
    """A repr of ``value`` for an error message: one line, at most about 80 characters, every
    non-printable character (newline, bidi override, lone surrogate) escaped."""
    try:
        text = _REPR.repr(value)
    except (ValueError, RecursionError):  # an int beyond Python's digit limit, or a pathological repr
        text = f"<{type(value).__name__}>"
    return _escaped(text)


def shown_path(path: str | Path) -> str:
    """A path for an error message: as it is when printable and short, otherwise ``shown``."""
    text = str(path)
    return text if text.isprintable() and len(text) <= 200 else shown(text)


def name_problem(name: Any) -> str | None:
    """What is wrong with ``name`` as a scenario or store name, or None if it is fine."""
    if not isinstance(name, str):
        return "not a string"
    if not name.strip():
        return "empty or only whitespace"
    if len(name) > MAX_NAME_LENGTH:
        return f"{len(name)} characters (at most {MAX_NAME_LENGTH})"
    for char in name:
        kind = "bidi control" if char in BIDI_CONTROLS else _FORBIDDEN_CATEGORIES.get(unicodedata.category(char))
        if kind:
            return f"{kind} U+{ord(char):04X}"
    if name != name.strip():
        return "leading or trailing whitespace"
    return None


def read_bytes(path: Path, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, whose size is checked before it is read (opened without
    blocking, so a pipe or a device is refused, not waited on). Raises ``InputFileError`` with a one-line
    reason."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte or an unencodable character in the path
        raise InputFileError(f"cannot read ({getattr(exc, 'strerror', None) or 'invalid path'})") from None
    info = os.fstat(handle)
    if not stat.S_ISREG(info.st_mode):
        os.close(handle)
        raise InputFileError("not a regular file")
    with os.fdopen(handle, "rb") as file:
        if info.st_size > max_bytes:
            raise InputFileError(f"{info.st_size:,} bytes; allowed: at most {max_bytes:,}")
        try:
            data = file.read(max_bytes + 1)
        except OSError as exc:
            raise InputFileError(f"cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > max_bytes:
        raise InputFileError(f"more than {max_bytes:,} bytes")
    return data


def read_text(path: Path, max_bytes: int) -> str:
    """The UTF-8 text (a leading byte-order mark, as Excel writes, removed) of the regular file
    ``path`` (``read_bytes``). Raises ``InputFileError`` with a one-line reason."""
    data = read_bytes(path, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
