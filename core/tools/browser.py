"""The served app in a real browser: ``streamlit run`` on a free port, driven by Playwright and Debian's Chromium.

Used by ``python -m core screenshots``, ``python -m core bench --pages --browser`` (``core.tools.browser_bench``)
and ``tests/test_browser.py``. Nothing here imports streamlit (the server is a subprocess) and playwright is imported
when a browser starts. Every page opened here carries ``WATCH``, a script that only reads the page: when it last
changed, when a person last pressed a key or a pointer, and whether the app is idle and its charts drawn.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from core.agents.roles import ROLES
from core.app.compare import default_baseline
from core.serving.models import PolicyLoadError, load_manifest
from core.serving.registry import POLICIES
from core.simulation.presets import PRESETS

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
SERVER_START_TIMEOUT = 60.0  # seconds
TIMEOUT = 90_000  # ms, for anything that waits on the app (the machine may be slow)
VIEWPORT = {"width": 1400, "height": 1000}
PLAY, FAST, PAUSE = "\u25b6 Play", "\u25b6\u25b6 Fast", "\u275a\u275a Pause"  # the Live year figure's buttons


class BrowserError(RuntimeError):
    """No browser to drive, or the app's server did not start."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served_app(log_path: Path) -> Iterator[str]:
    """``streamlit run streamlit_app.py`` on a free local port, its output in ``log_path``; yields the base URL
    once ``/_stcore/health`` answers. The server (its whole process group) is always stopped."""
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT
            while not _healthy(url):
                if proc.poll() is not None:
                    raise BrowserError(f"streamlit exited with {proc.returncode} (log: {log_path})")
                if time.monotonic() > deadline:
                    raise BrowserError(f"streamlit did not answer on {url}/_stcore/health within "
                                       f"{SERVER_START_TIMEOUT:.0f} s (log: {log_path})")
                time.sleep(0.5)
            yield url
        finally:
            _stop(proc)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=5) as response:
            return response.read().decode().strip() == "ok"
    except OSError:
        return False


