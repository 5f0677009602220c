"""The Live page's year figure (``year_figure``): its flow view reads at 1 to 50 stores on every day, its frames
change only what a day changes and agree with the year's numbers, its time charts and the payload stay light.

Label boxes are estimated from the figure's own geometry: axis ranges and domains, height and margins from the
layout, an assumed figure width, and a text box of 0.6 em per character and 1.25 em per line (wider than the average
glyph of the default font, so the estimate errs towards finding overlaps).
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import plotly.graph_objects as go
import pytest

from core.agents.rules import reorder_point_mix
from core.evaluation.plots import (
    COLOURS,
    MAX_LINE_PX,
    MAX_STORES_DRAWN,
    STOCKOUT,
    WORST_STORES_DRAWN,
    event_windows,
    running_kpis,
    worst_off_stores,
    year_figure,
)
from core.serving.registry import mix_of, uniform
from core.simulation.demand import sample_demand
from core.simulation.presets import get_preset
from core.simulation.rollout import Rollout, kpis, rollout
from core.simulation.scenario import Scenario

STORE_COUNTS = (1, 3, 8, 20, 50)
WIDTHS_PX = (900, 1600)  # the year figure in a 1280 px window with the sidebar open, and a wide screen
LABELS = ("your policies", "forecast base-stock")
FRAME_MS = 100
MAX_PAYLOAD_BYTES = 2_000_000  # the figure as sent, at any number of stores
CHAR_EM, LINE_EM = 0.6, 1.25
UNIT_WORDS = ("units", "day")
DEFAULT_FONT_PX = 12


@cache
def scenario_run(preset: str, stores: int, policy: str = "reorder_point") -> tuple[Scenario, Rollout]:
    scenario = get_preset(preset).with_num_stores(stores)
    demand = sample_demand(scenario, 1, np.random.default_rng(3))
    mix = reorder_point_mix() if policy == "reorder_point" else mix_of(uniform(policy), scenario)
    return scenario, rollout(scenario, mix, demand)


@cache
def figure(preset: str, stores: int) -> dict:
    """The year figure of (s, S) against forecast base-stock, as sent to the browser."""
    scenario, run = scenario_run(preset, stores)
    _, baseline = scenario_run(preset, stores, "forecast_base_stock")
    return year_figure(run, baseline, scenario, LABELS, FRAME_MS).to_dict()


def on_day(fig: dict, day: int) -> list[dict]:
    """The figure's traces as they are on ``day`` (0-based): the first frame's traces updated by the day's."""
    traces = [dict(t) for t in fig["data"]]
    frame = fig["frames"][day]
    for index, change in zip(frame["traces"], frame["data"], strict=True):
        for key, value in change.items():
            traces[index][key] = {**traces[index].get(key, {}), **value} if isinstance(value, dict) else value
    return traces


def flow_view(fig: dict, day: int) -> list[dict]:
    """The flow view's traces on ``day`` (axes x, y)."""
    return [t for t in on_day(fig, day) if t.get("xaxis", "x") == "x"]


def _text_size(text: str, font_px: float | None) -> tuple[float, float]:
    font_px = font_px or DEFAULT_FONT_PX
    lines = [re.sub(r"<[^>]+>", "", line) for line in text.split("<br>")]
    return CHAR_EM * font_px * max(len(line) for line in lines), LINE_EM * font_px * len(lines)


def text_boxes(fig: dict, traces: list[dict], width_px: float) -> list[tuple[str, float, float, float, float]]:
    """(text, left, top, right, bottom) in pixels, from the flow view's top left corner, of every text of the flow
    view's ``traces``, placed beside its marker as its ``textposition`` says."""
    layout = fig["layout"]
    margin = layout["margin"]
    xaxis, yaxis = layout["xaxis"], layout["yaxis"]
    plot_w = (width_px - margin["l"] - margin["r"]) * (xaxis["domain"][1] - xaxis["domain"][0])
    plot_h = (layout["height"] - margin["t"] - margin["b"]) * (yaxis["domain"][1] - yaxis["domain"][0])
    (x0, x1), (y0, y1) = xaxis["range"], yaxis["range"]

    def pixels(x: float, y: float) -> tuple[float, float]:
        return (x - x0) / (x1 - x0) * plot_w, (y1 - y) / (y1 - y0) * plot_h

    boxes = []
    for trace in traces:
        if "text" not in trace.get("mode", ""):
            continue
        sizes = np.broadcast_to(np.asarray(trace.get("marker", {}).get("size", 0), dtype=float), (len(trace["x"]),))
        positions = trace["textposition"]
        positions = [positions] * len(trace["x"]) if isinstance(positions, str) else positions
        for x, y, text, size, where in zip(trace["x"], trace["y"], trace["text"], sizes, positions, strict=True):
            if not text:
                continue
            (cx, cy), (w, h), radius = pixels(x, y), _text_size(text, trace["textfont"]["size"]), size / 2
            if where == "middle right":
                boxes.append((text, cx + radius, cy - h / 2, cx + radius + w, cy + h / 2))
            elif where == "top center":
                boxes.append((text, cx - w / 2, cy - radius - h, cx + w / 2, cy - radius))
            else:
                assert where == "bottom center", where
                boxes.append((text, cx - w / 2, cy + radius, cx + w / 2, cy + radius + h))
    return boxes


