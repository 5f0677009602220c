"""Every plotly figure the project draws: a run's network view and time series, policies compared, the
policy inspector's maps, the evaluation report and learning curves. No Streamlit here."""

from __future__ import annotations

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

    label: str  # lines next to the marker
    hover: str
    on_hand: float  # units
    in_transit: float  # units on the way to it
    short: float  # units short today
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
            label="<br>".join(lines + ([" · ".join(extra)] if extra else [])),
            hover=f"{name}<br>{_count(led['on_hand'][i])} units {on_hand}<br>{_count(led['in_transit'][i])} units "
                  f"{transit} to it<br>{_count(led['unmet'][i])} units {short}<br>ordered {_count(orders[i])} units",
            on_hand=led["on_hand"][i], in_transit=led["in_transit"][i], short=led["unmet"][i], summed=False))
    rest = np.setdiff1d(np.arange(n), drawn)
    if rest.size:
        short_stores, ordering = int((led["unmet"][rest] > 0.5).sum()), int((orders[rest] > 0.5).sum())
        lines = [f"{rest.size} other stores", f"{_count(led['on_hand'][rest].sum())} {on_hand}",
                 f"{_count(led['in_transit'][rest].sum())} {transit}",
                 f"{_count(led['unmet'][rest].sum())} {short} at {short_stores}" if short_stores else f"none {short}"]
        lines += [f"{ordering} ordered {_count(orders[rest].sum())}"] if ordering else []
        nodes.append(_StoreNode(
            label="<br>".join(lines),
            hover="<br>".join([*lines, f"fewest on hand at one store: {_count(led['on_hand'][rest].min())}"]),
            on_hand=led["on_hand"][rest].sum(), in_transit=led["in_transit"][rest].sum(),
            short=led["unmet"][rest].sum(), summed=True))
    return nodes


X_SUPPLIER, X_WAREHOUSE, X_STORES = 0.0, 1.0, 1.85  # the stores' labels take the right third
X_RANGE, Y_RANGE = (-0.75, 3.25), (-0.3, 1.04)


