"""The exact optimum (core.evaluation.optimum) against published answers, against the twin's
simulation of the same policies, and its command line."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy.stats import poisson

from core.agents.rules import BaseStock, CappedBaseStock, PolicyMix
from core.agents.tuning import tune_capped_base_stock
from core.cli import main
from core.evaluation.optimum import (
    MAX_TRANSITIONS,
    TablePolicy,
    evaluate_policy,
    simplex,
    simplex_ranks,
    solve,
)
from core.serving.policy_spec import parse_policy
from core.simulation.demand import sample_demand
from core.simulation.presets import get_preset
from core.simulation.rollout import simulate
from core.simulation.scenario import Costs, DemandModel, LeadTimes, ScenarioError

ZIPKIN = get_preset("lost_sales_textbook")


def _with_lead_time(scenario, days: int):
    return dataclasses.replace(scenario, lead_times=dataclasses.replace(scenario.lead_times, warehouse_to_store=days))


def _newsvendor(mean: float = 6.0, lead_time: int = 1):
    """Snyder and Shen, Example 4.7: Poisson(6), h = 1, p = 4, backorders, zero lead time (1 in the twin)."""
    return dataclasses.replace(
        ZIPKIN, stores=(DemandModel(mean=mean, dispersion=math.sqrt(mean) / mean),), unmet_demand="backorders",
        lead_times=LeadTimes(production=1, supplier_to_warehouse=1, warehouse_to_store=lead_time),
        costs=Costs(store_holding=1.0, warehouse_holding=0.0, supplier_holding=0.0, stockout=4.0))


# --- published answers ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def zipkin():
    return solve(ZIPKIN)


def test_zipkin_lost_sales_optimum(zipkin) -> None:
    """Zipkin (2008), Table 3, Poisson(5), h = 1, p = 4, lead time 4 (the twin's 5): 4.73."""
    low, high = zipkin.cost_bounds
    assert low <= zipkin.cost_per_day <= high and high - low < 1e-5
    assert abs(zipkin.cost_per_day - 4.73) < 0.01, zipkin.cost_per_day
    # The truncation never binds: no order fills the inventory position up to the bound.
    after = zipkin.states.sum(axis=1) + zipkin.orders
    assert after[zipkin.orders > 0].max() < zipkin.bound
    # Fewer units on order as more are in the pipeline (the known structure, Zipkin 2008).
    assert zipkin.orders[0] > 0 and zipkin.orders[after > zipkin.bound - 2].max() == 0


@pytest.mark.parametrize(("zipkin_lead_time", "published"), [(1, 4.04), (2, 4.40), (3, 4.60)])
def test_zipkin_shorter_lead_times(zipkin_lead_time: int, published: float) -> None:
    """The same table, lead times 1 to 3 (the twin's 2 to 4)."""
    cost = solve(_with_lead_time(ZIPKIN, zipkin_lead_time + 1)).cost_per_day
    assert abs(cost - published) < 0.005 + 1e-9, cost


def test_newsvendor_closed_form() -> None:
    """Backorders, zero lead time: S* = 8, cost 3.5701 (Snyder and Shen, Example 4.7); every
    base-stock level costs h E[(S - D)+] + p E[(D - S)+]."""
    scenario = _newsvendor()
    optimum = solve(scenario)
    position = optimum.states[:, 0]
    assert (position + optimum.orders)[position <= 8].tolist() == [8] * int((position <= 8).sum())
    assert (optimum.orders[position > 8] == 0).all()
    assert abs(optimum.cost_per_day - 3.5701) < 1e-4, optimum.cost_per_day
    demand = np.arange(200)
    for level in range(3, 14):
        closed = float(np.sum(poisson.pmf(demand, 6.0) * (1.0 * np.maximum(level - demand, 0)
                                                          + 4.0 * np.maximum(demand - level, 0))))
        assert evaluate_policy(scenario, level).cost_per_day == pytest.approx(closed, abs=1e-6), level
    assert evaluate_policy(scenario, 8).cost_per_day == pytest.approx(optimum.cost_per_day, abs=1e-6)


# --- the strongest rules, exactly -------------------------------------------------------------------

def test_base_stock_and_capped_base_stock_gaps(zipkin) -> None:
    """Best base-stock S = 25 is 9.9 % above the optimum; capped base-stock (26, 5) 1.5 %."""
    base = {s: evaluate_policy(ZIPKIN, s).cost_per_day for s in (24, 25, 26)}
    assert min(base, key=base.get) == 25
    assert 0.09 < base[25] / zipkin.cost_per_day - 1 < 0.11
    capped = {(s, c): evaluate_policy(ZIPKIN, s, c).cost_per_day for s, c in ((26, 5), (25, 5), (27, 5), (26, 4),
                                                                               (26, 6))}
    assert min(capped, key=capped.get) == (26, 5)
    assert 0.01 < capped[26, 5] / zipkin.cost_per_day - 1 < 0.02
    # A cap no order reaches is base-stock.
    assert evaluate_policy(ZIPKIN, 25, 30).cost_per_day == pytest.approx(base[25], abs=1e-9)


def test_capped_tuner_finds_the_best_capped_policy() -> None:
    """Tuned by simulation (8 seeds x 1000 days), priced exactly: within 0.5 % of the best (26, 5)."""
    tuned = tune_capped_base_stock(ZIPKIN)
    assert tuned.level == int(tuned.level) and tuned.cap == int(tuned.cap)
    exact = evaluate_policy(ZIPKIN, int(tuned.level), int(tuned.cap)).cost_per_day
    assert exact < 1.005 * evaluate_policy(ZIPKIN, 26, 5).cost_per_day, tuned


# --- the programme against the twin -----------------------------------------------------------------

def _simulated(scenario, store) -> dict[str, float]:
    """200 chains x 2,000 days after 100 days of warm-up: a standard error near 0.2 % of the cost."""
    mix = PolicyMix(store, BaseStock("warehouse", 0.0), BaseStock("supplier", 0.0))
    return simulate(scenario, mix, seeds=200, periods=2100, seed=2718, warmup=100)["cost_per_day"]


@pytest.mark.parametrize("policy", ["base_stock", "capped_base_stock", "optimal"])
def test_programme_agrees_with_the_twin_on_the_zipkin_instance(zipkin, policy: str) -> None:
    if policy == "base_stock":
        store, exact = BaseStock("store", 25.0), evaluate_policy(ZIPKIN, 25).cost_per_day
    elif policy == "capped_base_stock":
        store, exact = CappedBaseStock("store", 26.0, 5.0), evaluate_policy(ZIPKIN, 26, 5).cost_per_day
    else:
        store, exact = TablePolicy(zipkin), zipkin.cost_per_day
    cost = _simulated(ZIPKIN, store)
    assert 0 < cost["se"] < 0.005 * exact, cost
    assert abs(cost["mean"] - exact) < 3 * cost["se"], (policy, exact, cost)


def test_programme_agrees_with_the_twin_with_backorders_and_overdispersed_demand() -> None:
    """Backorders with lead time 3 (the position reduction), and lost sales with negative-binomial
    demand (coefficient of variation 0.8 at mean 4, lead time 2): optimal policies simulated."""
    backorders = _with_lead_time(_newsvendor(), 3)
    lumpy = _with_lead_time(dataclasses.replace(ZIPKIN, stores=(DemandModel(mean=4.0, dispersion=0.8),)), 2)
    for scenario in (backorders, lumpy):
        optimum = solve(scenario)
        cost = _simulated(scenario, TablePolicy(optimum))
        assert 0 < cost["se"] < 0.005 * optimum.cost_per_day, cost
        assert abs(cost["mean"] - optimum.cost_per_day) < 3 * cost["se"], (scenario.unmet_demand, optimum, cost)


def test_demand_distribution_is_the_twins() -> None:
    """The programme's negative binomial is what the twin draws: frequencies of 0..30 units."""
    from core.evaluation.optimum import demand_distribution

    scenario = dataclasses.replace(ZIPKIN, stores=(DemandModel(mean=4.0, dispersion=0.8),))
    draws = sample_demand(scenario, 50, np.random.default_rng(3), 2000).ravel().astype(int)
    frequency = np.bincount(draws, minlength=31)[:31] / draws.size
    expected = demand_distribution(scenario).pmf(np.arange(31))
    # 100,000 draws: binomial standard error at most 0.0016 per frequency.
    assert np.abs(frequency - expected).max() < 4 * math.sqrt(0.25 / draws.size)


# --- state spaces and the command line ---------------------------------------------------------------

@pytest.mark.parametrize(("length", "bound"), [(1, 7), (2, 5), (4, 6), (5, 3)])
def test_simplex_ranks_count_in_order(length: int, bound: int) -> None:
    rows = simplex(length, bound)
    assert len(rows) == math.comb(bound + length, length) == len({tuple(r) for r in rows})
    assert (rows.sum(axis=1) <= bound).all() and (rows >= 0).all()
    assert [tuple(r) for r in rows] == sorted(tuple(r) for r in rows)
    np.testing.assert_array_equal(simplex_ranks(list(rows.T), bound), np.arange(len(rows)))


def test_cli_prints_the_optimum_and_writes_the_policy(tmp_path, capsys) -> None:
    out = tmp_path / "policy.csv"
    assert main(["optimum", "--scenario", "lost_sales_textbook", "--policy-out", str(out)]) == 0
    assert "exact cost per day 4.7285" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0].split(",") == ["on_hand_plus_arriving_in_1", "arriving_in_2", "arriving_in_3", "arriving_in_4",
                                   "inventory_position", "order"]
    table = np.array([[int(v) for v in line.split(",")] for line in lines[1:]])
    np.testing.assert_array_equal(table[:, 4], table[:, :4].sum(axis=1))
    assert len(table) == math.comb(35 + 4, 4) and table[0].tolist() == [0, 0, 0, 0, 0, 6]


