"""What a page shows when something it did not expect goes wrong: one line, never a traceback (the traceback goes
to the server's log)."""

from __future__ import annotations

import re

from core.simulation.untrusted import one_line

UNEXPECTED = "Something went wrong on this page"  # how every such message starts (the random-walk test looks for it)
MESSAGE_CHARACTERS = 300


def code_span(text: str) -> str:
    """``text`` as a markdown code span, shown as it is: no emphasis, link, colour or icon directive in it is
    rendered (a fence of more backticks than its longest run)."""
    ticks = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    return f"{ticks} {text} {ticks}"


def unexpected_error(exc: BaseException) -> str:
    """One line of markdown for ``exc``: its type and message (non-printable characters escaped, cut to
    ``MESSAGE_CHARACTERS``), and that the settings are kept."""
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001 - a message that cannot be made is left out
        message = ""
    what = one_line(f"{type(exc).__name__}: {message}" if message else type(exc).__name__, MESSAGE_CHARACTERS)
    return (f"{UNEXPECTED}: {code_span(what)}. Your settings are kept: change one of them, or open the page "
            "again.")
