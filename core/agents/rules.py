"""Rule-based policies behind one interface.

A role policy looks at the batched ``State`` and returns that role's decision for every chain:
stores (B, N) order quantities, warehouse (B,) order, supplier (B,) production. A ``PolicyMix``
names one policy per role; menu and learned policies (``core.agents.menus``) implement the same
interface. Inventory positions and demand pooling are the roles' (``core.agents.roles``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.agents.roles import ROLE, ROLES, actions_of
from core.simulation.demand import shock_lift
from core.simulation.scenario import Scenario
from core.simulation.twin import Actions, State


class RolePolicy(Protocol):
    """Decides one role's quantities for every chain of a batch."""

    name: str

    def act(self, state: State, scenario: Scenario) -> np.ndarray: ...


def demand_sd(scenario: Scenario, daily_mean: np.ndarray) -> np.ndarray:
    """(N,) daily standard deviation of each store's demand at ``daily_mean`` (same model as
    ``core.simulation.demand``: coefficient of variation with random shocks, at least Poisson for integer demand)."""
    cv = scenario.store_cvs
    integer = np.array([m.distribution == "negative_binomial" for m in scenario.stores])
    return np.where(integer, np.maximum(cv * daily_mean, np.sqrt(daily_mean)), cv * daily_mean)


def store_demand_stats(scenario: Scenario) -> tuple[np.ndarray, np.ndarray]:
    """(N,) mean and standard deviation of each store's daily demand (units), shocks included."""
    mean = np.array([m.mean * shock_lift(m) for m in scenario.stores])
    return mean, demand_sd(scenario, mean)


def base_stock_level(daily_mean: np.ndarray | float, daily_sd: np.ndarray | float, days: float,
                     safety_factor: np.ndarray | float) -> np.ndarray:
    """Order-up-to level (units): expected demand over ``days`` plus ``safety_factor`` standard deviations
    of it (days independent)."""
    return daily_mean * days + safety_factor * daily_sd * np.sqrt(days)


def order_up_to(target: np.ndarray | float, position: np.ndarray) -> np.ndarray:
    """Units to order so that the inventory position reaches ``target`` (nothing when above it)."""
    return np.maximum(target - position, 0.0)


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
        role = ROLE[self.role]
        position = role.echelon_position(state) if self.echelon else role.local_position(state)
        return order_up_to(np.asarray(self.level), position)


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
        wanted = order_up_to(np.asarray(self.level), ROLE[self.role].local_position(state))
        return np.minimum(wanted, np.asarray(self.cap))


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
        role = ROLE[self.role]
        mean, sd = store_demand_stats(scenario)
        mean, sd = role.pool(mean), role.pool_sd(sd)
        reorder = base_stock_level(mean, sd, role.lead_time(scenario), self.z)
        return reorder, reorder + mean * self.cycle_days

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        reorder, level = self.levels(scenario)
        position = ROLE[self.role].local_position(state)
        return np.where(position <= reorder, level - position, 0.0)


@dataclass(frozen=True)
class RandomPolicy:
    """Uniform random quantities between 0 and ``scale`` times the mean daily demand."""

    role: str
    rng: np.random.Generator
    scale: float = 2.0

    name = "random"

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        role = ROLE[self.role]
        mean, _ = store_demand_stats(scenario)
        return self.rng.uniform(0.0, self.scale, role.agents_shape(state)) * role.pool(mean)


@dataclass(frozen=True)
class PolicyMix:
    """One policy per role."""

    store: RolePolicy
    warehouse: RolePolicy
    supplier: RolePolicy

    def actions(self, state: State, scenario: Scenario) -> Actions:
        return actions_of({role: getattr(self, role).act(state, scenario) for role in ROLES})

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