def test_cli_refuses_too_large_and_unsupported_instances(tmp_path, capsys) -> None:
    big = tmp_path / "big.json"
    big.write_text(_with_lead_time(ZIPKIN, 6).to_json())
    assert main(["optimum", "--scenario", str(big)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and f"at most {MAX_TRANSITIONS:,}" in err, err
    for ref, field in (("steady", "stores: got 3 stores"), ("serial_textbook", "upstream: got 'network'")):
        assert main(["optimum", "--scenario", ref]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and field in err, err
    normal = tmp_path / "normal.json"
    normal.write_text(dataclasses.replace(ZIPKIN, stores=(DemandModel(mean=5.0, distribution="normal"),)).to_json())
    assert main(["optimum", "--scenario", str(normal)]) == 2
    assert "stores[0].distribution: got 'normal'" in capsys.readouterr().err
    with pytest.raises(ScenarioError, match="cap: got 0"):
        evaluate_policy(ZIPKIN, 26, 0)


def test_capped_base_stock_policy_spec(capsys) -> None:
    """``--policy store=capped_base_stock:level=S:cap=C`` is the rule above; the cap is required."""
    spec = "store=capped_base_stock:level=26:cap=5"
    mix = parse_policy(spec, ZIPKIN, np.random.default_rng(0))
    assert isinstance(mix.store, CappedBaseStock) and (float(mix.store.level[0]), mix.store.cap) == (26.0, 5.0)
    assert main(["simulate", "--scenario", "lost_sales_textbook", "--policy", spec, "--seeds", "3",
                 "--periods", "50", "--json"]) == 0
    assert '"policy": "store=capped_base_stock' in capsys.readouterr().out
    assert main(["simulate", "--scenario", "lost_sales_textbook", "--policy",
                 "store=capped_base_stock:level=26"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing cap" in err, err
