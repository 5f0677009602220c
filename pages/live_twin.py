"""Live twin: a preset shaped by sliders, a policy per echelon, the year's outcome against the preset's best rule
as the headline, and the year played in the browser (one figure of a frame a day: no server run per day)."""

from __future__ import annotations

import dataclasses

import streamlit as st

from core.app.compare import default_baseline, mix_names
from core.app.compare import headline as paths_headline
from core.app.live import (
    FIRST_PRESET,
    HEADLINE_PATHS,
    SLIDERS,
    TICK_SECONDS,
    VERDICT_COLOURS,
    Controls,
    apply_controls,
    comparison_note,
    controls_of,
    headline,
    no_optimum_note,
    outside_training,
    references_text,
    tile_delta,
    year_kpis,
)
from core.evaluation.glossary import CURRENCY, KPIS
from core.evaluation.plots import AnimatedFigure, year_figure
from core.serving.models import PolicyLoadError, load_manifest
from core.serving.registry import POLICIES, applicable, to_tune, uniform
from core.simulation.presets import PRESETS
from core.simulation.rollout import Rollout
from core.simulation.scenario import Scenario, ScenarioError
from pages.common import (
    CACHE_SECONDS,
    KEEP,
    cached_references,
    policy_pickers,
    run_for,
    upload_digests,
    uploaded_in_use,
    uploaded_models,
    valid_choice,
)


@st.cache_data(show_spinner=False, ttl=CACHE_SECONDS)
def shipped_manifest() -> dict:
    """The shipped manifest (its evaluation names each preset's best rule); empty if there is none to read."""
    try:
        return load_manifest()
    except PolicyLoadError:
        return {}


@st.cache_resource(show_spinner=False, max_entries=8, ttl=CACHE_SECONDS)
def cached_year_figure(key: tuple, labels: tuple[str, str], _run: Rollout, _baseline: Rollout,
                       _scenario: Scenario) -> AnimatedFigure:
    """The year's figure for ``key`` (scenario, choices, comparison, seed, uploads), built once and shared, never
    changed: a widget that does not change the data does not build it again."""
    del key
    return year_figure(_run, _baseline, _scenario, labels, round(1000 * TICK_SECONDS))


def comparison_chosen() -> None:
    st.session_state.live_compare_chosen = True


st.title("Live twin")
side = st.sidebar
preset = side.selectbox("Scenario preset", list(PRESETS), index=list(PRESETS).index(FIRST_PRESET), key="live_preset",
                        persist_state=KEEP, help=f"opens on {FIRST_PRESET}, where the learned policies beat the best "
                                                 "rule")
if st.session_state.get("live_loaded_preset") != preset:  # a new preset resets the sliders to its values
    base = controls_of(PRESETS[preset])
    for field in dataclasses.fields(Controls):
        st.session_state[f"live_{field.name}"] = getattr(base, field.name)
    st.session_state.live_loaded_preset = preset

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
shown = PRESETS[preset] if scenario is None else scenario  # what the pickers offer policies for
options = applicable(shown)
choices = policy_pickers("live", options=options)
comparable = [k for k in options if k != "random"]
best = default_baseline(shown, shipped_manifest())  # the preset's best rule that applies to the scenario
if st.session_state.get("live_compare_chosen") and st.session_state.get("live_compare") not in comparable:
    valid_choice("live_compare", comparable, best, "Compare with")  # says why a person's pick no longer applies
    st.session_state.live_compare_chosen = False
if not st.session_state.get("live_compare_chosen"):  # the comparison follows the preset until a person picks one
    st.session_state.live_compare = best
compare = side.selectbox("Compare with (same customers)", comparable, format_func=lambda k: POLICIES[k].label,
                         key="live_compare", persist_state=KEEP, on_change=comparison_chosen,
                         help="every echelon on this policy, run on exactly the same daily demand; by default the "
                              "preset's best rule in the shipped evaluation (tuned for these settings where it is a "
                              "tuned rule)")
