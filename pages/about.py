"""About: the hierarchy, what each agent sees and decides, rewards and the order of events."""

import streamlit as st

from core.agents.menus import ACTION_MEANINGS
from core.agents.observations import FEATURES
from core.simulation.twin import __doc__ as TWIN_DOC

st.title("About this lab")
st.markdown("""
A retail supply chain run by agents: one **supplier** (production) ships to one **warehouse**, which ships to
**stores** that face random customer demand. Each node is an agent. Stores share one learned policy
(trained on the experience of every store: centralised training, decentralised execution); the warehouse and
the supplier each have their own. Training is hierarchical: stores first, then the warehouse with the stores
frozen, then the supplier, then a joint fine-tuning; a phase is kept only if it lowers the system cost on
held-out seeds.

**Decisions.** Every agent picks a safety factor z from a menu and orders up to its forecast demand over its
protection window plus z standard deviations (stores: their own stock; warehouse and supplier: their echelon
stock, i.e. everything downstream of them too). The supplier also holds a pre-build: the stock that planned
production capacity could not make in time for the forecast (a planned disruption, a peak above capacity).
When the warehouse is short it shares stock by the scenario's allocation rule (proportional or lowest cover
first).

**Reconciliation.** Every day the engine turns flows into a ledger per agent: demand, filled, lost or
backordered, fill rate, on hand, in transit, holding cost, stockout cost, excess inventory, ordering,
transport and production cost, and the reward (minus the agent's own cost with the default weights, so a higher
total reward is always a lower total cost).
""")
st.subheader("What each agent observes")
for role, names in FEATURES.items():
    st.markdown(f"**{role}** ({len(names)} features): " + ", ".join(f"`{n}`" for n in names))
st.subheader("The action menu")
st.markdown("\n".join(f"{i}. {m}" for i, m in enumerate(ACTION_MEANINGS)))
st.subheader("The order of events in a day")
st.code(TWIN_DOC.split("Order of events in one period", 1)[1].split("This module", 1)[0].strip(), language=None)
