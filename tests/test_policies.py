"""Rule-based policies and the base-stock tuner: the presets pose a real problem, the baseline is
sensible, and the tuner beats it on demand it has not seen."""

from __future__ import annotations

import numpy as np
import pytest

from core.agents.menus import reference_policy
from core.agents.roles import ROLE, ROLES
from core.agents.rules import (
    BaseStock,
    PolicyMix,
    ReorderPoint,
    random_mix,
    reorder_point_mix,
    store_demand_stats,
)
from core.agents.tuning import levels_for, tune_base_stock
from core.simulation.presets import PRESETS, get_preset
from core.simulation.rollout import simulate
from core.simulation.twin import reset


def reference_mix() -> PolicyMix:
    return PolicyMix(*(reference_policy(role) for role in ROLES))


RETAIL = sorted(name for name in PRESETS if name not in ("serial_textbook", "lost_sales_textbook"))


# --- 7. the presets are not degenerate ----------------------------------------------------------

@pytest.mark.parametrize("name", RETAIL)
def test_random_policy_is_clearly_worse_than_the_baseline(name: str) -> None:
    scenario = get_preset(name)
    baseline = simulate(scenario, reference_mix(), seeds=30, seed=404)  # forecast base-stock
    rand = simulate(scenario, random_mix(np.random.default_rng(0)), seeds=30, seed=404)  # same customers
    assert rand["cost_per_day"]["mean"] > 1.2 * baseline["cost_per_day"]["mean"], (rand["cost_per_day"],
                                                                                  baseline["cost_per_day"])
    total = baseline["cost_per_day"]["mean"]
    # A real trade-off: the baseline pays for stock and for shortages.
    assert baseline["holding_cost_per_day"]["mean"] > 0.01 * total, baseline
    assert baseline["stockout_cost_per_day"]["mean"] > 0.01 * total, baseline
    parts = sum(baseline[k]["mean"] for k in ("holding_cost_per_day", "stockout_cost_per_day", "other_cost_per_day"))
    assert abs(parts - total) < 1e-9 * total
    assert 0.5 < baseline["fill_rate"]["mean"] < 1.0


def test_policy_positions_and_orders() -> None:
    """Base-stock orders up to its level of local or echelon position; (s, S) only at or below s."""
    scenario = get_preset("steady")
    state = reset(scenario, 2)
    stores = state.store_on_hand + state.store_pipeline.sum(axis=2) - state.store_backorders
    warehouse = state.warehouse_on_hand + state.warehouse_pipeline.sum(axis=1)
    supplier = state.supplier_on_hand + state.production_pipeline.sum(axis=1)
    assert np.allclose(ROLE["store"].local_position(state), stores)
    assert np.allclose(ROLE["warehouse"].local_position(state), warehouse)
    assert np.allclose(ROLE["supplier"].local_position(state), supplier)
    assert np.allclose(ROLE["warehouse"].echelon_position(state), warehouse + stores.sum(axis=1))
    assert np.allclose(ROLE["supplier"].echelon_position(state), supplier + warehouse + stores.sum(axis=1))
    in_network = state.units_in_network - state.store_backorders.sum(axis=1)
    assert np.allclose(ROLE["supplier"].echelon_position(state), in_network)
    level = ROLE["supplier"].echelon_position(state)[0] + 50.0
    assert np.allclose(BaseStock("supplier", level, echelon=True).act(state, scenario), [50.0, 50.0])
    assert np.allclose(BaseStock("supplier", 0.0, echelon=True).act(state, scenario), 0.0)
    s, big_s = ReorderPoint("store").levels(scenario)
    mean, sd = store_demand_stats(scenario)
    lead = scenario.lead_times.warehouse_to_store
    assert np.allclose(s, mean * lead + 1.65 * sd * np.sqrt(lead)) and np.allclose(big_s, s + 7 * mean)
    orders = ReorderPoint("store").act(state, scenario)
    expected = np.where(stores <= s, big_s - stores, 0.0)
    assert np.allclose(orders, expected)


# --- 8. the tuner -------------------------------------------------------------------------------

@pytest.mark.slow
def test_tuned_base_stock_beats_the_baseline_on_held_out_seeds() -> None:
    scenario = get_preset("steady")
    tuned = tune_base_stock(scenario, seeds=4, periods=200, seed=11)
    assert tuned.candidates_evaluated > 100
    assert len(tuned.store_levels) == scenario.num_stores
    stores, warehouse, supplier = levels_for(scenario, np.array([tuned.safety_factors]))
    assert np.allclose(stores[0], tuned.store_levels)
    assert np.isclose(warehouse[0], tuned.warehouse_level) and np.isclose(supplier[0], tuned.supplier_level)
    held_out_tuned = simulate(scenario, tuned.mix(), seeds=30, seed=999)["cost_per_day"]
    held_out_baseline = simulate(scenario, reorder_point_mix(), seeds=30, seed=999)["cost_per_day"]
    assert held_out_tuned["mean"] + 3 * held_out_tuned["se"] < held_out_baseline["mean"], (held_out_tuned,
                                                                                          held_out_baseline)


@pytest.mark.slow
def test_tuner_finds_clark_scarf_cost_on_the_textbook_chain() -> None:
    scenario = get_preset("serial_textbook")
    tuned = tune_base_stock(scenario, seeds=8, periods=500, seed=11)
    held_out = simulate(scenario, tuned.mix(), seeds=100, periods=1050, seed=998, warmup=50)["cost_per_day"]
    assert abs(held_out["mean"] - 47.65) < 0.03 * 47.65, (tuned, held_out)
    # ...and nothing does better than the optimum beyond noise.
    assert held_out["mean"] > 47.65 - 3 * held_out["se"] - 0.005 * 47.65