def overlaps(boxes: list[tuple[str, float, float, float, float]]) -> list[tuple[str, str]]:
    return [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]


@pytest.mark.parametrize("stores", STORE_COUNTS)
def test_flow_labels_never_overlap_and_stay_in_the_flow_view(stores: int) -> None:
    fig = figure("promo_shock", stores)
    layout = fig["layout"]
    top, bottom = layout["yaxis"]["domain"]
    gap_below = top * (layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]) - 40  # to the chart's title
    for day in (0, 1, 45, 200, 364):
        traces = flow_view(fig, day)
        for width in WIDTHS_PX:
            boxes = text_boxes(fig, traces, width)
            assert not overlaps(boxes), (stores, day, width, overlaps(boxes))
            total = width - layout["margin"]["l"] - layout["margin"]["r"]
            panel = total * layout["xaxis2"]["domain"][0]  # the day's KPIs begin here
            height = (layout["height"] - layout["margin"]["t"] - layout["margin"]["b"]) * (bottom - top) * -1
            for text, left, upper, right, lower in boxes:
                assert -layout["margin"]["l"] <= left and right <= panel, (stores, day, width, text, left, right)
                assert upper >= 0 and lower <= -height + gap_below, (stores, day, text, upper, lower)


@pytest.mark.parametrize("stores", STORE_COUNTS)
def test_flow_draws_a_handful_of_stores_and_sums_the_rest(stores: int) -> None:
    _, run = scenario_run("steady", stores)
    day = 120
    store_trace = flow_view(figure("steady", stores), day)[-2]
    labels = list(store_trace["text"])
    assert len(labels) == (stores if stores <= MAX_STORES_DRAWN else WORST_STORES_DRAWN + 1)
    if stores > MAX_STORES_DRAWN:
        worst = worst_off_stores(run, day, WORST_STORES_DRAWN)
        assert [label.split(" ·")[0] for label in labels[:-1]] == [f"store_{i}" for i in worst]
        assert labels[-1].startswith(f"{stores - WORST_STORES_DRAWN} other stores")
        total = run.ledger["on_hand"][day, 0, :stores].sum()
        summed = np.setdiff1d(np.arange(stores), worst)
        assert f"{run.ledger['on_hand'][day, 0, summed].sum():,.0f} on hand" in labels[-1]
        # the summed node holds what the drawn stores do not
        drawn = run.ledger["on_hand"][day, 0, worst].sum()
        assert abs(drawn + run.ledger["on_hand"][day, 0, summed].sum() - total) <= 1e-9 * max(total, 1.0)
        assert store_trace["marker"]["symbol"] == ["circle"] * WORST_STORES_DRAWN + ["square"]


def test_worst_off_stores_are_the_short_then_the_least_covered() -> None:
    _, run = scenario_run("promo_shock", 20)
    for day in (30, 62, 200):
        worst = worst_off_stores(run, day, WORST_STORES_DRAWN)
        short = run.ledger["unmet"][day, 0, :20]
        assert short[worst].min() >= np.delete(short, worst).max() or short[worst].min() == 0.0
        assert len(set(worst)) == WORST_STORES_DRAWN


