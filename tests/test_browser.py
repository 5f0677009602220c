"""The served app in a real browser: ``streamlit run`` in a subprocess, driven by Playwright and Chromium.

Every page is reached through the sidebar navigation. Screenshots go to ``artifacts/screenshots/`` (outside
git); the test run writes no tracked file.

Without ``/usr/bin/chromium`` (or the playwright package) these tests skip; with ``REQUIRE_BROWSER=1`` they fail
instead. Run only these with ``pytest -m browser``; leave them out with ``-m "not browser"``.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.serving.model_sets import set_files
from core.serving.registry import POLICIES
from core.tools.browser import (
    CHROMIUM,
    TIMEOUT,
    BrowserError,
    app_page,
    button,
    choose,
    chromium,
    expect,
    metric,
    navigate,
    press_slider,
    served_app,
    wait_idle,
)
from core.tools.browser import screenshot as save_screenshot
from core.tools.browser_bench import report_lines

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "exported_models"
MANIFEST = MODELS / "manifest.json"
ARTIFACTS = ROOT / "artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
RULE = "reorder point (s, S)"
KPI_LABELS = ("Cost per day", "Fill rate", "Stockouts per day", "Saved in the year")
YEAR_TILES = ("Saved in the year", "Extra cost in the year")  # the last tile, by which way the year went
DAY_ON_SCREEN = """() => {
    const shown = [...document.querySelectorAll('.st-key-live_year text')].map(t => t.textContent)
        .find(text => /^Day \\d+ of 365/.test(text));
    return shown ? parseInt(shown.slice(4)) : null;
}"""


def _unavailable(reason: str) -> None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (REQUIRE_BROWSER=1)")
    pytest.skip(reason)


# --------------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """``streamlit run streamlit_app.py`` on a free port (``core.tools.browser.served_app``); its base URL."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: no browser to drive (install Debian's chromium)")
    if not MANIFEST.exists():
        _unavailable(f"{MANIFEST} does not exist yet (the training pipeline writes it)")
    log_path = ARTIFACTS / "streamlit_server.log"
    try:
        with served_app(log_path) as url:
            yield url
    except BrowserError as exc:
        pytest.fail(f"{exc}:\n{log_path.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def browser(server: str):
    try:
        with chromium() as launched:
            yield launched
    except BrowserError as exc:
        _unavailable(str(exc))


@pytest.fixture
def page(browser, server: str):
    """A fresh browser context (a new Streamlit session) on the app's default page."""
    with app_page(browser, server, {"width": 1600, "height": 1000}) as opened:
        yield opened


# --------------------------------------------------------------------------------------------- helpers

def assert_no_errors(page) -> None:
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_test_id("stAlertContentError")).to_have_count(0)


def kpis(page) -> dict[str, str]:
    """The Live page's tiles but the last (which says what the year saved, or cost extra: ``YEAR_TILES``)."""
    return {label: metric(page, label).inner_text() for label in KPI_LABELS[:-1]}


def screenshot(page, name: str, full_page: bool = False) -> Path:
    return save_screenshot(page, SCREENSHOTS / f"{name}.png", full_page)


def year(page):
    """The Live page's year figure, once drawn."""
    chart = page.locator(".st-key-live_year .js-plotly-plot")
    expect(chart.locator(".updatemenu-button").first).to_be_visible(timeout=TIMEOUT)
    return chart


def year_button(page, label: str):
    return year(page).locator(".updatemenu-button").filter(has_text=label)


def day_on_screen(page) -> int:
    return page.evaluate(DAY_ON_SCREEN)


def live_page(page) -> None:
    """The Live page, its year drawn and the app idle."""
    navigate(page, "Live twin")
    expect(metric(page, "Cost per day")).to_be_visible(timeout=TIMEOUT)
    year(page)
    wait_idle(page)


# --------------------------------------------------------------------------------------------- tests

