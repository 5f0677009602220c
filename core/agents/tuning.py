"""Tune base-stock levels for any scenario by simulation on common random numbers.

The levels are parameterised by one safety factor per echelon, so a search over three numbers
covers any number of stores:
- store i (local):       mean_i * L_ws + k_store * sd_i * sqrt(L_ws)
- warehouse (echelon):   mean * (L_ws + L_sw) + k_warehouse * sd * sqrt(L_ws + L_sw)
- supplier (echelon):    mean * (L_ws + L_sw + L_p) + k_supplier * sd * sqrt(L_ws + L_sw + L_p)
with mean and sd the stores' total. Every candidate is a block of rows in one batched rollout,
all blocks on the same demand draws, so candidates are compared on equal terms and the whole
grid costs one pass of the twin. A coarse grid is refined twice around its best point.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from core.agents.menus import SAFETY_FACTORS, forecast_base_stock, reference_index
from core.agents.rules import ROLES, BaseStock, PolicyMix, base_stock_mix, store_demand_stats
from core.simulation.demand import sample_demand
from core.simulation.reconcile import reconcile
from core.simulation.rollout import run_mixes
from core.simulation.scenario import Scenario
from core.simulation.twin import reset, step

COARSE_GRID = np.linspace(-2.0, 8.0, 6)


@dataclass(frozen=True)
class TunedBaseStock:
    """The best base-stock levels found and their simulated cost."""

    safety_factors: tuple[float, float, float]  # store, warehouse, supplier
    store_levels: tuple[float, ...]  # units, local, one per store
    warehouse_level: float  # units, echelon
    supplier_level: float  # units, echelon
    cost_per_day: float  # mean over the tuning seeds
    candidates_evaluated: int

    def mix(self) -> PolicyMix:
        return base_stock_mix(np.array(self.store_levels), self.warehouse_level, self.supplier_level)


def levels_for(scenario: Scenario, safety: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Base-stock levels of candidates ``safety`` (C, 3): stores (C, N), warehouse (C,), supplier (C,)."""
    mean, sd = store_demand_stats(scenario)
    total_mean, total_sd = mean.sum(), math.sqrt((sd**2).sum())
    lead = scenario.lead_times
    l1 = lead.warehouse_to_store
    l2 = l1 + lead.supplier_to_warehouse
    l3 = l2 + lead.production
    stores = mean * l1 + safety[:, :1] * sd * math.sqrt(l1)
    warehouse = total_mean * l2 + safety[:, 1] * total_sd * math.sqrt(l2)
    supplier = total_mean * l3 + safety[:, 2] * total_sd * math.sqrt(l3)
    return np.maximum(stores, 0.0), np.maximum(warehouse, 0.0), np.maximum(supplier, 0.0)


def candidate_costs(scenario: Scenario, safety: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """(C,) mean cost per day of each candidate over the S demand paths ``demand`` (S, T, N)."""
    c, s = safety.shape[0], demand.shape[0]
    stores, warehouse, supplier = levels_for(scenario, safety)
    mix = PolicyMix(BaseStock("store", np.repeat(stores, s, axis=0)),
                    BaseStock("warehouse", np.repeat(warehouse, s), echelon=True),
                    BaseStock("supplier", np.repeat(supplier, s), echelon=True))
    state = reset(scenario, c * s)
    total = np.zeros(c * s)
    for t in range(demand.shape[1]):
        today = np.tile(demand[:, t], (c, 1))  # every candidate's block on the same paths, one day at a time
        state, flows = step(state, mix.actions(state, scenario), today, scenario)
        total += reconcile(flows, state, scenario).total_cost.sum(axis=1)
    return (total / demand.shape[1]).reshape(c, s).mean(axis=1)


def tune_base_stock(scenario: Scenario, seeds: int = 8, periods: int | None = None,
                    seed: int = 12345) -> TunedBaseStock:
    """Search safety factors on a coarse grid, then twice on finer grids around the best."""
    demand = sample_demand(scenario, seeds, np.random.default_rng(seed), periods)
    offsets = COARSE_GRID
    best_safety, best_cost = np.zeros(3), math.inf
    evaluated = 0
    for refinement in range(3):
        centre = best_safety if refinement else np.zeros(3)
        safety = np.array(list(itertools.product(*(offsets + centre[i] for i in range(3)))))
        costs = candidate_costs(scenario, safety, demand)
        evaluated += len(safety)
        i = int(np.argmin(costs))
        if costs[i] < best_cost:
            best_safety, best_cost = safety[i], float(costs[i])
        half = (offsets[1] - offsets[0]) / 2.0
        offsets = np.linspace(-2 * half, 2 * half, 5) if refinement == 0 else np.linspace(-half, half, 5)
    stores, warehouse, supplier = levels_for(scenario, best_safety[None, :])
    return TunedBaseStock(
        safety_factors=tuple(float(x) for x in best_safety),
        store_levels=tuple(float(x) for x in stores[0]),
        warehouse_level=float(warehouse[0]),
        supplier_level=float(supplier[0]),
        cost_per_day=best_cost,
        candidates_evaluated=evaluated,
    )


def tune_menu(scenario: Scenario, seeds: int = 16, seed: int = 777, sweeps: int = 2,
              periods: int | None = None) -> dict[str, object]:
    """The best constant menu entries (forecast base-stock) per role: coordinate search, one role
    at a time over the whole menu, every candidate on the same ``periods`` days (default: the horizon)
    of demand paths."""
    best = {role: reference_index(role) for role in ROLES}

    def mix(indices: dict[str, int]) -> PolicyMix:
        return PolicyMix(*(forecast_base_stock(role, SAFETY_FACTORS[indices[role]]) for role in ROLES))

    cost = math.inf
    for _ in range(sweeps):
        for role in ROLES:
            candidates = {i: mix({**best, role: i}) for i in range(len(SAFETY_FACTORS))}
            runs = run_mixes(scenario, candidates, seeds, seed, periods)
            costs = {i: float(k["cost_per_day"].mean()) for i, k in runs.items()}
            best[role] = min(costs, key=costs.__getitem__)
            cost = costs[best[role]]
    return {"safety_factors": {role: SAFETY_FACTORS[i] for role, i in best.items()}, "cost_per_day": cost}
