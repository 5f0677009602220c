"""What a person waits for, in Chromium (``python -m core bench --pages --browser``).

Every interaction is done as a person does it, with Playwright's clicks and keys only: a selectbox's list opened from
the keyboard (its combobox focused, ArrowDown) and the option clicked, a slider's thumb focused and a key pressed, the
Live year figure's Play, Fast and Pause buttons and its day slider clicked, another page reached from the sidebar.
Each is timed from the press until the app is idle and its charts drawn (``core.tools.browser.WATCH``). Every repeat
starts a fresh server (its first page view is the cold first load; the first use of a tuned rule is a first use).
Pause counts the days the year moved on past the day on screen at the press.
"""

from __future__ import annotations

import os
import re
import statistics
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from core.serving.registry import POLICIES
from core.simulation.untrusted import one_line
from core.tools.browser import (
    PAUSE,
    ROOT,
    Waited,
    arm,
    chromium,
    click_now,
    day_of,
    open_list,
    option,
    play,
    served_app,
    session,
    wait_drawn,
)

LIVE, HEAD_TO_HEAD = "Live twin", "Head-to-head"  # sidebar titles; the app opens on LIVE


@dataclass(frozen=True)
class Interaction:
    """A line of the benchmark. ``act``: ``load`` (a new session's first page view), ``cold load`` (a fresh server's
    first page view), ``pick`` (the selectbox ``widget``'s first option in ``values`` that is not chosen already),
    ``keys`` (``values`` pressed on the slider ``widget``'s thumb), ``pause`` (the year figure ``widget`` rewound to
    day 1 on its day slider, its button ``values[0]`` clicked, Play or Fast, then its Pause button after 1-4 s).
    ``target``: the issue's bound on the median (seconds; days for ``pause``). ``needs``: an interaction done first
    (untimed when not asked for)."""

    id: str
    label: str
    page: str
    act: str
    widget: str = ""
    values: tuple[str, ...] = ()
    target: float = 1.0
    needs: str = ""
    progress: bool = False  # a progress message must show during the wait


INTERACTIONS = (  # in the order they are done, each repeat (widget keys as the pages name them)
    Interaction("load-cold", "first load, cold server", LIVE, "cold load", target=4.0),
    Interaction("load-warm", "first load, warm server", LIVE, "load", target=2.0),
    Interaction("pause-click", "Pause by a click, after Play", LIVE, "pause", "live_year", ("\u25b6 Play",),
                target=0),
    Interaction("pause-fast", "Pause by a click, after Fast", LIVE, "pause", "live_year", ("\u25b6\u25b6 Fast",),
                target=0),
    Interaction("store-policy", "store policy switch", LIVE, "pick", "live_store",
                (POLICIES["reorder_point"].label, POLICIES["learned"].label)),
    Interaction("preset", "preset change", LIVE, "pick", "live_preset", ("seasonal", "steady")),
    Interaction("slider-step", "demand slider step (ArrowRight)", LIVE, "keys", "live_demand_scale", ("ArrowRight",)),
    Interaction("stores-max", "stores to the most (End)", LIVE, "keys", "live_num_stores", ("End",)),
    Interaction("tuned-rule", "first tuned rule, at the most stores", LIVE, "pick", "live_store",
                (POLICIES["tuned_base_stock"].label,), target=3.0, needs="stores-max", progress=True),
    Interaction("h2h-preset", "head-to-head preset change", HEAD_TO_HEAD, "pick", "h2h_preset",
                ("seasonal", "steady"), target=2.0),
)
IDS = tuple(item.id for item in INTERACTIONS)


class Unavailable(Exception):
    """The interaction cannot be done on the app as it is (its widget or option is missing)."""


@dataclass
class Measured:
    """What one interaction gave over the repeats."""

    item: Interaction
    samples: list[float] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # what changed, e.g. "3 -> 50"
    messages: list[tuple[str, ...]] = field(default_factory=list)  # per sample, the progress messages shown
    errors: list[str] = field(default_factory=list)  # exceptions shown on the page once drawn
    seconds: list[float] = field(default_factory=list)  # pause: seconds from the press until paused and drawn
    days_per_s: list[float] = field(default_factory=list)  # pause: the animation's pace before the press
    na: str | None = None  # why the interaction could not be done

    def add(self, value: float, waited: Waited, detail: str = "") -> None:
        self.samples.append(value)
        self.messages.append(waited.messages)
        self.errors.extend(waited.errors)
        if detail:
            self.details.append(detail)

    def summary(self) -> dict[str, object]:
        values = self.samples
        entry = {"id": self.item.id, "label": self.item.label, "page": self.item.page,
                 "unit": "days" if self.item.act == "pause" else "s", "target": self.item.target,
                 "samples": values, "median": statistics.median(values) if values else None,
                 "min": min(values, default=None), "max": max(values, default=None),
                 "details": list(dict.fromkeys(self.details)), "errors": list(dict.fromkeys(self.errors)),
                 "na": self.na}
        if self.item.progress:
            entry["progress_shown"] = [bool(m) for m in self.messages]
            entry["messages"] = list(dict.fromkeys(text for m in self.messages for text in m))
        if self.item.act == "pause":
            entry["seconds_until_paused"] = self.seconds
            entry["playing_days_per_s"] = self.days_per_s
        return entry


