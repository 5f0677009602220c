"""Reconciliation: ledgers add up, prices times quantities, rewards are minus costs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from reference import random_actions, random_demand, random_scenario, random_state

from core.agents.rules import reorder_point_mix
from core.simulation.demand import sample_demand
from core.simulation.presets import get_preset
from core.simulation.reconcile import Ledger, node_names, reconcile
from core.simulation.rollout import kpis, rollout
from core.simulation.scenario import Costs, RewardWeights
from core.simulation.twin import reset, step


def _periods(seed: int, count: int = 25):
    """(scenario, flows, state) of random periods; every third scenario charges every price."""
    rng = np.random.default_rng(seed)
    scenario = random_scenario(rng)
    if seed % 3 == 0:
        scenario = dataclasses.replace(scenario, costs=dataclasses.replace(
            scenario.costs, order=float(rng.uniform(1, 40)), transport=float(rng.uniform(0.1, 2)),
            production=float(rng.uniform(0.1, 3))))
    state = reset(scenario, 3)
    if seed % 2:
        state = random_state(rng, state, scenario)
    for _ in range(count):
        state, flows = step(state, random_actions(rng, scenario, 3), random_demand(rng, scenario, 3), scenario)
        yield scenario, flows, state


@pytest.mark.parametrize("seed", range(12))
def test_ledger_adds_up(seed: int) -> None:
    for scenario, f, s in _periods(seed):
        n = scenario.num_stores
        c = scenario.costs
        led = reconcile(f, s, scenario)
        for name in Ledger.FIELDS:
            assert getattr(led, name).shape == (3, n + 2), name
            assert np.isfinite(getattr(led, name)).all(), name
        assert len(node_names(n)) == n + 2 and node_names(n)[-2:] == ["warehouse", "supplier"]
        # Default weights: every node's reward is minus its own cost, so the rewards sum to minus the system cost.
        np.testing.assert_allclose(led.reward, -led.total_cost, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(led.reward.sum(axis=1), -led.total_cost.sum(axis=1), rtol=1e-12, atol=1e-9)
        parts = led.holding_cost + led.stockout_cost + led.ordering_cost + led.transport_cost + led.production_cost
        np.testing.assert_allclose(led.total_cost, parts, rtol=1e-12, atol=1e-9)
        assert ((led.fill_rate >= 0) & (led.fill_rate <= 1)).all()
        assert (led.total_cost >= 0).all()
        # Who asked for what and what was served.
        np.testing.assert_array_equal(led.demand[:, :n], f.demand)
        np.testing.assert_allclose(led.demand[:, n], f.store_orders.sum(axis=1))
        np.testing.assert_allclose(led.demand[:, n + 1], f.warehouse_order)
        np.testing.assert_allclose(led.filled[:, n], f.warehouse_shipped.sum(axis=1))
        np.testing.assert_allclose(led.unmet, led.demand - led.filled)
        # Prices x quantities.
        np.testing.assert_allclose(led.holding_cost[:, :n], c.store_holding * f.store_held)
        np.testing.assert_allclose(led.holding_cost[:, n], c.warehouse_holding * f.warehouse_held)
        np.testing.assert_allclose(led.holding_cost[:, n + 1], c.supplier_holding * f.supplier_held)
        short = s.store_backorders if scenario.unmet_demand == "backorders" else f.unmet
        np.testing.assert_allclose(led.stockout_cost[:, :n], c.stockout * short)
        assert (led.stockout_cost[:, n:] == 0).all()
        np.testing.assert_allclose(led.ordering_cost[:, :n], c.order * (f.store_orders > 0))
        np.testing.assert_allclose(led.ordering_cost[:, n], c.order * (f.warehouse_order > 0))
        assert (led.ordering_cost[:, n + 1] == 0).all()
        assert (led.transport_cost[:, :n] == 0).all()
        np.testing.assert_allclose(led.transport_cost[:, n], c.transport * f.warehouse_shipped.sum(axis=1))
        np.testing.assert_allclose(led.transport_cost[:, n + 1], c.transport * f.supplier_shipped)
        assert (led.production_cost[:, : n + 1] == 0).all()
        np.testing.assert_allclose(led.production_cost[:, n + 1], c.production * f.production_started)


def test_priced_periods_really_charge_every_price() -> None:
    """The property test above is not vacuous: orders, shipments and production were charged."""
    totals = np.zeros(3)
    for seed in (0, 3, 6, 9):
        for scenario, f, s in _periods(seed):
            led = reconcile(f, s, scenario)
            totals += [led.ordering_cost.sum(), led.transport_cost.sum(), led.production_cost.sum()]
    assert (totals > 0).all(), totals


def test_an_ample_source_costs_nothing() -> None:
    """With an ample source every price is charged to the store alone: its holding on shelf stock,
    its lost sales, its orders; the source's shipping, holding and production cost nothing."""
    rng = np.random.default_rng(31)
    scenario = dataclasses.replace(
        get_preset("lost_sales_textbook"), costs=Costs(store_holding=1.0, warehouse_holding=0.5, supplier_holding=0.25,
                                                       stockout=4.0, order=3.0, transport=0.7, production=0.9))
    state = reset(scenario, 4)
    charged = 0.0
    for _ in range(60):
        state, f = step(state, random_actions(rng, scenario, 4), random_demand(rng, scenario, 4), scenario)
        led = reconcile(f, state, scenario)
        assert (led.total_cost[:, 1:] == 0).all()
        np.testing.assert_allclose(led.total_cost[:, 0], 1.0 * f.store_held[:, 0] + 4.0 * f.unmet[:, 0]
                                   + 3.0 * (f.store_orders[:, 0] > 0), rtol=1e-12)
        charged += float((f.warehouse_shipped > 0).sum())
    assert charged > 100  # the source really shipped