def test_live_first_screen_tells_the_story_and_pause_stops_on_the_day_shown(page) -> None:
    """Build points 1 and 3: the page opens on thin_margin against the preset's best rule in the shipped evaluation,
    with the year's outcome before Play (whichever way it went); Play runs the year in the browser (no script run per
    day) and Pause, clicked as a person clicks it, stops on the day on screen at the click (0 days past it)."""
    from core.app.compare import default_baseline
    from core.app.live import headline as year_headline
    from core.app.live import preset_year, run_year
    from core.serving.models import load_manifest
    from core.serving.registry import mix_of, uniform
    from core.simulation.presets import PRESETS

    live_page(page)
    expect(page.locator(".st-key-live_preset").get_by_role("combobox")).to_have_value("thin_margin")
    best_key = default_baseline(PRESETS["thin_margin"], load_manifest())  # its best rule in the shipped evaluation
    best = POLICIES[best_key].label
    expect(page.locator(".st-key-live_compare").get_by_role("combobox")).to_have_value(best)
    scenario = preset_year("thin_margin")
    outcome = year_headline(*(run_year(scenario, mix_of(uniform(key), scenario), 0) for key in ("learned", best_key)),
                            ("the learned policies", best))
    headline = page.locator("h4").first
    expect(headline).to_have_text(outcome.title)
    assert outcome.title.startswith("Over the year, the learned policies cost ")
    expect(page.get_by_text(re.compile(r"significant on the same 16 demand paths"))).to_be_visible()
    for label in KPI_LABELS[:-1]:
        expect(metric(page, label)).to_be_visible()
    expect(metric(page, YEAR_TILES[0]).or_(metric(page, YEAR_TILES[1]))).to_be_visible()
    assert day_on_screen(page) == 1
    assert_no_errors(page)
    screenshot(page, "live_first_screen")

    count_script_runs(page)
    year_button(page, "Play").click()
    page.wait_for_timeout(2500)  # let it play: that is what is measured
    page.evaluate(f"""() => {{ window.dayAtClick = null; document.addEventListener('click',
        () => {{ window.dayAtClick ??= ({DAY_ON_SCREEN})(); }}, true); }}""")  # the day on screen as the click lands
    year_button(page, "Pause").click()
    at_click = page.evaluate("window.dayAtClick")
    page.wait_for_timeout(1500)
    paused = day_on_screen(page)
    print(f"\nPAUSE_OVERSHOOT_DAYS={paused - at_click} (day {at_click} on screen at the click, paused on {paused})")
    assert at_click > 1 and paused == at_click
    page.wait_for_timeout(1000)
    assert day_on_screen(page) == paused, "the day kept advancing after Pause"
    assert page.evaluate("window.scriptRuns") == 0  # the year played in the browser alone

    choose(page, "live_store", RULE)  # a new mix: the page reruns, the year is drawn again from day 1
    wait_idle(page, settle_ms=500)
    expect(headline).to_have_text(re.compile(r"^Over the year, your policies cost "))
    expect(year(page)).to_be_visible()
    assert day_on_screen(page) == 1
    assert_no_errors(page)