seed = int(side.number_input("Demand seed", 0, 10_000, 0, key="live_seed", persist_state=KEEP,
                             help="which year of customers is played; the headline's spread covers "
                                  f"{HEADLINE_PATHS} other demand paths"))
if in_use := uploaded_in_use(choices):
    st.caption(in_use)
for setting in outside_training(controls):
    side.info(f"Outside the learned policies' training range: {setting}.")
if scenario is None:
    st.error(f"These settings do not make a valid scenario: {invalid}")
    st.stop()

tuning = [POLICIES[k].label for k in to_tune({**choices, "comparison": compare}, scenario)]
progress = (f"Tuning {' and '.join(tuning)} for these settings by simulation (once per setting; longer with more "
            "stores), then simulating the year..." if tuning else "Simulating the year...")
with st.spinner(progress, show_time=True):
    mine_run = run_for(scenario, choices, seed, HEADLINE_PATHS)
    their_run = None if mine_run is None else run_for(scenario, uniform(compare), seed, HEADLINE_PATHS)
if mine_run is None or their_run is None:
    st.stop()
run, baseline = mine_run.year, their_run.year

compare_label = POLICIES[compare].label
mine_label = "the learned policies" if set(choices.values()) == {"learned"} else "your policies"
outcome = headline(run, baseline, (mine_label, compare_label))
spread = paths_headline(mix_names(choices, uniform(compare), frozenset(uploaded_models())), mine_run.paths,
                        their_run.paths, HEADLINE_PATHS)
st.markdown(f"#### :{VERDICT_COLOURS[outcome.verdict]}[{outcome.title}]")
st.markdown(f"{comparison_note(compare, best, preset, scenario, shipped_manifest())}{outcome.detail}")
st.caption(f"{spread.text} The year below is demand seed {seed}: press Play in the chart to watch it day by day (it "
           "plays in your browser, and Pause stops on the day shown).")
mine, theirs = year_kpis(run), year_kpis(baseline)
tiles = st.columns(4)
for tile, key, shown_value in ((tiles[0], "cost_per_day", f"{CURRENCY}{mine['cost_per_day']:,.2f}"),
                               (tiles[1], "fill_rate", KPIS["fill_rate"].format(mine["fill_rate"])),
                               (tiles[2], "lost_sales_per_day", f"{mine['lost_sales_per_day']:,.1f}")):
    delta, colour = tile_delta(key, mine[key], theirs[key])
    tile.metric(KPIS[key].label, shown_value, delta, delta_color=colour,
                help=f"{KPIS[key].help}. Your policies over the year; the change against {compare_label}.")
saved = theirs["cost"] - mine["cost"]
tiles[3].metric("Saved in the year" if saved >= 0 else "Extra cost in the year", f"{CURRENCY}{abs(saved):,.0f}",
                help=f"{compare_label}'s cost of the year minus your policies', on the same customers")

figure_key = (scenario.to_json(), tuple(sorted(choices.items())), compare, seed, upload_digests())
with st.spinner("Drawing the year...", show_time=True):
    figure = cached_year_figure(figure_key, ("your policies", compare_label), run, baseline, scenario)
st.plotly_chart(figure, width="stretch", key="live_year")


@st.fragment
def references_view() -> None:
    """What no policy can beat on this year's customers, on request (reruns alone: the chart is not sent again)."""
    if not st.toggle("Show what no policy can beat", value=False, key="live_references", persist_state=KEEP,
                     help="the clairvoyant bound (the best plan knowing every day's demand in advance: a linear "
                          "programme, about half a second at 20 stores) and, for one store with an ample source, "
                          "the exact optimum"):
        return
    with st.spinner("Solving the clairvoyant plan..."):
        references = cached_references(scenario.to_json(), seed)
    st.caption(references_text(run, references))
    if note := no_optimum_note(references):
        st.info(note)


references_view()