def network_figure(run: Rollout, day: int) -> go.Figure:
    """Supplier -> warehouse -> stores at the end of ``day`` (chain 0): stock on hand as marker area (with a
    key), units in transit as line width, stores short of stock in red. Past ``MAX_STORES_DRAWN`` stores the
    worst-off few are drawn one by one and the others summed in one node, so the view reads at any size."""
    n = run.num_stores
    led = {k: v[day, 0] for k, v in run.ledger.items()}
    stores = _store_nodes(run, day)
    size_ref, transit_ref = (_reference(np.column_stack([values[:, 0], values[:, 0, :n].sum(axis=1)]) if n >
                                        MAX_STORES_DRAWN else values[:, 0])
                             for values in (run.ledger["on_hand"], run.ledger["in_transit"]))
    on_hand_word, transit_word = LEDGER["on_hand"].label.lower(), LEDGER["in_transit"].label.lower()
    rows = np.linspace(0.92, 0.08, len(stores)) if len(stores) > 1 else np.array([0.5])
    fig = go.Figure()

    def link(x0: float, y0: float, x1: float, y1: float, units: float, colour: str, text: str | None) -> None:
        """A line as wide as its units, with ``text`` above its middle if it carries any."""
        width = _line_px(units, transit_ref)
        fig.add_trace(go.Scatter(x=[x0, x1], y=[y0, y1], mode="lines", hoverinfo="skip", showlegend=False,
                                 line={"color": colour if units > 0.5 else "#bbbbbb", "width": width,
                                       "dash": "solid" if units > 0.5 else "dot"}))
        if text and units > 0.5:
            fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=text,
                               showarrow=False, yshift=width / 2 + 7, font={"size": 10, "color": "#333"})

    production, shipped = led["in_transit"][n + 1], led["in_transit"][n]
    link(X_RANGE[0], 0.5, X_SUPPLIER, 0.5, production, COLOURS["in production"],
         f"{_count(production)}<br>in production")
    link(X_SUPPLIER, 0.5, X_WAREHOUSE, 0.5, shipped, COLOURS["to warehouse"], f"{_count(shipped)} {transit_word}")
    for node, y in zip(stores, rows, strict=True):  # their units are in the stores' labels
        link(X_WAREHOUSE, 0.5, X_STORES, y, node.in_transit, COLOURS["to stores"], None)

    warehouse_extra = [f"{_count(led['unmet'][n])} {LEDGER['unmet'].label.lower()}"] if led["unmet"][n] > 0.5 else []
    ordered, started = run.warehouse_order[day, 0], run.production[day, 0]
    warehouse_extra += [f"ordered {_count(ordered)}"] if ordered > 0.5 else []
    supplier_extra = [f"started {_count(started)}"] if started > 0.5 else []
    upstream = [("supplier", X_SUPPLIER, led["on_hand"][n + 1], supplier_extra),
                ("warehouse", X_WAREHOUSE, led["on_hand"][n], warehouse_extra)]
    fig.add_trace(go.Scatter(
        x=[x for _, x, _, _ in upstream], y=[0.5, 0.5], mode="markers+text", textposition="bottom center",
        text=["<br>".join([name, f"{_count(units)} {on_hand_word}", *extra]) for name, _, units, extra in upstream],
        hovertext=[f"{name}: {_count(units)} units {on_hand_word}" for name, _, units, _ in upstream],
        hoverinfo="text", showlegend=False, cliponaxis=False, textfont={"size": 10},
        marker={"size": _marker_px(np.array([units for _, _, units, _ in upstream]), size_ref),
                "color": [COLOURS["supplier"], COLOURS["warehouse"]], "line": {"width": 1, "color": "#333"}}))
    fig.add_trace(go.Scatter(
        x=np.full(len(stores), X_STORES), y=rows, mode="markers+text", textposition="middle right",
        text=[s.label for s in stores], hovertext=[s.hover for s in stores], hoverinfo="text",
        showlegend=False, cliponaxis=False, textfont={"size": 10},
        marker={"size": _marker_px(np.array([s.on_hand for s in stores]), size_ref),
                "color": [STOCKOUT if s.short > 0.5 else COLOURS["stores"] for s in stores],
                "symbol": ["square" if s.summed else "circle" for s in stores],
                "line": {"width": 1, "color": "#333"}}))

    key_y = -0.2  # what marker sizes mean
    fig.add_annotation(x=X_RANGE[0], y=key_y, text=f"{LEDGER['on_hand'].label}:", showarrow=False, xanchor="left",
                       font={"size": 10, "color": "#555"})
    sizes = [_nice(size_ref / 25), _nice(size_ref / 5), _nice(size_ref)]
    fig.add_trace(go.Scatter(x=[-0.25, 0.5, 1.35], y=[key_y] * 3, mode="markers+text", textposition="middle right",
                             text=[f"{_count(s)} units" for s in sizes], hoverinfo="skip", showlegend=False,
                             cliponaxis=False, textfont={"size": 10, "color": "#555"},
                             marker={"size": _marker_px(np.array(sizes), size_ref), "color": "rgba(0,0,0,0)",
                                     "line": {"width": 1, "color": "#555"}}))

    title = f"Day {day + 1}" + (" (opening stock; the pipelines hold its first deliveries)" if day == 0 else "")
    if n > MAX_STORES_DRAWN:
        title += f"<br><sup>{n} stores: the {WORST_STORES_DRAWN} worst off drawn, {n - WORST_STORES_DRAWN} " \
                 "summed (square); red: short today</sup>"
    fig.update_layout(height=440, margin={"l": 10, "r": 10, "t": 50 if n > MAX_STORES_DRAWN else 35, "b": 10},
                      title={"text": title, "font": {"size": 14}}, template="plotly_white",
                      xaxis={"visible": False, "range": list(X_RANGE)},
                      yaxis={"visible": False, "range": list(Y_RANGE)})
    return fig


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