def test_live_reads_in_the_dark_theme_and_fits_its_width(browser, server: str) -> None:
    """Dark mode: the flow view's labels and the ledger are light on the dark background; every text of the year
    figure, the ledger's last column too, lies inside the figure."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="dark")
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT)
        page.goto(server)
        live_page(page)
        chart = year(page)
        colours = chart.evaluate("""plot => [...plot.querySelectorAll('text')]
            .filter(t => /^(supplier|warehouse|store_0)/.test(t.textContent) || t.textContent === 'Ledger of the day')
            .map(t => getComputedStyle(t).fill)""")
        assert colours
        for colour in colours:  # "rgb(r, g, b)": light enough to read on a dark background
            red, green, blue = (int(v) for v in re.findall(r"\d+", colour)[:3])
            assert 0.2126 * red + 0.7152 * green + 0.0722 * blue > 110, colours
        box = chart.bounding_box()
        outside = chart.evaluate("""(plot, box) => [...plot.querySelectorAll('text')].filter(t => t.textContent)
            .map(t => [t.textContent, t.getBoundingClientRect()])
            .filter(([, r]) => r.width && (r.left < box.x - 1 || r.right > box.x + box.width + 1))
            .map(([text]) => text)""", box)
        assert not outside, outside
        screenshot(page, "live_dark")
    finally:
        context.close()


def test_first_tuned_rule_at_50_stores_says_it_is_tuning(page) -> None:
    """Settings no manifest ships a tuned rule for: the rule is tuned with a message in words while it runs."""
    live_page(page)
    thumb = page.locator(".st-key-live_num_stores").get_by_role("slider")
    thumb.focus()
    thumb.press("End")
    expect(thumb).to_have_value("50")
    wait_idle(page, settle_ms=500)  # the comparison (thin_margin's tuned rule) is tuned for 50 stores here
    choose(page, "live_store", POLICIES["tuned_base_stock"].label)
    expect(page.get_by_test_id("stSpinner").filter(
        has_text=f"Tuning {POLICIES['tuned_base_stock'].label} for these settings")).to_be_visible(timeout=TIMEOUT)
    wait_idle(page)
    expect(page.locator("h4").first).to_have_text(re.compile(r"^Over the year, your policies cost "), timeout=TIMEOUT)
    assert_no_errors(page)


def test_head_to_head_leads_with_the_difference_between_named_policies(page) -> None:
    navigate(page, "Head-to-head")
    learned = POLICIES["learned"].label
    headline = page.locator("h4").first
    expect(headline).to_contain_text(learned)
    for role in ("store", "warehouse", "supplier"):  # the original project's baseline, everywhere
        choose(page, f"h2h_b_{role}", RULE)
        wait_idle(page)
    expect(headline).to_have_text(re.compile(
        rf"^{re.escape(learned)} costs \d+(\.\d+)? % less than {re.escape(RULE)} per day \(.*95 % interval "
        r"[\d.]+-[\d.]+ %\), significant on the same 50 demand paths\.$"), timeout=TIMEOUT)
    legend = page.get_by_test_id("stPlotlyChart").locator(".legendtext")
    expect(legend).to_have_text([learned, RULE])
    expect(page.get_by_test_id("stDataFrame")).to_have_count(2)
    expect(page.get_by_test_id("stPlotlyChart")).to_have_count(1)
    assert "mix A" not in page.get_by_test_id("stMain").inner_text()
    assert_no_errors(page)
    screenshot(page, "head_to_head")


def test_policy_inspector_shows_its_heatmap(page) -> None:
    navigate(page, "Policy inspector")
    charts = page.get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(2)
    maps = charts.first.locator("g.hm image")
    expect(maps).to_have_count(3)  # safety factor, learned order, rule order
    expect(charts.first.get_by_text("learned: safety factor z")).to_be_visible()
    expect(charts.first.get_by_text("on hand (days of demand)")).to_be_visible()
    bars = charts.first.locator("g.colorbar")
    expect(bars).to_have_count(3)  # one colour bar per map, each beside its own map: no overlap
    map_boxes = sorted((maps.nth(k).bounding_box() for k in range(3)), key=lambda box: box["x"])
    bar_boxes = sorted((bars.nth(k).bounding_box() for k in range(3)), key=lambda box: box["x"])
    for k, (heat, bar) in enumerate(zip(map_boxes, bar_boxes, strict=True)):
        assert bar["x"] >= heat["x"] + heat["width"] - 1
        if k < 2:
            assert bar["x"] + bar["width"] <= map_boxes[k + 1]["x"] + 1
    probabilities = charts.nth(1)
    expect(probabilities.locator("g.barlayer path")).not_to_have_count(0)
    ticks = probabilities.locator("g.xtick").filter(has_text=re.compile(r"^z = -?\d+(\.\d)?$"))
    expect(ticks.first).to_be_visible()  # the menu's safety factors (as many as the axis has room for)
    assert ticks.count() >= 10
    expect(probabilities.get_by_text("probability", exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile(r"^Chosen: z = "))).to_be_visible()
    page.get_by_text("What the store policy sees").click()
    expect(page.get_by_text("stock on hand (days of demand)")).to_be_visible()
    assert_no_errors(page)
    screenshot(page, "policy_inspector", full_page=True)


def test_train_and_export_download_and_a_rejected_upload(page, tmp_path: Path) -> None:
    navigate(page, "Train and export")
    downloads = page.get_by_test_id("stDownloadButton")
    served = {path.name: path for path in set_files(MODELS)}  # the served set's files and its own manifest
    shipped = [*served, "deploy_policy.py", "onnx_checks.py",  # the script imports onnx_checks.py beside it
               "example_states.csv", "example_observation.json"]  # and an example input of each of its modes
    expect(downloads).to_have_count(len(shipped))
    count_script_runs(page)
    for name in ("manifest.json", *[n for n in shipped if n.endswith(".onnx")][:1]):
        with page.expect_download(timeout=TIMEOUT) as info:
            downloads.filter(has_text=name).get_by_role("button").click()
        download = info.value
        assert download.suggested_filename == name
        target = tmp_path / name
        download.save_as(target)
        assert target.read_bytes() == served[name].read_bytes()
    page.wait_for_timeout(500)
    assert page.evaluate("window.scriptRuns") == 0  # a download does not rerun the page

    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(
        files=[{"name": "bad.onnx", "mimeType": "application/octet-stream", "buffer": b"\x00garbage\xff" * 64}])
    error = page.get_by_test_id("stAlertContentError")
    expect(error).to_have_count(1, timeout=TIMEOUT)
    expect(error).to_contain_text("Rejected bad.onnx")
    expect(error).to_contain_text("Nothing was changed")
    expect(page.get_by_test_id("stAlertContentSuccess")).to_have_count(0)
    expect(page.get_by_text("Uploaded in this session")).to_have_count(0)
    expect(downloads).to_have_count(len(shipped))
    screenshot(page, "train_and_export_rejected_upload")

    navigate(page, "Live twin")  # the rejected file changed nothing: the shipped policies still serve
    expect(metric(page, "Cost per day")).to_be_visible(timeout=TIMEOUT)
    expect(page.locator(".st-key-live_store").get_by_role("combobox")).to_have_value(POLICIES["learned"].label)
    assert_no_errors(page)


def test_about_page(page) -> None:
    navigate(page, "About", heading="About this lab")
    diagram = page.get_by_test_id("stPlotlyChart").first
    for node in ("Supplier", "Warehouse", "Store 1", "Customers"):
        expect(diagram.get_by_text(node, exact=True)).to_be_visible()
    expect(page.get_by_text("What each agent sees and decides")).to_be_visible()
    page.get_by_text("Warehouse: sees").click()
    expect(page.get_by_text("the emptiest store's stock (days of its demand)")).to_be_visible()
    expect(page.get_by_text(re.compile("learned hierarchy against the best rule"))).to_be_visible()
    expect(page.get_by_test_id("stDataFrame")).to_have_count(1)
    expect(page.get_by_test_id("stCode")).to_have_count(0)  # no raw docstring
    assert_no_errors(page)
    screenshot(page, "about", full_page=True)


def test_two_browser_sessions_keep_separate_state(browser, server: str) -> None:
    contexts = [browser.new_context(viewport={"width": 1280, "height": 900}) for _ in range(2)]
    try:
        first, second = (context.new_page() for context in contexts)
        for page in (first, second):
            page.set_default_timeout(TIMEOUT)
            page.goto(server)
            expect(metric(page, "Cost per day")).to_be_visible(timeout=TIMEOUT)
            wait_idle(page)
        shared = kpis(second)
        choose(first, "live_warehouse", RULE)
        wait_idle(first, settle_ms=500)
        expect(metric(first, "Cost per day")).not_to_have_text(shared["Cost per day"], timeout=TIMEOUT)
        second.reload()
        expect(metric(second, "Cost per day")).to_have_text(shared["Cost per day"], timeout=TIMEOUT)
        expect(second.locator(".st-key-live_warehouse").get_by_role("combobox")).to_have_value(POLICIES["learned"].label)
        expect(first.locator(".st-key-live_warehouse").get_by_role("combobox")).to_have_value(RULE)
    finally:
        for context in contexts:
            context.close()


def test_settings_persist_across_pages(page) -> None:
    """A person's preset, store count and policy choice survive a visit to another page."""
    live_page(page)
    choose(page, "live_preset", "seasonal")
    wait_idle(page)
    choose(page, "live_store", RULE)
    wait_idle(page)
    stores = press_slider(page, "live_num_stores", 2)
    wait_idle(page)
    navigate(page, "About")
    live_page(page)
    expect(page.locator(".st-key-live_preset").get_by_role("combobox")).to_have_value("seasonal")
    expect(page.locator(".st-key-live_store").get_by_role("combobox")).to_have_value(RULE)
    thumb = page.locator(".st-key-live_num_stores").get_by_role("slider")
    assert thumb.input_value() == stores
    assert_no_errors(page)


