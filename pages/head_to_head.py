"""Head-to-head: two policy mixes on the same customers (common random numbers), named after their policies."""

from __future__ import annotations

import hashlib

import streamlit as st

from core.agents.roles import ROLES
from core.app import compare
from core.app.compare import PATHS, PathResults, References
from core.evaluation.plots import cumulative_cost_figure
from core.serving.models import PolicyLoadError, load_manifest
from core.serving.registry import applicable, uniform
from core.simulation.presets import PRESETS
from pages.common import CACHE_SECONDS, KEEP, mix_for, policy_pickers, uploaded_models


@st.cache_data(show_spinner=False, max_entries=len(PRESETS), ttl=CACHE_SECONDS)
def baseline(preset: str) -> str:
    """The preset's best rule in the shipped evaluation (mix B's default)."""
    try:
        manifest = load_manifest()
    except PolicyLoadError:
        manifest = {}
    return compare.default_baseline(PRESETS[preset], manifest)


@st.cache_data(show_spinner=f"Simulating {PATHS} demand paths (a tuned rule is first tuned for the preset, once)...",
               max_entries=32, ttl=CACHE_SECONDS)
def simulated(preset: str, choices: tuple[tuple[str, str], ...], uploads: tuple[str, ...]) -> PathResults:
    """``uploads`` (digests of this session's uploaded models that ``choices`` use) is part of the cache key."""
    del uploads
    scenario = PRESETS[preset]
    return compare.simulate(scenario, mix_for(scenario, dict(choices)))


@st.cache_data(show_spinner=f"Solving {PATHS} clairvoyant plans...", max_entries=len(PRESETS), ttl=CACHE_SECONDS)
def cached_references(preset: str) -> References:
    return compare.references(PRESETS[preset])


st.title("Head-to-head")
lead = st.container()  # the headline, filled once the choices below are known
controls, seeds_column = st.columns([2, 1])
preset = controls.selectbox("Scenario preset", list(PRESETS), key="h2h_preset", persist_state=KEEP)
seeds = seeds_column.slider("Demand paths in the summary", 5, PATHS, PATHS, key="h2h_seeds", persist_state=KEEP,
                            help=f"The mixes run on the same {PATHS} evaluation demand paths; the summary and the "
                                 "headline average the first ones.")
scenario = PRESETS[preset]
options = applicable(scenario)
roles = compare.active_roles(scenario)
shown = st.session_state.get("h2h_loaded_preset", preset)
if shown != preset:  # a new preset: a second-mix pick still on the old preset's best rule follows the new one
    for role in ROLES:
        if st.session_state.get(f"h2h_b_{role}") in (baseline(shown), None):
            st.session_state[f"h2h_b_{role}"] = baseline(preset)
st.session_state.h2h_loaded_preset = preset
col_a, col_b = st.columns(2)
col_a.markdown("**First mix** (default: the learned policies)")
choices_a = compare.with_idle_roles(policy_pickers("h2h_a", uniform("learned"), col_a, options, roles), scenario)
col_b.markdown("**Second mix** (default: the preset's best rule in the shipped evaluation)")
choices_b = compare.with_idle_roles(policy_pickers("h2h_b", uniform(baseline(preset)), col_b, options, roles),
                                    scenario)
if idle := compare.idle_roles_note(scenario):
    st.caption(idle)

uploaded = uploaded_models()
used = frozenset(r for r in uploaded if "learned" in (choices_a[r], choices_b[r]))
names = compare.mix_names(choices_a, choices_b, used, roles)
labels = compare.short_names(names)  # in the tables and the chart
try:
    a, b = (simulated(preset, tuple(sorted(c.items())), tuple(sorted(
        f"{r}:{hashlib.sha256(uploaded[r]).hexdigest()}" for r in uploaded if c[r] == "learned")))
        for c in (choices_a, choices_b))
except PolicyLoadError as exc:  # an uploaded policy deciding outside the menu on these paths
    st.error(f"The learned policy cannot be used: {exc}. Choose a rule-based policy for that echelon.")
    st.stop()

verdict = compare.headline(names, a, b, seeds)
lead.markdown(f"#### {verdict.text}")
lead.caption("Both mixes face exactly the same daily demand, path by path (common random numbers), so differences "
             "are the policies'. Significant: the paired 95 % interval of the difference excludes zero.")
if legend := compare.legend(names):
    lead.markdown(legend)

help_by_column = compare.kpi_help()
policy_width = 4 + 7 * max(len(label) for label in labels)  # pixels, about
columns = {"Policy": st.column_config.TextColumn("Policy", width=policy_width, help="difference: the first policy "
                                                 "minus the second, path by path"),
           **{title: st.column_config.TextColumn(title, help=text) for title, text in help_by_column.items()}}
st.markdown(f"**{seeds} demand paths: mean ± 95 % interval; difference paired path by path**")
st.dataframe(compare.summary_rows(labels, a, b, seeds), hide_index=True, width="stretch", column_config=columns)

if st.toggle("Compare with what no policy can beat (clairvoyant bound; exact optimum where it exists)",
             key="h2h_bound", persist_state=KEEP, help="One linear programme per demand path, about 2 s the first "
             "time for each preset."):
    st.caption(compare.references_text(cached_references(preset), names, a, b, seeds))

path = st.number_input(f"Demand path shown below (0 to {PATHS - 1})", 0, PATHS - 1, 0, key="h2h_seed",
                       persist_state=KEEP)
st.plotly_chart(cumulative_cost_figure({label: run.daily_cost[path] for label, run in zip(labels, (a, b), strict=True)},
                                       f"Cumulative system cost on demand path {path}"), width="stretch")
st.markdown(f"**KPIs on demand path {path}**")
st.dataframe(compare.path_rows(labels, a, b, path), hide_index=True, width="stretch", column_config=columns)