def _stop(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def chromium() -> Iterator[object]:
    """A headless Chromium (``/usr/bin/chromium``) under Playwright; ``BrowserError`` if either is missing."""
    if not CHROMIUM.exists():
        raise BrowserError(f"{CHROMIUM} is missing: no browser to drive (install Debian's chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:
        raise BrowserError("the playwright package is not installed") from exc
    # assertions wait as long as actions: a click's rerun may not have started when ``wait_idle`` looks
    expect.set_options(timeout=TIMEOUT)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def session(browser, viewport: dict[str, int] | None = None) -> Iterator[object]:
    """A blank page in a fresh browser context (a new Streamlit session once it opens the app), with ``WATCH``."""
    context = browser.new_context(viewport=viewport or VIEWPORT, accept_downloads=True)
    context.set_default_timeout(TIMEOUT)
    context.add_init_script(WATCH)
    try:
        yield context.new_page()
    finally:
        context.close()


@contextmanager
def app_page(browser, url: str, viewport: dict[str, int] | None = None) -> Iterator[object]:
    """A fresh browser context (a new Streamlit session) on the app's default page."""
    with session(browser, viewport) as page:
        page.goto(url)
        wait_idle(page)
        yield page


# --------------------------------------------------------------------------------------------- idle and drawn

QUIET_MS = 250  # drawn: nothing in the app has changed for this long
NO_RUN_MS = 5000  # an action after which no script run starts within this long needed none
STILL_MS = 1000  # and drawn for good: still nothing changed this much later (ten days of the Live animation)

WATCH = """(() => {
  const DAY = /^Day (\\d+) of \\d+/, ALERT = '[data-testid="stAlert"]';  // the Live figure's day on screen; alerts
  const PROGRESS = ['stSpinner', 'stProgress', 'stToast', 'stExpanderIconSpinner']  // the last: a running st.status
    .map(id => `[data-testid="${id}"]`).join(', ');
  const texts = selector => [...document.querySelectorAll(selector)].map(element =>
    ((element.closest('[data-testid="stExpander"]') || element).innerText || '').trim().slice(0, 200)
    || element.dataset.testid);
  const watch = window.__watch = {
    changed: 0, armed: false, input: null, day: null, runs: 0, progress: new Set(), alerts: new Set(),
    before: new Set(),
    start() { return this.armed ? this.input : 0; },
    pressDay: null,  // the day on screen at the latest key or pointer press
    shownDay() {
      for (const text of document.querySelectorAll('.st-key-live_year text')) {
        const found = DAY.exec(text.textContent);
        if (found) return parseInt(found[1]);
      }
      return null;
    },
    arm() {
      Object.assign(this, {armed: true, input: null, day: null, runs: 0, progress: new Set(), alerts: new Set(),
                           before: new Set(texts(ALERT))});
    },
    drawn(quiet, noRun) {
      const start = this.start(), now = performance.now();
      if (start === null || (this.runs === 0 && now - start < noRun)) return false;
      const app = document.querySelector('[data-testid="stApp"]');
      if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
      const busy = '[data-testid^="stStatusWidgetRunning"], [data-stale="true"], [data-testid="stSkeleton"]';
      if (document.querySelector(busy)) return false;
      for (const chart of document.querySelectorAll('[data-testid="stPlotlyChart"]')) {
        const plot = chart.querySelector('.js-plotly-plot');
        const pending = (plot && plot._promises || []).length;
        if (!plot || !plot._fullLayout || !plot.querySelector('.main-svg') || pending) return false;
      }
      return now - this.changed >= quiet;
    },
    report() {
      const shown = new Set(texts(ALERT)), start = this.start();
      return {start, changed: this.changed, end: Math.max(this.changed, start), runs: this.runs, day: this.day,
              messages: [...this.progress, ...[...this.alerts].filter(text => !shown.has(text))],
              errors: [...document.querySelectorAll('[data-testid="stException"]')].map(
                element => element.innerText.trim().split('\\n')[0].slice(0, 200))};
    },
  };
  const press = event => {
    watch.pressDay = watch.shownDay();
    if (watch.armed && watch.input === null) { watch.input = event.timeStamp; watch.day = watch.shownDay(); }
  };
  window.addEventListener('keydown', press, true);
  window.addEventListener('pointerdown', press, true);
  new MutationObserver(records => {
    const app = document.querySelector('[data-testid="stApp"]');  // once there, only its changes count (no tooltip)
    if (app && !records.some(record => app.contains(record.target))) return;
    watch.changed = performance.now();
    if (watch.start() === null) return;
    for (const record of records) {
      if (record.attributeName === 'data-test-script-state'
          && record.target.getAttribute('data-test-script-state') === 'running') watch.runs += 1;
    }
    for (const text of texts(PROGRESS)) watch.progress.add(text);
    for (const text of texts(ALERT)) if (!watch.before.has(text)) watch.alerts.add(text);
  }).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
})();"""
"""Read-only, in every page opened here (``session``). The app is *idle and drawn* when, after the person's first key
or pointer press since ``arm`` (or, unarmed, since the page's navigation started): a script run has started (or none
started within ``NO_RUN_MS``: the action needed none), the app's script state is ``notRunning``, Streamlit's status
widget shows no running icon, no element is stale (``data-stale="true"``) or still a placeholder while its code loads
(``stSkeleton``), every plotly chart holds a drawn plot (its ``_fullLayout`` and main SVG, no draw promise pending),
and nothing in the app's DOM (``stApp``'s subtree once it exists: not a tooltip in a portal) has changed for
``QUIET_MS``; ``wait_drawn`` also asks that nothing changes in the ``STILL_MS`` after. The wait ends at the last
change (when the final picture was drawn; the quiet windows are not counted and nothing is subtracted). Meanwhile it
notes progress messages: a spinner, progress bar, toast or running ``st.status``, and alerts that came and went;
once drawn, the first line of every exception shown."""


@dataclass(frozen=True)
class Waited:
    """One wait, on the page's clock (ms since its navigation started): from the press (0 for a page load) to the
    DOM's last change before the app was idle and drawn."""

    start: float
    end: float
    ran: bool  # a script run started after the press
    day_at_press: int | None  # the Live page's day on screen at the press
    messages: tuple[str, ...]  # progress messages shown meanwhile
    errors: tuple[str, ...]  # exceptions on the page once drawn

    @property
    def seconds(self) -> float:
        return (self.end - self.start) / 1000


def arm(page) -> None:
    """From now on, the person's next key or pointer press starts the clock of ``wait_drawn``."""
    page.evaluate("() => window.__watch.arm()")


def wait_drawn(page, timeout: float = TIMEOUT, still_ms: int = STILL_MS) -> Waited:
    """Until the app is idle and drawn (``WATCH``) after the press since ``arm`` (unarmed: after the page's load),
    and nothing in the page changes for ``still_ms`` more (a run may start another, a tick of the animation may
    land late: then the wait goes on, to the later change)."""
    deadline = time.monotonic() + timeout / 1000
    while True:
        left = max(deadline - time.monotonic(), 0.001) * 1000
        page.wait_for_function("([quiet, noRun]) => window.__watch.drawn(quiet, noRun)", arg=[QUIET_MS, NO_RUN_MS],
                               polling=50, timeout=left)
        seen = page.evaluate("() => window.__watch.report()")
        page.wait_for_timeout(still_ms)
        if last_change(page) == seen["changed"]:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"the page kept changing for {timeout / 1000:.0f} s")
    day = seen["day"]
    return Waited(seen["start"], seen["end"], seen["runs"] > 0, None if day is None else int(day),
                  tuple(seen["messages"]), tuple(seen["errors"]))


def last_change(page) -> float:
    """When the page's DOM last changed (ms on its clock)."""
    return page.evaluate("() => window.__watch.changed")


# --------------------------------------------------------------------------------------------- page helpers

def expect(*args, **kwargs):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(*args, **kwargs)


def wait_idle(page, settle_ms: int = 0) -> None:
    """Until the app's script is not running (the app sets this attribute on its root element); with
    ``settle_ms``, still not running that much later (a widget may trigger a few reruns in a row)."""
    app = page.get_by_test_id("stApp")
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=TIMEOUT)
    if settle_ms:
        page.wait_for_timeout(settle_ms)
        expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=TIMEOUT)


