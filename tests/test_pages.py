"""Head-to-head, the policy inspector, Train and export and About (issue #24): an error a page did not expect is
one line and the page keeps its settings; each page's mends; their figures read on a light and a dark
background."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
import streamlit as st
from test_app import MANIFEST, assert_clean, headline_of, needs_models, open_page, plotly_specs

from core.agents.menus import TunedEntry, menu_index
from core.app import compare
from core.app.errors import UNEXPECTED, unexpected_error
from core.app.inspector import DEFAULT_RULE, DIFFERENT, default_point, inspected_scenario, inspector_rules, store_rule
from core.app.live import inspect_store_policy
from core.evaluation import plots
from core.serving.models import learned_policy
from core.serving.registry import POLICIES, tuned_menu
from core.simulation.presets import PRESETS

# --------------------------------------------------------------------------------------------- unexpected errors


@pytest.fixture
def entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run through ``streamlit_app.py``, as a served app runs once ``st.navigation`` has run: with a ``pages/``
    folder beside it, Streamlit 1.67 runs a page's file alone (its multipage "v1" fallback, ``_mpa_v1``) as long as
    it has not seen ``st.navigation``, which under AppTest is every run but the first."""
    from streamlit.runtime.scriptrunner import script_runner

    def run(main_script_path: str) -> None:
        path = Path(main_script_path)
        exec(compile(path.read_text(), str(path), "exec"), {"__name__": "__main__", "__file__": str(path)})

    monkeypatch.setattr(script_runner, "_mpa_v1", run)


def test_an_unexpected_error_is_one_escaped_line() -> None:
    text = unexpected_error(ValueError("bad `value` in [a link](x) *here*\nTraceback (most recent call last):"))
    assert text.startswith(f"{UNEXPECTED}: `` ValueError: bad `value` in [a link](x) *here*\\nTraceback")
    assert "\n" not in text and text.endswith("Your settings are kept: change one of them, or open the page again.")
    assert unexpected_error(KeyError()).startswith(f"{UNEXPECTED}: ` KeyError `")
    assert len(unexpected_error(RuntimeError("x" * 10_000))) < 500


