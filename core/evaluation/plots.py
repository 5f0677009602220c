"""Every plotly figure the project draws: a run's network view and time series, policies compared, the
policy inspector's maps, the evaluation report and learning curves. No Streamlit here."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.agents.menus import ACTION_LABELS, ACTION_MEANINGS
from core.evaluation.glossary import CURRENCY, LEDGER
from core.simulation.reconcile import node_names
from core.simulation.rollout import Rollout
from core.simulation.scenario import Scenario

STOCKOUT = "#d62728"  # red marks stockouts and nothing else
COLOURS = {  # one colour per series, shared by the network view and the time series
    "stores": "#2ca02c", "warehouse": "#1f77b4", "supplier": "#8c564b",
    "to stores": "#17becf", "to warehouse": "#9467bd", "in production": "#ff7f0e",
    "demand": "#7f7f7f", "filled": "#bcbd22",
    "store orders": "#e377c2", "warehouse order": "#393b79", "production started": "#d4a017",
}
WINDOW_COLOURS = {"promotion": "rgba(255, 193, 7, 0.25)", "supply disruption": "rgba(99, 110, 160, 0.22)"}
MAX_STORES_DRAWN = 6  # more stores than this: the worst-off few drawn one by one, the others summed in one node
WORST_STORES_DRAWN = 3
OPENING_DAYS = 28  # the opening stock drains over the first weeks; later the y-scale leaves them out
SHOWN_DAYS_AHEAD, MIN_SHOWN_DAYS = 30, 90  # the series' day axis runs a month past today, three months at least
MAX_MARKER_PX = 48  # marker diameter of the largest stock of the run after the opening weeks
MIN_MARKER_PX = 7
MAX_LINE_PX = 14  # line width of the largest pipeline of the run after the opening weeks


def worst_off_stores(run: Rollout, day: int, count: int) -> list[int]:
    """The ``count`` stores worst off at the end of ``day`` (chain 0), worst first: the most units short
    that day, then the fewest days of cover (on hand over the store's mean demand so far)."""
    n = run.num_stores
    short = run.ledger["unmet"][day, 0, :n]
    mean_demand = run.ledger["demand"][: day + 1, 0, :n].mean(axis=0)
    cover = run.ledger["on_hand"][day, 0, :n] / np.maximum(mean_demand, 1e-9)
    return np.lexsort((np.arange(n), cover, -short))[:count].tolist()


def _nice(value: float) -> float:
    """The largest 1-2-5 round number not above ``value`` (1 at least)."""
    if value < 1.0:
        return 1.0
    power = 10.0 ** np.floor(np.log10(value))
    return float(max(m for m in (1, 2, 5, 10) if m * power <= value * (1 + 1e-9)) * power)


def _reference(per_day: np.ndarray) -> float:
    """The largest of ``per_day`` (days on axis 0) after the opening weeks, whose transient would dwarf the
    rest (all days in a short run); 1 at least."""
    later = per_day[OPENING_DAYS:] if per_day.shape[0] > 2 * OPENING_DAYS else per_day
    return max(float(later.max()), 1.0)


def _marker_px(units: np.ndarray, reference: float) -> np.ndarray:
    """Marker diameters whose areas are proportional to ``units`` (``reference`` units: ``MAX_MARKER_PX``;
    opening stocks above it are capped at 1.5 times that)."""
    return np.clip(MAX_MARKER_PX * np.sqrt(np.maximum(units, 0.0) / reference), MIN_MARKER_PX, 1.5 * MAX_MARKER_PX)


def _line_px(units: float, reference: float) -> float:
    """A link's width, proportional to the units on it (``reference`` units: ``MAX_LINE_PX``; opening
    pipelines above it are capped at twice that)."""
    return float(np.clip(MAX_LINE_PX * units / reference, 1.0, 2 * MAX_LINE_PX))


def _count(value: float) -> str:
    return f"{value:,.0f}"


@dataclass(frozen=True)
class _StoreNode:
    """One marker right of the warehouse: a store, or the stores summed."""

    name: str  # the ledger's name ("store_2", "47 other stores")
    label: str  # lines next to the marker
    hover: str
    on_hand: float  # units
    in_transit: float  # units on the way to it
    demand: float  # units asked for today
    short: float  # units short today
    cost: float  # what it paid today
    summed: bool


def _store_nodes(run: Rollout, day: int) -> list[_StoreNode]:
    """Every store up to ``MAX_STORES_DRAWN``; past that the ``WORST_STORES_DRAWN`` worst off and one node
    summing the others."""
    n = run.num_stores
    led = {k: v[day, 0, :n] for k, v in run.ledger.items()}
    orders = run.store_orders[day, 0]
    on_hand, transit, short = (LEDGER[k].label.lower() for k in ("on_hand", "in_transit", "unmet"))
    drawn = list(range(n)) if n <= MAX_STORES_DRAWN else worst_off_stores(run, day, WORST_STORES_DRAWN)
    nodes = []
    for i in drawn:
        name = node_names(n)[i]
        extra = [f"{_count(led['unmet'][i])} {short}"] if led["unmet"][i] > 0.5 else []
        extra += [f"ordered {_count(orders[i])}"] if orders[i] > 0.5 else []
        lines = [f"{name} · {_count(led['on_hand'][i])} {on_hand}", f"{_count(led['in_transit'][i])} {transit}"]
        nodes.append(_StoreNode(
            name=name, label="<br>".join(lines + ([" · ".join(extra)] if extra else [])),
            hover=f"{name}<br>{_count(led['on_hand'][i])} units {on_hand}<br>{_count(led['in_transit'][i])} units "
                  f"{transit} to it<br>{_count(led['unmet'][i])} units {short}<br>ordered {_count(orders[i])} units",
            on_hand=led["on_hand"][i], in_transit=led["in_transit"][i], demand=led["demand"][i],
            short=led["unmet"][i], cost=led["total_cost"][i], summed=False))
    rest = np.setdiff1d(np.arange(n), drawn)
    if rest.size:
        short_stores, ordering = int((led["unmet"][rest] > 0.5).sum()), int((orders[rest] > 0.5).sum())
        lines = [f"{rest.size} other stores", f"{_count(led['on_hand'][rest].sum())} {on_hand}",
                 f"{_count(led['in_transit'][rest].sum())} {transit}",
                 f"{_count(led['unmet'][rest].sum())} {short} at {short_stores}" if short_stores else f"none {short}"]
        lines += [f"{ordering} ordered {_count(orders[rest].sum())}"] if ordering else []
        nodes.append(_StoreNode(
            name=f"{rest.size} other stores", label="<br>".join(lines),
            hover="<br>".join([*lines, f"fewest on hand at one store: {_count(led['on_hand'][rest].min())}"]),
            on_hand=led["on_hand"][rest].sum(), in_transit=led["in_transit"][rest].sum(),
            demand=led["demand"][rest].sum(), short=led["unmet"][rest].sum(), cost=led["total_cost"][rest].sum(),
            summed=True))
    return nodes


X_SUPPLIER, X_WAREHOUSE, X_STORES = 0.0, 1.0, 1.85  # the stores' labels take the right third
X_RANGE, Y_RANGE = (-0.75, 3.25), (-0.3, 1.04)
LINK_LABEL_RISE = 0.06  # a link's label sits this far above its middle (data units of the flow view)


def event_windows(scenario: Scenario) -> list[tuple[str, int, int]]:
    """The scenario's promotions (any store) and supply disruptions as (kind, first day, last day + 1),
    0-based days, each window once, in order."""
    promotions = {(p.start_day, p.start_day + p.length) for store in scenario.stores for p in store.promotions}
    disruptions = {(d.start_day, d.start_day + d.length) for d in scenario.disruptions}
    return sorted([("promotion", *w) for w in promotions] + [("supply disruption", *w) for w in disruptions],
                  key=lambda w: (w[1], w[0]))


def _opening_off_scale(values: list[np.ndarray], days: int) -> float | None:
    """An upper y-limit that leaves out the opening weeks when they dwarf the rest, else None."""
    if days < 2 * OPENING_DAYS:
        return None
    late = max(float(v[OPENING_DAYS:].max()) for v in values)
    early = max(float(v[:OPENING_DAYS].max()) for v in values)
    return 1.15 * late if late > 0 and early > 1.2 * late else None


# ------------------------------------------------------------------------------------- the Live page's year

GREY = "#8a8a8a"  # secondary text, outlines and idle links: readable on a light and on a dark background
AHEAD = "rgba(128, 128, 128, 0.25)"  # shades the days still to come
BETTER, WORSE = COLOURS["stores"], "#e66101"  # a difference in favour of the run, and against it (not stockout red)
LEDGER_COLUMNS = (("on_hand", "On<br>hand"), ("in_transit", "In<br>transit"), ("demand", "Demand"),
                  ("unmet", "Short"), ("total_cost", f"Cost<br>({CURRENCY})"))
LABEL_CHARACTERS = 20  # a row label of the day's KPIs longer than this wraps
TOP_PX, SAVED_PX, CHART_PX, CHART_GAP_PX, GAP_PX = 430, 170, 130, 20, 60  # block heights and the gaps between them
MARGIN = {"l": 10, "r": 10, "t": 90, "b": 40}  # the top holds Play, Pause, the day slider and the flow view's title
CHART_RIGHT = 0.86  # the time charts end here; their legends stand beside them
FAST_MS = 0  # the Fast button: the next day as soon as the browser has drawn the last


class AnimatedFigure(go.Figure):
    """A figure whose data and layout plotly checks as usual, and whose animation frames are kept as the plain
    dicts they were built as: checking a year of frames would cost plotly about 0.6 s on every new scenario
    (``tests/test_plots.py`` checks them). ``to_dict`` (what Streamlit and ``plotly.io`` send) holds them."""

    def __init__(self, figure: dict) -> None:
        super().__init__({"data": figure["data"], "layout": figure["layout"]})
        self._built_frames = figure.get("frames", [])

    def to_dict(self) -> dict:
        return {**super().to_dict(), "frames": self._built_frames}


def running_kpis(run: Rollout) -> dict[str, np.ndarray]:
    """Chain 0 over days 1..d for every day d, (days,) each: the stores' fill rate so far, the chain's cost so
    far and the stores' units short so far (``kpis`` over the first d days, all days at once)."""
    n = run.num_stores
    led = {k: run.ledger[k][:, 0] for k in ("filled", "demand", "unmet", "total_cost")}
    demand = np.cumsum(led["demand"][:, :n].sum(axis=1))
    return {"fill_rate": np.cumsum(led["filled"][:, :n].sum(axis=1)) / np.maximum(demand, 1e-12),
            "cost": np.cumsum(led["total_cost"].sum(axis=1)), "stockouts": np.cumsum(led["unmet"][:, :n].sum(axis=1))}


def _difference(key: str, mine: float, theirs: float) -> tuple[str, str]:
    """The run's KPI so far against its comparison's, as short text and its colour: points of fill rate, percent
    of cost, units short; "same" (grey) when it rounds to zero."""
    if key == "fill_rate":
        text, better = f"{100 * (mine - theirs):+.1f} pts", mine > theirs
    elif key == "cost":
        text, better = (f"{100 * (mine / theirs - 1.0):+.1f} %" if theirs > 1e-9 else "-"), mine < theirs
    else:
        text, better = f"{mine - theirs:+,.0f}", mine < theirs
    if text == "-" or float(text.split()[0].replace(",", "")) == 0.0:
        return "same" if text != "-" else text, GREY
    return text.replace("-", "\u2212"), BETTER if better else WORSE


def _panel_cells(mine: dict[str, np.ndarray], theirs: dict[str, np.ndarray], day: int
                 ) -> tuple[list[str], list[str], list[str]]:
    """The day's KPI cells: the run's and its comparison's, row by row; their differences, and those colours."""
    shown = {"fill_rate": lambda v: f"{100 * v:.1f} %", "cost": lambda v: f"{CURRENCY}{v:,.0f}",
             "stockouts": lambda v: f"{v:,.0f}"}
    values = [show(float(run[k][day])) for run in (mine, theirs) for k, show in shown.items()]
    differences = [_difference(k, float(mine[k][day]), float(theirs[k][day])) for k in shown]
    return values, [text for text, _ in differences], [colour for _, colour in differences]


def _ledger_cells(run: Rollout, day: int) -> list[str]:
    """The day's ledger of the agents the flow view draws (its store nodes, then the warehouse and the supplier),
    row by row: the agent, then ``LEDGER_COLUMNS``."""
    n = run.num_stores
    rows = [(node.name, [node.on_hand, node.in_transit, node.demand, node.short, node.cost])
            for node in _store_nodes(run, day)]
    rows += [(name, [run.ledger[k][day, 0, i] for k, _ in LEDGER_COLUMNS])
             for name, i in (("warehouse", n), ("supplier", n + 1))]
    return [cell for name, values in rows
            for cell in [name, *(f"{v:,.2f}" if k == "total_cost" else _count(v)
                                 for (k, _), v in zip(LEDGER_COLUMNS, values, strict=True))]]


def _store_rows(count: int) -> list[float]:
    """The flow view's heights of ``count`` store nodes, top to bottom."""
    return np.linspace(0.92, 0.08, count).tolist() if count > 1 else [0.5]


def _flow_references(run: Rollout) -> tuple[float, float]:
    """The units of the largest marker and of the widest link over the run (the summed stores count as one)."""
    n = run.num_stores
    return tuple(_reference(np.column_stack([values[:, 0], values[:, 0, :n].sum(axis=1)]) if n > MAX_STORES_DRAWN
                            else values[:, 0]) for values in (run.ledger["on_hand"], run.ledger["in_transit"]))


def _flow_day(run: Rollout, day: int, refs: tuple[float, float]) -> list[dict]:
    """What the flow view changes on ``day``: its links (production, to the warehouse, to each store node: as wide
    as their units, dotted when empty), the two upstream links' labels, the supplier and the warehouse, the store
    nodes (red: short today)."""
    n = run.num_stores
    size_ref, transit_ref = refs
    led = {k: v[day, 0] for k, v in run.ledger.items()}
    stores = _store_nodes(run, day)
    production, shipped = led["in_transit"][n + 1], led["in_transit"][n]

    def link(units: float, colour: str) -> dict:
        return {"line": {"width": round(_line_px(units, transit_ref), 1), "color": colour if units > 0.5 else GREY,
                         "dash": "solid" if units > 0.5 else "dot"}}

    unmet, on_hand = LEDGER["unmet"].label.lower(), LEDGER["on_hand"].label.lower()
    warehouse_extra = [f"{_count(led['unmet'][n])} {unmet}"] if led["unmet"][n] > 0.5 else []
    ordered, started = run.warehouse_order[day, 0], run.production[day, 0]
    warehouse_extra += [f"ordered {_count(ordered)}"] if ordered > 0.5 else []
    upstream = [("supplier", led["on_hand"][n + 1], [f"started {_count(started)}"] if started > 0.5 else []),
                ("warehouse", led["on_hand"][n], warehouse_extra)]
    return [
        link(production, COLOURS["in production"]), link(shipped, COLOURS["to warehouse"]),
        *(link(node.in_transit, COLOURS["to stores"]) for node in stores),
        {"text": [f"{_count(production)}<br>in production" if production > 0.5 else "",
                  f"{_count(shipped)} {LEDGER['in_transit'].label.lower()}" if shipped > 0.5 else ""]},
        {"text": ["<br>".join([name, f"{_count(units)} {on_hand}", *extra]) for name, units, extra in upstream],
         "hovertext": [f"{name}: {_count(units)} units {on_hand}" for name, units, _ in upstream],
         "marker": {"size": _marker_px(np.array([units for _, units, _ in upstream]), size_ref).round(1).tolist()}},
        {"text": [s.label for s in stores], "hovertext": [s.hover for s in stores],
         "marker": {"size": _marker_px(np.array([s.on_hand for s in stores]), size_ref).round(1).tolist(),
                    "color": [STOCKOUT if s.short > 0.5 else COLOURS["stores"] for s in stores]}},
    ]


class _Traces:
    """The year figure's traces as plain dicts, in order, and the indices of those that change day by day."""

    def __init__(self) -> None:
        self.data: list[dict] = []
        self.daily: list[int] = []

    def add(self, trace: dict, daily: bool = False) -> None:
        if daily:
            self.daily.append(len(self.data))
        self.data.append({"type": "scatter", "showlegend": False, **trace})


def _add_flow_view(traces: _Traces, run: Rollout, refs: tuple[float, float]) -> None:
    """The flow view (axes x, y) on day 1: supplier -> warehouse -> stores, and a key of marker sizes."""
    *links, labels, upstream, stores = _flow_day(run, 0, refs)
    rows = _store_rows(len(stores["text"]))
    ends = [(X_RANGE[0], 0.5, X_SUPPLIER, 0.5), (X_SUPPLIER, 0.5, X_WAREHOUSE, 0.5),
            *((X_WAREHOUSE, 0.5, X_STORES, y) for y in rows)]
    for (x0, y0, x1, y1), style in zip(ends, links, strict=True):
        traces.add({"x": [x0, x1], "y": [y0, y1], "mode": "lines", "hoverinfo": "skip", **style}, daily=True)
    text = {"cliponaxis": False, "textfont": {"size": 10}}
    outline = {"width": 1, "color": GREY}
    label_y = 0.5 + LINK_LABEL_RISE
    traces.add({"x": [(X_RANGE[0] + X_SUPPLIER) / 2, (X_SUPPLIER + X_WAREHOUSE) / 2], "y": [label_y, label_y],
                "mode": "text", "textposition": "top center", "hoverinfo": "skip", **text, **labels}, daily=True)
    traces.add({"x": [X_SUPPLIER, X_WAREHOUSE], "y": [0.5, 0.5], "mode": "markers+text", "hoverinfo": "text",
                "textposition": "bottom center", **text, **upstream,
                "marker": {**upstream["marker"], "color": [COLOURS["supplier"], COLOURS["warehouse"]],
                           "line": outline}}, daily=True)
    summed = int(run.num_stores > MAX_STORES_DRAWN)
    traces.add({"x": [X_STORES] * len(rows), "y": rows, "mode": "markers+text", "hoverinfo": "text",
                "textposition": "middle right", **text, **stores,
                "marker": {**stores["marker"], "line": outline,
                           "symbol": ["circle"] * (len(rows) - summed) + ["square"] * summed}}, daily=True)
    key_y = -0.2  # what marker sizes mean
    sizes = [_nice(refs[0] / 25), _nice(refs[0] / 5), _nice(refs[0])]
    traces.add({"x": [X_RANGE[0], -0.25, 0.5, 1.35], "y": [key_y] * 4, "mode": "markers+text",
                "textposition": "middle right", "hoverinfo": "skip", "cliponaxis": False,
                "text": [f"{LEDGER['on_hand'].label}:", *(f"{_count(s)} units" for s in sizes)],
                "textfont": {"size": 10, "color": GREY},
                "marker": {"size": [0, *_marker_px(np.array(sizes), refs[0]).tolist()], "color": "rgba(0,0,0,0)",
                           "line": outline}})


def _grid(columns: list[float], rows: list[float], left: int = 1) -> dict:
    """Text cells at every (column, row), row by row, on the axes of a text panel: the first ``left`` columns
    left-aligned at their x, the others right-aligned at theirs."""
    positions = ["middle right"] * left + ["middle left"] * (len(columns) - left)
    return {"x": columns * len(rows), "y": [y for y in rows for _ in columns], "mode": "text", "hoverinfo": "skip",
            "cliponaxis": False, "textposition": positions * len(rows)}


def _add_panel(traces: _Traces, mine: dict, theirs: dict, labels: tuple[str, str], horizon: int) -> None:
    """The day's KPIs (axes x2, y2): the day, then fill rate, cost and stockouts so far of the run, its comparison
    and their difference."""
    axes = {"xaxis": "x2", "yaxis": "y2"}
    columns, rows = [0.52, 0.76, 1.0], [0.5, 0.27, 0.06]
    values, differences, colours = _panel_cells(mine, theirs, 0)
    names = ["<br>".join(textwrap.wrap(label, LABEL_CHARACTERS, break_on_hyphens=False)) for label in labels]
    traces.add({**_grid([0.0], [0.97]), **axes, "text": [_day_title(0, horizon)], "textfont": {"size": 16}},
               daily=True)
    heads = ["Fill rate so far", "Cost so far", "Stockouts so far"]
    traces.add({**_grid(columns, [0.74], left=0), **axes, "text": heads, "textfont": {"size": 11, "color": GREY}})
    traces.add({**_grid([0.0], rows), **axes, "text": [*names, "difference"], "textfont": {"size": 12}})
    traces.add({**_grid(columns, rows[:2], left=0), **axes, "text": values, "textfont": {"size": 13}}, daily=True)
    traces.add({**_grid(columns, rows[2:], left=0), **axes, "text": differences,
                "textfont": {"size": 13, "color": colours}}, daily=True)


def _day_title(day: int, horizon: int) -> str:
    return f"<b>Day {day + 1}</b> of {horizon}" + (" (the opening stock)" if day == 0 else "")


def _add_ledger(traces: _Traces, run: Rollout) -> None:
    """The day's ledger (axes x3, y3) of the agents the flow view draws."""
    cells = _ledger_cells(run, 0)
    columns = [0.0] + [0.3 + 0.7 * k / len(LEDGER_COLUMNS) for k in range(1, len(LEDGER_COLUMNS) + 1)]
    rows = np.linspace(0.8, 0.0, len(cells) // len(columns)).tolist()
    axes = {"xaxis": "x3", "yaxis": "y3"}
    traces.add({**_grid(columns, [1.0]), **axes, "text": ["Ledger of the day", *(c for _, c in LEDGER_COLUMNS)],
                "textfont": {"size": 11, "color": GREY}})
    traces.add({**_grid(columns, rows), **axes, "text": cells, "textfont": {"size": 11}}, daily=True)


def _ahead(day: int, horizon: int, low: float, high: float) -> dict:
    """A shaded box over the days after ``day`` (0-based), from ``low`` to ``high``."""
    start, end = day + 1.5, horizon + 0.5
    return {"x": [start, end, end, start, start], "y": [low, low, high, high, low]}


def _translucent(colour: str, alpha: float = 0.6) -> str:
    """``colour`` ("#rrggbb") with opacity ``alpha``."""
    red, green, blue = (int(colour[k:k + 2], 16) for k in (1, 3, 5))
    return f"rgba({red}, {green}, {blue}, {alpha})"


def _add_saved(traces: _Traces, saved: np.ndarray) -> tuple[float, float]:
    """The cost saved day by day (axes x4, y4): green while the run is ahead, orange while it is behind, with the
    day's point; the chart's y range."""
    days = np.arange(1, saved.size + 1).tolist()
    for part, colour, name in ((np.maximum(saved, 0.0), BETTER, "saved"), (np.minimum(saved, 0.0), WORSE, "lost")):
        traces.add({"x": days, "y": part.round(2).tolist(), "mode": "lines", "fill": "tozeroy", "name": name,
                    "line": {"color": colour, "width": 0}, "fillcolor": _translucent(colour), "xaxis": "x4",
                    "yaxis": "y4",
                    "hovertemplate": f"day %{{x}}: {CURRENCY}%{{y:,.0f}} {name}<extra></extra>"})
    traces.add({"xaxis": "x4", "yaxis": "y4", "mode": "markers+text", "hoverinfo": "skip", "cliponaxis": False,
                "textposition": "top right", "textfont": {"size": 11}, "marker": {"size": 8, "color": GREY},
                **_saved_point(saved, 0)}, daily=True)
    low, high = min(0.0, float(saved.min())), max(0.0, float(saved.max()))
    pad = 0.1 * max(high - low, 1.0)
    return low - pad, high + pad


def _saved_point(saved: np.ndarray, day: int) -> dict:
    value = float(saved[day])
    return {"x": [day + 1], "y": [round(value, 2)],
            "text": [f"{CURRENCY}{abs(value):,.0f} {'saved' if value >= 0 else 'more'}"]}


def _series(run: Rollout) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The four time charts of chain 0: (y-axis title, series by name)."""
    n = run.num_stores
    led = {k: v[:, 0] for k, v in run.ledger.items()}
    stores = slice(0, n)
    demand, filled, short = (LEDGER[k].label.lower() for k in ("demand", "filled", "unmet"))
    return [
        (f"{LEDGER['on_hand'].label.lower()} ({LEDGER['on_hand'].unit})",
         {"stores": led["on_hand"][:, stores].sum(axis=1), "warehouse": led["on_hand"][:, n],
          "supplier": led["on_hand"][:, n + 1]}),
        (f"{LEDGER['in_transit'].label.lower()} ({LEDGER['in_transit'].unit})",
         {"to stores": led["in_transit"][:, stores].sum(axis=1), "to warehouse": led["in_transit"][:, n],
          "in production": led["in_transit"][:, n + 1]}),
        ("customers (units/day)",
         {demand: led["demand"][:, stores].sum(axis=1), filled: led["filled"][:, stores].sum(axis=1),
          short: led["unmet"][:, stores].sum(axis=1)}),
        ("orders (units/day)",
         {"store orders": run.store_orders[:, 0].sum(axis=1), "warehouse order": run.warehouse_order[:, 0],
          "production started": run.production[:, 0]}),
    ]


def _add_series(traces: _Traces, run: Rollout) -> list[tuple[str, float, bool]]:
    """The four time charts (axes x5-x8, y5-y8), one colour per series (short: red bars), a legend beside each;
    per chart its y-axis title, its top and whether the opening weeks are off that scale."""
    days = np.arange(1, run.store_orders.shape[0] + 1).tolist()
    short = LEDGER["unmet"].label.lower()
    named = {LEDGER["demand"].label.lower(): "demand", LEDGER["filled"].label.lower(): "filled"}
    charts = []
    for k, (title, series) in enumerate(_series(run), start=5):
        axes = {"xaxis": f"x{k}", "yaxis": f"y{k}", "legend": "legend" if k == 5 else f"legend{k - 4}",
                "showlegend": True}
        for name, values in series.items():
            style = ({"type": "bar", "marker": {"color": STOCKOUT, "line": {"width": 0}}} if name == short else
                     {"mode": "lines", "line": {"color": COLOURS[named.get(name, name)]}})
            traces.add({**style, "x": days, "y": values.round(2).tolist(), "name": name, **axes})
        top = _opening_off_scale(list(series.values()), len(days))
        peak = max(float(v.max()) for v in series.values())
        charts.append((title, 1.05 * max(peak, 1.0) if top is None else top, top is not None))
    return charts


def year_figure(run: Rollout, baseline: Rollout, scenario: Scenario, labels: tuple[str, str],
                frame_ms: int) -> AnimatedFigure:
    """Chain 0's year, played in the browser: Play, Fast, Pause and a day slider over one frame per day
    (``frame_ms`` apart while playing), each frame changing only what the day changes. On top, the flow view
    (stock on hand as marker area with a key, units in transit as line width, stores short today in red; past
    ``MAX_STORES_DRAWN`` stores the worst off drawn one by one and the others summed), the fill rate, cost and
    stockouts so far of ``run`` and ``baseline`` (the same customers; ``labels`` name them) and the day's ledger;
    below, the cost saved day by day and four time charts (stock, pipelines, customers, orders) over the whole
    year, the days still to come shaded, and the scenario's promotions and supply disruptions shaded too. No
    template: the app's light or dark theme applies, and the colours set here read on both."""
    horizon = run.store_orders.shape[0]
    traces = _Traces()
    refs = _flow_references(run)
    _add_flow_view(traces, run, refs)
    mine, theirs = running_kpis(run), running_kpis(baseline)
    _add_panel(traces, mine, theirs, labels, horizon)
    _add_ledger(traces, run)
    saved = theirs["cost"] - mine["cost"]
    saved_range = _add_saved(traces, saved)
    charts = _add_series(traces, run)
    ranges = [saved_range, *((0.0, top) for _, top, _ in charts)]
    for k, (low, high) in enumerate(ranges, start=4):
        traces.add({"xaxis": f"x{k}", "yaxis": f"y{k}", "mode": "lines", "fill": "toself", "fillcolor": AHEAD,
                    "line": {"width": 0}, "hoverinfo": "skip", **_ahead(0, horizon, low, high)}, daily=True)
    frames = [{"name": str(day + 1), "traces": traces.daily,
               "data": _day_changes(run, day, refs, mine, theirs, saved, ranges)} for day in range(horizon)]
    layout = _year_layout(horizon, run.num_stores, scenario, labels, charts, ranges, frame_ms)
    return AnimatedFigure({"data": traces.data, "layout": layout, "frames": frames})


def _day_changes(run: Rollout, day: int, refs: tuple[float, float], mine: dict, theirs: dict, saved: np.ndarray,
                 ranges: list[tuple[float, float]]) -> list[dict]:
    """What changes on ``day``, in the order of the figure's daily traces."""
    horizon = run.store_orders.shape[0]
    values, differences, colours = _panel_cells(mine, theirs, day)
    return [*_flow_day(run, day, refs), {"text": [_day_title(day, horizon)]}, {"text": values},
            {"text": differences, "textfont": {"color": colours}}, {"text": _ledger_cells(run, day)},
            _saved_point(saved, day), *(_ahead(day, horizon, low, high) for low, high in ranges)]


def _controls(horizon: int, frame_ms: int) -> dict:
    """Play, Fast and Pause buttons and a day slider: the animation runs in the browser, a frame a day."""
    still = {"mode": "immediate", "frame": {"duration": 0, "redraw": False}, "transition": {"duration": 0}}

    def play(ms: int) -> dict:
        return {**still, "fromcurrent": True, "frame": {"duration": ms, "redraw": False}}

    buttons = [("\u25b6 Play", [None, play(frame_ms)]), ("\u25b6\u25b6 Fast", [None, play(FAST_MS)]),
               ("\u275a\u275a Pause", [[None], still])]
    return {
        "updatemenus": [{"type": "buttons", "direction": "left", "showactive": False, "x": 0.0, "xanchor": "left",
                         "y": 1.0, "yanchor": "bottom", "pad": {"b": 44, "t": 0},
                         "buttons": [{"label": label, "method": "animate", "args": args} for label, args in buttons]}],
        "sliders": [{"active": 0, "x": 0.26, "len": 0.56, "xanchor": "left", "y": 1.0, "yanchor": "bottom",
                     "pad": {"b": 38, "t": 0}, "ticklen": 0, "minorticklen": 0,
                     "currentvalue": {"prefix": "day ", "xanchor": "left", "font": {"size": 11, "color": GREY}},
                     "font": {"color": "rgba(0,0,0,0)"},  # no label under each of the year's days
                     "steps": [{"label": str(day), "method": "animate", "args": [[str(day)], still]}
                               for day in range(1, horizon + 1)]}],
    }


def _bands() -> tuple[int, tuple[float, float], tuple[float, float], list[tuple[float, float]]]:
    """The year figure's height and, as paper fractions, the bands of its top block, its cost-saved chart and its
    four time charts."""
    plot = TOP_PX + SAVED_PX + 4 * CHART_PX + 3 * CHART_GAP_PX + 2 * GAP_PX

    def band(top_px: float, height_px: float) -> tuple[float, float]:
        return 1.0 - (top_px + height_px) / plot, 1.0 - top_px / plot

    first = TOP_PX + GAP_PX + SAVED_PX + GAP_PX
    return (plot + MARGIN["t"] + MARGIN["b"], band(0, TOP_PX), band(TOP_PX + GAP_PX, SAVED_PX),
            [band(first + k * (CHART_PX + CHART_GAP_PX), CHART_PX) for k in range(4)])


def _year_layout(horizon: int, stores: int, scenario: Scenario, labels: tuple[str, str],
                 charts: list[tuple[str, float, bool]], ranges: list[tuple[float, float]], frame_ms: int) -> dict:
    """Axes, legends, shaded windows, titles and controls of ``year_figure``."""
    height, top, saved, bands = _bands()
    hidden = {"visible": False, "fixedrange": True}
    split = top[0] + 0.62 * (top[1] - top[0])
    layout: dict = {
        "height": height, "margin": MARGIN, "bargap": 0, "hovermode": "closest",
        "xaxis": {**hidden, "domain": [0.0, 0.56], "range": list(X_RANGE)},
        "yaxis": {**hidden, "domain": list(top), "range": list(Y_RANGE)},
        "xaxis2": {**hidden, "domain": [0.6, 1.0], "range": [0, 1]},
        "yaxis2": {**hidden, "domain": [split, top[1]], "range": [0, 1]},
        "xaxis3": {**hidden, "domain": [0.6, 1.0], "range": [0, 1]},
        "yaxis3": {**hidden, "domain": [top[0], split - 0.02], "range": [0, 1]},
        **_controls(horizon, frame_ms),
    }
    titles = [f"saved ({CURRENCY})", *(title for title, _, _ in charts)]
    for k, (title, band, (low, high)) in enumerate(zip(titles, [saved, *bands], ranges, strict=True), start=4):
        layout[f"xaxis{k}"] = {"domain": [0.0, CHART_RIGHT], "range": [0.5, horizon + 0.5], "anchor": f"y{k}",
                               "showticklabels": k in (4, 8), **({"matches": "x8"} if k < 8 else {}),
                               **({"title": {"text": "day", "font": {"size": 11}}} if k == 8 else {})}
        layout[f"yaxis{k}"] = {"domain": list(band), "anchor": f"x{k}", "range": [low, high],
                               "title": {"text": title, "font": {"size": 11}}}
        if k > 4:
            layout["legend" if k == 5 else f"legend{k - 4}"] = {
                "x": CHART_RIGHT + 0.01, "xanchor": "left", "y": band[1], "yanchor": "top", "font": {"size": 11},
                "tracegroupgap": 0}
    layout["annotations"] = [
        _note(0.0, top[1], _flow_title(stores), size=13),
        _note(0.0, saved[1], f"Cost saved by {labels[0]} against {labels[1]}, day by day on the same customers "
                             "(shaded grey: the days still to come)", size=13),
        *(_note(CHART_RIGHT + 0.01, band[0], f"days 1-{OPENING_DAYS} (opening<br>stock) off scale")
          for (_, _, off), band in zip(charts, bands, strict=True) if off)]
    layout["shapes"] = _windows(scenario)
    if layout["shapes"]:
        layout["legend5"] = {"title": {"text": "shaded:"}, "x": CHART_RIGHT + 0.01, "xanchor": "left", "y": saved[1],
                             "yanchor": "top", "font": {"size": 11}}
    return layout


def _note(x: float, y: float, text: str, size: int = 10) -> dict:
    return {"x": x, "y": y, "xref": "paper", "yref": "paper", "xanchor": "left", "yanchor": "bottom", "text": text,
            "showarrow": False, "align": "left", "font": {"size": size, **({"color": GREY} if size < 12 else {})}}


def _flow_title(stores: int) -> str:
    title = "Stock and flows at the end of the day"
    if stores > MAX_STORES_DRAWN:
        title += f"<br><sup>{stores} stores: the {WORST_STORES_DRAWN} worst off drawn, " \
                 f"{stores - WORST_STORES_DRAWN} summed (square); red: short today</sup>"
    return title


def _windows(scenario: Scenario) -> list[dict]:
    """The scenario's promotions and supply disruptions shaded on the cost-saved chart and the time charts, each
    kind named once in its own legend."""
    shapes, named = [], set()
    for kind, first, end in event_windows(scenario):
        for k in range(4, 9):
            shapes.append({"type": "rect", "xref": f"x{k}", "yref": f"y{k} domain", "x0": first + 0.5, "x1": end + 0.5,
                           "y0": 0, "y1": 1, "fillcolor": WINDOW_COLOURS[kind], "line": {"width": 0}, "layer": "below",
                           "name": kind, "legend": "legend5", "showlegend": k == 4 and kind not in named})
        named.add(kind)
    return shapes


COMPARED_COLOURS = ("#e66101", "#8c6bb1")  # orange and purple: apart for every colour vision, not stockout red, and
# readable on a light and on a dark background
NEUTRAL = "#8a8a8a"  # lines, arrows and notes readable on a light and on a dark background
SAME_COST = 1e-9  # cumulative costs within this share of the larger are equal up to float rounding


def cumulative_cost_figure(daily_costs: dict[str, np.ndarray], title: str) -> go.Figure:
    """System cost accumulated day by day of two named policies (the first orange and solid, the second purple,
    dashed and marked), and under it the first's minus the second's: two lines that lie on each other at the scale
    of a year's cost still differ there, and where they are equal every day a note says that they coincide."""
    (first, _), (second, _) = daily_costs.items()
    so_far = {name: np.cumsum(cost) for name, cost in daily_costs.items()}
    gap = so_far[first] - so_far[second]
    days = np.arange(1, gap.size + 1)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.12,
                        subplot_titles=["cost so far", f"{first} minus {second}: below 0, {first} costs less"])
    for (name, cost), colour, dash in zip(so_far.items(), COMPARED_COLOURS, ("solid", "dash"), strict=True):
        fig.add_trace(go.Scatter(x=days, y=cost, name=name, mode="lines+markers" if dash == "dash" else "lines",
                                 line={"color": colour, "width": 2.5, "dash": dash},
                                 marker={"symbol": "circle-open", "size": 7, "maxdisplayed": 26},
                                 hovertemplate=f"day %{{x}}: {CURRENCY}%{{y:,.0f}}<extra>{name}</extra>"), row=1, col=1)
    fig.add_trace(go.Scatter(x=days, y=gap, name=f"{first} minus {second}", mode="lines", showlegend=False,
                             line={"color": NEUTRAL, "width": 2}, fill="tozeroy", fillcolor="rgba(138, 138, 138, 0.25)",
                             hovertemplate=f"day %{{x}}: %{{y:+,.2f}} {CURRENCY}<extra></extra>"), row=2, col=1)
    fig.add_hline(y=0.0, line={"color": NEUTRAL, "width": 1}, row=2, col=1)
    scale = max([1.0] + [float(np.abs(cost).max(initial=0.0)) for cost in so_far.values()])
    if np.abs(gap).max(initial=0.0) <= SAME_COST * scale:
        fig.add_annotation(xref="x2 domain", yref="y2 domain", x=0.5, y=0.5, showarrow=False,
                           text="the two lines coincide: both cost the same every day")
    fig.update_yaxes(title_text=f"cost so far ({CURRENCY})", row=1, col=1)
    fig.update_yaxes(title_text=f"difference ({CURRENCY})", row=2, col=1)
    fig.update_xaxes(title_text="day", row=2, col=1)
    fig.update_layout(title=title, height=520, legend={"orientation": "h", "yanchor": "bottom", "y": 1.08, "x": 0.0},
                      margin={"t": 110})
    return fig


INSPECTOR_PANELS = (  # grid key, panel title ({rule}: the compared rule's label), colour-bar title, scale, hover unit
    ("safety_factor", "learned: safety factor z", "z (sd)", "Viridis", "standard deviations"),
    ("learned_order", "learned: order (units)", "units", "Blues", "units"),
    ("rule_order", "{rule}: order (units)", "units", "Oranges", "units"),
)


def inspector_figure(grid: dict[str, np.ndarray], rule: str) -> go.Figure:
    """The store policy's safety factor and order, and the order of the rule labelled ``rule``, over on hand x in
    transit: each panel on its own colour scale, with its colour bar beside it."""
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.11,
                        subplot_titles=[title.format(rule=rule) for _, title, *_ in INSPECTOR_PANELS])
    for col, (key, _, bar_title, scale, unit) in enumerate(INSPECTOR_PANELS, start=1):
        right_edge = fig.layout[f"xaxis{'' if col == 1 else col}"].domain[1]
        fig.add_trace(go.Heatmap(
            z=grid[key], x=grid["in_transit_days"], y=grid["on_hand_days"], colorscale=scale,
            colorbar={"title": {"text": bar_title}, "x": right_edge + 0.008, "xanchor": "left", "thickness": 12,
                      "len": 0.9},
            hovertemplate=f"on hand %{{y:.1f}} days<br>in transit %{{x:.1f}} days<br>%{{z:.2f}} {unit}"
                          "<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="in transit (days of demand)", row=1, col=col)
    fig.update_yaxes(title_text="on hand (days of demand)", row=1, col=1)
    fig.update_layout(height=430, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def probabilities_figure(probabilities: np.ndarray) -> go.Figure:
    """A policy's probability of each menu entry, labelled by its safety factor; the likeliest in a
    darker colour."""
    chosen = int(np.argmax(probabilities))
    bar = go.Figure(go.Bar(x=list(ACTION_LABELS), y=probabilities, customdata=list(ACTION_MEANINGS),
                           marker_color=[COLOURS["warehouse"] if k == chosen else "#9ecae1"
                                         for k in range(len(probabilities))],
                           hovertemplate="%{customdata}<br>probability %{y:.3f}<extra></extra>"))
    bar.update_layout(height=380, margin={"l": 10, "r": 10, "t": 20, "b": 10}, yaxis_range=[0.0, 1.0],
                      yaxis_title="probability", xaxis_tickangle=-40,
                      xaxis_title="safety factor z (standard deviations of demand over the lead time)")
    return bar


CHAIN_NODES = (  # name, what it does, centre x, centre y
    ("Supplier", "decides how much<br>to produce", 0.0, 0.5),
    ("Warehouse", "decides how much to order;<br>shares stock when short", 1.35, 0.5),
    ("Store 1", "decides how much to order", 2.7, 0.85),
    ("Store 2", "decides how much to order", 2.7, 0.5),
    ("Store N", "decides how much to order", 2.7, 0.15),
    ("Customers", "random daily demand;<br>unserved: lost or waiting", 4.05, 0.5),
)
GOODS = NEUTRAL
ORDERS = "#b07a5a"  # brown, light enough to read on a dark background


def chain_diagram_figure() -> go.Figure:
    """The chain as boxes and arrows: goods flow supplier -> warehouse -> stores -> customers (grey
    arrows), orders flow back (brown arrows); each box says what its agent decides. Light boxes with dark text on a
    transparent background: readable in the light and the dark theme."""
    half_width, half_height = 0.42, 0.1
    fig = go.Figure()
    for name, role, x, y in CHAIN_NODES:
        colour = "#f2f2f2" if name == "Customers" else "#deebf7"
        fig.add_shape(type="rect", x0=x - half_width, x1=x + half_width, y0=y - half_height, y1=y + half_height,
                      fillcolor=colour, line={"color": COLOURS["warehouse"] if name != "Customers" else "#999"},
                      layer="below")
        fig.add_annotation(x=x, y=y, text=f"<b>{name}</b><br><span style='font-size:11px'>{role}</span>",
                           showarrow=False, font={"size": 13, "color": "#222"})
    links = [(0, 1, "goods"), (1, 2, ""), (1, 3, "shipping"), (1, 4, ""), (2, 5, ""), (3, 5, "sales"), (4, 5, "")]
    for source, target, label in links:
        _, _, x0, y0 = CHAIN_NODES[source]
        name, _, x1, y1 = CHAIN_NODES[target]
        start, end = x0 + half_width, x1 - half_width
        tail, head = y0 + 0.2 * (y1 - y0), y1 + 0.2 * (y0 - y1)  # fan out on the shared box's edge
        if name == "Customers":
            _arrow(fig, (start, y0), (end, head), GOODS)
            continue
        _arrow(fig, (start, tail + 0.025), (end, y1 + 0.025), GOODS)
        _arrow(fig, (end, y1 - 0.025), (start, tail - 0.025), ORDERS)
        if label:
            fig.add_annotation(x=(start + end) / 2, y=(y0 + y1) / 2 + 0.06, text=label, showarrow=False,
                               font={"size": 11, "color": GOODS})
    fig.add_annotation(x=(CHAIN_NODES[0][2] + CHAIN_NODES[1][2]) / 2, y=0.5 - 0.07, text="orders",
                       showarrow=False, font={"size": 11, "color": ORDERS})
    fig.add_annotation(x=2.0, y=-0.05, text="goods flow right (grey arrows, each leg takes its lead time); "
                       "orders flow left (brown arrows)", showarrow=False, font={"size": 11, "color": NEUTRAL})
    fig.update_layout(height=330, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="rgba(0, 0, 0, 0)",
                      xaxis={"visible": False, "range": [-0.5, 4.55]}, yaxis={"visible": False, "range": [-0.1, 1.0]})
    return fig


def _arrow(fig: go.Figure, tail: tuple[float, float], head: tuple[float, float], colour: str) -> None:
    fig.add_annotation(x=head[0], y=head[1], ax=tail[0], ay=tail[1], xref="x", yref="y", axref="x", ayref="y",
                       showarrow=True, arrowhead=2, arrowsize=1.2, arrowwidth=1.5, arrowcolor=colour, text="")


def comparison_figure(report: dict) -> go.Figure:
    """The evaluation report's policies side by side: cost, fill rate, stockouts and holding, per preset."""
    panels = [("cost_per_day", "cost per day"), ("fill_rate", "fill rate"),
              ("lost_sales_per_day", "stockouts (units/day)"), ("holding_cost_per_day", "holding cost per day")]
    fig = make_subplots(rows=2, cols=2, subplot_titles=[t for _, t in panels])
    presets = list(report["presets"])
    policies = list(next(iter(report["presets"].values()))["policies"])
    for i, (key, _) in enumerate(panels):
        for j, policy in enumerate(policies):
            stats = [report["presets"][p]["policies"][policy][key] for p in presets]
            fig.add_trace(go.Bar(name=policy, x=presets, y=[s["mean"] for s in stats], legendgroup=policy,
                                 showlegend=i == 0, marker_color=f"hsl({j * 55}, 60%, 50%)",
                                 error_y={"type": "data", "symmetric": False,
                                          "array": [s["high"] - s["mean"] for s in stats],
                                          "arrayminus": [s["mean"] - s["low"] for s in stats]}),
                          row=1 + i // 2, col=1 + i % 2)
    fig.update_layout(barmode="group", height=800, title=f"Policies on common random numbers, {report['seeds']} seeds")
    return fig


EPISODE_PANELS = (("reward", "episode reward (scale-free)"), ("fill_rate", "fill rate"),
                  ("cost_per_day", "system cost per chain-day"), ("holding_cost_per_day", "holding cost per chain-day"))
LOSS_PANELS = (("train/policy_gradient_loss", "policy-gradient loss"), ("train/value_loss", "value loss"),
               ("train/entropy_loss", "entropy loss"))


def learning_curves_figure(episodes: list[dict], updates: list[dict], title: str) -> go.Figure:
    """A training phase's episode reward, fill rate and costs, and its PPO losses: only the panels that have
    points (a short run logs PPO updates before any whole episode), three to a row, against transitions."""
    panels = [(key, words, episodes) for key, words in EPISODE_PANELS if any(key in e for e in episodes)]
    panels += [(key, words, updates) for key, words in LOSS_PANELS if any(key in u for u in updates)]
    if not panels:
        fig = go.Figure()
        fig.add_annotation(text="no points yet", showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5)
        fig.update_layout(title=title, height=200, xaxis={"visible": False}, yaxis={"visible": False})
        return fig
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[words for _, words, _ in panels],
                        vertical_spacing=0.22 if rows > 1 else 0.1)
    for i, (key, words, points) in enumerate(panels):
        shown = [p for p in points if key in p]
        per_episode = points is episodes
        fig.add_trace(go.Scatter(x=[p["timesteps"] for p in shown], y=[p[key] for p in shown], name=words,
                                 mode="markers" if per_episode else "lines+markers",
                                 marker={"color": COLOURS["warehouse"] if per_episode else COMPARED_COLOURS[0]}),
                      row=1 + i // columns, col=1 + i % columns)
    fig.update_xaxes(title_text="transitions")
    fig.update_layout(height=120 + 300 * rows, showlegend=False, title=title)
    return fig


PAYS, COSTS_MORE = COLOURS["stores"], "#e66101"  # learning cheaper, and dearer, than the best rule (else NEUTRAL)


def verdict(point: dict) -> tuple[str, str]:
    """Whether learning pays at ``point`` (``relative``: learned vs best rule; ``low`` and ``high``: its paired 95 %
    interval, None where not recorded), in words, and its bar's colour."""
    low, high = point.get("low"), point.get("high")
    if low is None or high is None:
        return ("cheaper" if point["relative"] < 0 else "dearer") + " (no interval recorded)", NEUTRAL
    if high < 0:
        return "learning pays", PAYS
    if low > 0:
        return "learning costs more", COSTS_MORE
    return "no significant difference", NEUTRAL


def presets_figure(points: list[dict]) -> go.Figure:
    """The learned hierarchy against each preset's best rule (``core.app.results.learned_versus_best_rule``): its
    cost relative to the rule's with the paired 95 % interval, one bar per preset, coloured and named by
    ``verdict`` (a legend entry each), cheapest first."""
    ordered = sorted(points, key=lambda p: p["relative"])
    fig = go.Figure()
    for words in dict.fromkeys(verdict(p)[0] for p in ordered):
        group = [p for p in ordered if verdict(p)[0] == words]
        fig.add_trace(go.Bar(
            name=words, orientation="h", y=[p["preset"] for p in group], x=[100 * p["relative"] for p in group],
            marker_color=verdict(group[0])[1], customdata=[p["best_rule"] for p in group],
            text=[f"{100 * p['relative']:+.1f} %" for p in group], textposition="outside", cliponaxis=False,
            hovertemplate="%{y}: learned %{x:+.2f} % against %{customdata}<extra></extra>",
            error_x={"type": "data", "symmetric": False,
                     "array": [100 * (p["high"] - p["relative"]) if p["high"] is not None else 0.0 for p in group],
                     "arrayminus": [100 * (p["relative"] - p["low"]) if p["low"] is not None else 0.0
                                    for p in group]}))
    fig.add_vline(x=0.0, line={"color": NEUTRAL, "width": 1})
    fig.update_layout(title="The shipped policies on the presets: learned against each preset's best rule",
                      xaxis_title="cost per day against the preset's best rule (%): below 0, learning pays",
                      yaxis={"categoryorder": "array", "categoryarray": [p["preset"] for p in ordered][::-1]},
                      barmode="overlay", height=140 + 40 * len(ordered), margin={"l": 10, "r": 60},
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0.0})
    return fig


def sweep_figure(points: list[dict]) -> go.Figure:
    """Learned against the best rule over a sweep's grid (``core.evaluation.sweep.learned_versus_best_rule``):
    the learned policy's cost relative to the best rule with its paired 95 % interval, below zero where
    learning pays (bars coloured by ``verdict``), and the clairvoyant bound's where it was computed."""
    labels = [p["point"] for p in points]
    fig = go.Figure(go.Bar(
        name="learned vs best rule", x=labels, y=[100 * p["relative"] for p in points],
        marker_color=[verdict(p)[1] for p in points],
        customdata=[[p["best_rule"], verdict(p)[0]] for p in points],
        hovertemplate="%{x}<br>learned %{y:+.1f}% vs best rule (%{customdata[0]}): %{customdata[1]}<extra></extra>",
        error_y={"type": "data", "symmetric": False, "array": [100 * (p["high"] - p["relative"]) for p in points],
                 "arrayminus": [100 * (p["relative"] - p["low"]) for p in points]}))
    bound = [p for p in points if np.isfinite(p["bound_relative"])]
    if bound:
        fig.add_trace(go.Scatter(name="clairvoyant bound vs best rule", x=[p["point"] for p in bound],
                                 y=[100 * p["bound_relative"] for p in bound], mode="markers",
                                 marker={"symbol": "line-ew-open", "size": 18, "color": COLOURS["demand"]}))
    fig.update_layout(title="Around steady: the learned policy's cost against the best rule, per scenario of the grid",
                      yaxis_title="cost vs best rule (%), below 0: learning pays", xaxis_tickangle=-35,
                      height=560, margin={"b": 180})
    return fig