def navigate(page, title: str, heading: str | None = None) -> None:
    """Click the page's link in the sidebar navigation and wait for its title."""
    page.get_by_test_id("stSidebarNavLink").filter(has_text=title).click()
    expect(page.locator("h1").filter(has_text=heading or title)).to_be_visible(timeout=TIMEOUT)
    wait_idle(page)


def metric(page, label: str):
    labels = page.get_by_test_id("stMetricLabel").get_by_text(label, exact=True)
    return page.get_by_test_id("stMetric").filter(has=labels).get_by_test_id("stMetricValue")


def day_of(page) -> int | None:
    """The day on screen in the Live page's year figure (its text "Day N of 365"); None without the figure."""
    return page.evaluate("() => window.__watch.shownDay()")


def button(page, key: str):
    return page.locator(f".st-key-{key}").get_by_role("button")


def year_button(page, label: str):
    """A button of the Live page's year figure (``PLAY``, ``FAST`` or ``PAUSE``), once the figure is drawn."""
    buttons = page.locator(".st-key-live_year .updatemenu-button")
    expect(buttons.first).to_be_visible(timeout=TIMEOUT)
    return buttons.filter(has_text=label)


def play(page, label: str = PLAY) -> int:
    """Press the year figure's Play (or Fast) button and wait until the day on screen moves on; the day it
    started from."""
    wait_idle(page)
    start = click_now(page, label)
    page.wait_for_function("start => window.__watch.shownDay() > start", arg=start, polling=50, timeout=TIMEOUT)
    return start


def open_list(page, key: str):
    """Open the list of the selectbox with ``key`` from the keyboard (a mouse click on the combobox does not always
    open it in headless Chromium): focus its combobox, press ArrowDown; the list."""
    wait_idle(page)
    combobox = page.locator(f".st-key-{key}").get_by_role("combobox")
    listbox = page.get_by_role("listbox")
    for attempt in range(3):
        combobox.focus()
        combobox.press("ArrowDown")
        try:
            expect(listbox).to_be_visible(timeout=10_000)
            return listbox
        except AssertionError:
            if attempt == 2:
                raise
            combobox.press("Escape")
            wait_idle(page, settle_ms=500)


def option(listbox, text: str):
    return listbox.get_by_role("option").filter(has_text=re.compile(f"^{re.escape(text)}$"))


def choose(page, key: str, text: str) -> None:
    """Pick the option ``text`` in the selectbox with ``key``: open its list, click the option."""
    option(open_list(page, key), text).click()
    expect(page.locator(f".st-key-{key}").get_by_role("combobox")).to_have_value(text)


def press_slider(page, key: str, times: int, direction: str = "ArrowRight") -> str:
    """Focus the slider's thumb and press an arrow key ``times``; the slider's new value."""
    wait_idle(page)
    thumb = page.locator(f".st-key-{key}").get_by_role("slider")
    thumb.focus()
    for _ in range(times):
        thumb.press(direction)
    return thumb.input_value()