def test_reward_weights_formula() -> None:
    """reward = service * fill_rate - (holding * h + stockout * s + excess * excess + ordering * other)."""
    scenario = dataclasses.replace(
        get_preset("promo_shock"), costs=Costs(store_holding=0.5, warehouse_holding=0.25, supplier_holding=0.1,
                                               stockout=10.0, order=5.0, transport=0.2, production=0.3),
        reward_weights=RewardWeights(service=3.0, holding=0.7, stockout=2.0, excess=0.05, ordering=1.5),
        excess_cover_days=3.0)
    rng = np.random.default_rng(8)
    state = reset(scenario, 4)
    means = np.array([m.mean for m in scenario.stores])
    target = 3.0 * np.concatenate([means, [means.sum(), means.sum()]])
    excess_seen = 0.0
    for _ in range(30):
        state, f = step(state, random_actions(rng, scenario, 4), random_demand(rng, scenario, 4), scenario)
        led = reconcile(f, state, scenario)
        np.testing.assert_allclose(led.excess_inventory, np.maximum(led.on_hand - target, 0.0))
        other = led.ordering_cost + led.transport_cost + led.production_cost
        expected = 3.0 * led.fill_rate - (0.7 * led.holding_cost + 2.0 * led.stockout_cost
                                          + 0.05 * led.excess_inventory + 1.5 * other)
        np.testing.assert_allclose(led.reward, expected, rtol=1e-12, atol=1e-9)
        excess_seen += led.excess_inventory.sum()
    assert excess_seen > 0


def test_kpis_are_the_ledger_summed_over_nodes() -> None:
    scenario = get_preset("seasonal")
    demand = sample_demand(scenario, 6, np.random.default_rng(4), 90)
    run = rollout(scenario, reorder_point_mix(), demand)
    k = kpis(run, warmup=10)
    total = run.ledger["total_cost"][10:].sum(axis=2).mean(axis=0)
    np.testing.assert_allclose(k["cost_per_day"], total)
    np.testing.assert_allclose(k["reward_per_day"], -k["cost_per_day"], rtol=1e-12)
    np.testing.assert_allclose(k["holding_cost_per_day"] + k["stockout_cost_per_day"] + k["other_cost_per_day"],
                               k["cost_per_day"], rtol=1e-12)
    n = scenario.num_stores
    served = run.ledger["filled"][10:, :, :n].sum(axis=(0, 2))
    np.testing.assert_allclose(k["fill_rate"], served / demand[:, 10:].sum(axis=(1, 2)))
    np.testing.assert_allclose(k["lost_sales_per_day"], (demand[:, 10:].sum(axis=(1, 2)) - served) / 80)
    assert ((k["fill_rate"] > 0) & (k["fill_rate"] <= 1)).all()
