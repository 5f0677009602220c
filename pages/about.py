"""About: the chain, what each agent sees and decides, and the shipped evaluation summary."""

from __future__ import annotations

import streamlit as st

from core.agents.menus import ACTION_LABELS
from core.agents.observations import FEATURES
from core.app.results import learned_versus_best_rule, learning_pays_text, results_summary
from core.app.sweep import shipped_sweep
from core.evaluation.glossary import FEATURE_WORDS
from core.evaluation.plots import chain_diagram_figure, presets_figure, sweep_figure, verdict
from core.serving import models
from core.serving.models import PolicyLoadError

DECISIONS = {
    "store": ("Stores", "how many units to order from the warehouse, every evening, each store for itself. All "
              "stores share one learned policy, trained on the experience of every store."),
    "warehouse": ("Warehouse", "how many units to order from the supplier, watching its own stock and "
                  "everything its stores hold. When it cannot fill every store's order it shares its stock out "
                  "(in proportion to the orders, or to the emptiest stores first)."),
    "supplier": ("Supplier", "how many units to start producing, within its production capacity, and "
                 "builds stock ahead of planned capacity shortfalls (a disruption, a peak above capacity)."),
}

st.title("About this lab")
st.markdown("A retail supply chain run by agents. Every agent is trained with reinforcement learning (PPO), the "
            "stores first, then the warehouse, then the supplier, then all together; a training phase is kept only "
            "if it lowers the whole chain's cost on demand it never saw. Costs are per day, in an abstract currency.")
st.plotly_chart(chain_diagram_figure(), width="stretch", key="about_chain")

st.subheader("What each agent sees and decides")
st.markdown("Every agent decides the same kind of thing: a **safety factor z** from a menu of "
            f"{len(ACTION_LABELS)} ({ACTION_LABELS[0]} to {ACTION_LABELS[-1]}). It then orders enough to bring its "
            "stock up to the forecast demand over its lead time plus z standard deviations of that demand. "
            "A rule keeps z fixed; a learned policy moves it with the season, promotions, disruptions and its "
            "own stock.")
for role, (name, decision) in DECISIONS.items():
    with st.expander(f"{name}: sees {len(FEATURES[role])} numbers"):
        st.markdown(f"**Decides** {decision}\n\n**Sees:**\n" + "\n".join(f"- {FEATURE_WORDS[feature]}"
                                                                          for feature in FEATURES[role]))

st.subheader("A day in the chain")
st.markdown("""
1. **Evening review**: every agent looks at its numbers and orders (the supplier starts production).
2. **Shipping**: the warehouse ships to the stores from its stock, the supplier ships to the warehouse.
3. **Overnight**: stock held and goods on the road cost holding cost.
4. **Morning**: deliveries whose lead time is over arrive.
5. **Customers** come to the stores; who cannot be served is lost or waits, and costs a stockout penalty.
""")

st.subheader("Results of the shipped policies")
evaluation = None
try:
    manifest = models.load_manifest(models.EXPORTED_MODELS)
except PolicyLoadError as exc:
    st.info(f"No results to show: the shipped policies' manifest cannot be read ({exc}). "
            "`python -m core pipeline` trains, exports and evaluates the policies and writes it.")
else:
    evaluation = manifest.get("evaluation")
    summary = results_summary(evaluation)
    for line in summary.headline:
        st.markdown(line)
    if summary.rows:
        st.dataframe(summary.rows, hide_index=True, width="stretch", key="about_results")
        st.caption(f"Mean cost per day over {summary.seeds or 'several'} demand paths per preset, every policy on "
                   "the same customers. The clairvoyant bound is the cost of a plan that knows all demand in "
                   "advance: no policy can reach it. The exact optimum (where a dynamic programme can compute it) "
                   "is the best any policy can do.")
    for note in summary.notes:
        st.caption(note)

st.subheader("Where does learning pay?")
presets = learned_versus_best_rule(evaluation)
if presets:
    st.plotly_chart(presets_figure(presets), width="stretch", key="about_presets")
    st.caption(learning_pays_text(presets))
sweep = shipped_sweep()
if sweep is None:
    st.info("No sweep shipped: `python -m core sweep --out docs/sweep.csv` writes one.")
else:
    points, seeds = sweep
    pays = sum(verdict(p)[0] == "learning pays" for p in points)
    st.plotly_chart(sweep_figure(points), width="stretch", key="about_sweep")
    st.caption(f"Off the presets: every registered policy on a grid of scenarios around the steady preset ({seeds} "
               "demand paths each, the same for every policy): demand volatility (cv), store lead time (L, days), "
               "stores, production capacity (a multiple of mean demand) and the stockout-to-holding cost ratio (p/h). "
               "A bar is the learned policy's cost against the cheapest rule of that scenario, with its paired 95% "
               f"interval; below zero, learning pays. On this grid it pays in {pays} of {len(points)} scenarios.")
