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
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.agents.menus import SAFETY_FACTORS, BlockChooser, MenuPolicy, reference_index
from core.agents.roles import ROLES, ROLES_DOWNSTREAM_FIRST
from core.agents.rules import (
    BaseStock,
    CappedBaseStock,
    PolicyMix,
    base_stock_level,
    base_stock_mix,
    store_demand_stats,
)
from core.simulation.demand import sample_demand
from core.simulation.reconcile import reconcile
from core.simulation.scenario import Scenario, ScenarioError
from core.simulation.twin import reset, step

COARSE_GRID = np.linspace(-2.0, 8.0, 6)

MENU_STRIDE = 5  # the menu tuner's coarse step, in menu entries
MENU_SEEDS = 8  # demand paths a scenario's tuned safety factors are tuned on (``tuned_safety_factors``)


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
    levels = []
    for column, role in enumerate(ROLES_DOWNSTREAM_FIRST):
        factor = safety[:, column, None] if role.per_store else safety[:, column]
        level = base_stock_level(role.pool(mean), role.pool_sd(sd), role.echelon_lead_time(scenario), factor)
        levels.append(np.maximum(level, 0.0))
    return tuple(levels)


def candidate_costs(scenario: Scenario, safety: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """(C,) mean cost per day of each candidate over the S demand paths ``demand`` (S, T, N)."""
    return per_seed_candidate_costs(scenario, safety, demand).mean(axis=1)


def per_seed_candidate_costs(scenario: Scenario, safety: np.ndarray, demand: np.ndarray) -> np.ndarray:
    """(C, S) cost per day of each candidate on each of the S demand paths ``demand`` (S, T, N)."""
    s = demand.shape[0]
    stores, warehouse, supplier = levels_for(scenario, safety)
    mix = base_stock_mix(np.repeat(stores, s, axis=0), np.repeat(warehouse, s), np.repeat(supplier, s))
    return per_seed_block_costs(scenario, mix, demand, safety.shape[0])


def block_costs(scenario: Scenario, mix: PolicyMix, demand: np.ndarray, blocks: int) -> np.ndarray:
    """(blocks,) mean cost per day of each block of S rows of ``mix``, every block on the S demand
    paths ``demand`` (S, T, N): one batched rollout, common random numbers."""
    return per_seed_block_costs(scenario, mix, demand, blocks).mean(axis=1)


def per_seed_block_costs(scenario: Scenario, mix: PolicyMix, demand: np.ndarray, blocks: int) -> np.ndarray:
    """(blocks, S) cost per day of each block of S rows of ``mix`` on each of the S paths ``demand``."""
    s = demand.shape[0]
    state = reset(scenario, blocks * s)
    total = np.zeros(blocks * s)
    for t in range(demand.shape[1]):
        today = np.tile(demand[:, t], (blocks, 1))  # every block on the same paths, one day at a time
        state, flows = step(state, mix.actions(state, scenario), today, scenario)
        total += reconcile(flows, state, scenario).total_cost.sum(axis=1)
    return (total / demand.shape[1]).reshape(blocks, s)


CandidateCosts = Callable[[Scenario, np.ndarray, int, int, int | None], np.ndarray]
# (scenario, safety (C, 3), seeds, seed, periods) -> (C,) mean cost per day of each candidate


def tune_base_stock(scenario: Scenario, seeds: int = 8, periods: int | None = None,
                    seed: int = 12345, costs_of: CandidateCosts | None = None) -> TunedBaseStock:
    """Search safety factors on a coarse grid, then twice on finer grids around the best. ``costs_of``
    computes candidates' costs on the ``seeds`` demand paths drawn from ``seed`` (default: one batched
    rollout here; ``core.evaluation.distributed.candidate_costs_on`` cuts the seeds into blocks)."""
    if costs_of is None:
        demand = sample_demand(scenario, seeds, np.random.default_rng(seed), periods)

        def costs_of(scenario: Scenario, safety: np.ndarray, seeds: int, seed: int, periods: int | None) -> np.ndarray:
            return candidate_costs(scenario, safety, demand)
    offsets = COARSE_GRID
    best_safety, best_cost = np.zeros(3), math.inf
    evaluated = 0
    for refinement in range(3):
        centre = best_safety if refinement else np.zeros(3)
        safety = np.array(list(itertools.product(*(offsets + centre[i] for i in range(3)))))
        costs = costs_of(scenario, safety, seeds, seed, periods)
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


def tune_menu(scenario: Scenario, seeds: int = 16, seed: int = 777, sweeps: int = 3,
              periods: int | None = None) -> dict[str, object]:
    """The best constant menu entries (forecast base-stock) per role: coordinate search, one role at a time, first
    over every fifth entry of the menu, then over the entries next to the best, and after the three roles the
    warehouse and supplier moved together (their echelons' stock is coupled: one moved alone leaves the other's
    choice best, and the search stalls; measured on held-out chains, tuned base-stock then cost up to 6 % less);
    every candidate on the same ``periods`` days (default: the horizon) of demand paths."""
    best = {role: reference_index(role) for role in ROLES}
    demand = sample_demand(scenario, seeds, np.random.default_rng(seed), periods)
    last = len(SAFETY_FACTORS) - 1

    def search(candidates: list[dict[str, int]]) -> float:
        """Every candidate (the entries it changes; the others at their best so far) as a block of one batched
        rollout; the best is kept."""
        choices = {r: [c.get(r, best[r]) for c in candidates] for r in ROLES}
        mix = PolicyMix(*(MenuPolicy(r, BlockChooser(np.array(choices[r]), seeds)) for r in ROLES))
        costs = block_costs(scenario, mix, demand, len(candidates))
        best.update(candidates[int(np.argmin(costs))])
        return float(costs.min())

    def along(role: str, entries) -> list[dict[str, int]]:
        return [{role: i} for i in sorted(set(entries))]

    def upstream(shifts) -> list[dict[str, int]]:
        """The warehouse and the supplier moved together by each of ``shifts`` entries (within the menu)."""
        moved = {(min(max(best["warehouse"] + d, 0), last), min(max(best["supplier"] + d, 0), last))
                 for d in shifts}
        return [{"warehouse": w, "supplier": s} for w, s in sorted(moved)]

    cost = math.inf
    for _ in range(sweeps):
        for role in ROLES:
            search(along(role, [*range(0, last + 1, MENU_STRIDE), best[role]]))
            near = range(max(0, best[role] - MENU_STRIDE + 1), min(last, best[role] + MENU_STRIDE - 1) + 1)
            cost = search(along(role, near))
        search(upstream(range(-4 * MENU_STRIDE, 4 * MENU_STRIDE + 1, MENU_STRIDE)))
        cost = search(upstream(range(-MENU_STRIDE + 1, MENU_STRIDE)))
    return {"safety_factors": {role: SAFETY_FACTORS[i] for role, i in best.items()}, "cost_per_day": cost}


def tuned_safety_factors(scenario: Scenario) -> dict[str, float]:
    """Each role's best constant menu entry for ``scenario`` (``tune_menu`` on ``MENU_SEEDS`` paths of its horizon):
    the rule ``tuned_forecast_base_stock``, and what the learned policies observe and correct. About 1 s at one
    store, 2 s at 3, 5 s at 50."""
    return dict(tune_menu(scenario, seeds=MENU_SEEDS)["safety_factors"])


@dataclass(frozen=True)
class TunedCappedBaseStock:
    """The best capped base-stock (S, cap) found for a single store and its simulated cost."""

    level: float  # units of inventory position
    cap: float  # units per order
    warehouse_level: float  # echelon base-stock levels upstream (from ``tune_base_stock``; unused when ample)
    supplier_level: float
    cost_per_day: float  # mean over the tuning seeds
    candidates_evaluated: int

    def mix(self) -> PolicyMix:
        return capped_mix(self.level, self.cap, self.warehouse_level, self.supplier_level)


def capped_mix(level: float, cap: float, warehouse_level: float, supplier_level: float) -> PolicyMix:
    """The single store on capped base-stock (``cap`` inf: none), the upstream roles on echelon base-stock."""
    return PolicyMix(CappedBaseStock("store", level, cap), BaseStock("warehouse", warehouse_level, echelon=True),
                     BaseStock("supplier", supplier_level, echelon=True))


def tune_capped_base_stock(scenario: Scenario, seeds: int = 8, periods: int | None = None,
                           seed: int = 12345) -> TunedCappedBaseStock:
    """Search (S, cap) for a single store by simulation on common random numbers: a coarse grid of
    levels (mean x L, from 2 standard deviations of the lead-time demand below to 4 above, in steps
    of half a deviation) and caps (mean - sd to mean + 4 sd of a day's demand in half-sd steps,
    and none), then a fine grid one coarse step around the best: whole units for integer demand,
    quarter steps otherwise. Upstream roles follow ``tune_base_stock`` (an ample source ignores them)."""
    if scenario.num_stores != 1:
        raise ScenarioError(f"stores: got {scenario.num_stores}; allowed: 1 for the capped base-stock tuner")
    demand = sample_demand(scenario, seeds, np.random.default_rng(seed), periods)
    if scenario.upstream == "ample":
        warehouse = supplier = 0.0
    else:
        tuned = tune_base_stock(scenario, seeds, periods, seed)
        warehouse, supplier = tuned.warehouse_level, tuned.supplier_level
    mean, sd = (float(x[0]) for x in store_demand_stats(scenario))
    lead = scenario.lead_times.warehouse_to_store
    spread = sd * math.sqrt(lead)
    integer = scenario.whole_units

    def steps(scale: float) -> tuple[float, float]:
        """(coarse step, fine step) for a parameter whose natural scale is ``scale`` units."""
        return (max(1.0, round(scale / 2.0)), 1.0) if integer else (scale / 2.0, scale / 8.0)

    def around(centre: float, step: float, unit: float, low: float) -> np.ndarray:
        values = centre + unit * np.arange(-round(step / unit), round(step / unit) + 1)
        return values[values >= low]

    (level_step, level_unit), (cap_step, cap_unit) = steps(spread), steps(sd)
    low_level, low_cap = max(0.0, mean * lead - 2.0 * spread), max(cap_unit, mean - sd)
    if integer:
        low_level, low_cap = math.floor(low_level), math.floor(low_cap)
    levels = np.arange(low_level, mean * lead + 4.0 * spread + level_step, level_step)
    caps = np.append(np.arange(low_cap, mean + 4.0 * sd + cap_step, cap_step), np.inf)
    grid = np.array(list(itertools.product(levels, caps)))

    def costs(candidates: np.ndarray) -> np.ndarray:
        s = demand.shape[0]
        mix = PolicyMix(CappedBaseStock("store", np.repeat(candidates[:, :1], s, axis=0),
                                        np.repeat(candidates[:, 1:], s, axis=0)),
                        BaseStock("warehouse", warehouse, echelon=True), BaseStock("supplier", supplier, echelon=True))
        return block_costs(scenario, mix, demand, len(candidates))

    coarse = costs(grid)
    level, cap = grid[int(np.argmin(coarse))]
    near_caps = around(cap, cap_step, cap_unit, cap_unit) if math.isfinite(cap) else np.array([np.inf])
    near = np.array(list(itertools.product(around(level, level_step, level_unit, 0.0), near_caps)))
    fine = costs(near)  # the coarse winner is among them
    best = int(np.argmin(fine))
    return TunedCappedBaseStock(level=float(near[best, 0]), cap=float(near[best, 1]), warehouse_level=warehouse,
                                supplier_level=supplier, cost_per_day=float(fine[best]),
                                candidates_evaluated=len(grid) + len(near))
