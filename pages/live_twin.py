"""Live twin: a preset shaped by sliders, a policy per echelon, and the year played day by day."""

from __future__ import annotations

import dataclasses

import streamlit as st

from core.app.live import (
    DEFAULT_SPEED,
    SLIDERS,
    TICK_SECONDS,
    Controls,
    apply_controls,
    change_label,
    compared_kpis,
    controls_of,
    no_optimum_note,
    outside_training,
    year_summary,
)
from core.evaluation.glossary import CURRENCY, KPIS
from core.evaluation.plots import cost_difference_figure, ledger_rows, network_figure, series_figure
from core.serving.registry import POLICIES, applicable, uniform
from core.simulation.presets import PRESETS
from core.simulation.scenario import ScenarioError
from pages.common import KEEP, cached_references, policy_pickers, run_for, uploaded_in_use, valid_choice

st.title("Live twin")
side = st.sidebar
preset = side.selectbox("Scenario preset", list(PRESETS), key="live_preset", persist_state=KEEP)
base = controls_of(PRESETS[preset])
if st.session_state.get("live_loaded_preset") != preset:  # a new preset resets the sliders to its values
    for field in dataclasses.fields(Controls):
        st.session_state[f"live_{field.name}"] = getattr(base, field.name)
    st.session_state.live_loaded_preset = preset
    st.session_state.live_day = 1

values = {}
for group in dict.fromkeys(slider.group for slider in SLIDERS):
    with side.expander(group, expanded=group == "Demand"):
        for slider in (s for s in SLIDERS if s.group == group):
            key = f"live_{slider.field}"
            low, high = slider.bounds(st.session_state.get(key, slider.low))
            values[slider.field] = st.slider(slider.label, low, high, step=slider.step, help=slider.help, key=key,
                                             persist_state=KEEP)
controls = Controls(**values)
try:
    scenario, invalid = apply_controls(preset, controls), None
except ScenarioError as exc:
    scenario, invalid = None, exc
options = applicable(PRESETS[preset] if scenario is None else scenario)  # what applies to the scenario shown
choices = policy_pickers("live", options=options)
comparable = [k for k in options if k != "random"]
compare = side.selectbox("Compare with (same customers)", comparable, format_func=lambda k: POLICIES[k].label,
                         index=comparable.index(valid_choice("live_compare", comparable, "forecast_base_stock",
                                                             "Compare with")),
                         key="live_compare", persist_state=KEEP,
                         help="every echelon on this policy, run on exactly the same daily demand")
seed = side.number_input("Demand seed", 0, 10_000, 0, key="live_seed", persist_state=KEEP)
show_references = side.toggle("Show what no policy can beat", value=False, key="live_references", persist_state=KEEP,
                              help="the clairvoyant bound (the best plan knowing every day's demand in advance: a "
                                   "linear programme, about half a second at 20 stores) and, for one store with an "
                                   "ample source, the exact optimum")
in_use = uploaded_in_use(choices)
if in_use:
    st.caption(in_use)
for setting in outside_training(controls):
    side.info(f"Outside the learned policies' training range: {setting}.")
if scenario is None:
    st.error(f"These settings do not make a valid scenario: {invalid}")
    st.stop()
run = run_for(scenario, choices, int(seed))
baseline = run_for(scenario, uniform(compare), int(seed))
if run is None or baseline is None:
    st.stop()
compare_label = POLICIES[compare].label
horizon = run.store_orders.shape[0]
st.session_state.setdefault("live_day", 1)  # the day shown, 1 to horizon
st.session_state.live_day = min(st.session_state.live_day, horizon)

references = cached_references(scenario.to_json(), int(seed)) if show_references else None
year_line = year_summary(run, baseline, compare_label, references)
if note := no_optimum_note(references):
    st.info(note)
ticking = bool(st.session_state.get("live_play", False))  # the animation's timer runs from this page run on


def step_day() -> None:
    st.session_state.live_day = min(st.session_state.live_day + 1, horizon)


def reset_year() -> None:
    st.session_state.live_day = 1
    st.session_state.live_play = False


@st.fragment(run_every=TICK_SECONDS if ticking else None)
def day_view() -> None:
    """The day's picture and its controls. Play is a switch, not a button: every run (a click or a tick of the
    animation's timer) receives its position as the browser shows it, so no tick moves the day on once it is off,
    and no click is lost or repeated however clicks and ticks queue together (a button's one-off click was)."""
    playing = bool(st.session_state.get("live_play", False))
    if playing and ticking:
        speed = st.session_state.get("live_speed", DEFAULT_SPEED)
        st.session_state.live_day = min(st.session_state.live_day + speed, horizon)
        if st.session_state.live_day >= horizon:
            st.session_state.live_play = playing = False  # the year is over
    if playing != ticking:
        if playing and st.session_state.live_day >= horizon:
            st.session_state.live_day = 1  # Play at the year's end plays it again
        st.rerun()  # the whole page: starts or stops the animation's timer
    play, step, restart, speed_col = st.columns([1, 1, 1, 3], vertical_alignment="bottom")
    play.toggle("Play", key="live_play", help=f"play the year, a step of the chosen speed every {TICK_SECONDS:g} s;"
                                              " switch off to pause")
    step.button("Step a day", key="live_step", width="stretch", on_click=step_day)
    restart.button("Reset", key="live_reset", width="stretch", on_click=reset_year)
    speed = speed_col.slider("Speed (days per step)", 1, 20, DEFAULT_SPEED, key="live_speed", persist_state=KEEP)
    day = st.session_state.live_day - 1  # the rollout's index of the day shown
    st.caption(f"Playing: {speed} days every {TICK_SECONDS:g} s" if playing else f"Paused on day {day + 1}")
    k = compared_kpis(run, baseline, day)
    now, change = k["run"], k["change"]
    fill, fill_colour = change_label(change["fill_rate"], compare_label, points=True)
    cost, cost_colour = change_label(change["cost"], compare_label)
    short, short_colour = change_label(change["stockouts"], compare_label)
    tiles = st.columns(5)
    tiles[0].metric("Day", f"{day + 1} / {horizon}")
    tiles[1].metric("Fill rate", KPIS["fill_rate"].format(now["fill_rate"]), fill, delta_color=fill_colour,
                    help=KPIS["fill_rate"].help)
    tiles[2].metric("Cost so far", f"{CURRENCY}{now['cost']:,.0f}", cost,
                    delta_color="inverse" if cost_colour == "normal" else "off", help=KPIS["cost_per_day"].help)
    tiles[3].metric("Stockouts (units)", f"{now['stockouts']:,.0f}", short,
                    delta_color="inverse" if short_colour == "normal" else "off",
                    help=KPIS["lost_sales_per_day"].help)
    tiles[4].metric("Bullwhip (stores)", KPIS["bullwhip_store"].format(now["bullwhip"]),
                    help=KPIS["bullwhip_store"].help)
    st.plotly_chart(cost_difference_figure(run, baseline, day, "your policies", compare_label), width="stretch",
                    key="live_difference")
    st.caption(year_line)
    left, right = st.columns([3, 2])
    left.plotly_chart(network_figure(run, day), width="stretch", key="live_network")
    right.markdown("**Reconciliation ledger of the day**")
    right.dataframe(ledger_rows(run, day), hide_index=True, width="stretch")
    st.plotly_chart(series_figure(run, day, scenario), width="stretch", key="live_series")


day_view()
