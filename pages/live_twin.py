"""Live twin: a preset shaped by sliders, a policy per echelon, and the year played day by day."""

from __future__ import annotations

import dataclasses

import streamlit as st

from core.app.live import Controls, apply_controls, controls_of
from core.app.plots import kpis_so_far, ledger_rows, network_figure, series_figure
from core.simulation.presets import PRESETS
from core.simulation.scenario import ScenarioError
from pages.common import policy_pickers, run_for

st.title("Live twin")
side = st.sidebar
preset = side.selectbox("Scenario preset", [p for p in PRESETS if p not in ("serial_textbook", "lost_sales_textbook")],
                        key="live_preset")
base = controls_of(PRESETS[preset])
if st.session_state.get("live_loaded_preset") != preset:  # a new preset resets the sliders to its values
    for field in dataclasses.fields(Controls):
        st.session_state[f"live_{field.name}"] = getattr(base, field.name)
    st.session_state.live_loaded_preset = preset
    st.session_state.live_day = 0

with side.expander("Demand", expanded=True):
    demand_level = st.slider("Demand level (x preset)", 0.5, 2.0, step=0.05, key="live_demand_level")
    volatility = st.slider("Volatility (coefficient of variation)", 0.1, 1.0, step=0.05, key="live_volatility")
    weekly = st.slider("Weekly seasonality", 0.0, 2.0, step=0.1, key="live_weekly_seasonality")
    yearly = st.slider("Yearly seasonality (amplitude)", 0.0, 0.6, step=0.05, key="live_yearly_seasonality")
    num_stores = st.slider("Number of stores", 1, 20, key="live_num_stores")
with side.expander("Promotion"):
    promo_day = st.slider("Promotion start day", 0, 364, key="live_promotion_day")
    promo_length = st.slider("Promotion length (days, 0 = none)", 0, 14, key="live_promotion_length")
    promo_lift = st.slider("Promotion lift", 0.0, 1.5, step=0.05, key="live_promotion_lift")
with side.expander("Supplier disruption"):
    disruption_day = st.slider("Disruption start day", 0, 364, key="live_disruption_day")
    disruption_length = st.slider("Disruption length (days, 0 = none)", 0, 60, key="live_disruption_length")
    severity = st.slider("Capacity lost", 0.0, 1.0, step=0.05, key="live_disruption_severity")
with side.expander("Lead times (days)"):
    store_lead = st.slider("Warehouse -> store", 1, 4, key="live_store_lead_time")
    supplier_lead = st.slider("Supplier -> warehouse", 1, 6, key="live_supplier_lead_time")
    production_lead = st.slider("Production", 1, 4, key="live_production_lead_time")
choices = policy_pickers("live")
seed = side.number_input("Demand seed", 0, 10_000, 0, key="live_seed")

controls = Controls(
    demand_level=demand_level, volatility=volatility, weekly_seasonality=weekly, yearly_seasonality=yearly,
    promotion_day=promo_day, promotion_length=promo_length, promotion_lift=promo_lift,
    disruption_day=disruption_day, disruption_length=disruption_length, disruption_severity=severity,
    store_lead_time=store_lead, supplier_lead_time=supplier_lead, production_lead_time=production_lead,
    num_stores=num_stores,
)
try:
    scenario = apply_controls(preset, controls)
except ScenarioError as exc:
    st.error(f"These settings do not make a valid scenario: {exc}")
    st.stop()
run = run_for(scenario, choices, int(seed))
if run is None:
    st.stop()
horizon = run.store_orders.shape[0]
st.session_state.setdefault("live_day", 0)
st.session_state.setdefault("live_playing", False)
st.session_state.live_day = min(st.session_state.live_day, horizon - 1)

play, step_day, restart, speed_col = st.columns([1, 1, 1, 3])
if play.button("Pause" if st.session_state.live_playing else "Play", key="live_play", width="stretch"):
    st.session_state.live_playing = not st.session_state.live_playing
    st.rerun()
if step_day.button("Step a day", key="live_step", width="stretch"):
    st.session_state.live_day = min(st.session_state.live_day + 1, horizon - 1)
if restart.button("Reset", key="live_reset", width="stretch"):
    st.session_state.live_day, st.session_state.live_playing = 0, False
speed = speed_col.slider("Speed (days per animation step)", 1, 20, 8, key="live_speed")


@st.fragment(run_every=0.25 if st.session_state.live_playing else None)
def day_view() -> None:
    if st.session_state.live_playing:
        st.session_state.live_day = min(st.session_state.live_day + speed, horizon - 1)
        if st.session_state.live_day >= horizon - 1:
            st.session_state.live_playing = False
            st.rerun()  # the whole page: the button shows "Play" again and the timer stops
    day = st.session_state.live_day
    k = kpis_so_far(run, day)
    tiles = st.columns(5)
    tiles[0].metric("Day", f"{day + 1} / {horizon}")
    tiles[1].metric("Fill rate", f"{100 * k['fill_rate']:.1f}%")
    tiles[2].metric("Cost so far", f"{k['cost']:,.0f}")
    tiles[3].metric("Stockouts (units)", f"{k['stockouts']:,.0f}")
    tiles[4].metric("Bullwhip (stores)", "-" if k["bullwhip"] != k["bullwhip"] else f"{k['bullwhip']:.2f}")
    left, right = st.columns([3, 2])
    left.plotly_chart(network_figure(run, day), width="stretch", key="live_network")
    right.markdown("**Reconciliation ledger of the day**")
    right.dataframe(ledger_rows(run, day), hide_index=True, width="stretch")
    st.plotly_chart(series_figure(run, day), width="stretch", key="live_series")


day_view()