def series_figure(run: Rollout, day: int, scenario: Scenario | None = None) -> go.Figure:
    """Days 1..day+1 of chain 0 in four stacked charts on one day axis, each with its own legend beside it:
    stock on hand and in transit per echelon, the stores' demand against what was filled and what was
    short, and the orders each echelon placed. The day axis runs ``SHOWN_DAYS_AHEAD`` past today (at least
    ``MIN_SHOWN_DAYS``, at most the run); with ``scenario``, its promotions and supply disruptions are shaded
    across all four charts, the coming ones too."""
    n = run.num_stores
    horizon = run.store_orders.shape[0]
    led = {k: v[: day + 1, 0] for k, v in run.ledger.items()}
    days = np.arange(1, day + 2)
    stores = slice(0, n)
    demand, filled, short = (LEDGER[k].label.lower() for k in ("demand", "filled", "unmet"))
    charts = [
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
         {"store orders": run.store_orders[: day + 1, 0].sum(axis=1),
          "warehouse order": run.warehouse_order[: day + 1, 0], "production started": run.production[: day + 1, 0]}),
    ]
    fig = make_subplots(rows=len(charts), cols=1, shared_xaxes=True, vertical_spacing=0.035)
    mode = "lines+markers" if day < 7 else "lines"  # a day or two of lines alone would not show
    windows = event_windows(scenario) if scenario is not None else []
    for row, (title, series) in enumerate(charts, start=1):
        legend = "legend" if row == 1 else f"legend{row}"
        for name, values in series.items():
            if name == short:
                trace = go.Bar(x=days, y=values, name=name, marker={"color": STOCKOUT, "line": {"width": 0}})
            else:
                trace = go.Scatter(x=days, y=values, name=name, mode=mode, marker={"size": 4},
                                   line={"color": COLOURS[{demand: "demand", filled: "filled"}.get(name, name)]})
            fig.add_trace(trace.update(legend=legend), row=row, col=1)
        top = _opening_off_scale(list(series.values()), day + 1)
        fig.update_yaxes(title={"text": title, "font": {"size": 11}}, rangemode="tozero",
                         range=None if top is None else [0, top], row=row, col=1)
        y_domain = fig.get_subplot(row, 1).yaxis.domain
        fig.update_layout({legend: {"x": 1.01, "xanchor": "left", "y": y_domain[1], "yanchor": "top",
                                    "font": {"size": 11}, "tracegroupgap": 0}})
        if top is not None:
            fig.add_annotation(x=1.01, xref="paper", xanchor="left", y=y_domain[0], yref="paper", yanchor="bottom",
                               text=f"days 1-{OPENING_DAYS} (opening<br>stock) off scale", showarrow=False,
                               align="left", font={"size": 10, "color": "#555"})
        for kind, first, end in windows:
            fig.add_vrect(x0=first + 0.5, x1=end + 0.5, fillcolor=WINDOW_COLOURS[kind], line_width=0, layer="below",
                          row=row, col=1, name=kind, legend="legend5",
                          showlegend=row == 1 and (kind, first, end) == next(w for w in windows if w[0] == kind))
    fig.update_xaxes(range=[0.5, min(horizon, max(day + 1 + SHOWN_DAYS_AHEAD, MIN_SHOWN_DAYS)) + 0.5])
    fig.update_xaxes(title={"text": "day", "font": {"size": 11}}, row=len(charts), col=1)
    fig.update_layout(height=640, template="plotly_white", bargap=0, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      title={"text": f"Days 1-{day + 1} of {horizon}", "font": {"size": 14}, "y": 0.985,
                             "yanchor": "top"},
                      legend5={"title": {"text": "shaded:"}, "orientation": "h", "x": 1, "xanchor": "right",
                               "y": 1, "yref": "container", "yanchor": "top"})
    return fig


def ledger_rows(run: Rollout, day: int) -> list[dict[str, str]]:
    """The reconciliation ledger of ``day``: one row per agent, readable column names, rounded values."""
    names = node_names(run.num_stores)
    return [{"Agent": name, **{term.label: term.format(float(run.ledger[field][day, 0, i]))
                                for field, term in LEDGER.items()}}
            for i, name in enumerate(names)]


def cost_difference_figure(run: Rollout, baseline: Rollout, day: int, label: str, baseline_label: str) -> go.Figure:
    """Days 1..day+1: the baseline's cumulative system cost minus the run's (above zero: the run is cheaper)."""
    saved = np.cumsum(baseline.ledger["total_cost"][: day + 1, 0].sum(axis=1)
                      - run.ledger["total_cost"][: day + 1, 0].sum(axis=1))
    days = np.arange(1, day + 2)
    colour = COLOURS["stores"] if saved[-1] >= 0 else STOCKOUT
    fig = go.Figure(go.Scatter(x=days, y=saved, mode="lines", fill="tozeroy", line={"color": colour},
                               name=f"{baseline_label} minus {label}"))
    fig.add_hline(y=0.0, line={"color": "#666", "width": 1})
    fig.update_layout(title=f"Cumulative cost saved by {label} against {baseline_label}, same customers",
                      xaxis_title="day", yaxis_title=f"cost saved ({CURRENCY})", height=300, showlegend=False,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


COMPARED_COLOURS = ("#e66101", "#5e3c99")  # orange and purple: apart for every colour vision, and not stockout red


def cumulative_cost_figure(daily_costs: dict[str, np.ndarray], title: str) -> go.Figure:
    """System cost accumulated day by day, one line per named policy (two: orange, then purple and dashed, so
    that equal costs still show both)."""
    fig = go.Figure()
    for (name, cost), colour, dash in zip(daily_costs.items(), COMPARED_COLOURS, ("solid", "dash"), strict=False):
        fig.add_trace(go.Scatter(x=np.arange(1, cost.size + 1), y=np.cumsum(cost), name=name, mode="lines",
                                 line={"color": colour, "width": 2.5, "dash": dash},
                                 hovertemplate=f"day %{{x}}: {CURRENCY}%{{y:,.0f}}<extra>{name}</extra>"))
    fig.update_layout(title=title, xaxis_title="day", yaxis_title=f"cost so far ({CURRENCY})", height=380,
                      legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0.0},
                      margin={"t": 90})
    return fig


