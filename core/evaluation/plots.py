"""Every plotly figure the project draws: a run's network view and time series, policies compared, the
policy inspector's maps, the evaluation report and learning curves. No Streamlit here."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.agents.menus import ACTION_LABELS, ACTION_MEANINGS
from core.evaluation.glossary import CURRENCY, LEDGER
from core.simulation.reconcile import node_names
from core.simulation.rollout import Rollout

STOCKOUT = "#d62728"
HEALTHY = "#2ca02c"
UPSTREAM = "#1f77b4"


def network_figure(run: Rollout, day: int) -> go.Figure:
    """Supplier -> warehouse -> stores at the end of ``day``: stock at each node (marker size),
    units in transit on each link, orders flowing upstream, stores out of stock in red."""
    led = {k: v[day, 0] for k, v in run.ledger.items()}
    n = run.num_stores
    names = node_names(n)
    ys = np.linspace(0.0, 1.0, n) if n > 1 else np.array([0.5])
    x = np.concatenate([np.full(n, 2.0), [1.0, 0.0]])
    y = np.concatenate([ys, [0.5, 0.5]])
    on_hand = led["on_hand"]
    scale = max(float(on_hand.max()), 1.0)
    colours = [STOCKOUT if led["unmet"][i] > 1e-9 else HEALTHY for i in range(n)] + [UPSTREAM, UPSTREAM]
    fig = go.Figure()
    transit = led["in_transit"]
    for i in range(n):
        fig.add_trace(go.Scatter(x=[1.0, 2.0], y=[0.5, ys[i]], mode="lines", line={"color": "#999", "width": 1},
                                 hoverinfo="skip", showlegend=False))
        fig.add_annotation(x=1.5, y=(0.5 + ys[i]) / 2, text=f"{transit[i]:.0f} in transit", showarrow=False,
                           font={"size": 10}, yshift=8)
        fig.add_annotation(x=1.5, y=(0.5 + ys[i]) / 2, text=f"order {run.store_orders[day, 0, i]:.0f}",
                           showarrow=False, font={"size": 10, "color": "#8c564b"}, yshift=-8)
    fig.add_trace(go.Scatter(x=[0.0, 1.0], y=[0.5, 0.5], mode="lines", line={"color": "#999", "width": 1},
                             hoverinfo="skip", showlegend=False))
    fig.add_annotation(x=0.5, y=0.5, text=f"{transit[n]:.0f} in transit", showarrow=False, yshift=10, font={"size": 10})
    fig.add_annotation(x=0.5, y=0.5, text=f"order {run.warehouse_order[day, 0]:.0f}", showarrow=False, yshift=-10,
                       font={"size": 10, "color": "#8c564b"})
    labels = [f"{name}<br>{on_hand[i]:.0f} on hand" + (f"<br>{led['unmet'][i]:.0f} short" if i < n and
                                                        led["unmet"][i] > 1e-9 else "")
              for i, name in enumerate(names)]
    labels[-1] += f"<br>{transit[-1]:.0f} in production"
    fig.add_trace(go.Scatter(x=x, y=y, mode="markers+text", text=labels, textposition="bottom center",
                             marker={"size": 18 + 42 * np.sqrt(on_hand / scale), "color": colours,
                                     "line": {"width": 1, "color": "#333"}},
                             hovertext=labels, hoverinfo="text", showlegend=False))
    fig.update_layout(height=360, margin={"l": 10, "r": 10, "t": 30, "b": 10}, title=f"Day {day + 1}",
                      xaxis={"visible": False, "range": [-0.3, 2.3]}, yaxis={"visible": False, "range": [-0.3, 1.2]})
    return fig


def series_figure(run: Rollout, day: int) -> go.Figure:
    """Days 1..day+1: on hand and in transit per echelon, store demand against sales, lost sales,
    and orders placed by each echelon."""
    n = run.num_stores
    led = {k: v[: day + 1, 0] for k, v in run.ledger.items()}
    days = np.arange(1, day + 2)
    fig = make_subplots(rows=2, cols=2, subplot_titles=("on hand", "in transit", "store demand and sales",
                                                        "orders placed"))
    groups = {"stores": slice(0, n), "warehouse": slice(n, n + 1), "supplier": slice(n + 1, n + 2)}
    for name, part in groups.items():
        fig.add_trace(go.Scatter(x=days, y=led["on_hand"][:, part].sum(axis=1), name=f"{name} on hand"), row=1, col=1)
        fig.add_trace(go.Scatter(x=days, y=led["in_transit"][:, part].sum(axis=1), name=f"to {name}"), row=1, col=2)
    fig.add_trace(go.Scatter(x=days, y=led["demand"][:, :n].sum(axis=1), name="demand"), row=2, col=1)
    fig.add_trace(go.Scatter(x=days, y=led["filled"][:, :n].sum(axis=1), name="sales"), row=2, col=1)
    fig.add_trace(go.Bar(x=days, y=led["unmet"][:, :n].sum(axis=1), name="lost or backordered",
                         marker_color=STOCKOUT), row=2, col=1)
    fig.add_trace(go.Scatter(x=days, y=run.store_orders[: day + 1, 0].sum(axis=1), name="store orders"), row=2, col=2)
    fig.add_trace(go.Scatter(x=days, y=run.warehouse_order[: day + 1, 0], name="warehouse order"), row=2, col=2)
    fig.add_trace(go.Scatter(x=days, y=run.production[: day + 1, 0], name="production"), row=2, col=2)
    fig.update_layout(height=560, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h"})
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
    colour = HEALTHY if saved[-1] >= 0 else STOCKOUT
    fig = go.Figure(go.Scatter(x=days, y=saved, mode="lines", fill="tozeroy", line={"color": colour},
                               name=f"{baseline_label} minus {label}"))
    fig.add_hline(y=0.0, line={"color": "#666", "width": 1})
    fig.update_layout(title=f"Cumulative cost saved by {label} against {baseline_label}, same customers",
                      xaxis_title="day", yaxis_title=f"cost saved ({CURRENCY})", height=300, showlegend=False,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def cumulative_cost_figure(runs: dict[str, Rollout]) -> go.Figure:
    """System cost accumulated day by day, one line per named run (chain 0)."""
    fig = go.Figure()
    for name, run in runs.items():
        fig.add_trace(go.Scatter(y=np.cumsum(run.ledger["total_cost"][:, 0].sum(axis=1)), name=name))
    fig.update_layout(title="Cumulative system cost, one run", xaxis_title="day", yaxis_title="cost", height=360)
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
                           marker_color=[UPSTREAM if k == chosen else "#9ecae1" for k in range(len(probabilities))],
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
                      fillcolor=colour, line={"color": UPSTREAM if name != "Customers" else "#999"}, layer="below")
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