def test_flow_line_widths_follow_units_in_transit_and_red_marks_only_stockouts() -> None:
    _, run = scenario_run("steady", 3)
    fig = figure("steady", 3)
    for day in (0, 100, 250):
        traces = flow_view(fig, day)
        transit = run.ledger["in_transit"][day, 0]
        units = np.array([transit[4], transit[3], *transit[:3]])  # production, to the warehouse, to each store
        links = [t for t in traces if t["mode"] == "lines"]
        assert len(links) == 5
        widths = np.array([t["line"]["width"] for t in links])
        carrying = (units > 0.5) & (widths > 1.0) & (widths < 2 * MAX_LINE_PX)  # not at the 1 px floor or the cap
        ratio = widths[carrying] @ units[carrying] / (units[carrying] @ units[carrying])
        assert carrying.sum() >= 2 and np.allclose(widths[carrying], ratio * units[carrying], atol=0.06), (
            units, widths)  # proportional, up to the widths' rounding to 0.1 px
        assert all(t["line"]["dash"] == ("solid" if u > 0.5 else "dot") for t, u in zip(links, units, strict=True))
        upstream, stores = traces[-3], traces[-2]
        for i, label in enumerate(stores["text"]):  # each store's pipeline is in its label
            assert f"{transit[i]:,.0f} in transit" in label
        assert STOCKOUT not in upstream["marker"]["color"]
        short = run.ledger["unmet"][day, 0, :3] > 0.5
        assert [c == STOCKOUT for c in stores["marker"]["color"]] == list(short)


def test_day_one_shows_the_opening_pipeline_and_no_zero_orders() -> None:
    _, run = scenario_run("steady", 3)
    fig = figure("steady", 3)
    texts = [text for t in flow_view(fig, 0) if "text" in t for text in t["text"]]
    assert not any("order 0" in s or "ordered 0" in s or "started 0" in s for s in texts)
    transit = run.ledger["in_transit"][0, 0]
    assert transit.min() > 0  # the opening pipelines are full ...
    assert f"{transit[3]:,.0f} in transit" in texts and f"{transit[4]:,.0f}<br>in production" in texts  # ... shown
    assert all(t["line"]["dash"] == "solid" for t in flow_view(fig, 0) if t["mode"] == "lines")
    assert any("opening stock" in text for t in on_day(fig, 0) for text in t.get("text", []))


def test_flow_marker_key_names_its_sizes() -> None:
    key = flow_view(figure("steady", 3), 50)[-1]
    values = [float(s.split(" ")[0].replace(",", "")) for s in key["text"][1:]]
    assert key["text"][0] == "On hand:"
    assert values == sorted(values) and len(set(values)) == 3
    assert list(key["marker"]["size"][1:]) == sorted(key["marker"]["size"][1:])


def test_frames_play_a_day_each_and_change_only_what_a_day_changes() -> None:
    fig = figure("promo_shock", 3)
    frames = fig["frames"]
    assert [f["name"] for f in frames] == [str(day) for day in range(1, 366)]
    daily = frames[0]["traces"]
    assert all(f["traces"] == daily for f in frames) and len(daily) < len(fig["data"])
    static = [t for k, t in enumerate(fig["data"]) if k not in daily]
    assert any(t.get("name") == "stores" for t in static)  # the time charts are sent once, not every day
    for change in frames[100]["data"]:  # a frame holds no whole-year series
        assert all(len(v) < 100 for v in change.values() if isinstance(v, list))
    (menu,) = fig["layout"]["updatemenus"]
    buttons = {b["label"].split()[-1]: b["args"] for b in menu["buttons"]}
    assert set(buttons) == {"Play", "Fast", "Pause"}
    assert buttons["Play"][0] is None and buttons["Play"][1]["fromcurrent"]
    assert buttons["Play"][1]["frame"] == {"duration": FRAME_MS, "redraw": False}
    assert buttons["Pause"][0] == [None] and buttons["Pause"][1]["mode"] == "immediate"  # stops at the day shown
    (slider,) = fig["layout"]["sliders"]
    assert [step["args"][0] for step in slider["steps"]] == [[f["name"]] for f in frames]
    go.Figure(fig)  # plotly accepts every frame


