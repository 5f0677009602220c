"""The Live page's flow view (``network_figure``) and time series (``series_figure``) read at 1 to 50 stores.

Label boxes are estimated from the figure's own geometry: axis ranges, height and margins from the layout, an
assumed plot width, and a text box of 0.6 em per character and 1.25 em per line (wider than the average glyph
of the default font, so the estimate errs towards finding overlaps).
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
    network_figure,
    series_figure,
    worst_off_stores,
)
from core.simulation.demand import sample_demand
from core.simulation.presets import get_preset
from core.simulation.rollout import Rollout, rollout
from core.simulation.scenario import Scenario

STORE_COUNTS = (1, 3, 8, 20, 50)
WIDTHS_PX = (480, 1000)  # the Live page's network column in a 1280 px window, and a wide screen
CHAR_EM, LINE_EM = 0.6, 1.25
UNIT_WORDS = ("units", "day")
DEFAULT_FONT_PX = 12


@cache
def scenario_run(preset: str, stores: int) -> tuple[Scenario, Rollout]:
    scenario = get_preset(preset).with_num_stores(stores)
    demand = sample_demand(scenario, 1, np.random.default_rng(3))
    return scenario, rollout(scenario, reorder_point_mix(), demand)


def _text_size(text: str, font_px: float | None) -> tuple[float, float]:
    font_px = font_px or DEFAULT_FONT_PX
    lines = [re.sub(r"<[^>]+>", "", line) for line in text.split("<br>")]
    return CHAR_EM * font_px * max(len(line) for line in lines), LINE_EM * font_px * len(lines)


def text_boxes(fig: go.Figure, width_px: float) -> list[tuple[str, float, float, float, float]]:
    """(text, left, top, right, bottom) in pixels of every text drawn in data coordinates: scatter text (placed
    beside its marker as ``textposition`` says) and annotations (anchors and shifts)."""
    layout = fig.layout
    margin = layout.margin
    plot_w, plot_h = width_px - margin.l - margin.r, layout.height - margin.t - margin.b
    (x0, x1), (y0, y1) = layout.xaxis.range, layout.yaxis.range

    def pixels(x: float, y: float) -> tuple[float, float]:
        return (x - x0) / (x1 - x0) * plot_w, (y1 - y) / (y1 - y0) * plot_h

    boxes = []
    for trace in fig.data:
        if not trace.mode or "text" not in trace.mode:
            continue
        sizes = np.broadcast_to(np.asarray(trace.marker.size, dtype=float), (len(trace.x),))
        for x, y, text, size in zip(trace.x, trace.y, trace.text, sizes, strict=True):
            (cx, cy), (w, h), radius = pixels(x, y), _text_size(text, trace.textfont.size), size / 2
            if trace.textposition == "middle right":
                boxes.append((text, cx + radius, cy - h / 2, cx + radius + w, cy + h / 2))
            else:
                assert trace.textposition == "bottom center", trace.textposition
                boxes.append((text, cx - w / 2, cy + radius, cx + w / 2, cy + radius + h))
    for note in layout.annotations:
        assert (note.xref or "x", note.yref or "y") == ("x", "y"), "the network view puts its notes in data coordinates"
        cx, cy = pixels(note.x, note.y)
        cx, cy = cx + (note.xshift or 0), cy - (note.yshift or 0)
        w, h = _text_size(note.text, note.font.size)
        left = {"left": cx, "right": cx - w}.get(note.xanchor, cx - w / 2)
        top = {"top": cy, "bottom": cy - h}.get(note.yanchor, cy - h / 2)
        boxes.append((note.text, left, top, left + w, top + h))
    return boxes


def overlaps(boxes: list[tuple[str, float, float, float, float]]) -> list[tuple[str, str]]:
    return [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
            if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]


@pytest.mark.parametrize("stores", STORE_COUNTS)
def test_network_labels_never_overlap_and_stay_in_the_figure(stores: int) -> None:
    _, run = scenario_run("promo_shock", stores)
    for day in (0, 1, 45, 200, 364):
        fig = network_figure(run, day)
        for width in WIDTHS_PX:
            boxes = text_boxes(fig, width)
            assert not overlaps(boxes), (stores, day, width, overlaps(boxes))
            margin = fig.layout.margin
            for text, left, top, right, bottom in boxes:
                assert -margin.l <= left and right <= width - margin.l, (stores, day, width, text, left, right)
                assert -margin.t <= top and bottom <= fig.layout.height - margin.t, (stores, day, text, top, bottom)


@pytest.mark.parametrize("stores", STORE_COUNTS)
def test_network_draws_a_handful_of_stores_and_sums_the_rest(stores: int) -> None:
    _, run = scenario_run("steady", stores)
    day = 120
    fig = network_figure(run, day)
    store_trace = next(t for t in fig.data if t.text is not None and any("on hand" in s for s in t.text)
                       and t.x[0] == max(t.x))
    labels = list(store_trace.text)
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


def test_worst_off_stores_are_the_short_then_the_least_covered() -> None:
    _, run = scenario_run("promo_shock", 20)
    for day in (30, 62, 200):
        worst = worst_off_stores(run, day, WORST_STORES_DRAWN)
        short = run.ledger["unmet"][day, 0, :20]
        assert short[worst].min() >= np.delete(short, worst).max() or short[worst].min() == 0.0
        assert len(set(worst)) == WORST_STORES_DRAWN


def _store_trace(fig: go.Figure):
    return next(t for t in fig.data if t.text is not None and any(s.startswith("store_") for s in t.text))


def test_network_line_widths_follow_units_in_transit_and_red_marks_only_stockouts() -> None:
    _, run = scenario_run("steady", 3)
    for day in (0, 100, 250):
        fig = network_figure(run, day)
        transit = run.ledger["in_transit"][day, 0]
        units = np.array([transit[4], transit[3], *transit[:3]])  # production, to the warehouse, to each store
        links = [t for t in fig.data if t.mode == "lines"]
        assert len(links) == 5
        widths = np.array([t.line.width for t in links])
        carrying = (units > 0.5) & (widths > 1.0) & (widths < 2 * MAX_LINE_PX)  # not at the 1 px floor or the cap
        ratios = widths[carrying] / units[carrying]
        assert carrying.sum() >= 2 and np.allclose(ratios, ratios[0], rtol=1e-9), (units, widths)
        assert all(t.line.dash == ("solid" if u > 0.5 else "dot") for t, u in zip(links, units, strict=True))
        for i, label in enumerate(_store_trace(fig).text):  # each store's pipeline is in its label
            assert f"{transit[i]:,.0f} in transit" in label
        upstream = next(t for t in fig.data if t.text is not None and any(s.startswith("warehouse") for s in t.text))
        assert STOCKOUT not in upstream.marker.color
        short = run.ledger["unmet"][day, 0, :3] > 0.5
        assert [c == STOCKOUT for c in _store_trace(fig).marker.color] == list(short)


def test_day_one_shows_the_opening_pipeline_and_no_zero_orders() -> None:
    _, run = scenario_run("steady", 3)
    fig = network_figure(run, 0)
    texts = [n.text for n in fig.layout.annotations] + [s for t in fig.data if t.text is not None for s in t.text]
    assert not any("order 0" in s or "ordered 0" in s or "started 0" in s for s in texts)
    transit = run.ledger["in_transit"][0, 0]
    assert transit.min() > 0  # the opening pipelines are full ...
    notes = [n.text for n in fig.layout.annotations]
    assert f"{transit[3]:,.0f} in transit" in notes and f"{transit[4]:,.0f}<br>in production" in notes  # ... and shown
    assert all(t.line.dash == "solid" for t in fig.data if t.mode == "lines")
    assert "opening" in fig.layout.title.text


def test_network_marker_key_names_its_sizes() -> None:
    _, run = scenario_run("steady", 3)
    fig = network_figure(run, 50)
    key = next(t for t in fig.data if t.text is not None and all(s.endswith(" units") for s in t.text))
    values = [float(s.split(" ")[0].replace(",", "")) for s in key.text]
    assert values == sorted(values) and len(set(values)) == 3
    assert list(key.marker.size) == sorted(key.marker.size)


def _series_traces(fig: go.Figure) -> list:
    return [t for t in fig.data if t.name]


@pytest.mark.parametrize("preset", ("steady", "promo_shock", "supply_disruption"))
def test_series_axes_legends_and_colours(preset: str) -> None:
    scenario, run = scenario_run(preset, 8)
    fig = series_figure(run, 150, scenario)
    y_axes = [fig.layout[name] for name in fig.layout if name.startswith("yaxis")]
    x_axes = [fig.layout[name] for name in fig.layout if name.startswith("xaxis")]
    assert len(y_axes) == len(x_axes) == 4
    for axis in y_axes:
        assert "(units)" in axis.title.text or "(units/day)" in axis.title.text, axis.title.text
    labelled = [axis for axis in x_axes if axis.showticklabels is not False]  # one shared day axis
    assert len(labelled) == 1 and labelled[0].title.text == "day"
    assert {tuple(axis.range) for axis in x_axes} == {(0.5, 181.5)}  # a month ahead, the same on every chart
    legends = {t.legend or "legend" for t in _series_traces(fig)}
    assert legends == {"legend", "legend2", "legend3", "legend4"}  # one legend per chart
    for legend in legends:  # beside its own chart, outside every plot area
        chart = next(t for t in _series_traces(fig) if (t.legend or "legend") == legend)
        y_domain = fig.layout["yaxis" + chart.yaxis[1:]].domain
        assert fig.layout[legend].x >= 1.0 and fig.layout[legend].xanchor == "left"
        assert fig.layout[legend].y == y_domain[1] and fig.layout[legend].yanchor == "top"
    colours = [t.line.color if isinstance(t, go.Scatter) else t.marker.color for t in _series_traces(fig)]
    assert len(colours) == 12 and len(set(colours)) == 12
    assert colours.count(STOCKOUT) == 1
    assert next(t for t in _series_traces(fig) if t.marker.color == STOCKOUT).name == "short"
    assert STOCKOUT not in COLOURS.values()
    warehouse = next(t for t in _series_traces(fig) if t.name == "warehouse")
    assert warehouse.line.color == COLOURS["warehouse"] != STOCKOUT


@pytest.mark.parametrize("preset", ("steady", "seasonal", "promo_shock", "supply_disruption"))
def test_series_shades_exactly_the_scenarios_windows(preset: str) -> None:
    scenario, run = scenario_run(preset, 3)
    fig = series_figure(run, 200, scenario)
    windows = event_windows(scenario)
    has_events = any(store.promotions for store in scenario.stores) or bool(scenario.disruptions)
    assert bool(windows) == has_events
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert len(rects) == 4 * len(windows)  # every window on each of the four charts
    assert {(s.x0, s.x1) for s in rects} == {(first + 0.5, end + 0.5) for _, first, end in windows}
    assert sorted(s.name for s in rects if s.showlegend) == sorted({kind for kind, _, _ in windows})
    assert not series_figure(run, 200).layout.shapes  # the old call: no scenario, nothing shaded


def test_event_windows_of_the_presets() -> None:
    assert event_windows(get_preset("steady")) == []
    assert event_windows(get_preset("promo_shock")) == [("promotion", 60, 67), ("promotion", 160, 170),
                                                        ("promotion", 290, 297)]
    assert event_windows(get_preset("supply_disruption")) == [("supply disruption", 120, 150)]


def test_series_y_scale_leaves_out_the_opening_transient() -> None:
    scenario, run = scenario_run("steady", 3)
    early = series_figure(run, 20, scenario)
    assert all(early.layout[f"yaxis{k}"].range is None for k in ("", "2", "3", "4"))  # too few days to tell
    late = series_figure(run, 300, scenario)
    clipped = [k for k in ("", "2", "3", "4") if late.layout[f"yaxis{k}"].range is not None]
    assert clipped, "the reorder-point rule's opening weeks dwarf its steady state in at least one chart"
    for k in clipped:  # the range covers every later day
        top = late.layout[f"yaxis{k}"].range[1]
        values = [t.y[28:] for t in late.data if (t.yaxis or "y") == f"y{k}"]
        assert max(float(np.max(v)) for v in values) <= top
    notes = [a.text for a in late.layout.annotations if "off scale" in a.text]
    assert len(notes) == len(clipped)


@pytest.mark.parametrize(("day", "last_shown"), [(0, 90), (1, 90), (100, 131), (340, 365), (364, 365)])
def test_series_shows_every_day_so_far_and_a_month_ahead(day: int, last_shown: int) -> None:
    _, run = scenario_run("steady", 3)
    fig = series_figure(run, day)
    assert fig.layout.xaxis.range == (0.5, last_shown + 0.5)
    assert all(list(t.x) == list(range(1, day + 2)) for t in fig.data)