def browser_timings(repeats: int = 3, only: tuple[str, ...] = IDS,
                    log_path: Path = ROOT / "artifacts" / "bench_server.log") -> dict[str, object]:
    """Each interaction of ``INTERACTIONS`` in ``only`` (with what it needs), ``repeats`` times, each time on a
    freshly started server; per interaction its samples, median, min and max. ``BrowserError`` without a browser."""
    unknown = sorted(set(only) - set(IDS))
    if unknown:
        raise ValueError(f"unknown interactions {unknown}; known: {', '.join(IDS)}")
    wanted = set(only)
    for item in reversed(INTERACTIONS):
        if item.id in wanted and item.needs:
            wanted.add(item.needs)
    todo = [item for item in INTERACTIONS if item.id in wanted]
    measured = {item.id: Measured(item) for item in todo}
    load = [os.getloadavg()]
    with chromium() as browser:
        for repeat in range(repeats):
            with served_app(log_path) as url:
                _repeat(browser, url, todo, measured, (repeat, repeats))
    load.append(os.getloadavg())
    return {"repeats": repeats, "load_average": {"start": load[0], "end": load[1]},
            "interactions": [measured[item.id].summary() for item in todo if item.id in only]}


def _repeat(browser, url: str, todo: list[Interaction], measured: dict[str, Measured], turn: tuple[int, int]
            ) -> None:
    """One pass over ``todo`` on the server at ``url``, each new session closing the one before. An interaction
    that cannot be done (a widget, option or page missing, or a step failing) is n/a, with why."""
    from playwright.sync_api import Error as PlaywrightError

    with ExitStack() as sessions:
        page, where = None, None
        for item in todo:
            result = measured[item.id]
            if item.act in ("load", "cold load"):
                if item.act == "load" and page is None:
                    wait_drawn(_open(sessions, browser, url))  # the server's first page view: the timed one is warm
                sessions.close()
                page, where = _open(sessions, browser, url), LIVE
                waited = wait_drawn(page)
                result.add(waited.seconds, waited)
                continue
            if page is None:
                page, where = _open(sessions, browser, url), LIVE
                wait_drawn(page)
            needed = measured.get(item.needs)
            if result.na is not None or (needed is not None and needed.na is not None):
                result.na = result.na or f"needs {item.needs}: {needed.na}"
                continue
            try:
                where = _go(page, item.page, where)
                _act(page, item, result, turn)
            except Unavailable as exc:
                result.na = str(exc)
            except (PlaywrightError, TimeoutError) as exc:
                result.na = f"failed: {one_line((str(exc).strip().splitlines() or [type(exc).__name__])[0], 200)}"


def _go(page, title: str, where: str) -> str:
    """Where the person is once on the page ``title``: reached by a click on its sidebar link, if not there."""
    if title == where:
        return where
    link = page.get_by_test_id("stSidebarNavLink").filter(has_text=title)
    if link.count() == 0:
        raise Unavailable(f"page {title} not in the sidebar")
    arm(page)
    link.click()
    wait_drawn(page)
    return title


def _open(sessions: ExitStack, browser, url: str):
    """A new session (in ``sessions``) navigating to the app's default page; returns as the navigation commits."""
    page = sessions.enter_context(session(browser))
    page.goto(url, wait_until="commit")
    return page


