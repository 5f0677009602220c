"""Rule-based policies behind one interface.

A role policy looks at the batched ``State`` and returns that role's decision for every chain:
stores (B, N) order quantities, warehouse (B,) order, supplier (B,) production. A ``PolicyMix``
names one policy per role; learned policies (``core.serving.models``) implement the same interface.

Inventory position (IP) = on hand + in transit - backorders (for the supplier: finished goods
+ work in production). The echelon IP of a node adds the IP of every node downstream of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.simulation.demand import demand_cv, shock_lift
from core.simulation.scenario import Scenario
from core.simulation.twin import Actions, State

ROLES = ("store", "warehouse", "supplier")


class RolePolicy(Protocol):
    """Decides one role's quantities for every chain of a batch."""

    name: str

    def act(self, state: State, scenario: Scenario) -> np.ndarray: ...


def demand_sd(scenario: Scenario, daily_mean: np.ndarray) -> np.ndarray:
    """(N,) daily standard deviation of each store's demand at ``daily_mean`` (same model as
    ``core.simulation.demand``: coefficient of variation with random shocks, at least Poisson for integer demand)."""
    cv = np.array([demand_cv(m) for m in scenario.stores])
    integer = np.array([m.distribution == "negative_binomial" for m in scenario.stores])
    return np.where(integer, np.maximum(cv * daily_mean, np.sqrt(daily_mean)), cv * daily_mean)


def store_demand_stats(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """(N,) mean and standard deviation of each store's daily demand (units), shocks included."""
    mean = np.array([m.mean * shock_lift(m) for m in scenario.stores])
    return mean, demand_sd(scenario, mean)


def local_position(state: State, role: str) -> np.ndarray:
    """Inventory position of the role's own node(s)."""
    if role == "store":
        return state.store_inventory_position
    if role == "warehouse":
        return state.warehouse_inventory_position
    return state.supplier_inventory_position


def echelon_position(state: State, role: str) -> np.ndarray:
    """Inventory position of the node and everything downstream of it."""
    stores = state.store_inventory_position
    if role == "store":
        return stores
    warehouse = state.warehouse_inventory_position + stores.sum(axis=1)
    if role == "warehouse":
        return warehouse
    return warehouse + state.supplier_inventory_position


def role_lead_time(scenario: Scenario, role: str) -> int:
    """Days from the role's order (or production start) to availability."""
    lead = scenario.lead_times
    return {"store": lead.warehouse_to_store, "warehouse": lead.supplier_to_warehouse,
            "supplier": lead.production}[role]


@dataclass(frozen=True)
class BaseStock:
    """Order up to ``level`` units of (local or echelon) inventory position every day."""

    role: str
    level: np.ndarray | float  # units; stores: one per store or one for all
    echelon: bool = False

    @property
    def name(self) -> str:
        return ("echelon_" if self.echelon else "") + "base_stock"

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        position = (echelon_position if self.echelon else local_position)(state, self.role)
        return np.maximum(np.asarray(self.level) - position, 0.0)


@dataclass(frozen=True)
class CappedBaseStock:
    """Order up to ``level`` units of local inventory position, but never more than ``cap`` units a
    day: min(cap, level - position). Near-optimal under lost sales with long lead times (Xin 2021,
    "Understanding the performance of capped base-stock policies in lost-sales inventory models")."""

    role: str
    level: np.ndarray | float  # units; stores: one per store or one for all
    cap: np.ndarray | float  # units per order

    name = "capped_base_stock"

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        return np.clip(np.asarray(self.level) - local_position(state, self.role), 0.0, np.asarray(self.cap))


@dataclass(frozen=True)
class ReorderPoint:
    """(s, S): when the local inventory position falls to s or below, order up to S.

    Textbook parameters from the scenario's base demand model: over the lead time L,
    s = mean * L + z * sd * sqrt(L), and S = s + mean * cycle_days. Aggregated upstream
    (the warehouse and supplier see the sum of the stores' demand). It ignores seasonality,
    promotions and disruptions: it is the original project's baseline.
    """

    role: str
    z: float = 1.65
    cycle_days: float = 7.0

    name = "reorder_point"

    def levels(self, scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
        """(s, S) in units: (N,) arrays for stores, scalars upstream."""
        mean, sd = store_demand_stats(scenario)
        if self.role != "store":
            mean, sd = mean.sum(), math.sqrt((sd**2).sum())
        lead = role_lead_time(scenario, self.role)
        reorder = mean * lead + self.z * sd * math.sqrt(lead)
        return reorder, reorder + mean * self.cycle_days

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        reorder, order_up_to = self.levels(scenario)
        position = local_position(state, self.role)
        return np.where(position <= reorder, order_up_to - position, 0.0)


@dataclass(frozen=True)
class RandomPolicy:
    """Uniform random quantities between 0 and ``scale`` times the mean daily demand."""

    role: str
    rng: np.random.Generator
    scale: float = 2.0

    name = "random"

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        mean, _ = store_demand_stats(scenario)
        b = state.batch_size
        if self.role == "store":
            return self.rng.uniform(0.0, self.scale, (b, mean.size)) * mean
        return self.rng.uniform(0.0, self.scale, b) * mean.sum()


@dataclass(frozen=True)
class PolicyMix:
    """One policy per role."""

    store: RolePolicy
    warehouse: RolePolicy
    supplier: RolePolicy

    def actions(self, state: State, scenario: Scenario) -> Actions:
        return Actions(
            store_orders=self.store.act(state, scenario),
            warehouse_order=self.warehouse.act(state, scenario),
            production=self.supplier.act(state, scenario),
        )

    @property
    def label(self) -> str:
        return ", ".join(f"{r}={getattr(self, r).name}" for r in ROLES)


def reorder_point_mix(z: float = 1.65, cycle_days: float = 7.0) -> PolicyMix:
    """The baseline: textbook (s, S) at every echelon."""
    return PolicyMix(*(ReorderPoint(role, z, cycle_days) for role in ROLES))


def random_mix(rng: np.random.Generator) -> PolicyMix:
    return PolicyMix(*(RandomPolicy(role, rng) for role in ROLES))


def base_stock_mix(store: np.ndarray | float, warehouse: float, supplier: float,
                   echelon: bool = True) -> PolicyMix:
    """Base-stock at every echelon; levels in units (echelon levels upstream by default)."""
    return PolicyMix(BaseStock("store", np.asarray(store, dtype=float)),
                     BaseStock("warehouse", warehouse, echelon), BaseStock("supplier", supplier, echelon))