def count_script_runs(page) -> None:
    """From now on, count in ``window.scriptRuns`` every time the app's script starts running."""
    page.evaluate("""() => {
        window.scriptRuns = 0;
        const app = document.querySelector('[data-testid="stApp"]');
        new MutationObserver(() => {
            if (app.getAttribute('data-test-script-state') === 'running') window.scriptRuns += 1;
        }).observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
    }""")


def test_dragging_a_demand_slider_recomputes_once_on_release(page) -> None:
    """A drag across several steps, held still at each long enough for a run to start and finish: the page
    reruns once, when the mouse is released, not at every step passed."""
    live_page(page)
    wait_idle(page, settle_ms=500)
    cost = metric(page, "Cost per day").inner_text()
    slider = page.locator(".st-key-live_demand_scale")
    thumb = slider.get_by_role("slider")
    start = thumb.input_value()
    box = thumb.bounding_box()
    track = slider.get_by_test_id("stSlider").bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    count_script_runs(page)
    page.mouse.move(x, y)
    page.mouse.down()
    seen = []
    for k in (1, 2, 3):  # three stops, further right each time
        page.mouse.move(x + k * track["width"] / 12, y, steps=5)
        page.wait_for_timeout(2000)  # a run per step would have started (and finished) by now
        seen.append(thumb.input_value())
        assert page.evaluate("window.scriptRuns") == 0, f"the page reran during the drag (at {seen[-1]})"
    page.mouse.up()
    wait_idle(page, settle_ms=1500)
    assert len(set(seen)) == 3 and start not in seen  # the thumb moved through three values
    assert thumb.input_value() == seen[-1]
    assert page.evaluate("window.scriptRuns") == 1
    expect(metric(page, "Cost per day")).not_to_have_text(cost)  # the one run used the new demand
    assert_no_errors(page)


