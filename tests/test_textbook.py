"""The twin against closed-form and published results: the newsvendor and Clark-Scarf.

Both are long Monte Carlo runs on the batched twin (a few seconds in all).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.stats import norm

from core.agents.rules import base_stock_mix
from core.simulation.demand import sample_demand
from core.simulation.presets import get_preset
from core.simulation.rollout import kpis, rollout, simulate
from core.simulation.scenario import Costs, DemandModel, LeadTimes

# --- 4. newsvendor ------------------------------------------------------------------------------

MU, SIGMA, H, P = 120.0, 10.0, 2.0, 18.0


def newsvendor_scenario():
    """One store, N(120, 10) demand, backorders, h = 2, p = 18, every lead time 1 (ordered
    tonight, on the shelf tomorrow morning: the zero-lead-time newsvendor). Upstream holds
    nothing and is never short."""
    return dataclasses.replace(
        get_preset("serial_textbook"),
        stores=(DemandModel(mean=MU, dispersion=SIGMA / MU, distribution="normal"),),
        costs=Costs(store_holding=H, warehouse_holding=0.0, supplier_holding=0.0, stockout=P),
        lead_times=LeadTimes(production=1, supplier_to_warehouse=1, warehouse_to_store=1),
        unmet_demand="backorders",
    )


def newsvendor_cost(level: float) -> float:
    """h E[(S - D)+] + p E[(D - S)+] for D ~ N(mu, sigma)."""
    z = (level - MU) / SIGMA
    loss = norm.pdf(z) - z * norm.sf(z)  # standard normal loss function E[(Z - z)+]
    return H * (level - MU) + (H + P) * SIGMA * loss


def test_newsvendor_closed_form_numbers() -> None:
    """The constants used below are the textbook's: S* = mu + sigma z_0.9, g* = (h + p) sigma phi(z)."""
    z = norm.ppf(P / (H + P))
    assert math.isclose(MU + SIGMA * z, 132.8155, abs_tol=1e-4)
    assert math.isclose((H + P) * SIGMA * norm.pdf(z), 35.0997, abs_tol=1e-4)
    assert math.isclose(newsvendor_cost(132.8155), 35.0997, abs_tol=1e-4)


def _newsvendor_run(level: float) -> dict[str, float]:
    return simulate(newsvendor_scenario(), base_stock_mix(level, 1e6, 1e6), seeds=400, periods=300,
                    seed=2024, warmup=20)["cost_per_day"]


@pytest.mark.slow
def test_newsvendor_optimal_cost() -> None:
    cost = _newsvendor_run(132.8155)
    assert cost["se"] > 0
    assert abs(cost["mean"] - 35.0997) < 3 * cost["se"], cost
    assert abs(cost["mean"] - 35.0997) < 0.01 * 35.0997, cost


@pytest.mark.slow
def test_newsvendor_cost_curve_and_optimality() -> None:
    """10 units below and above the optimum cost more, on the same demand, and as the formula says."""
    best = _newsvendor_run(132.8155)
    for level in (122.8155, 142.8155):
        cost = _newsvendor_run(level)
        assert cost["mean"] > best["mean"] + 3 * (cost["se"] + best["se"]), (level, cost, best)
        assert abs(cost["mean"] - newsvendor_cost(level)) < max(3 * cost["se"], 0.005 * newsvendor_cost(level))


@pytest.mark.slow
def test_newsvendor_store_is_never_short_of_supply() -> None:
    """The premise of the comparison: after warm-up the warehouse ships every store order."""
    scenario = newsvendor_scenario()
    demand = sample_demand(scenario, 20, np.random.default_rng(1), 60)
    run = rollout(scenario, base_stock_mix(132.8155, 1e6, 1e6), demand)
    warehouse = run.num_stores
    assert np.allclose(run.ledger["fill_rate"][5:, :, warehouse], 1.0)


# --- 5. Clark-Scarf (Snyder and Shen, Example 6.1) -----------------------------------------------

LEVELS = (6.49, 12.02, 22.71)  # echelon base-stock levels: store (= local), warehouse, supplier
PUBLISHED_COST = 47.65


@pytest.mark.slow
def test_clark_scarf_published_cost() -> None:
    """200 chains x 1000 periods after a 50-period warm-up = 200,000 periods."""
    cost = simulate(get_preset("serial_textbook"), base_stock_mix(*LEVELS, echelon=True), seeds=200,
                    periods=1050, seed=61, warmup=50)["cost_per_day"]
    assert cost["se"] > 0
    # The published levels are rounded to 0.01: allow 0.5 % for that on top of 3 standard errors.
    assert abs(cost["mean"] - PUBLISHED_COST) < max(3 * cost["se"], 0.005 * PUBLISHED_COST), cost
    assert abs(cost["mean"] - PUBLISHED_COST) < 0.01 * PUBLISHED_COST, cost


@pytest.mark.slow
@pytest.mark.parametrize("echelon", [0, 1, 2])
def test_clark_scarf_levels_are_locally_optimal(echelon: int) -> None:
    """Moving any level by +-1.5 units raises the cost (paired comparison on the same demand)."""
    scenario = get_preset("serial_textbook")
    demand = sample_demand(scenario, 100, np.random.default_rng(62), 550)
    base = kpis(rollout(scenario, base_stock_mix(*LEVELS), demand), warmup=50)["cost_per_day"]
    for delta in (-1.5, 1.5):
        levels = list(LEVELS)
        levels[echelon] += delta
        cost = kpis(rollout(scenario, base_stock_mix(*levels), demand), warmup=50)["cost_per_day"]
        diff = cost - base
        se = diff.std(ddof=1) / math.sqrt(diff.size)
        assert diff.mean() > max(5 * se, 0.01 * PUBLISHED_COST), (levels, diff.mean(), se)