def screenshot(page, path: Path, full_page: bool = False) -> Path:
    """A PNG of the page (``full_page``: the whole main block, the window grown to its height)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.get_by_test_id("stSidebarContent").evaluate("element => element.scrollTo(0, 0)")
    page.mouse.move(5, page.viewport_size["height"] - 5)  # no hover labels in the picture
    if not full_page:
        page.screenshot(path=str(path))
        return path
    viewport = page.viewport_size  # the app scrolls inside its main block: grow the window to its height
    height = page.get_by_test_id("stMain").evaluate("element => element.scrollHeight")
    page.set_viewport_size({"width": viewport["width"], "height": max(viewport["height"], height)})
    try:
        page.wait_for_timeout(500)  # charts resize to the new window
        page.screenshot(path=str(path))
    finally:
        page.set_viewport_size(viewport)
    return path


# --------------------------------------------------------------------------------------------- what they do

def set_slider(page, key: str, value: int) -> None:
    """Move an integer slider with ``key`` to ``value`` from the keyboard, then wait until the app settles."""
    thumb = page.locator(f".st-key-{key}").get_by_role("slider")
    current = int(float(thumb.input_value()))
    press_slider(page, key, abs(value - current), "ArrowRight" if value > current else "ArrowLeft")
    expect(thumb).to_have_value(str(value))
    wait_idle(page, settle_ms=750)


SCREENSHOT_PRESET = "thin_margin"  # where the learned policies beat the best rule
SCREENSHOT_DAY = 185  # past the production cut (days 150-179), when the warehouse was short


def take_screenshots(out: Path, log_path: Path, preset: str = SCREENSHOT_PRESET, day: int = SCREENSHOT_DAY
                     ) -> list[Path]:
    """The README's pictures, from a served app on ``preset``: the Live page with the preset's stores and with 20,
    the year part-played (Play pressed, Pause pressed once it reached ``day``), and head-to-head, each time the
    learned policies against the preset's best rule in the shipped evaluation, on the same customers."""
    best_rule = POLICIES[best_rule_of(preset)].label
    written = []
    with served_app(log_path) as url, chromium() as browser, app_page(browser, url) as page:
        expect(metric(page, "Cost per day")).to_be_visible(timeout=TIMEOUT)
        choose(page, "live_preset", preset)
        wait_idle(page, settle_ms=500)
        choose(page, "live_compare", best_rule)
        wait_idle(page, settle_ms=500)
        set_slider(page, "live_num_stores", PRESETS[preset].num_stores)
        _play_until(page, day)
        written.append(screenshot(page, out / "live_twin.png", full_page=True))
        set_slider(page, "live_num_stores", 20)  # a new year figure, from day 1
        _play_until(page, day)
        written.append(screenshot(page, out / "live_20_stores.png", full_page=True))
        navigate(page, "Head-to-head")
        choose(page, "h2h_preset", preset)
        wait_idle(page, settle_ms=500)
        for role in ROLES:
            choose(page, f"h2h_b_{role}", best_rule)
            wait_idle(page, settle_ms=500)
        expect(page.locator("h4").first).to_be_visible()
        written.append(screenshot(page, out / "head_to_head.png", full_page=True))
    return written


def best_rule_of(preset: str) -> str:
    """The preset's cheapest rule in the shipped evaluation (what head-to-head offers as the second mix)."""
    try:
        manifest = load_manifest()
    except PolicyLoadError:
        manifest = {}
    return default_baseline(PRESETS[preset], manifest)


def _play_until(page, day: int) -> int:
    """Press Play on the Live page, wait until the year reaches ``day``, press Pause; the day it paused on."""
    play(page)
    page.wait_for_function("day => window.__watch.shownDay() >= day", arg=day, polling=100, timeout=TIMEOUT)
    return pause(page)


def pause(page) -> int:
    """Click the year figure's Pause button (``click_now``) and wait until the day on screen holds still; the day
    it paused on (the day on screen at the click: the year plays in the browser, no tick is under way elsewhere)."""
    click_now(page, PAUSE)
    return still_day(page)


def still_day(page, still_ms: int = 600) -> int:
    """The Live figure's day on screen once it has not changed for ``still_ms`` (several frames of Play)."""
    day, since = day_of(page), time.monotonic()
    deadline = since + TIMEOUT / 1000
    while time.monotonic() - since < still_ms / 1000:
        page.wait_for_timeout(50)
        now = day_of(page)
        if now != day:
            day, since = now, time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the day on screen kept changing for {TIMEOUT / 1000:.0f} s")
    return day


def click_now(page, label: str) -> int:
    """Click the year figure's button ``label`` as a person does (a Playwright click: the buttons hold still while
    the year plays, only the slider and the charts move); the day on screen as the press landed (``WATCH``)."""
    target = year_button(page, label)
    page.evaluate("() => { window.__watch.pressDay = null; }")
    target.click()
    return page.evaluate("() => window.__watch.pressDay")
