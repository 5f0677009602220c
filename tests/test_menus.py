"""The menus' forecast: the supplier's pre-build for planned capacity losses, the supplier lead time an
order must cover when a disruption changes it, and demand statistics that match the demand model,
random shocks included."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from pools import TUNED

from core.agents.menus import (
    NUM_ACTIONS,
    SAFETY_FACTORS,
    BlockChooser,
    ConstantChooser,
    MenuPolicy,
    NoTuning,
    TunedEntry,
    choose,
    forecast_base_stock,
    menu_index,
    menu_quantities,
    reference_index,
    reference_policy,
    tuned_entry_policy,
)
from core.agents.observations import FEATURES
from core.agents.roles import ROLES
from core.agents.rules import PolicyMix
from core.agents.tuning import block_costs
from core.evaluation.statistics import EVAL_SEED
from core.simulation.demand import demand_cv, sample_demand, shock_lift
from core.simulation.forecast import Forecast
from core.simulation.presets import PRESETS
from core.simulation.rollout import run_mixes
from core.simulation.scenario import Capacities, DemandModel, Disruption, LeadTimes, Scenario
from core.simulation.twin import reset

# One store selling 10 a day; capacity 15 a day, none at all on days 50..59.
FLAT = Scenario(name="flat", stores=(DemandModel(mean=10.0, dispersion=0.2, distribution="normal"),),
                lead_times=LeadTimes(production=1, supplier_to_warehouse=1, warehouse_to_store=1),
                capacities=Capacities(production=15.0), initial_cover_days=0.0)
OUTAGE = dataclasses.replace(FLAT, disruptions=(Disruption(start_day=50, length=10, capacity_loss=1.0),))


@pytest.mark.parametrize(("day", "expected"), [(49, 100.0), (39, 50.0), (30, 5.0), (20, 0.0), (60, 0.0)])
def test_prebuild_is_the_planned_shortfall_net_of_spare_capacity_before_it(day: int, expected: float) -> None:
    """Ten days without production need 100 units in stock when they start; each day of spare
    capacity (5 units) before them lowers what must already be held by 5."""
    assert Forecast.of(OUTAGE).prebuild(day, 3) == pytest.approx(expected)
    assert Forecast.of(FLAT).prebuild(day, 3) == 0.0


def test_supplier_menu_adds_the_prebuild_and_other_roles_do_not() -> None:
    state = dataclasses.replace(reset(OUTAGE, 2), day=45)
    choice = np.array([SAFETY_FACTORS.index(1.0)] * 2)
    with_outage, without = Forecast.of(OUTAGE), Forecast.of(FLAT)
    extra = menu_quantities(state, OUTAGE, with_outage, "supplier", choice) \
        - menu_quantities(state, FLAT, without, "supplier", choice)
    np.testing.assert_allclose(extra, with_outage.prebuild(45, 4))
    assert with_outage.prebuild(45, 4) > 0
    for role in ("store", "warehouse"):
        picked = np.zeros((2, 1), np.int64) + choice[0] if role == "store" else choice
        np.testing.assert_array_equal(menu_quantities(state, OUTAGE, with_outage, role, picked),
                                      menu_quantities(state, FLAT, without, role, picked))


@pytest.mark.parametrize(("dispersion", "probability", "size"), [(0.3, 0.0, 1.0), (0.9, 0.05, 1.5), (0.2, 0.2, 2.0)])
def test_demand_statistics_match_sampled_demand_with_shocks(dispersion: float, probability: float,
                                                            size: float) -> None:
    model = DemandModel(mean=50.0, dispersion=dispersion, distribution="negative_binomial",
                        shock_probability=probability,
                        shock_size=size)
    scenario = dataclasses.replace(FLAT, stores=(model,))
    draws = sample_demand(scenario, 400, np.random.default_rng(7), 365).ravel()
    expected_mean = 50.0 * shock_lift(model)
    assert draws.mean() == pytest.approx(expected_mean, rel=0.01)
    assert draws.std() / draws.mean() == pytest.approx(demand_cv(model), rel=0.05)
    assert Forecast.of(scenario).store_demand(0, 10)[0] == pytest.approx(10 * expected_mean)


@pytest.mark.parametrize("name", ["seasonal", "promo_shock", "supply_disruption"])
def test_prebuild_lowers_the_cost_of_the_reference_entries_where_capacity_binds(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Planned disruptions and peaks above capacity: holding stock ahead of them costs less than
    the lost sales it prevents (at least 5 % of the daily cost, on the same demand)."""
    scenario = PRESETS[name]

    def cost() -> float:
        mix = PolicyMix(*(reference_policy(role) for role in ROLES))
        return float(run_mixes(scenario, {"reference": mix}, 8, EVAL_SEED)["reference"]["cost_per_day"].mean())

    with_prebuild = cost()
    monkeypatch.setattr(Forecast, "prebuild", lambda self, *args, **kwargs: 0.0)
    assert with_prebuild < 0.95 * cost()


