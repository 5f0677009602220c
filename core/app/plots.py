"""Plotly figures of runs: the animated network view and the time series. No Streamlit here."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

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


def kpis_so_far(run: Rollout, day: int) -> dict[str, float]:
    """Fill rate, cost, stockouts and the stores' bullwhip ratio over days 1..day+1."""
    n = run.num_stores
    led = {k: v[: day + 1, 0] for k, v in run.ledger.items()}
    demand = led["demand"][:, :n].sum()
    store_orders = run.store_orders[: day + 1, 0].sum(axis=1)
    received = led["demand"][:, :n].sum(axis=1)
    bullwhip = float(store_orders.var() / received.var()) if day > 1 and received.var() > 0 else float("nan")
    return {"fill_rate": float(led["filled"][:, :n].sum() / demand) if demand > 0 else 1.0,
            "cost": float(led["total_cost"].sum()), "stockouts": float(led["unmet"][:, :n].sum()),
            "bullwhip": bullwhip}


def ledger_rows(run: Rollout, day: int) -> list[dict[str, object]]:
    """The reconciliation ledger of ``day``: one row per agent."""
    names = node_names(run.num_stores)
    fields = ("demand", "filled", "unmet", "fill_rate", "on_hand", "in_transit", "holding_cost", "stockout_cost",
              "excess_inventory", "ordering_cost", "total_cost", "reward")
    return [{"agent": name, **{f: round(float(run.ledger[f][day, 0, i]), 3) for f in fields}}
            for i, name in enumerate(names)]
