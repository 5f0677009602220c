"""The clairvoyant bound: a known optimum by hand, below every policy on every preset and on random
scenarios, and its plan executed by the twin costs exactly the bound."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from reference import random_scenario

from core.agents.menus import reference_policy
from core.agents.roles import ROLES
from core.agents.rules import BaseStock, CappedBaseStock, PolicyMix, base_stock_mix, random_mix, reorder_point_mix
from core.agents.tuning import tune_base_stock
from core.evaluation.bound import ClairvoyantPlan, bound_summary, clairvoyant_bound, clairvoyant_plans
from core.evaluation.optimum import TablePolicy, solve
from core.serving.models import learned_mix
from core.simulation.demand import sample_demand
from core.simulation.presets import PRESETS
from core.simulation.reconcile import reconcile
from core.simulation.rollout import kpis, rollout
from core.simulation.scenario import Capacities, Costs, DemandModel, Disruption, LeadTimes, Scenario
from core.simulation.twin import Actions, reset, step

# HiGHS's default primal and dual feasibility tolerances are 1e-7 (relative to the data's scale);
# the twin sums float64 costs over at most a few hundred days, far below that.
LP_RTOL = 1e-6


def replay(scenario: Scenario, plans: list[ClairvoyantPlan], demand: np.ndarray) -> dict[str, np.ndarray]:
    """Run the plans' shipments and production through the twin: (B,) cost per day and lost or
    backordered units per day, and the per-day flows of the first path."""
    state = reset(scenario, len(plans))
    total = np.zeros(len(plans))
    cut = np.zeros(len(plans))
    for t in range(demand.shape[1]):
        actions = Actions(store_orders=np.stack([p.store_shipments[t] for p in plans]),
                          warehouse_order=np.array([p.warehouse_shipments[t] for p in plans]),
                          production=np.array([p.production[t] for p in plans]))
        state, flows = step(state, actions, demand[:, t], scenario)
        total += reconcile(flows, state, scenario).total_cost.sum(axis=1)
        cut += (np.abs(flows.warehouse_shipped - actions.store_orders).sum(axis=1)
                + np.abs(flows.supplier_shipped - actions.warehouse_order)
                + np.abs(flows.production_started - actions.production))
    return {"cost_per_day": total / demand.shape[1], "cut": cut}


# --- 1. a known optimum ------------------------------------------------------------------------

def _steady_chain(unmet: str, lead: tuple[int, int, int], periods: int) -> Scenario:
    return Scenario(
        name="steady_chain",
        stores=(DemandModel(mean=10.0, dispersion=0.0, distribution="normal"),),
        lead_times=LeadTimes(production=lead[0], supplier_to_warehouse=lead[1], warehouse_to_store=lead[2]),
        costs=Costs(store_holding=1.0, warehouse_holding=0.5, supplier_holding=0.25, stockout=20.0,
                    transport=0.1, production=0.2),
        unmet_demand=unmet,
        horizon=periods,
        initial_cover_days=0.0,
    )


@pytest.mark.parametrize("unmet", ["lost_sales", "backorders"])
@pytest.mark.parametrize("lead", [(1, 1, 1), (2, 3, 2), (4, 1, 3)])
def test_deterministic_demand_bound_is_the_just_in_time_plan(unmet: str, lead: tuple[int, int, int]) -> None:
    """Constant demand d, no opening stock, the opening pipelines carrying d a day: the cheapest plan
    ships and produces exactly d a day, each unit just in time, so no store holds stock overnight
    and the only holding is the pipeline's; nothing is sent that cannot be sold by the horizon.

    By hand (lead times L_p, L_sw, L_ws; T days): the store sells the opening pipeline on days
    0 .. L_ws - 1, then the shipment of day t - L_ws + 1. The warehouse ships d on days
    1 .. T - L_ws (each unit charged L_ws nights at the warehouse's rate: on hand the night it
    leaves, then in transit) and the opening store pipeline is charged 1 + 2 + ... + L_ws nights
    of d; the supplier ships d on days 1 .. T - L_ws - L_sw (L_sw nights each, the opening
    warehouse pipeline 1 + ... + L_sw nights of d); production starts d on days
    1 .. T - L_ws - L_sw - L_p. Every unit costs less than a lost sale, so none is lost."""
    periods, d = 60, 10.0
    scenario = _steady_chain(unmet, lead, periods)
    l_p, l_sw, l_ws = lead
    c = scenario.costs
    warehouse_units = d * (periods - l_ws)
    supplier_units = d * (periods - l_ws - l_sw)
    produced_units = d * (periods - l_ws - l_sw - l_p)
    by_hand = (c.warehouse_holding * (l_ws * warehouse_units + d * l_ws * (l_ws + 1) / 2)
               + c.supplier_holding * (l_sw * supplier_units + d * l_sw * (l_sw + 1) / 2)
               + c.transport * (warehouse_units + supplier_units) + c.production * produced_units) / periods

    demand = sample_demand(scenario, 2, np.random.default_rng(0))
    assert np.array_equal(demand, np.full((2, periods, 1), d))  # dispersion 0: demand is its mean

    # The hand plan is what it claims in the twin: all demand served, at the cost computed by hand.
    days = np.arange(periods)
    plan = ClairvoyantPlan(
        cost_per_day=by_hand,
        store_shipments=np.where((days >= 1) & (days <= periods - l_ws), d, 0.0)[:, None],
        warehouse_shipments=np.where((days >= 1) & (days <= periods - l_ws - l_sw), d, 0.0),
        production=np.where((days >= 1) & (days <= periods - l_ws - l_sw - l_p), d, 0.0),
        sales=np.full((periods, 1), d),
    )
    state = reset(scenario, 1)
    twin_cost, unserved = 0.0, 0.0
    for t in range(periods):
        actions = Actions(plan.store_shipments[t][None], plan.warehouse_shipments[t:t + 1], plan.production[t:t + 1])
        state, flows = step(state, actions, demand[:1, t], scenario)
        twin_cost += float(reconcile(flows, state, scenario).total_cost.sum())
        unserved += float(flows.unmet.sum())
    assert unserved == 0.0
    assert twin_cost / periods == pytest.approx(by_hand, rel=1e-12)

    bound = clairvoyant_bound(scenario, demand)
    np.testing.assert_allclose(bound, by_hand, rtol=LP_RTOL)
    summary = bound_summary(scenario, demand)
    assert summary["mean"] == pytest.approx(by_hand, rel=LP_RTOL)
    assert summary["low"] <= summary["mean"] <= summary["high"]


@pytest.mark.parametrize("unmet", ["lost_sales", "backorders"])
@pytest.mark.parametrize("store_lead", [1, 3, 5])
def test_ample_source_bound_is_the_just_in_time_plan(unmet: str, store_lead: int) -> None:
    """The steady chain with an ample source and C = 2 days of opening cover: the warehouse and
    supplier are empty and their costs (holding, transport, production: all non-zero) are never
    charged, and the source ships free of charge. The store sells the opening pipeline (d a day,
    mornings 0 .. L_ws - 1) and its opening stock C d, which it cannot get rid of otherwise, so the
    cheapest plan ships nothing in the reviews before days 0 .. C and d a day from day C + 1 until
    the last shipment that arrives by the horizon (day T - L_ws). By hand: C d held on the nights
    before days 0 .. L_ws, then (C - 1) d, ..., d on the following nights: h d (C (L_ws + 1) +
    C (C - 1) / 2) in all; nothing lost or backordered."""
    periods, d, cover = 60, 10.0, 2
    scenario = dataclasses.replace(_steady_chain(unmet, (2, 3, store_lead), periods), upstream="ample",
                                   initial_cover_days=float(cover))
    by_hand = scenario.costs.store_holding * d * (cover * (store_lead + 1) + cover * (cover - 1) / 2) / periods

    demand = sample_demand(scenario, 2, np.random.default_rng(0))
    assert np.array_equal(demand, np.full((2, periods, 1), d))
    days = np.arange(periods)
    shipments = np.where((days > cover) & (days <= periods - store_lead), d, 0.0)[:, None]
    idle = np.zeros(periods)
    hand_plan = ClairvoyantPlan(by_hand, shipments, idle, idle, np.full((periods, 1), d))
    replayed = replay(scenario, [hand_plan], demand[:1])  # the twin executes it in full, at the hand cost
    assert replayed["cut"][0] == 0.0
    assert replayed["cost_per_day"][0] == pytest.approx(by_hand, rel=1e-12)

    plans = clairvoyant_plans(scenario, demand)
    np.testing.assert_allclose([p.cost_per_day for p in plans], by_hand, rtol=LP_RTOL)
    for plan in plans:  # nothing moves upstream
        assert np.abs(plan.warehouse_shipments).max() <= 1e-9 and np.abs(plan.production).max() <= 1e-9


def _opening_transient(scenario: Scenario, demand: np.ndarray) -> np.ndarray:
    """(B,) cost per day of one lost-sales store supplied by an ample source when it knows demand:
    it sells its opening stock and pipeline as demand comes, and from the first morning an order
    can reach (day L_ws - 1) tops every day's stock up to that day's demand, free of charge."""
    costs, lead = scenario.costs, scenario.lead_times.warehouse_to_store
    opening = reset(scenario, demand.shape[0])
    stock = opening.store_on_hand[:, 0].copy()
    total = costs.store_holding * stock  # the night before day 0
    periods = demand.shape[1]
    for t in range(periods):
        if t < lead:
            stock += opening.store_pipeline[:, 0, t]
        if t >= lead - 1:
            stock = np.maximum(stock, demand[:, t, 0])
        sold = np.minimum(stock, demand[:, t, 0])
        stock -= sold
        total += costs.stockout * (demand[:, t, 0] - sold) + (costs.store_holding * stock if t < periods - 1 else 0)
    return total / periods


def test_lost_sales_textbook_bound_is_the_opening_transient_and_below_the_best_policies() -> None:
    """Zipkin's instance (ample source, lead time 5), its own horizon: the twin executes the plan at
    the bound; the bound is exactly the cost of the first days, before any order can arrive (a
    clairvoyant store needs no stock after them); and it lies below the realised cost of capped
    base-stock (26, 5) and of the optimal policy (the dynamic programme's table) on every path."""
    scenario = PRESETS["lost_sales_textbook"]
    demand = sample_demand(scenario, 8, np.random.default_rng(7))
    plans = clairvoyant_plans(scenario, demand)
    bound = np.array([p.cost_per_day for p in plans])
    replayed = replay(scenario, plans, demand)
    np.testing.assert_allclose(replayed["cut"], 0.0, atol=1e-6)
    np.testing.assert_allclose(replayed["cost_per_day"], bound, rtol=LP_RTOL)
    np.testing.assert_allclose(bound, _opening_transient(scenario, demand), rtol=LP_RTOL)

    idle = (BaseStock("warehouse", 0.0), BaseStock("supplier", 0.0))
    for store in (CappedBaseStock("store", 26.0, 5.0), TablePolicy(solve(scenario))):
        cost = kpis(rollout(scenario, PolicyMix(store, *idle), demand))["cost_per_day"]
        assert np.all(bound <= cost * (1 + LP_RTOL)), (store.name, bound, cost)


def test_without_demand_the_bound_holds_the_opening_stock_where_it_is() -> None:
    """No demand: nothing is worth shipping or producing (a shipment arriving on the last morning
    costs the same as staying put), so the cheapest plan pays for the opening stock every night of
    the horizon at the rate of where it lies. A unit of a pipeline arriving on the morning of day k
    is charged k + 1 nights to its shipper, then T - 1 - k nights to the receiver (production in
    progress is free; a store's last evening is not charged); steady's lead times are (2, 3, 2),
    its opening cover 7 days."""
    scenario, periods = PRESETS["steady"], 30
    c, cover = scenario.costs, scenario.initial_cover_days
    total = sum(m.mean for m in scenario.stores)

    def shipper(lead: int) -> float:
        return total * sum(k + 1 for k in range(lead))

    def receiver(lead: int) -> float:
        return total * sum(periods - 1 - k for k in range(lead))

    by_hand = (c.store_holding * (cover * total * periods + receiver(2))
               + c.warehouse_holding * (cover * total * periods + shipper(2) + receiver(3))
               + c.supplier_holding * (cover * total * periods + shipper(3) + receiver(2))) / periods
    plan = clairvoyant_plans(scenario, np.zeros((1, periods, 3)))[0]
    assert plan.cost_per_day == pytest.approx(by_hand, rel=LP_RTOL)


# --- 2. below every policy, path by path --------------------------------------------------------

PRESET_PERIODS = 160  # covers supply_disruption's days 120-149 and the first promotions


@pytest.mark.parametrize("name", list(PRESETS))
def test_bound_lies_below_every_rule_on_every_preset(name: str) -> None:
    """Three sample paths per preset: the bound is below the realised cost of the reorder-point,
    tuned base-stock and forecast base-stock mixes and of the shipped learned hierarchy on each path, is
    not trivially loose (at least a
    quarter of the cheapest rule's cost; measured on these paths: 0.34 to 0.38 on high_volatility,
    0.59 to 0.73 elsewhere; except with an ample source, where a clairvoyant store needs no stock
    once its first order can arrive and the bound is only the opening days' cost, see above),
    and its plan, executed by the twin, costs exactly the bound (nothing cut by the twin)."""
    scenario = PRESETS[name]
    demand = sample_demand(scenario, 3, np.random.default_rng(2024), PRESET_PERIODS)
    plans = clairvoyant_plans(scenario, demand)
    bound = np.array([p.cost_per_day for p in plans])
    mixes = {
        "reorder_point": reorder_point_mix(),
        "tuned_base_stock": tune_base_stock(scenario, seeds=4, periods=PRESET_PERIODS).mix(),
        "forecast_base_stock": PolicyMix(*(reference_policy(r) for r in ROLES)),
        "learned_hierarchy": learned_mix(),
    }
    costs = np.stack([kpis(rollout(scenario, mix, demand))["cost_per_day"] for mix in mixes.values()])
    assert np.all(bound <= costs * (1 + LP_RTOL)), f"{name}: bound {bound} above a policy's cost {costs}"
    if scenario.upstream == "network":
        assert np.all(bound >= 0.25 * costs.min(axis=0)), f"{name}: bound {bound} vs best rule {costs.min(axis=0)}"

    replayed = replay(scenario, plans, demand)
    np.testing.assert_allclose(replayed["cut"], 0.0, atol=1e-6)
    np.testing.assert_allclose(replayed["cost_per_day"], bound, rtol=LP_RTOL)


def _tight_chain(unmet: str) -> Scenario:
    """Two stores whose shelves, the warehouse's storage and the supplier's capacity all bind, a
    disruption that stops production and slows the supplier's deliveries, and every cost non-zero
    except the fixed order cost (which the bound leaves out)."""
    return Scenario(
        name="tight_chain",
        stores=(DemandModel(mean=30.0, dispersion=0.5, distribution="normal"),
                DemandModel(mean=12.0, dispersion=0.8)),
        lead_times=LeadTimes(production=2, supplier_to_warehouse=2, warehouse_to_store=3),
        capacities=Capacities(production=55.0, warehouse_storage=300.0, store_shelf=120.0),
        costs=Costs(store_holding=0.6, warehouse_holding=0.3, supplier_holding=0.1, stockout=8.0,
                    transport=0.2, production=0.5),
        unmet_demand=unmet,
        allocation="lowest_cover_first",
        disruptions=(Disruption(start_day=20, length=12, capacity_loss=1.0, extra_lead_time=3),
                     Disruption(start_day=45, length=10, capacity_loss=0.5)),
        horizon=80,
        initial_cover_days=1.0,
    )


@pytest.mark.parametrize("unmet", ["lost_sales", "backorders"])
def test_plan_respects_the_binding_limits_and_the_twin_executes_it_at_the_bound(unmet: str) -> None:
    scenario = _tight_chain(unmet)
    demand = sample_demand(scenario, 3, np.random.default_rng(5))
    plans = clairvoyant_plans(scenario, demand)
    for plan in plans:  # the limits bind somewhere, so the test exercises them
        assert plan.production.max() == pytest.approx(55.0, rel=LP_RTOL)
        assert plan.production[20:32].max() <= 1e-9
    replayed = replay(scenario, plans, demand)
    np.testing.assert_allclose(replayed["cut"], 0.0, atol=1e-5)
    np.testing.assert_allclose(replayed["cost_per_day"], [p.cost_per_day for p in plans], rtol=LP_RTOL)

    store_limit = dataclasses.replace(scenario, capacities=Capacities(production=55.0, warehouse_storage=300.0))
    no_limits = dataclasses.replace(scenario, capacities=Capacities())
    looser = [clairvoyant_bound(s, demand) for s in (store_limit, no_limits)]
    assert np.all(looser[0] < np.array([p.cost_per_day for p in plans]))  # the shelves bind
    assert np.all(looser[1] < looser[0])  # storage and capacity bind

    with_order_cost = dataclasses.replace(scenario, costs=dataclasses.replace(scenario.costs, order=25.0))
    bound = clairvoyant_bound(with_order_cost, demand)
    assert np.allclose(bound, [p.cost_per_day for p in plans], rtol=LP_RTOL)  # the fixed cost is relaxed away
    mean = np.array([m.mean for m in scenario.stores])
    for level in (0.5, 1.0, 2.0):
        mix = base_stock_mix(mean * 3 * level, mean.sum() * 5 * level, mean.sum() * 7 * level)
        assert np.all(bound <= kpis(rollout(with_order_cost, mix, demand))["cost_per_day"])


@pytest.mark.parametrize("upstream", ["network", "ample"])
def test_bound_lies_below_random_and_rule_policies_on_random_scenarios(upstream: str) -> None:
    """Random scenarios (capacities, disruptions, both unmet-demand modes and allocation rules,
    fixed order costs, opening stock above the shelf or storage limit; supplied by the network
    or by an ample source) and policies that place
    absurd, cut or starved orders: no realised cost is below the bound, and neither is the
    twin's execution of the plan itself (which the twin may cut when the opening stock exceeds
    a limit: then the bound is below it, never above)."""
    for seed in range(30):
        rng = np.random.default_rng(seed)
        scenario = dataclasses.replace(random_scenario(rng, horizon=40), upstream=upstream)
        demand = sample_demand(scenario, 2, rng)
        plans = clairvoyant_plans(scenario, demand)
        bound = np.array([p.cost_per_day for p in plans])
        mean = np.array([m.mean for m in scenario.stores])
        mixes = [reorder_point_mix(), random_mix(np.random.default_rng(seed))]
        mixes += [base_stock_mix(mean * 3 * f, mean.sum() * 6 * f, mean.sum() * 9 * f) for f in (0.5, 1.0, 3.0)]
        costs = np.stack([kpis(rollout(scenario, mix, demand))["cost_per_day"] for mix in mixes])
        assert np.all(bound <= costs * (1 + LP_RTOL)), f"seed {seed}: bound {bound} above {costs.min(axis=0)}"
        assert np.all(bound <= replay(scenario, plans, demand)["cost_per_day"] * (1 + LP_RTOL))


def test_demand_of_the_wrong_shape_is_refused() -> None:
    with pytest.raises(ValueError, match=r"demand: got shape \(5, 3\)"):
        clairvoyant_bound(PRESETS["steady"], np.zeros((5, 3)))