def test_the_days_kpis_are_the_year_so_far_of_both_mixes() -> None:
    from core.evaluation.plots import BETTER, GREY, WORSE

    _, run = scenario_run("promo_shock", 3)
    _, baseline = scenario_run("promo_shock", 3, "forecast_base_stock")
    fig = figure("promo_shock", 3)
    mine, theirs = running_kpis(run), running_kpis(baseline)
    for day in (0, 99, 364):
        for values in (mine, theirs):
            for key in values:
                direct = kpis(run if values is mine else baseline, days=day + 1)
                expected = {"fill_rate": direct["fill_rate"], "cost": direct["cost_per_day"] * (day + 1),
                            "stockouts": direct["lost_sales_per_day"] * (day + 1)}[key][0]
                assert values[key][day] == pytest.approx(expected, rel=1e-9)
        traces = on_day(fig, day)
        title = next(t for t in traces if any("of 365" in text for text in t.get("text", [])))
        assert title["text"] == [f"<b>Day {day + 1}</b> of 365" + (" (the opening stock)" if day == 0 else "")]
        cells = next(t for t in traces if t.get("xaxis") == "x2" and len(t.get("text", [])) == 6)["text"]
        assert cells[1] == f"${mine['cost'][day]:,.0f}" and cells[4] == f"${theirs['cost'][day]:,.0f}"
        assert cells[0] == f"{100 * mine['fill_rate'][day]:.1f} %"
        differences = next(t for t in traces if t.get("xaxis") == "x2" and "color" in t.get("textfont", {})
                           and isinstance(t["textfont"]["color"], list))
        change = 100 * (mine["cost"][day] / theirs["cost"][day] - 1)
        shown = f"{change:+.1f} %".replace("-", "\u2212")
        expected_colour = GREY if round(change, 1) == 0 else BETTER if change < 0 else WORSE
        assert differences["text"][1] == ("same" if round(change, 1) == 0 else shown)
        assert differences["textfont"]["color"][1] == expected_colour


def test_the_ledger_names_its_columns_in_words_and_rounds_money() -> None:
    fig = figure("steady", 20)
    header = next(t for t in fig["data"] if "Ledger of the day" in t.get("text", []))
    assert not any("_" in text for text in header["text"])
    rows = next(t for t in on_day(fig, 200) if t.get("xaxis") == "x3" and t is not header and "textfont" in t
                and "color" not in t["textfont"])["text"]
    columns = len(header["text"])
    agents = rows[::columns]
    assert agents == [*(agents[:WORST_STORES_DRAWN]), "17 other stores", "warehouse", "supplier"]
    assert all(cell.count(".") == 1 and len(cell.split(".")[1]) == 2 for cell in rows[columns - 1::columns])


def _series_traces(fig: dict) -> list[dict]:
    return [t for t in fig["data"] if t.get("showlegend")]


@pytest.mark.parametrize("preset", ("steady", "promo_shock", "supply_disruption"))
def test_series_axes_legends_and_colours(preset: str) -> None:
    fig = figure(preset, 8)
    layout = fig["layout"]
    charts = [f"yaxis{k}" for k in range(5, 9)]
    for axis in charts:
        assert "(units)" in layout[axis]["title"]["text"] or "(units/day)" in layout[axis]["title"]["text"]
    labelled = [k for k in range(4, 9) if layout[f"xaxis{k}"]["showticklabels"]]
    assert labelled == [4, 8] and layout["xaxis8"]["title"]["text"] == "day"  # under the saved chart and the last
    assert {tuple(layout[f"xaxis{k}"]["range"]) for k in range(4, 9)} == {(0.5, 365.5)}  # the whole year
    assert all(layout[f"xaxis{k}"].get("matches") == "x8" for k in range(4, 8))  # zoom one, zoom all
    series = _series_traces(fig)
    legends = {t["legend"] for t in series}
    assert legends == {"legend", "legend2", "legend3", "legend4"}  # one legend per chart
    for legend in legends:  # beside its own chart, outside every plot area
        chart = next(t for t in series if t["legend"] == legend)
        y_domain = layout["yaxis" + chart["yaxis"][1:]]["domain"]
        assert layout[legend]["x"] >= layout["xaxis5"]["domain"][1] and layout[legend]["xanchor"] == "left"
        assert layout[legend]["y"] == y_domain[1] and layout[legend]["yanchor"] == "top"
    colours = [t["line"]["color"] if t["type"] == "scatter" else t["marker"]["color"] for t in series]
    assert len(colours) == 12 and len(set(colours)) == 12
    assert colours.count(STOCKOUT) == 1
    assert next(t for t in series if t.get("marker", {}).get("color") == STOCKOUT)["name"] == "short"
    assert STOCKOUT not in COLOURS.values()
    warehouse = next(t for t in series if t["name"] == "warehouse")
    assert warehouse["line"]["color"] == COLOURS["warehouse"] != STOCKOUT