def _act(page, item: Interaction, result: Measured, turn: tuple[int, int]) -> None:
    """Do ``item`` once on ``page`` and add what it gave to ``result``."""
    container = page.locator(f".st-key-{item.widget}")
    if container.count() == 0:
        raise Unavailable(f"widget {item.widget} not found")
    if item.act == "pause":
        _pause(page, item, result, turn)
        return
    if item.act == "pick":
        combobox = container.get_by_role("combobox")
        before = combobox.input_value()
        listbox = open_list(page, item.widget)
        offered = [text.strip() for text in listbox.get_by_role("option").all_inner_texts()]
        choice = next((value for value in item.values if value in offered and value != before), None)
        if choice is None:
            combobox.press("Escape")
            raise Unavailable(f"{item.widget} offers none of {list(item.values)} but {before!r}")
        arm(page)
        option(listbox, choice).click()
        waited = wait_drawn(page)
        after = combobox.input_value()
    else:
        thumb = container.get_by_role("slider")
        before = thumb.input_value()
        thumb.focus()
        arm(page)
        for key in item.values:
            thumb.press(key)
        waited = wait_drawn(page)
        after = thumb.input_value()
        if after == before:
            raise Unavailable(f"{item.widget} stayed at {before} after {', '.join(item.values)}")
    result.add(waited.seconds, waited, f"{before} -> {after}")


def _pause(page, item: Interaction, result: Measured, turn: tuple[int, int]) -> None:
    """Rewind the year to day 1 (a click at the start of the figure's day slider), click ``item.values[0]`` (Play or
    Fast), let it play 1-4 s (spread over the repeats), click Pause; the days between the day on screen at the press
    and the day shown once the page is still and drawn."""
    if day_of(page) is None:
        raise Unavailable("no day on screen in the Live page's year figure")
    if day_of(page) != 1:
        rail = page.locator(f".st-key-{item.widget} .slider-rail-touch-rect")  # what takes the slider's clicks
        box = rail.bounding_box()
        rail.click(position={"x": 2, "y": box["height"] / 2})
        page.wait_for_function("() => window.__watch.shownDay() === 1", polling=50)
    playing_from = page.evaluate("() => performance.now()"), day_of(page)
    play(page, item.values[0])
    repeat, repeats = turn
    page.wait_for_timeout(1000 + 3000 * repeat / max(repeats - 1, 1))
    arm(page)
    click_now(page, PAUSE)
    waited = wait_drawn(page)  # no script run: until nothing has changed for a second after NO_RUN_MS
    day = day_of(page)
    result.add(day - waited.day_at_press, waited, f"day {waited.day_at_press} at the press, paused on {day}")
    result.seconds.append(waited.seconds)
    result.days_per_s.append((waited.day_at_press - playing_from[1]) / (waited.start - playing_from[0]) * 1000)


def report_lines(result: dict[str, object]) -> list[str]:
    """The printed table: each interaction's median (min-max) beside its target."""
    start, end = (" ".join(f"{v:.2f}" for v in result["load_average"][k]) for k in ("start", "end"))
    lines = [f"what a person waits for in Chromium, from the press (click, key) until the app is idle and its charts "
             f"are drawn; median (min-max) of {result['repeats']} repeats, a fresh server each; load average "
             f"(1, 5, 15 min) {start} at the start, {end} at the end"]
    for entry in result["interactions"]:
        name = f"  {entry['page'][:12]:12s} {entry['label']:38s}"
        if entry["na"]:
            lines.append(f"{name} n/a ({entry['na']})")
            continue
        days = entry["unit"] == "days"
        low, high, median, target = entry["min"], entry["max"], entry["median"], entry["target"]
        figure = (f"{median:6g} days ({low:g}-{high:g})" if days
                  else f"{median:6.2f} s    ({low:.2f}-{high:.2f})")
        verdict = "ok" if (median <= target if days else median < target) else "OVER"
        notes = []
        if entry["errors"]:
            verdict += ", EXCEPTION"
            notes.append(f"exception: {'; '.join(entry['errors'])}")
        if "progress_shown" in entry:
            shown, count = sum(entry["progress_shown"]), len(entry["progress_shown"])
            verdict += "" if shown == count else ", NO PROGRESS MESSAGE"
            notes.append(f"progress message in {shown}/{count}" + (f" ({'; '.join(entry['messages'])})"
                                                                   if entry["messages"] else ""))
        if days:
            notes.append(f"paused and drawn {statistics.median(entry['seconds_until_paused']):.2f} s after the "
                         f"press; {statistics.median(entry['playing_days_per_s']):.1f} days/s while playing")
        else:
            notes.append(", ".join(entry["details"]))
        extra = "; ".join(note for note in notes if note)
        goal = f"{'=' if days else '<'} {target:g}{' days' if days else ' s'}"
        lines.append(f"{name} {figure:24s} target {goal:9s} {verdict:4s}  {_squeeze(extra)}".rstrip())
    return lines


def _squeeze(text: str, width: int = 110) -> str:
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= width else text[:width - 3] + "..."
