"""The roles, defined once: stores, the warehouse and the supplier.

A role is data: how far it sits from the customers (its stage), which of the twin's ``Actions`` it
decides, how many agents it has per chain, the lead time it orders against, its protection window,
its local and echelon inventory position, its share of the chain's reward and its reference menu entry.
Everything role-specific in the agent layer is a method here; other modules ask the role.

Stores act per store (arrays of shape (B, N)); upstream roles act once per chain ((B,)) and see
demand pooled over the stores: means add up, independent standard deviations add in quadrature.
Inventory position (IP) = on hand + in transit - backorders (for the supplier: finished goods + work in
production); a role's echelon IP adds the IP of every node downstream of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from core.simulation.forecast import Forecast
from core.simulation.reconcile import node_names
from core.simulation.scenario import Scenario
from core.simulation.twin import Actions, State

EPS = 1e-6  # units per day: the smallest forecast a ratio divides by


def _chain_share(reward: np.ndarray, scenario: Scenario) -> np.ndarray:
    """Each store gets an equal share of its chain's reward: charged only its own cost, a store learns to
    over-order to win a larger share of the warehouse's stock when it is short, at its siblings' cost.
    Supplied by an ample source, stores share nothing, and each gets its own reward (less noise)."""
    n = reward.shape[1] - 2
    if scenario.upstream == "ample":
        return reward[:, :n]
    return np.repeat(reward.sum(axis=1, keepdims=True) / n, n, axis=1)


def _echelon_share(reward: np.ndarray, scenario: Scenario) -> np.ndarray:
    """The warehouse's own reward plus its stores' (its echelon)."""
    return reward[:, : reward.shape[1] - 1].sum(axis=1)


def _whole_chain(reward: np.ndarray, scenario: Scenario) -> np.ndarray:
    return reward.sum(axis=1)


@dataclass(frozen=True)
class Role:
    """One echelon's agents (see the module docstring)."""

    name: str
    stage: int  # 0 for the stores, 1 for the warehouse, 2 for the supplier: nodes between it and the customers
    action: str  # the field of ``Actions`` it decides
    lead_time_field: str  # the ``LeadTimes`` field of its own orders (production for the supplier)
    reward_share: Callable[[np.ndarray, Scenario], np.ndarray]  # ledger rewards (B, N + 2) -> its agents'
    reference_safety_factor: float  # its reference menu entry (``core.agents.menus``)
    holds_prebuild: bool = False  # its order-up-to target includes the pre-build (``Forecast.prebuild``)

    @property
    def per_store(self) -> bool:
        """One agent per store (else one per chain)."""
        return self.stage == 0

    def agents_per_chain(self, num_stores: int) -> int:
        return num_stores if self.per_store else 1

    def agent_ids(self, num_stores: int) -> list[str]:
        """Its agents' ids, the ledger's node names: ``store_0`` .. ``store_{N-1}``, ``warehouse``, ``supplier``."""
        nodes = node_names(num_stores)
        return nodes[:num_stores] if self.per_store else [nodes[num_stores + self.stage - 1]]

    def agents_shape(self, state: State) -> tuple[int, ...]:
        """(B, N) for stores, (B,) upstream."""
        return state.store_on_hand.shape if self.per_store else state.warehouse_on_hand.shape

    def pool(self, per_store: np.ndarray) -> np.ndarray:
        """A per-store quantity (last axis N) at this role's level: as is for stores, summed upstream."""
        return per_store if self.per_store else per_store.sum(axis=-1)

    def pool_sd(self, per_store_sd: np.ndarray) -> np.ndarray:
        """Standard deviations of independent stores' demand at this role's level."""
        return per_store_sd if self.per_store else np.sqrt((per_store_sd**2).sum(axis=-1))

    def lead_time(self, scenario: Scenario) -> int:
        """Days from the role's order (or production start) to availability, without disruptions."""
        return getattr(scenario.lead_times, self.lead_time_field)

    def local_position(self, state: State) -> np.ndarray:
        """Inventory position of the role's own node(s)."""
        return (state.store_inventory_position, state.warehouse_inventory_position,
                state.supplier_inventory_position)[self.stage]

    def echelon_position(self, state: State) -> np.ndarray:
        """Inventory position of the role's node(s) and everything downstream of them."""
        if self.per_store:
            return state.store_inventory_position
        position = state.store_inventory_position.sum(axis=1)
        for role in ROLES_DOWNSTREAM_FIRST[1: self.stage + 1]:
            position = position + role.local_position(state)
        return position

    def echelon_lead_time(self, scenario: Scenario) -> int:
        """Days from this role's order to the customers' shelves, without disruptions."""
        return sum(role.lead_time(scenario) for role in ROLES_DOWNSTREAM_FIRST[: self.stage + 1])

    def protection_days(self, scenario: Scenario, forecast: Forecast, day: int) -> int:
        """Days of demand an order placed before ``day`` must cover: the lead times from this role to the
        customers, the supplier's until its next shipment arrives as planned (``Forecast.supplier_days_to_cover``:
        disruptions may lengthen it)."""
        downstream = ROLES_DOWNSTREAM_FIRST[: self.stage + 1]
        return sum(role._planned_lead_time(scenario, forecast, day) for role in downstream)

    def _planned_lead_time(self, scenario: Scenario, forecast: Forecast, day: int) -> int:
        if self.lead_time_field == "supplier_to_warehouse":
            return forecast.supplier_days_to_cover(day)
        return self.lead_time(scenario)

    def daily_forecast(self, scenario: Scenario, forecast: Forecast, day: int) -> np.ndarray:
        """Expected demand per day over the protection window: (N,) for stores, () upstream."""
        days = self.protection_days(scenario, forecast, day)
        return self.pool(np.maximum(forecast.store_demand(day, days) / days, EPS))


STORE = Role("store", 0, "store_orders", "warehouse_to_store", _chain_share, 2.3)
WAREHOUSE = Role("warehouse", 1, "warehouse_order", "supplier_to_warehouse", _echelon_share, 2.6)
SUPPLIER = Role("supplier", 2, "production", "production", _whole_chain, 2.3, holds_prebuild=True)
ROLES_DOWNSTREAM_FIRST = (STORE, WAREHOUSE, SUPPLIER)
ROLE = {role.name: role for role in ROLES_DOWNSTREAM_FIRST}
ROLES = tuple(ROLE)  # role names, downstream first: the keys of every per-role mapping


def role_of_agent(agent: str) -> Role:
    """The role of an agent id (``store_3`` -> stores)."""
    return ROLE[agent.rsplit("_", 1)[0] if agent[-1].isdigit() else agent]


def actions_of(quantities: Mapping[str, np.ndarray]) -> Actions:
    """The twin's ``Actions`` from every role's quantities, keyed by role name."""
    return Actions(**{ROLE[name].action: q for name, q in quantities.items()})
