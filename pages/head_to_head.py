"""Head-to-head: two policy mixes on the same customers (common random numbers)."""

from __future__ import annotations

import hashlib

import streamlit as st

from core.app.compare import references, run_table, summary_table
from core.evaluation.plots import cumulative_cost_figure
from core.serving.models import PolicyLoadError
from core.serving.registry import uniform
from core.simulation.presets import PRESETS
from pages.common import CACHE_SECONDS, mix_for, policy_pickers, run_for, uploaded_models

st.title("Head-to-head")
st.caption("Both mixes face exactly the same daily demand, seed by seed, so differences are the policies'.")
preset = st.selectbox("Scenario preset", list(PRESETS), key="h2h_preset")
scenario = PRESETS[preset]
col_a, col_b = st.columns(2)
with col_a:
    st.subheader("Mix A")
    mix_a = policy_pickers("h2h_a", uniform("learned"), col_a)
with col_b:
    st.subheader("Mix B")
    mix_b = policy_pickers("h2h_b", uniform("reorder_point"), col_b)
seed = st.number_input("Demand seed of the single run", 0, 10_000, 0, key="h2h_seed")

runs = {"A": run_for(scenario, mix_a, int(seed)), "B": run_for(scenario, mix_b, int(seed))}
if any(r is None for r in runs.values()):
    st.stop()
st.plotly_chart(cumulative_cost_figure({f"mix {name}": run for name, run in runs.items()}), width="stretch")

st.markdown("**KPIs of this run**")
st.dataframe(run_table({f"mix {name}": run for name, run in runs.items()}), hide_index=True, width="stretch")


@st.cache_data(show_spinner="Simulating many seeds...", max_entries=16, ttl=CACHE_SECONDS)
def summary(preset: str, a: tuple, b: tuple, seeds: int, uploads: tuple[str, ...]) -> dict:
    """``uploads`` (digests of this session's uploaded models) is part of the cache key, as in ``cached_run``."""
    del uploads
    scenario = PRESETS[preset]
    return summary_table(scenario, {"A": mix_for(scenario, dict(a)), "B": mix_for(scenario, dict(b))}, seeds)


@st.cache_data(show_spinner="Solving the clairvoyant plans...", max_entries=16, ttl=CACHE_SECONDS)
def cached_references(preset: str, seeds: int) -> str:
    return references(PRESETS[preset], seeds)


seeds = st.slider("Seeds in the summary", 5, 50, 20, key="h2h_seeds")
uploads = tuple(sorted(f"{r}:{hashlib.sha256(b).hexdigest()}" for r, b in uploaded_models().items()))
try:
    table = summary(preset, tuple(sorted(mix_a.items())), tuple(sorted(mix_b.items())), seeds, uploads)
except PolicyLoadError as exc:  # an uploaded policy deciding outside the menu on these seeds
    st.error(f"The learned policy cannot be used: {exc}. Choose a rule-based policy for that echelon.")
    st.stop()
st.markdown(f"**{seeds} seeds: mean and 95% confidence interval; A - B paired seed by seed**")
st.caption(cached_references(preset, seeds))
st.dataframe([{"KPI": k, **{col: f"{v['mean']:.3f} ({v['low']:.3f} .. {v['high']:.3f})" for col, v in row.items()}}
              for k, row in table.items()], hide_index=True, width="stretch")