def test_live_compares_with_a_chosen_mix_in_words_and_units(page) -> None:
    """The tiles' short differences against a chosen comparison (named in the headline, with the right sign), the
    day's KPIs and ledger in the year figure, what no policy can beat on request; a currency and a tooltip on every
    tile, the ledger's columns in words."""
    live_page(page)
    choose(page, "live_compare", RULE)
    wait_idle(page, settle_ms=500)
    expect(page.locator("h4").first).to_have_text(re.compile(rf"cost [\d.]+ % less than {re.escape(RULE)}$"))
    deltas = page.get_by_test_id("stMetricDelta").all_inner_texts()
    assert deltas and all(len(delta) <= 10 for delta in deltas), deltas  # "-31.2 %": never cut off mid-word
    assert re.fullmatch(r"\$[\d,.]+", metric(page, "Cost per day").inner_text())
    tiles = page.get_by_test_id("stMetric")
    for k in range(len(KPI_LABELS)):
        expect(tiles.nth(k).get_by_test_id("stTooltipIcon")).to_have_count(1)
    chart = year(page)
    expect(chart.get_by_text(re.compile(rf"^Cost saved by your policies against {re.escape(RULE)}"))).to_be_visible()
    for text in ("Fill rate so far", "Cost so far", "Stockouts so far", "Ledger of the day", "Demand", "Short"):
        expect(chart.get_by_text(text, exact=True)).to_be_visible()
    assert not any("_" in text for text in chart.locator("text").all_inner_texts()
                   if text in ("On hand", "In transit", "Demand", "Short", "Cost ($)"))
    page.locator(".st-key-live_references").get_by_text("Show what no policy can beat").click()
    wait_idle(page, settle_ms=500)
    expect(page.get_by_text(re.compile(r"^Your policies \$[\d,.]+ per day; clairvoyant bound"))).to_be_visible()
    assert_no_errors(page)