# Supplier -> warehouse lead time 3 days, 7 on shipments sent on days 50..59.
LONGER = dataclasses.replace(FLAT, lead_times=LeadTimes(production=1, supplier_to_warehouse=3, warehouse_to_store=1),
                             disruptions=(Disruption(start_day=50, length=10, capacity_loss=0.0, extra_lead_time=4),))


@pytest.mark.parametrize(("day", "expected"), [(48, 3), (49, 7), (50, 7), (55, 7), (56, 6), (57, 5), (58, 4),
                                               (59, 3), (60, 3)])
def test_an_order_covers_its_supply_until_the_next_shipment_arrives(day: int, expected: int) -> None:
    """The last order before the lead time lengthens is the last to arrive before 4 days without arrivals:
    it covers them; before the lead time shortens, the next orders arrive sooner."""
    assert Forecast.of(LONGER).supplier_days_to_cover(day) == expected
    assert Forecast.of(FLAT).supplier_days_to_cover(day) == 1


def test_covering_the_gap_before_a_longer_supplier_lead_time_lowers_the_reference_cost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On ``supply_disruption`` (4 more days from the supplier for 30 days), covering only the planned lead time
    leaves the warehouse empty for those 4 days: at least 3 % dearer, on the same demand."""
    scenario = PRESETS["supply_disruption"]

    def cost() -> float:
        mix = PolicyMix(*(reference_policy(role) for role in ROLES))
        return float(run_mixes(scenario, {"reference": mix}, 8, EVAL_SEED)["reference"]["cost_per_day"].mean())

    covered = cost()
    monkeypatch.setattr(Forecast, "supplier_days_to_cover", lambda self, day: int(self.supplier_lead_time[day]))
    assert covered < 0.97 * cost()


@pytest.mark.parametrize("name", ["thin_margin", "serial_textbook"])
def test_menu_entries_side_by_side_cost_what_each_costs_alone(name: str) -> None:
    """The menu tuner runs its candidates as blocks of one batched rollout (``BlockChooser``): each block costs
    what the same constant entries cost in a rollout of their own, on the same demand paths."""
    scenario, seeds = PRESETS[name], 4
    entries = {"store": [5, 20, 33], "warehouse": [26, 0, 40], "supplier": [30, 30, 63]}  # a block per column
    demand = sample_demand(scenario, seeds, np.random.default_rng(EVAL_SEED), 120)
    mix = PolicyMix(*(MenuPolicy(role, BlockChooser(np.array(entries[role]), seeds)) for role in ROLES))
    together = block_costs(scenario, mix, demand, 3)
    for k in range(3):
        alone = PolicyMix(*(forecast_base_stock(role, SAFETY_FACTORS[entries[role][k]]) for role in ROLES))
        cost = run_mixes(scenario, {"alone": alone}, seeds, EVAL_SEED, 120)["alone"]["cost_per_day"].mean()
        assert together[k] == pytest.approx(cost, rel=1e-9)  # the same flows; sums in another order
    assert len(set(np.round(together, 6))) == 3  # the blocks really differ


# --- the tuned entry --------------------------------------------------------------------------------------------------

def test_menu_index_is_the_nearest_entry() -> None:
    """Between two neighbouring entries (the menu's steps are uneven), the nearer one; beyond its ends, the end."""
    for i, (low, high) in enumerate(itertools.pairwise(SAFETY_FACTORS)):
        assert menu_index(low + 0.4 * (high - low)) == i and menu_index(low + 0.6 * (high - low)) == i + 1
    assert menu_index(min(SAFETY_FACTORS) - 3.0) == 0 and menu_index(max(SAFETY_FACTORS) + 30.0) == NUM_ACTIONS - 1
    assert SAFETY_FACTORS[menu_index(0.04)] == 0.0 and SAFETY_FACTORS[menu_index(0.96)] == 1.0


def test_menu_index_of_every_entry_is_its_own() -> None:
    assert [menu_index(z) for z in SAFETY_FACTORS] == list(range(NUM_ACTIONS))


def test_the_tuned_entry_is_each_role_s_own_for_every_agent() -> None:
    scenario = PRESETS["thin_margin"]
    state, forecast = reset(scenario, 3), Forecast.of(scenario, 1)
    for role, shape in (("store", (3, scenario.num_stores)), ("warehouse", (3,)), ("supplier", (3,))):
        picked = choose(TunedEntry(), role, state, scenario, forecast, TUNED)
        assert picked.shape == shape and picked.dtype == np.int64
        assert (picked == menu_index(TUNED[role])).all()


def test_the_tuned_entry_runs_on_observations_like_an_onnx_policy() -> None:
    """``TunedEntry.run`` (what the policy inspector calls on a rule-based store): one-hot probabilities on the entry
    ``choose`` gives, read off each observation's tuned factor."""
    from core.agents.observations import observe

    scenario = PRESETS["thin_margin"]
    state, forecast = reset(scenario, 2), Forecast.of(scenario, 1)
    for role in ROLES:
        obs = observe(role, state, scenario, forecast, TUNED)
        indices, probabilities = TunedEntry().run(obs.reshape(-1, obs.shape[-1]))
        np.testing.assert_array_equal(indices, choose(TunedEntry(), role, state, scenario, forecast, TUNED).ravel())
        assert probabilities.shape == (len(indices), NUM_ACTIONS) and (probabilities.sum(axis=1) == 1.0).all()
        assert (probabilities[np.arange(len(indices)), indices] == 1.0).all()
    indices, _ = TunedEntry().run(np.array([[5.0, 4.2], [0.0, -9.0], [1.0, 9.4]], np.float32))
    assert [SAFETY_FACTORS[i] for i in indices] == [SAFETY_FACTORS[menu_index(z)] for z in (4.2, -9.0, 9.4)]


def test_choosers_that_observe_need_the_tuning_and_the_others_do_not() -> None:
    """``TunedEntry`` and a learned chooser (one that observes) refuse to act without the scenario's tuned factors
    (``NoTuning``, naming the role); constant and block choosers need none. A learned chooser sees its tuned factor
    last."""
    scenario = PRESETS["steady"]
    state, forecast = reset(scenario, 2), Forecast.of(scenario, 1)
    seen = []

    def learned(observations: np.ndarray) -> np.ndarray:
        seen.append(observations)
        return np.zeros(len(observations), np.int64)

    for chooser in (TunedEntry(), learned):
        with pytest.raises(NoTuning, match="warehouse"):
            choose(chooser, "warehouse", state, scenario, forecast, None)
    assert not seen
    assert (choose(ConstantChooser(7), "store", state, scenario, forecast, None) == 7).all()
    assert choose(BlockChooser(np.array([3, 9]), 1), "warehouse", state, scenario, forecast, None).tolist() == [3, 9]
    choose(learned, "store", state, scenario, forecast, TUNED)
    (observations,) = seen
    assert observations.shape == (2 * scenario.num_stores, len(FEATURES["store"]))
    np.testing.assert_array_equal(observations[:, -1], np.float32(TUNED["store"]))


def test_a_menu_policy_tunes_once_per_scenario() -> None:
    """``MenuPolicy.context``: the scenario's forecast and tuned factors, asked of ``tuning`` once while the scenario
    is the same (the forecast grown as the run goes on) and again for another scenario."""
    asked: list[str] = []

    def tuning(scenario: Scenario) -> dict[str, float]:
        asked.append(scenario.name)
        return {**TUNED, "store": 0.1 * len(asked)}

    policy = tuned_entry_policy("store", tuning)
    steady, seasonal = PRESETS["steady"], PRESETS["seasonal"]
    state = reset(steady, 2)
    first = policy.act(state, steady)
    forecast, tuned = policy.context(steady, 400)  # past the horizon: the forecast grows
    assert forecast.periods >= 400 and tuned == {**TUNED, "store": 0.1}
    np.testing.assert_array_equal(policy.act(state, steady), first)
    assert asked == ["steady"]
    policy.act(reset(seasonal, 2), seasonal)
    assert asked == ["steady", "seasonal"] and policy.context(seasonal, 1)[1]["store"] == pytest.approx(0.2)
    assert MenuPolicy("store", ConstantChooser(0)).context(steady, 1)[1] is None  # no tuning: none asked


def test_the_tuned_entry_policy_orders_as_the_constant_entry_it_names() -> None:
    for name in ("steady", "thin_margin", "serial_textbook"):
        scenario = PRESETS[name]
        tuned = PolicyMix(*(tuned_entry_policy(role, lambda s: TUNED) for role in ROLES))
        constant = PolicyMix(*(forecast_base_stock(role, TUNED[role]) for role in ROLES))
        costs = run_mixes(scenario, {"tuned": tuned, "constant": constant}, 3, 2, 60)
        np.testing.assert_array_equal(costs["tuned"]["cost_per_day"], costs["constant"]["cost_per_day"])


def test_a_hierarchy_with_no_learned_role_is_the_registry_s_tuned_forecast_base_stock() -> None:
    """Every role on its tuned entry (``TunedEntry``, the registry's tuning; what roles without a learned policy do)
    costs exactly what the registry's rule ``tuned_forecast_base_stock`` costs on the same demand."""
    from core.learning.policies import model_mix
    from core.serving.registry import mix_of, scenario_tuning, tuned, uniform

    for name in ("thin_margin", "seasonal"):
        scenario = dataclasses.replace(PRESETS[name], horizon=45)
        untrained = model_mix({}, scenario_tuning())
        assert all(getattr(untrained, role).choose == TunedEntry() for role in ROLES)
        rule = mix_of(uniform("tuned_forecast_base_stock"), scenario)
        costs = run_mixes(scenario, {"untrained": untrained, "rule": rule}, 4, EVAL_SEED)
        np.testing.assert_array_equal(costs["untrained"]["cost_per_day"], costs["rule"]["cost_per_day"])
        if name == "thin_margin":  # the check can tell entries apart: thin margins tune far below the reference
            assert menu_index(tuned("tuned_forecast_base_stock", scenario)["store"]) < reference_index("store")
            reference = PolicyMix(*(reference_policy(role) for role in ROLES))
            other = run_mixes(scenario, {"reference": reference}, 4, EVAL_SEED)["reference"]["cost_per_day"]
            assert not np.array_equal(other, costs["rule"]["cost_per_day"])