@pytest.mark.parametrize("preset", ("steady", "seasonal", "promo_shock", "supply_disruption"))
def test_series_shades_exactly_the_scenarios_windows(preset: str) -> None:
    scenario, _ = scenario_run(preset, 3)
    fig = figure(preset, 3)
    windows = event_windows(scenario)
    has_events = any(store.promotions for store in scenario.stores) or bool(scenario.disruptions)
    assert bool(windows) == has_events
    rects = [s for s in fig["layout"].get("shapes", []) if s["type"] == "rect"]
    assert len(rects) == 5 * len(windows)  # every window on the saved chart and each of the four time charts
    assert {(s["x0"], s["x1"]) for s in rects} == {(first + 0.5, end + 0.5) for _, first, end in windows}
    assert sorted(s["name"] for s in rects if s["showlegend"]) == sorted({kind for kind, _, _ in windows})
    assert ("legend5" in fig["layout"]) == has_events


def test_event_windows_of_the_presets() -> None:
    assert event_windows(get_preset("steady")) == []
    assert event_windows(get_preset("promo_shock")) == [("promotion", 60, 67), ("promotion", 160, 170),
                                                        ("promotion", 290, 297)]
    assert event_windows(get_preset("supply_disruption")) == [("supply disruption", 120, 150)]


def test_series_y_scale_leaves_out_the_opening_transient() -> None:
    fig = figure("steady", 3)
    layout = fig["layout"]
    series = _series_traces(fig)
    clipped = []
    for k in range(5, 9):
        values = [np.asarray(t["y"]) for t in series if t["yaxis"] == f"y{k}"]
        top = layout[f"yaxis{k}"]["range"][1]
        assert max(float(v[28:].max()) for v in values) <= top  # every later day in view
        if max(float(v[:28].max()) for v in values) > top:
            clipped.append(k)
    assert clipped, "the reorder-point rule's opening weeks dwarf its steady state in at least one chart"
    notes = [a for a in layout["annotations"] if "off scale" in a["text"]]
    assert len(notes) == len(clipped)


@pytest.mark.parametrize("day", [0, 100, 364])
def test_the_days_still_to_come_are_shaded_on_every_chart(day: int) -> None:
    fig = figure("steady", 3)
    ahead = [t for t in on_day(fig, day) if t.get("fill") == "toself"]
    assert sorted(t["xaxis"] for t in ahead) == [f"x{k}" for k in range(4, 9)]
    for trace in ahead:
        assert min(trace["x"]) == day + 1.5 and max(trace["x"]) == 365.5
        assert (min(trace["y"]), max(trace["y"])) == tuple(fig["layout"]["yaxis" + trace["yaxis"][1:]]["range"])


def test_the_saved_chart_is_the_cost_difference_day_by_day() -> None:
    _, run = scenario_run("promo_shock", 3)
    _, baseline = scenario_run("promo_shock", 3, "forecast_base_stock")
    saved = running_kpis(baseline)["cost"] - running_kpis(run)["cost"]
    ahead, behind = (next(t for t in figure("promo_shock", 3)["data"] if t.get("name") == name)
                     for name in ("saved", "lost"))
    assert np.allclose(np.asarray(ahead["y"]) + np.asarray(behind["y"]), saved, atol=0.01)
    assert min(ahead["y"]) >= 0 >= max(behind["y"])


@pytest.mark.parametrize("stores", (3, 50))
def test_the_figure_stays_light_and_theme_neutral(stores: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import plotly.io as pio

    from core.evaluation.plots import BETTER, GREY, WORSE

    fig = figure("supply_disruption", stores)
    sent = pio.to_json(fig, validate=False)
    assert len(sent) <= MAX_PAYLOAD_BYTES, len(sent)
    monkeypatch.setattr(pio.templates, "default", "plotly_dark")  # Streamlit sets its own, light or dark
    scenario, run = scenario_run("supply_disruption", stores)
    themed = year_figure(run, run, scenario, LABELS, FRAME_MS).to_dict()
    assert themed["layout"]["template"] == pio.templates["plotly_dark"].to_plotly_json()  # none of its own
    own = pio.to_json({**fig, "layout": {k: v for k, v in fig["layout"].items() if k != "template"}}, validate=False)
    text_colours = set(re.findall(r'"(?:textfont|font)":\{[^{}]*?"color":("[^"]*"|\[[^\]]*\])', own))
    colours = {c for found in text_colours for c in re.findall(r'"([^"]*)"', found)}
    assert colours <= {GREY, BETTER, WORSE, "rgba(0,0,0,0)"}, colours  # no dark text that vanishes in dark mode