def test_flow_view_reads_from_1_to_50_stores(page) -> None:
    """One store drawn as itself; at 20 and 50 stores the worst off drawn and the others summed; the disruption
    window shaded and named."""
    live_page(page)
    choose(page, "live_preset", "supply_disruption")
    wait_idle(page, settle_ms=500)
    for stores in (1, 20, 50):
        press_slider(page, "live_num_stores", 60, "ArrowLeft" if stores == 1 else "ArrowRight")
        if stores == 20:
            press_slider(page, "live_num_stores", 30, "ArrowLeft")
        expect(page.locator(".st-key-live_num_stores").get_by_role("slider")).to_have_value(str(stores))
        wait_idle(page, settle_ms=750)
        chart = year(page)
        if stores == 1:
            expect(chart.get_by_text(re.compile(r"^store_0 ·"))).to_have_count(1)
            expect(chart.get_by_text(re.compile(r"other stores$"))).to_have_count(0)
        else:
            expect(chart.get_by_text(f"{stores - 3} other stores", exact=True)).to_have_count(2)  # flow view, ledger
            expect(chart.get_by_text(re.compile(rf"^{stores} stores: the 3 worst off drawn"))).to_have_count(1)
        expect(chart.get_by_text("supply disruption")).to_have_count(1)
        assert_no_errors(page)
    screenshot(page, "live_50_stores", full_page=True)


def test_in_app_training_yields_a_usable_policy(page, tmp_path: Path) -> None:
    """Build point 5: the smallest in-app run draws its learning curve as it goes and ends with a verdict (kept, or
    not kept and why), its learning curve, its ONNX store policy to download, labelled, which the session can then
    use; the Live page says it is in use."""
    navigate(page, "Train and export")
    budget = page.locator(".st-key-train_budget").get_by_role("slider")
    budget.focus()
    budget.press("Home")  # 50,000 transitions
    wait_idle(page, settle_ms=500)
    button(page, "train_go").click()
    so_far = page.locator(".js-plotly-plot").filter(has_text="Learning curves of the store policy, so far")
    expect(so_far).to_be_visible(timeout=600_000)  # drawn while the run goes on, from PPO's first update
    verdict = page.get_by_text(re.compile(r"^Your store policy: (kept|not kept): held-out system cost x\d\.\d{3}"))
    expect(verdict).to_be_visible(timeout=600_000)
    wait_idle(page)
    expect(page.locator(".st-key-train_curves .js-plotly-plot")).to_be_visible()  # PPO's updates at least
    expect(page.get_by_text(re.compile(r"^PPO updates the policy every [\d,]+ transitions"))).to_be_visible()
    kept = "not kept" not in verdict.inner_text()
    download = page.locator(".st-key-trained_policy_download").get_by_role("button")
    expect(download).to_have_text(f"store_policy_trained.onnx ({'kept' if kept else 'not kept'})")
    with page.expect_download(timeout=TIMEOUT) as info:
        download.click()
    wait_idle(page)  # a download does not rerun the page; if one did, the next click could land on a stale button
    target = tmp_path / "store_policy_trained.onnx"
    info.value.save_as(target)
    from core.serving.models import OnnxChooser

    OnnxChooser.checked(target.read_bytes(), "store")  # a policy the app's checks accept
    button(page, "trained_policy_use").click()
    wait_idle(page)
    expect(page.get_by_text(re.compile(r"^Uploaded in this session .*store \(store_policy_trained\.onnx"))) \
        .to_be_visible()
    screenshot(page, "train_and_export_trained", full_page=True)
    navigate(page, "Live twin")
    expect(page.get_by_text(re.compile(r"^Uploaded policy in use: stores store_policy_trained\.onnx"))).to_be_visible()
    expect(page.locator(".st-key-live_store").get_by_role("combobox")) \
        .to_have_value(f"{POLICIES['learned'].label} - uploaded")
    assert_no_errors(page)


