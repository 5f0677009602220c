"""Every plotly figure the project draws: a run's network view and time series, policies compared, the
policy inspector's maps, the evaluation report and learning curves. No Streamlit here."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.agents.menus import ACTION_MEANINGS
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


def inspector_figure(grid: dict[str, np.ndarray]) -> go.Figure:
    """The store policy's safety factor and order, and the rule's order, over on hand x in transit."""
    axes = {"x": grid["in_transit_days"], "y": grid["on_hand_days"]}
    fig = make_subplots(rows=1, cols=3, subplot_titles=("learned: safety factor z", "learned: order (units)",
                                                        "reorder point: order (units)"))
    for col, key in enumerate(("safety_factor", "learned_order", "rule_order"), start=1):
        fig.add_trace(go.Heatmap(z=grid[key], **axes, coloraxis=None if col == 1 else "coloraxis",
                                 colorscale="Viridis" if col == 1 else None, showscale=col == 1), row=1, col=col)
        fig.update_xaxes(title_text="in transit (days of demand)", row=1, col=col)
    fig.update_yaxes(title_text="on hand (days of demand)", row=1, col=1)
    fig.update_layout(height=430, coloraxis={"colorscale": "Blues"})
    return fig


def probabilities_figure(probabilities: np.ndarray) -> go.Figure:
    """A policy's probability of each menu entry."""
    bar = go.Figure(go.Bar(x=list(ACTION_MEANINGS), y=probabilities))
    bar.update_layout(height=380, xaxis_tickangle=-40, yaxis_title="probability")
    return bar


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