@needs_models
def test_a_page_that_fails_shows_one_line_and_keeps_its_settings(entry_point, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    at = open_page("head_to_head.py")
    at.slider(key="h2h_seeds").set_value(20).run()
    assert_clean(at)

    def fails(*args, **kwargs):
        raise ZeroDivisionError("injected <b>bold</b>")

    monkeypatch.setattr(compare, "headline", fails)
    at.selectbox(key="h2h_preset").set_value("thin_margin").run()
    assert not at.exception  # no traceback on the page
    (error,) = at.error
    assert error.value.startswith(f"{UNEXPECTED}: ` ZeroDivisionError: injected <b>bold</b> `")
    assert "\n" not in error.value and "Traceback" not in error.value
    monkeypatch.undo()
    at.run()
    assert_clean(at)
    assert at.selectbox(key="h2h_preset").value == "thin_margin" and at.slider(key="h2h_seeds").value == 20
    assert "on the same 20 demand paths" in headline_of(at)


@needs_models
def test_st_stop_and_st_rerun_pass_through_the_error_wrapper(entry_point, monkeypatch: pytest.MonkeyPatch) -> None:
    """``st.stop`` and ``st.rerun`` (control exceptions, not ``Exception``s) do what they do, no message."""
    at = open_page("head_to_head.py")
    assert len(at.dataframe) == 2
    monkeypatch.setattr(compare, "headline", lambda *args: st.stop())
    at.run()
    assert_clean(at)
    assert len(at.dataframe) == 0  # stopped before the tables
    reruns = []

    def rerun_once(*args):
        reruns.append(1)
        if len(reruns) == 1:
            st.rerun()
        raise RuntimeError("the second run goes on")

    monkeypatch.setattr(compare, "headline", rerun_once)
    at.run()
    assert len(reruns) == 2 and [e.value.split(":")[0] for e in at.error] == [UNEXPECTED]


# --------------------------------------------------------------------------------------------- head-to-head


@needs_models
def test_head_to_head_on_an_ample_source_offers_the_stores_policy_only() -> None:
    at = open_page("head_to_head.py")
    at.selectbox(key="h2h_preset").set_value("lost_sales_textbook").run()
    assert_clean(at)
    keys = {box.key for box in at.selectbox}
    assert {"h2h_a_store", "h2h_b_store"} <= keys and not keys & {f"h2h_{m}_{r}" for m in "ab"
                                                                   for r in ("warehouse", "supplier")}
    assert any("warehouse and the supplier have nothing to do" in c.value for c in at.caption)
    text = headline_of(at)
    first, second = re.search(r"\(\$([\d.]+) against \$([\d.]+);", text).groups()
    assert first != second and len(first.split(".")[1]) >= 2, text  # "$4.78 against $4.81", never "$4.8 against $4.8"
    assert list(at.dataframe[0].value["Policy"][:2]) == [POLICIES["learned"].label,
                                                          POLICIES["tuned_capped_base_stock"].label]


@needs_models
def test_head_to_head_says_when_the_two_cost_lines_coincide() -> None:
    at = open_page("head_to_head.py")
    for role in ("store", "warehouse", "supplier"):
        at.selectbox(key=f"h2h_a_{role}").set_value("reorder_point")
        at.selectbox(key=f"h2h_b_{role}").set_value("reorder_point")
    at.run()
    assert_clean(at)
    (chart,) = plotly_specs(at)
    notes = [a["text"] for a in chart["layout"]["annotations"]]
    assert "the two lines coincide: both cost the same every day" in notes


# --------------------------------------------------------------------------------------------- policy inspector


def _opened_orders(at) -> tuple[float, float]:
    caption = at.caption[-1].value
    learned, rule = re.search(r"learned order ([\d.]+) units, .* order ([\d.]+) units", caption).groups()
    return float(learned), float(rule)


@needs_models
def test_the_inspector_opens_where_both_policies_order_and_differ() -> None:
    """The page opens on the grid point ``default_point`` picks on the shipped store policy's grid: where both
    policies order and differ if there is one (a trained store), else the middle (a store still on its tuned entry
    may order as the rule everywhere)."""
    at = open_page("policy_inspector.py")
    assert at.selectbox(key="inspect_rule").value == DEFAULT_RULE
    scenario = inspected_scenario(40.0, 2)
    grid = inspect_store_policy(learned_policy("store").choose, store_rule(DEFAULT_RULE, scenario), 40.0, 2)
    i, j = default_point(grid)
    assert (at.select_slider(key="inspect_i").value, at.select_slider(key="inspect_j").value) == (i, j)
    learned, rule = _opened_orders(at)
    assert (learned, rule) == (round(grid["learned_order"][i, j], 1), round(grid["rule_order"][i, j], 1))
    both = (grid["learned_order"] > 0.5) & (grid["rule_order"] > 0.5) & \
        (np.abs(grid["learned_order"] - grid["rule_order"]) >= DIFFERENT)
    if both.any():
        assert learned > 0 and rule > 0 and abs(learned - rule) >= 1
    else:
        assert (i, j) == (len(grid["on_hand_days"]) // 2,) * 2


def test_the_inspector_opens_where_both_order_and_differ_with_the_most_stock() -> None:
    """``default_point``: among the points where both policies order and differ, the one with the most stock (then
    the nearest the diagonal); the middle where there is none."""
    rule = np.maximum(0.0, 10.0 - np.add.outer(np.arange(7.0), np.arange(7.0)))  # orders up to 10 units of position
    learned = rule.copy()
    assert default_point({"learned_order": learned, "rule_order": rule}) == (3, 3)  # the same everywhere
    learned[1, 2] += 2.0
    learned[3, 1] += 2.0  # more stock than (1, 2)
    learned[5, 5] += 2.0  # the rule no longer orders there
    assert default_point({"learned_order": learned, "rule_order": rule}) == (3, 1)


def test_the_inspector_shows_a_rule_based_store_as_its_tuned_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shipped store of kind "rule" (no phase of it kept) acts by its tuned entry (``TunedEntry``): the inspector
    draws it (no error) and says it is rule-based; it orders as the tuned forecast base-stock everywhere."""
    import pages.common

    monkeypatch.setattr(pages.common, "shipped_chooser", lambda role: TunedEntry())
    at = open_page("policy_inspector.py")
    assert any("rule-based" in info.value for info in at.info)
    at.selectbox(key="inspect_rule").set_value("tuned_forecast_base_stock").run()
    assert_clean(at)
    learned, rule = _opened_orders(at)
    assert learned == rule
    scenario = inspected_scenario(40.0, 2)
    grid = inspect_store_policy(TunedEntry(), store_rule("tuned_forecast_base_stock", scenario), 40.0, 2)
    np.testing.assert_array_equal(grid["learned_order"], grid["rule_order"])
    tuned = menu_index(tuned_menu(scenario)["store"])
    assert (grid["probabilities"].argmax(axis=-1) == tuned).all() and (grid["probabilities"].max(axis=-1) == 1).all()


@needs_models
def test_the_inspector_compares_with_every_rule_that_applies() -> None:
    at = open_page("policy_inspector.py")
    box = at.selectbox(key="inspect_rule")
    from core.app.inspector import inspected_scenario

    expected = inspector_rules(inspected_scenario(40.0, 2))
    assert box.options == [POLICIES[k].label for k in expected]
    assert "tuned_capped_base_stock" in expected and "random" not in expected and "learned" not in expected
    box.set_value("reorder_point").run()
    assert_clean(at)
    heatmap = plotly_specs(at)[0]
    assert any(a["text"] == "reorder point (s, S): order (units)" for a in heatmap["layout"]["annotations"])
    assert "reorder point (s, S) order" in at.caption[-1].value


def test_the_inspectors_scenario_is_the_one_its_grid_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A tuned rule is tuned for the store the grid shows: ``inspected_scenario`` is what ``inspect_store_policy``
    runs."""
    from core.agents.menus import ConstantChooser
    from core.agents.rules import ReorderPoint
    from core.app import live
    from core.app.inspector import inspected_scenario

    seen = []
    reset = live.reset
    monkeypatch.setattr(live, "reset", lambda scenario, batch: seen.append(scenario) or reset(scenario, batch))
    live.inspect_store_policy(ConstantChooser(40), ReorderPoint("store"), 65.0, 3)
    assert seen == [inspected_scenario(65.0, 3)]


# --------------------------------------------------------------------------------------------- train and export


def test_learning_curves_draw_only_the_panels_that_have_points() -> None:
    updates = [{"timesteps": 12_288 * k, "train/value_loss": 1.0 / k, "train/policy_gradient_loss": -0.01,
                "train/entropy_loss": -3.0} for k in range(1, 5)]
    short = plots.learning_curves_figure([], updates, "")
    assert [a.text for a in short.layout.annotations] == ["policy-gradient loss", "value loss", "entropy loss"]
    assert all(len(trace.x) == 4 for trace in short.data)
    episodes = [{"timesteps": 280_320, "reward": -1.0, "fill_rate": 0.95, "cost_per_day": 150.0,
                 "holding_cost_per_day": 120.0}]
    long = plots.learning_curves_figure(episodes, updates, "")
    assert len(long.data) == 7 and all(len(trace.x) for trace in long.data)
    assert not any("/" in a.text or "_" in a.text for a in long.layout.annotations)  # words, not code names
    assert plots.learning_curves_figure([], [], "").layout.annotations[0].text == "no points yet"


# --------------------------------------------------------------------------------------------- about


def shipped_versus_best_rule() -> dict[str, tuple[float, str]]:
    """Each preset of the shipped evaluation, read straight from the manifest: the learned hierarchy's cost per day
    relative to the preset's best rule, and what its paired 95 % interval says."""
    presets = json.loads(MANIFEST.read_text())["evaluation"]["presets"]
    shown = {}
    for preset, entry in presets.items():
        learned = entry["policies"]["learned_hierarchy"]
        relative = learned["cost_per_day"] / entry["policies"][entry["best_rule"]]["cost_per_day"] - 1.0
        interval = learned["cost_vs_best_rule"]
        words = ("learning pays" if interval["high"] < 0 else "learning costs more" if interval["low"] > 0
                 else "no significant difference")
        shown[preset] = (relative, words)
    return shown


def _evaluated() -> bool:
    return MANIFEST.exists() and bool(json.loads(MANIFEST.read_text()).get("evaluation", {}).get("presets"))


@needs_models
@pytest.mark.skipif(not _evaluated(), reason="the shipped manifest records no evaluation yet (a pipeline step)")
def test_about_shows_where_learning_pays_on_the_presets_wins_and_losses() -> None:
    """Every preset of the shipped evaluation, in the group its interval puts it in (wins and losses alike), named in
    the caption cheapest first with its change."""
    shipped = shipped_versus_best_rule()
    at = open_page("about.py")
    presets = next(spec for spec in plotly_specs(at)
                   if spec["layout"].get("title", {}).get("text", "").startswith("The shipped"))
    groups = {trace["name"]: list(trace["y"]) for trace in presets["data"]}
    assert set().union(*map(set, groups.values())) == set(PRESETS)  # every preset, whatever it shows
    assert {words: set(names) for words, names in groups.items()} == {
        words: {p for p, (_, w) in shipped.items() if w == words} for words in {w for _, w in shipped.values()}}
    text = " ".join(c.value for c in at.caption)
    for words in groups:
        ordered = sorted((p for p, (_, w) in shipped.items() if w == words), key=lambda p: shipped[p][0])
        line = ", ".join(f"{p} ({round(100 * shipped[p][0], 1) + 0.0:+.1f} %)" for p in ordered)
        assert f"{words.capitalize()}: {line}." in text
    assert "On this grid it pays in 0 of 8 scenarios." in text


# --------------------------------------------------------------------------------------------- dark mode

LIGHT, DARK = "#ffffff", "#0e1117"  # Streamlit's light and dark backgrounds


def _luminance(colour: str) -> float:
    if colour.startswith("#") and len(colour) == 4:
        colour = "#" + "".join(c * 2 for c in colour[1:])
    channels = [int(colour[i: i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    high, low = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def _inside_box(fig: go.Figure, x: float, y: float) -> str | None:
    """The fill of a rectangle of ``fig`` around (x, y), if any."""
    for shape in fig.layout.shapes:
        if shape.type == "rect" and shape.fillcolor and shape.x0 <= x <= shape.x1 and shape.y0 <= y <= shape.y1:
            return shape.fillcolor
    return None


def figures() -> dict[str, go.Figure]:
    days = np.linspace(100.0, 120.0, 30)
    points = [{"preset": "thin_margin", "best_rule": "x", "relative": -0.047, "low": -0.05, "high": -0.04},
              {"preset": "steady", "best_rule": "x", "relative": 0.003, "low": 0.001, "high": 0.004},
              {"preset": "high_volatility", "best_rule": "x", "relative": 0.005, "low": -0.001, "high": 0.01}]
    sweep = [{**p, "point": p["preset"], "bound_relative": -0.4} for p in points]
    grid = {key: np.ones((3, 3)) for key in ("safety_factor", "learned_order", "rule_order")}
    grid.update(on_hand_days=np.arange(3.0), in_transit_days=np.arange(3.0))
    updates = [{"timesteps": 1, "train/value_loss": 1.0}]
    return {"chain": plots.chain_diagram_figure(), "costs": plots.cumulative_cost_figure({"A": days, "B": days}, "t"),
            "presets": plots.presets_figure(points), "sweep": plots.sweep_figure(sweep),
            "curves": plots.learning_curves_figure([], updates, "t"), "inspector": plots.inspector_figure(grid, "r"),
            "probabilities": plots.probabilities_figure(np.full(64, 1 / 64))}


@pytest.mark.parametrize("name", list(figures()))
def test_figures_read_on_a_light_and_a_dark_background(name: str) -> None:
    """Every text and line colour a figure of these pages sets contrasts at least 3:1 with both of Streamlit's
    backgrounds (or, for text in a filled box, 4.5:1 with the box); no figure paints its own white background."""
    fig = figures()[name]
    assert fig.layout.plot_bgcolor in (None, "rgba(0, 0, 0, 0)") and fig.layout.paper_bgcolor is None
    for note in fig.layout.annotations:
        colour = note.font.color
        if colour is None:
            continue  # the theme's own text colour
        box = _inside_box(fig, note.x, note.y) if note.xref in (None, "x") else None
        if box is not None:
            assert contrast(colour, box) >= 4.5, (note.text, colour, box)
        else:
            assert min(contrast(colour, LIGHT), contrast(colour, DARK)) >= 3, (note.text, colour)
    for trace in fig.data:
        line = getattr(trace, "line", None)
        colour = getattr(line, "color", None) if line is not None else None
        if isinstance(colour, str) and colour.startswith("#") and "lines" in (getattr(trace, "mode", "") or ""):
            assert min(contrast(colour, LIGHT), contrast(colour, DARK)) >= 3, (trace.name, colour)