INSPECTOR_PANELS = (  # grid key, panel title, colour-bar title, colour scale, hover unit
    ("safety_factor", "learned: safety factor z", "z (sd)", "Viridis", "standard deviations"),
    ("learned_order", "learned: order (units)", "units", "Blues", "units"),
    ("rule_order", "reorder point: order (units)", "units", "Oranges", "units"),
)


def inspector_figure(grid: dict[str, np.ndarray]) -> go.Figure:
    """The store policy's safety factor and order, and the rule's order, over on hand x in transit: each
    panel on its own colour scale, with its colour bar beside it."""
    fig = make_subplots(rows=1, cols=3, shared_yaxes=True, horizontal_spacing=0.11,
                        subplot_titles=[title for _, title, *_ in INSPECTOR_PANELS])
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
GOODS = "#333333"
ORDERS = "#8c564b"


def chain_diagram_figure() -> go.Figure:
    """The chain as boxes and arrows: goods flow supplier -> warehouse -> stores -> customers (dark
    arrows), orders flow back (brown arrows); each box says what its agent decides."""
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
    fig.add_annotation(x=2.0, y=-0.05, text="goods flow right (dark arrows, each leg takes its lead time); "
                       "orders flow left (brown arrows)", showarrow=False, font={"size": 11, "color": "#555"})
    fig.update_layout(height=330, margin={"l": 10, "r": 10, "t": 10, "b": 10}, plot_bgcolor="white",
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


def learning_curves_figure(episodes: list[dict], updates: list[dict], title: str) -> go.Figure:
    """A training phase's episode reward, fill rate and costs, and its PPO losses."""
    panels = [("reward", "episode reward (scale-free)"), ("fill_rate", "fill rate"),
              ("cost_per_day", "system cost per chain-day"), ("holding_cost_per_day", "holding cost per chain-day")]
    losses = [k for k in ("train/policy_gradient_loss", "train/value_loss", "train/entropy_loss")
              if any(k in u for u in updates)]
    fig = make_subplots(rows=2, cols=3, subplot_titles=[t for _, t in panels] + [k.split("/")[1] for k in losses[:2]])
    for i, (key, _) in enumerate(panels):
        fig.add_trace(go.Scatter(x=[e["timesteps"] for e in episodes], y=[e[key] for e in episodes], mode="markers",
                                 name=key), row=1 + i // 3, col=1 + i % 3)
    for j, key in enumerate(losses[:2]):
        rows = [u for u in updates if key in u]
        fig.add_trace(go.Scatter(x=[u["timesteps"] for u in rows], y=[u[key] for u in rows], name=key),
                      row=2, col=2 + j)
    fig.update_layout(height=700, showlegend=False, title=title)
    return fig


def sweep_figure(points: list[dict]) -> go.Figure:
    """Learned against the best rule over a sweep's grid (``core.evaluation.sweep.learned_versus_best_rule``):
    the learned policy's cost relative to the best rule with its paired 95 % interval, below zero where
    learning pays, and the clairvoyant bound's where it was computed."""
    labels = [p["point"] for p in points]
    fig = go.Figure(go.Bar(
        name="learned vs best rule", x=labels, y=[100 * p["relative"] for p in points],
        marker_color=[COLOURS["stores"] if p["relative"] < 0 else STOCKOUT for p in points],
        customdata=[p["best_rule"] for p in points],
        hovertemplate="%{x}<br>learned %{y:+.1f}% vs best rule (%{customdata})<extra></extra>",
        error_y={"type": "data", "symmetric": False, "array": [100 * (p["high"] - p["relative"]) for p in points],
                 "arrayminus": [100 * (p["relative"] - p["low"]) for p in points]}))
    bound = [p for p in points if np.isfinite(p["bound_relative"])]
    if bound:
        fig.add_trace(go.Scatter(name="clairvoyant bound vs best rule", x=[p["point"] for p in bound],
                                 y=[100 * p["bound_relative"] for p in bound], mode="markers",
                                 marker={"symbol": "line-ew-open", "size": 18, "color": COLOURS["demand"]}))
    fig.update_layout(title="Where does learning pay? Learned policy's cost against the best rule, per scenario",
                      yaxis_title="cost vs best rule (%), below 0: learning pays", xaxis_tickangle=-35,
                      height=560, margin={"b": 180})
    return fig
