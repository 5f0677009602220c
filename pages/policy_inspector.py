"""Policy inspector: what the learned store policy does over a grid of stock levels."""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

from core.agents.menus import ACTION_MEANINGS, SAFETY_FACTORS, ConstantChooser
from core.agents.observations import STORE_FEATURES
from core.agents.rules import ReorderPoint
from core.app.live import inspect_store_policy
from core.serving.models import PolicyLoadError
from pages.common import learned_choosers

st.title("Policy inspector")
st.caption("A store selling a given number of units a day, at every combination of stock on hand and in transit "
           "(in days of demand): the learned policy's choice and order, next to the reorder-point rule's order.")
left, right = st.columns(2)
demand = left.slider("Demand level (units per day)", 5.0, 200.0, 40.0, step=5.0, key="inspect_demand")
lead_time = right.slider("Warehouse -> store lead time (days)", 1, 4, 2, key="inspect_lead")
try:
    chooser = learned_choosers()["store"]
    grid = inspect_store_policy(chooser, ReorderPoint("store"), demand, lead_time)
except PolicyLoadError as exc:  # also a decision outside the menu
    st.error(f"The learned store policy cannot be loaded: {exc}")
    st.stop()
if isinstance(chooser, ConstantChooser):
    st.info(f"The store policy in use is rule-based, not learned: its training phase did not lower the held-out "
            f"cost, so it orders up to forecast + {SAFETY_FACTORS[chooser.index]:g} standard deviations everywhere.")
axes = {"x": grid["in_transit_days"], "y": grid["on_hand_days"]}
fig = make_subplots(rows=1, cols=3, subplot_titles=("learned: safety factor z", "learned: order (units)",
                                                    "reorder point: order (units)"))
for col, key in enumerate(("safety_factor", "learned_order", "rule_order"), start=1):
    fig.add_trace(go.Heatmap(z=grid[key], **axes, coloraxis=None if col == 1 else "coloraxis",
                             colorscale="Viridis" if col == 1 else None, showscale=col == 1), row=1, col=col)
    fig.update_xaxes(title_text="in transit (days of demand)", row=1, col=col)
fig.update_yaxes(title_text="on hand (days of demand)", row=1, col=1)
fig.update_layout(height=430, coloraxis={"colorscale": "Blues"})
st.plotly_chart(fig, width="stretch")

st.markdown("**Action probabilities at one point of the grid**")
a, b = st.columns(2)
i = a.select_slider("On hand (days)", options=list(range(len(grid["on_hand_days"]))), value=4,
                    format_func=lambda k: f"{grid['on_hand_days'][k]:.1f}", key="inspect_i")
j = b.select_slider("In transit (days)", options=list(range(len(grid["in_transit_days"]))), value=4,
                    format_func=lambda k: f"{grid['in_transit_days'][k]:.1f}", key="inspect_j")
probabilities = grid["probabilities"][i, j]
bar = go.Figure(go.Bar(x=list(ACTION_MEANINGS), y=probabilities))
bar.update_layout(height=380, xaxis_tickangle=-40, yaxis_title="probability")
st.plotly_chart(bar, width="stretch")
st.caption(f"Chosen: {ACTION_MEANINGS[int(probabilities.argmax())]}; learned order {grid['learned_order'][i, j]:.1f}, "
           f"reorder-point order {grid['rule_order'][i, j]:.1f} units. The store policy observes: "
           + ", ".join(STORE_FEATURES) + ".")