def test_screenshots_command_writes_the_three_pictures(tmp_path: Path) -> None:
    """``python -m core screenshots`` (its own server and browser, so a process of its own) into a temporary
    folder: the three PNGs, 1400 pixels wide and whole pages tall."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: no browser to drive (install Debian's chromium)")
    done = subprocess.run([sys.executable, "-m", "core", "screenshots", "--out", str(tmp_path), "--log",
                           str(tmp_path / "server.log")], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    names = ["live_twin.png", "live_20_stores.png", "head_to_head.png"]
    assert done.stdout.split() == [str(tmp_path / name) for name in names]
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert width == 1400 and height >= 1000


WITH_A_MISSING_WIDGET = """
import sys
from core import cli
from core.tools import browser_bench as bench
missing = bench.Interaction("missing", "a widget the app lacks", bench.LIVE, "pick", "no_such_widget", ("any",))
bench.INTERACTIONS, bench.IDS = (*bench.INTERACTIONS, missing), (*bench.IDS, missing.id)
sys.exit(cli.main(sys.argv[1:]))
"""  # the command line's main with one more line in the benchmark's table


def test_browser_bench_prints_every_figure_and_na_for_a_missing_widget() -> None:
    """``bench --pages --browser --json`` (a process of its own: its own server and browser) on one repeat of a cold
    first load, a store-policy switch and a slider step, and of an interaction whose widget the app lacks: each
    figure a positive finite number of seconds, the missing one n/a in the JSON and in the printed table."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing: no browser to drive (install Debian's chromium)")
    timed = ["load-cold", "store-policy", "slider-step"]
    wanted = [*timed, "missing"]
    done = subprocess.run([sys.executable, "-c", WITH_A_MISSING_WIDGET, "bench", "--pages", "--browser", "--json",
                           "--repeats", "1", *[arg for name in wanted for arg in ("--interaction", name)]],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    if done.returncode == 1 and "playwright" in done.stderr:
        _unavailable(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["repeats"] == 1
    assert sorted(result["load_average"]) == ["end", "start"]
    assert all(len(loads) == 3 for loads in result["load_average"].values())
    entries = {entry["id"]: entry for entry in result["interactions"]}
    assert list(entries) == wanted
    for name in timed:
        entry = entries[name]
        assert (entry["na"], entry["unit"], entry["errors"], len(entry["samples"])) == (None, "s", [], 1), entry
        for figure in (*entry["samples"], entry["median"], entry["min"], entry["max"], entry["target"]):
            assert isinstance(figure, float | int) and math.isfinite(figure) and figure > 0, (name, figure)
    for name in timed[1:]:  # what changed, as "before -> after"
        assert re.fullmatch(r".+ -> .+", entries[name]["details"][0]), entries[name]["details"]
    assert entries["missing"]["na"] == "widget no_such_widget not found"
    assert (entries["missing"]["samples"], entries["missing"]["median"]) == ([], None)
    lines = report_lines(result)
    assert len(lines) == 1 + len(wanted)
    assert lines[-1].endswith("n/a (widget no_such_widget not found)")
