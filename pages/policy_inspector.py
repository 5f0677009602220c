"""Policy inspector: what the learned store policy does over a grid of stock levels, next to a rule."""

from __future__ import annotations

import streamlit as st

from core.agents.menus import ACTION_LABELS, ACTION_MEANINGS, SAFETY_FACTORS, ConstantChooser, TunedEntry
from core.agents.observations import FEATURES
from core.app.inspector import DEFAULT_RULE, default_point, inspected_scenario, inspector_rules, store_rule
from core.app.live import inspect_store_policy
from core.evaluation.glossary import FEATURE_WORDS
from core.evaluation.plots import inspector_figure, probabilities_figure
from core.serving.models import PolicyLoadError
from core.serving.registry import POLICIES
from pages.common import KEEP, learned_choosers, uploaded_in_use, valid_choice

st.title("Policy inspector")
st.caption("One store selling a given number of units a day, at every combination of stock on hand and stock on "
           "its way in (both in days of demand): the learned policy's safety factor and order, next to a rule's "
           "order. Each map has its own colour scale.")
left, middle, right = st.columns(3)
demand = left.slider("Demand level (units per day)", 5.0, 200.0, 40.0, step=5.0, key="inspect_demand",
                     persist_state=KEEP)
lead_time = middle.slider("Warehouse -> store lead time (days)", 1, 4, 2, key="inspect_lead", persist_state=KEEP)
scenario = inspected_scenario(demand, lead_time)
rules = inspector_rules(scenario)
rule_key = right.selectbox("Compare with", rules, format_func=lambda k: POLICIES[k].label,
                           index=rules.index(valid_choice("inspect_rule", rules, DEFAULT_RULE, "Compare with", right)),
                           key="inspect_rule", persist_state=KEEP,
                           help="a rule of the policy registry, tuned for this store where it is a tuned rule")
rule_label = POLICIES[rule_key].label
try:
    chooser = learned_choosers()["store"]
    with st.spinner(f"Tuning {rule_label} for this store (once per demand level and lead time)..."):
        rule = store_rule(rule_key, scenario)
    grid = inspect_store_policy(chooser, rule, demand, lead_time)
except PolicyLoadError as exc:  # also a decision outside the menu
    st.error(f"The learned store policy cannot be loaded: {exc}")
    st.stop()
in_use = uploaded_in_use({"store": "learned"})
if in_use:
    st.caption(in_use)
if isinstance(chooser, ConstantChooser):
    st.info(f"The store policy in use is rule-based, not learned: its training phase did not lower the held-out "
            f"cost, so it orders up to forecast + {SAFETY_FACTORS[chooser.index]:g} standard deviations everywhere.")
elif isinstance(chooser, TunedEntry):
    st.info("The store policy in use is rule-based, not learned: its training phase did not lower the held-out "
            f"cost, so it orders by its tuned entry ({POLICIES['tuned_forecast_base_stock'].label}) everywhere.")
st.plotly_chart(inspector_figure(grid, rule_label), width="stretch")

st.markdown("**Action probabilities at one point of the grid**")
if "inspect_i" not in st.session_state:  # the first visit opens where both policies order, and differently
    st.session_state.inspect_i, st.session_state.inspect_j = default_point(grid)
a, b = st.columns(2)
i = a.select_slider("On hand (days of demand)", options=list(range(len(grid["on_hand_days"]))),
                    format_func=lambda k: f"{grid['on_hand_days'][k]:.1f}", key="inspect_i", persist_state=KEEP)
j = b.select_slider("In transit (days of demand)", options=list(range(len(grid["in_transit_days"]))),
                    format_func=lambda k: f"{grid['in_transit_days'][k]:.1f}", key="inspect_j", persist_state=KEEP)
probabilities = grid["probabilities"][i, j]
chosen = int(probabilities.argmax())
st.plotly_chart(probabilities_figure(probabilities), width="stretch")
st.caption(f"Chosen: {ACTION_LABELS[chosen]} ({ACTION_MEANINGS[chosen]}); learned order "
           f"{grid['learned_order'][i, j]:.1f} units, {rule_label} order {grid['rule_order'][i, j]:.1f} units.")
with st.expander(f"What the store policy sees ({len(FEATURES['store'])} features)"):
    st.markdown("\n".join(f"- {FEATURE_WORDS[name]}" for name in FEATURES["store"]))
