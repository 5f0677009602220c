"""The served app in a real browser: ``streamlit run`` on a free port, driven by Playwright and Debian's Chromium.

Used by ``python -m core screenshots``, ``python -m core bench --pages --browser`` and ``tests/test_browser.py``.
Nothing here imports streamlit (the server is a subprocess) and playwright is imported when a browser starts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.agents.roles import ROLES
from core.app.compare import default_baseline
from core.app.live import TICK_SECONDS
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
PAUSED = re.compile(r"^Paused on day \d+$")  # the Live page's caption once it has paused


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
def app_page(browser, url: str, viewport: dict[str, int] | None = None) -> Iterator[object]:
    """A fresh browser context (a new Streamlit session) on the app's default page."""
    context = browser.new_context(viewport=viewport or VIEWPORT, accept_downloads=True)
    context.set_default_timeout(TIMEOUT)
    try:
        page = context.new_page()
        page.goto(url)
        wait_idle(page)
        yield page
    finally:
        context.close()


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


def day_of(page) -> int:
    return int(metric(page, "Day").inner_text().split("/")[0])


def button(page, key: str):
    return page.locator(f".st-key-{key}").get_by_role("button")


def play_switch(page):
    """The Live page's Play switch (on while the year plays)."""
    return page.locator(".st-key-live_play").get_by_role("switch")


def flip_play(page):
    """Flip the Play switch from the keyboard (its input is visually hidden behind the drawn switch)."""
    wait_idle(page)
    play = play_switch(page)
    play.focus()
    play.press("Space")
    return play


def choose(page, key: str, option: str) -> None:
    """Pick ``option`` in the selectbox with ``key``: open its list from the keyboard (a mouse click on the
    combobox does not always open it in headless Chromium), then click the option."""
    wait_idle(page)
    combobox = page.locator(f".st-key-{key}").get_by_role("combobox")
    listbox = page.get_by_role("listbox")
    for attempt in range(3):
        combobox.focus()
        combobox.press("ArrowDown")
        try:
            expect(listbox).to_be_visible(timeout=10_000)
            break
        except AssertionError:
            if attempt == 2:
                raise
            combobox.press("Escape")
            wait_idle(page, settle_ms=500)
    listbox.get_by_role("option").filter(has_text=re.compile(f"^{re.escape(option)}$")).click()
    expect(combobox).to_have_value(option)


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
    ``day`` days or a tick more into the year, and head-to-head, each time the learned policies against the preset's
    best rule in the shipped evaluation, on the same customers."""
    best_rule = POLICIES[best_rule_of(preset)].label
    written = []
    with served_app(log_path) as url, chromium() as browser, app_page(browser, url) as page:
        expect(metric(page, "Day")).to_have_text("1 / 365", timeout=TIMEOUT)
        choose(page, "live_preset", preset)
        wait_idle(page, settle_ms=500)
        choose(page, "live_compare", best_rule)
        wait_idle(page, settle_ms=500)
        set_slider(page, "live_num_stores", PRESETS[preset].num_stores)
        reached = _play_until(page, day)
        written.append(screenshot(page, out / "live_twin.png", full_page=True))
        set_slider(page, "live_num_stores", 20)
        expect(metric(page, "Day")).to_have_text(f"{reached} / 365", timeout=TIMEOUT)
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
    """Play the Live page until ``day`` or later, then pause; the day it stopped on."""
    play = flip_play(page)
    expect(play).to_be_checked(timeout=TIMEOUT)
    while day_of(page) < day:
        page.wait_for_timeout(200)
    return pause(page)


def pause(page) -> int:
    """Switch Play off at once (see ``click_now``) and wait until the app says it has paused; the day it paused
    on (the day on screen at the click, or a tick later when the click came as that tick was being drawn)."""
    click_now(page, "live_play")
    expect(play_switch(page)).not_to_be_checked(timeout=TIMEOUT)
    expect(page.get_by_text(PAUSED)).to_be_visible(timeout=TIMEOUT)
    wait_idle(page, settle_ms=750)
    return day_of(page)


def click_now(page, key: str) -> int:
    """Click the switch or button with ``key`` at once, from the page's own script (no wait for it to be stable,
    as a Playwright click does while the animation redraws it); the day shown at that instant."""
    return int(page.evaluate(
        """key => {
            const day = [...document.querySelectorAll('[data-testid="stMetric"]')]
                .find(m => m.querySelector('[data-testid="stMetricLabel"]').innerText.trim() === 'Day')
                .querySelector('[data-testid="stMetricValue"]').innerText;
            document.querySelector(`.st-key-${key} [role=switch], .st-key-${key} button`).click();
            return day.split('/')[0];
        }""", key))


def pause_overshoot(log_path: Path = ROOT / "artifacts" / "bench_server.log", pauses: int = 10
                    ) -> dict[str, object]:
    """Play the Live page in Chromium ``pauses`` times, for 1 to 4 s each, switch Play off, and count the days
    the year moved on past the day on screen at the click; also the seconds until the page said it had paused."""
    overshoots, seconds, rates = [], [], []
    with served_app(log_path) as url, chromium() as browser, app_page(browser, url) as page:
        expect(metric(page, "Day")).to_have_text("1 / 365", timeout=TIMEOUT)
        speed = int(page.locator(".st-key-live_speed").get_by_role("slider").input_value())
        for trial in range(pauses):
            click_now(page, "live_reset")
            expect(page.get_by_text("Paused on day 1", exact=True)).to_be_visible(timeout=TIMEOUT)
            wait_idle(page, settle_ms=500)
            expect(flip_play(page)).to_be_checked(timeout=TIMEOUT)
            first, started = day_of(page), time.monotonic()
            page.wait_for_timeout(1000 + 3000 * trial / max(pauses - 1, 1))
            at_click, clicked = click_now(page, "live_play"), time.monotonic()
            expect(page.get_by_text(PAUSED)).to_be_visible(timeout=TIMEOUT)
            seconds.append(time.monotonic() - clicked)
            wait_idle(page, settle_ms=1000)
            overshoots.append(day_of(page) - at_click)
            rates.append((at_click - first) / (clicked - started))
    return {"overshoot_days": overshoots, "pause_seconds": seconds, "tick_days": speed,
            "tick_seconds": TICK_SECONDS, "playing_days_per_second": statistics.median(rates)}
