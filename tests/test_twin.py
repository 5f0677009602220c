"""The twin's step against an independent reference, conservation laws, determinism and the
echelon/local base-stock relation in a serial chain."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from reference import (
    FLOW_FIELDS,
    capacity_on,
    random_actions,
    random_demand,
    random_scenario,
    random_state,
    reference_batch_step,
    state_arrays,
)

from core.agents.rules import (
    BaseStock,
    PolicyMix,
    base_stock_mix,
    random_mix,
    reorder_point_mix,
)
from core.simulation.demand import sample_demand
from core.simulation.presets import PRESETS, get_preset
from core.simulation.rollout import rollout
from core.simulation.scenario import Capacities, DemandModel, Disruption, LeadTimes, Scenario
from core.simulation.twin import (
    MEMORY_WEIGHT,
    Actions,
    Flows,
    State,
    allocate,
    production_capacity,
    reset,
    step,
    units_entered,
)

STATE_ARRAYS = ("store_on_hand", "store_backorders", "store_pipeline", "warehouse_on_hand",
                "warehouse_pipeline", "supplier_on_hand", "production_pipeline")


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-9, atol=1e-6)


# --- 1. the twin equals the reference --------------------------------------------------------

def test_step_matches_reference_on_random_scenarios() -> None:
    """60 random scenarios x 30 periods x 3 chains, random (also negative and huge) requests.

    Each period the reference starts from the twin's state (so one float-rounding difference
    cannot snowball into a different allocation order) and must produce the same flows and the
    same next state."""
    seen = {"shelf_cut": 0, "storage_cut": 0, "capacity_cut": 0, "short_proportional": 0,
            "short_lowest_cover": 0, "disrupted_lead": 0, "zero_capacity": 0, "backorders_served": 0,
            "lost_sale": 0}
    for seed in range(60):
        rng = np.random.default_rng(seed)
        scenario = random_scenario(rng)
        state = reset(scenario, 3)
        if seed % 2:
            state = random_state(rng, state, scenario)
        for t in range(30):
            actions = random_actions(rng, scenario, 3)
            demand = random_demand(rng, scenario, 3)
            ref_chains, ref_flows = reference_batch_step(state, actions, demand, scenario)
            new_state, flows = step(state, actions, demand, scenario)
            where = f"scenario seed {seed}, period {t} (day {state.day})"
            for name in FLOW_FIELDS:
                assert _close(getattr(flows, name), ref_flows[name]), \
                    f"{where}: flow {name}: twin {getattr(flows, name)} != reference {ref_flows[name]}"
            assert new_state.day == state.day + 1 == ref_chains[0].day, where
            expected = state_arrays(ref_chains, new_state)
            for name in STATE_ARRAYS:
                assert _close(getattr(new_state, name), expected[name]), \
                    f"{where}: state {name}: twin {getattr(new_state, name)} != reference {expected[name]}"

            # What this period exercised (so the comparison above is not vacuous).
            requested = np.maximum(actions.store_orders, 0)
            seen["shelf_cut"] += int((flows.store_orders < requested - 1e-9).any())
            seen["storage_cut"] += int((flows.warehouse_order < np.maximum(actions.warehouse_order, 0) - 1e-9).any())
            seen["capacity_cut"] += int((flows.production_started < np.maximum(actions.production, 0) - 1e-9).any())
            short = flows.store_orders.sum(axis=1) > state.warehouse_on_hand + 1e-9
            if short.any() and scenario.num_stores > 1:
                key = "short_proportional" if scenario.allocation == "proportional" else "short_lowest_cover"
                seen[key] += 1
            seen["disrupted_lead"] += int(any(d.start_day <= state.day < d.start_day + d.length
                                              and d.extra_lead_time > 0 for d in scenario.disruptions))
            seen["zero_capacity"] += int(capacity_on(scenario, state.day) == 0.0)
            seen["backorders_served"] += int((flows.backorders_filled > 0).any())
            seen["lost_sale"] += int(scenario.unmet_demand == "lost_sales" and (flows.unmet > 0).any())
            state = new_state
    assert all(count >= 5 for count in seen.values()), seen


def test_step_matches_reference_with_an_ample_source() -> None:
    """30 random scenarios with an ample upstream source x 20 periods x 3 chains, random states
    (stock left at the warehouse and supplier stays put) and requests."""
    shortfalls = 0
    for seed in range(30):
        rng = np.random.default_rng(500 + seed)
        scenario = dataclasses.replace(random_scenario(rng), upstream="ample")
        state = reset(scenario, 3)
        assert (state.warehouse_on_hand == 0).all() and (state.supplier_on_hand == 0).all()
        assert (state.warehouse_pipeline == 0).all() and (state.production_pipeline == 0).all()
        if seed % 2:
            state = random_state(rng, state, scenario)
        for t in range(20):
            actions = random_actions(rng, scenario, 3)
            demand = random_demand(rng, scenario, 3)
            ref_chains, ref_flows = reference_batch_step(state, actions, demand, scenario)
            new_state, flows = step(state, actions, demand, scenario)
            where = f"scenario seed {seed}, period {t}"
            for name in FLOW_FIELDS:
                assert _close(getattr(flows, name), ref_flows[name]), (where, name)
            expected = state_arrays(ref_chains, new_state)
            for name in STATE_ARRAYS:
                assert _close(getattr(new_state, name), expected[name]), (where, name)
            # Shipped in full even beyond the warehouse's stock; nothing moves upstream.
            np.testing.assert_array_equal(flows.warehouse_shipped, flows.store_orders)
            assert (flows.warehouse_order == 0).all() and (flows.production_started == 0).all()
            assert (flows.warehouse_held == 0).all() and (flows.supplier_held == 0).all()
            shortfalls += int((flows.store_orders.sum(axis=1) > state.warehouse_on_hand + 1e-9).any())
            state = new_state
    assert shortfalls >= 100  # orders the warehouse alone could not have filled


def test_reference_agrees_on_a_hand_worked_period() -> None:
    """Guard for the reference itself: one period worked out by hand (lead time 1 arrives the
    same morning, lead time 3 two mornings later; lowest cover first serves store 1)."""
    scenario = Scenario(
        stores=(DemandModel(mean=10.0), DemandModel(mean=5.0)),
        lead_times=LeadTimes(production=3, supplier_to_warehouse=1, warehouse_to_store=1),
        capacities=Capacities(production=4.0),
        unmet_demand="backorders", allocation="lowest_cover_first", initial_cover_days=0.0,
    )
    state = dataclasses.replace(
        reset(scenario, 1), store_on_hand=np.array([[2.0, 1.0]]), store_backorders=np.array([[0.0, 3.0]]),
        store_pipeline=np.zeros((1, 2, 1)), warehouse_on_hand=np.array([6.0]),
        warehouse_pipeline=np.array([[1.0]]), supplier_on_hand=np.array([5.0]),
        production_pipeline=np.array([[0.0, 7.0, 0.0]]))
    actions = Actions(store_orders=np.array([[5.0, 4.0]]), warehouse_order=np.array([8.0]),
                      production=np.array([9.0]))
    demand = np.array([[4.0, 6.0]])
    # Covers: store 0 (2 + 0 - 0) / 10 = 0.2, store 1 (1 + 0 - 3) / 5 = -0.4 -> store 1 first: 4, then store 0: 2.
    expected_flows = {
        "store_orders": [[5.0, 4.0]], "warehouse_shipped": [[2.0, 4.0]], "warehouse_order": [8.0],
        "supplier_shipped": [5.0], "production_started": [4.0], "store_received": [[2.0, 4.0]],
        "warehouse_received": [6.0], "production_finished": [0.0], "backorders_filled": [[0.0, 3.0]],
        "filled": [[4.0, 2.0]], "unmet": [[0.0, 4.0]], "store_held": [[2.0, 1.0]],
        "warehouse_held": [0.0 + 6.0], "supplier_held": [0.0 + 1.0 + 5.0],
    }
    for impl in ("twin", "reference"):
        if impl == "twin":
            nxt, flows = step(state, actions, demand, scenario)
            got = {k: getattr(flows, k) for k in expected_flows}
            arrays = {k: getattr(nxt, k) for k in STATE_ARRAYS}
        else:
            chains, got = reference_batch_step(state, actions, demand, scenario)
            arrays = state_arrays(chains, state)
        for k, v in expected_flows.items():
            assert np.allclose(got[k], v), (impl, k, got[k], v)
        assert np.allclose(arrays["store_on_hand"], [[0.0, 0.0]]), impl
        assert np.allclose(arrays["store_backorders"], [[0.0, 4.0]]), impl
        assert np.allclose(arrays["warehouse_on_hand"], [6.0]), impl
        assert np.allclose(arrays["supplier_on_hand"], [0.0]), impl
        assert np.allclose(arrays["production_pipeline"], [[7.0, 4.0, 0.0]]), impl


# --- 2. conservation and invariants -------------------------------------------------------------

def _check_period(before: State, after: State, flows: Flows, scenario) -> None:
    ok = dict(rtol=1e-12, atol=1e-6)
    for name in STATE_ARRAYS:
        assert (getattr(after, name) >= 0).all(), (name, getattr(after, name).min())
    for name in FLOW_FIELDS:
        assert (getattr(flows, name) >= 0).all(), (name, getattr(flows, name).min())
    ample = scenario.upstream == "ample"
    from_warehouse = 0.0 if ample else flows.warehouse_shipped.sum(axis=1)  # an ample source ships instead
    # Nodes: stock.
    np.testing.assert_allclose(after.store_on_hand, before.store_on_hand + flows.store_received - flows.sold, **ok)
    np.testing.assert_allclose(after.warehouse_on_hand, before.warehouse_on_hand + flows.warehouse_received
                               - from_warehouse, **ok)
    np.testing.assert_allclose(after.supplier_on_hand, before.supplier_on_hand + flows.production_finished
                               - flows.supplier_shipped, **ok)
    # Links: pipelines.
    np.testing.assert_allclose(after.store_pipeline.sum(axis=2), before.store_pipeline.sum(axis=2)
                               + flows.warehouse_shipped - flows.store_received, **ok)
    np.testing.assert_allclose(after.warehouse_pipeline.sum(axis=1), before.warehouse_pipeline.sum(axis=1)
                               + flows.supplier_shipped - flows.warehouse_received, **ok)
    np.testing.assert_allclose(after.production_pipeline.sum(axis=1), before.production_pipeline.sum(axis=1)
                               + flows.production_started - flows.production_finished, **ok)
    # Customers.
    np.testing.assert_allclose(flows.filled + flows.unmet, flows.demand, rtol=1e-15, atol=1e-9)
    assert (flows.filled <= flows.demand).all()
    if scenario.unmet_demand == "lost_sales":
        assert (after.store_backorders == 0).all() and (flows.backorders_filled == 0).all()
    else:
        np.testing.assert_allclose(after.store_backorders,
                                   before.store_backorders - flows.backorders_filled + flows.unmet, **ok)
        # Nobody waits while stock sits on the shelf.
        assert ((after.store_backorders <= 1e-9) | (after.store_on_hand <= 1e-9)).all()
    # Nothing ships that is not there, nothing beyond what was asked.
    assert (flows.warehouse_shipped <= flows.store_orders + 1e-9).all()
    # (1e-6: requests of 1e9 units round at 1e-7; see test_allocation_is_exact_with_huge_orders.)
    if ample:
        np.testing.assert_array_equal(flows.warehouse_shipped, flows.store_orders)
    else:
        assert (flows.warehouse_shipped.sum(axis=1) <= before.warehouse_on_hand * (1 + 1e-12) + 1e-6).all()
    assert (flows.supplier_shipped <= np.minimum(flows.warehouse_order, before.supplier_on_hand) + 1e-9).all()
    assert (flows.production_started <= capacity_on_any(scenario, before.day) + 1e-9).all()
    # Physical limits: on hand + inbound never grows above the limit (it may start above it).
    caps = scenario.capacities
    store_level = lambda s: s.store_on_hand + s.store_pipeline.sum(axis=2)  # noqa: E731
    assert (store_level(after) <= np.maximum(caps.store_shelf, store_level(before)) + 1e-6).all()
    wh_level = lambda s: s.warehouse_on_hand + s.warehouse_pipeline.sum(axis=1)  # noqa: E731
    assert (wh_level(after) <= np.maximum(caps.warehouse_storage, wh_level(before)) + 1e-6).all()


def capacity_on_any(scenario, day: int) -> float:
    """Capacity with overlapping disruptions allowed: never more than the smallest active limit."""
    capacity = scenario.capacities.production
    for d in scenario.disruptions:
        if d.start_day <= day < d.start_day + d.length:
            capacity = min(capacity, 0.0 if d.capacity_loss == 1.0 else capacity * (1.0 - d.capacity_loss))
    return capacity


def _units(state: State) -> np.ndarray:
    """Every physical unit, counted by hand: on hand, in transit and in production."""
    return (state.store_on_hand.sum(axis=1) + state.store_pipeline.sum(axis=(1, 2)) + state.warehouse_on_hand
            + state.warehouse_pipeline.sum(axis=1) + state.supplier_on_hand + state.production_pipeline.sum(axis=1))


def _run_and_check(scenario, state: State, periods: int, next_actions, demand_of) -> int:
    start_units = _units(state)
    produced = np.zeros(state.batch_size)
    sold = np.zeros(state.batch_size)
    checked = 0
    for t in range(periods):
        actions = next_actions(state)
        before = state
        state, flows = step(state, actions, demand_of(t), scenario)
        _check_period(before, state, flows, scenario)
        produced += units_entered(flows, scenario)
        sold += flows.sold.sum(axis=1)
        np.testing.assert_allclose(_units(state), start_units + produced - sold, rtol=1e-10, atol=1e-5)
        np.testing.assert_allclose(state.units_in_network, _units(state), rtol=1e-12)
        checked += 1
    return checked


@pytest.mark.parametrize("kind", ["raw_actions", "random_mix", "ample_source"])
def test_conservation_on_random_scenarios(kind: str) -> None:
    for seed in range(40 if kind != "ample_source" else 20):
        rng = np.random.default_rng(1000 + seed)
        scenario = random_scenario(rng)
        if kind == "ample_source":
            scenario = dataclasses.replace(scenario, upstream="ample")
        state = reset(scenario, 4)
        if seed % 2:
            state = random_state(rng, state, scenario)
        if kind != "random_mix":
            def next_actions(_state, rng=rng, scenario=scenario):
                return random_actions(rng, scenario, 4)
        else:
            mix = random_mix(rng)

            def next_actions(s, mix=mix, scenario=scenario):
                return mix.actions(s, scenario)
        demand = sample_demand(scenario, 4, rng, 40)
        assert _run_and_check(scenario, state, 40, next_actions, lambda t, d=demand: d[:, t]) == 40


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("mix_name", ["random", "reorder_point"])
def test_conservation_on_presets(name: str, mix_name: str) -> None:
    scenario = get_preset(name)
    rng = np.random.default_rng(7)
    mix = random_mix(rng) if mix_name == "random" else reorder_point_mix()
    demand = sample_demand(scenario, 3, rng, 200)
    _run_and_check(scenario, reset(scenario, 3), 200, lambda s: mix.actions(s, scenario), lambda t: demand[:, t])


def test_overlapping_disruptions_never_raise_capacity() -> None:
    """Two overlapping disruptions: capacity is never above what either alone leaves."""
    scenario = dataclasses.replace(
        get_preset("steady"), capacities=Capacities(production=100.0),
        disruptions=(Disruption(start_day=5, length=10, capacity_loss=0.5),
                     Disruption(start_day=10, length=10, capacity_loss=0.8)))
    caps = [production_capacity(scenario, day) for day in range(25)]
    assert caps[:5] == [100.0] * 5 and caps[20:] == [100.0] * 5
    assert all(math.isclose(c, 50.0) for c in caps[5:10])
    assert all(c <= 20.0 + 1e-9 for c in caps[10:20])


# --- 3. determinism -----------------------------------------------------------------------------

def test_same_seed_same_demand_and_trajectory() -> None:
    scenario = get_preset("promo_shock")
    d1 = sample_demand(scenario, 4, np.random.default_rng(42), 120)
    d2 = sample_demand(scenario, 4, np.random.default_rng(42), 120)
    d3 = sample_demand(scenario, 4, np.random.default_rng(43), 120)
    assert d1.shape == (4, 120, 3)
    assert np.array_equal(d1, d2)
    assert not np.array_equal(d1, d3)
    for make in (reorder_point_mix, lambda: random_mix(np.random.default_rng(5))):
        r1, r2 = rollout(scenario, make(), d1), rollout(scenario, make(), d2)
        for key in r1.ledger:
            assert np.array_equal(r1.ledger[key], r2.ledger[key]), key
        assert np.array_equal(r1.store_orders, r2.store_orders)
        assert np.array_equal(r1.sold, r2.sold)
    r3 = rollout(scenario, reorder_point_mix(), d3)
    assert not np.array_equal(r3.ledger["total_cost"], rollout(scenario, reorder_point_mix(), d1).ledger["total_cost"])


@pytest.mark.parametrize("name", ["seasonal", "supply_disruption", "serial_textbook"])
def test_chain_in_batch_equals_chain_alone(name: str) -> None:
    scenario = get_preset(name)
    if name == "seasonal":
        scenario = dataclasses.replace(scenario, allocation="lowest_cover_first")
    demand = sample_demand(scenario, 5, np.random.default_rng(3), 150)
    mixes = [reorder_point_mix(), base_stock_mix(np.array([m.mean * 3 for m in scenario.stores]),
                                                 sum(m.mean for m in scenario.stores) * 7,
                                                 sum(m.mean for m in scenario.stores) * 10)]
    for mix in mixes:
        batch = rollout(scenario, mix, demand)
        for b in (0, 2, 4):
            alone = rollout(scenario, mix, demand[b:b + 1])
            for key in batch.ledger:
                np.testing.assert_allclose(batch.ledger[key][:, b], alone.ledger[key][:, 0], rtol=1e-12, atol=1e-9,
                                           err_msg=f"{name} {mix.label} chain {b} {key}")
            assert np.allclose(batch.store_orders[:, b], alone.store_orders[:, 0])


# --- 6. echelon and local base-stock in a serial chain ------------------------------------------

def _serial_run(scenario, mix: PolicyMix, demand: np.ndarray) -> list[tuple[State, Flows]]:
    state = reset(scenario, demand.shape[0])
    out = []
    for t in range(demand.shape[1]):
        state, flows = step(state, mix.actions(state, scenario), demand[:, t], scenario)
        out.append((state, flows))
    return out


def test_echelon_and_local_base_stock_in_a_serial_chain() -> None:
    """Local levels (S1, S2 - S1, S3 - S2) against echelon levels (S1, S2, S3).

    In the textbook (Axsaeter; Snyder and Shen) the two policies are equivalent because an
    installation reviews *after* it has seen the order its downstream stage placed in the same
    period. In this twin every role reviews the same evening state at once (core.simulation.twin, event 1):
    the warehouse's local position (on hand + inbound) does not yet contain tonight's store
    order, and the supplier's (finished goods + WIP) not tonight's warehouse order. So the local
    warehouse passes the store's demand upstream one review late and the local supplier two
    reviews late, while the echelon policy passes it the same evening at every stage. With ample
    upstream stock the store never notices. The exact metamorphic relation is therefore:
    identical store-side flows and state, warehouse order / supplier shipment / warehouse receipt
    of the local system equal to the echelon system's one day earlier, production started and
    finished two days earlier. Both start from opening stock 0 (initial_cover_days=0) with full
    pipelines; the opening transient differs (the levels are reached at different speeds), so
    the comparison starts once both have been at their levels for a while (day 20).
    """
    scenario = dataclasses.replace(get_preset("serial_textbook"), initial_cover_days=0.0)
    s1, s2, s3 = 8.0, 38.0, 78.0  # ample upstream safety stock: the warehouse and supplier never run out
    echelon = base_stock_mix(s1, s2, s3, echelon=True)
    local = base_stock_mix(s1, s2 - s1, s3 - s2, echelon=False)
    assert isinstance(local.warehouse, BaseStock) and not local.warehouse.echelon
    demand = sample_demand(scenario, 4, np.random.default_rng(11), 320)
    e_run, l_run = _serial_run(scenario, echelon, demand), _serial_run(scenario, local, demand)
    start = 20
    e = {k: np.stack([getattr(f, k) for _, f in e_run]) for k in FLOW_FIELDS}
    loc = {k: np.stack([getattr(f, k) for _, f in l_run]) for k in FLOW_FIELDS}
    same = ("demand", "filled", "unmet", "backorders_filled", "store_orders", "warehouse_shipped",
            "store_received", "store_held")
    for k in same:
        np.testing.assert_allclose(loc[k][start:], e[k][start:], atol=1e-9, err_msg=k)
    for t in range(start, len(e_run)):
        for k in ("store_on_hand", "store_backorders", "store_pipeline"):
            np.testing.assert_allclose(getattr(l_run[t][0], k), getattr(e_run[t][0], k), atol=1e-9, err_msg=k)
    for k in ("warehouse_order", "supplier_shipped", "warehouse_received"):
        np.testing.assert_allclose(loc[k][start:], e[k][start - 1:-1], atol=1e-9, err_msg=k)
    for k in ("production_started", "production_finished"):
        np.testing.assert_allclose(loc[k][start:], e[k][start - 2:-2], atol=1e-9, err_msg=k)
    # Echelon base-stock passes yesterday's demand through every stage the same evening.
    yesterday = demand[:, start - 1:-1, 0].T
    np.testing.assert_allclose(e["store_orders"][start:, :, 0], yesterday, atol=1e-9)
    np.testing.assert_allclose(e["warehouse_order"][start:], yesterday, atol=1e-9)
    np.testing.assert_allclose(e["production_started"][start:], yesterday, atol=1e-9)
    # ...so with random demand the naive "same trajectory" relation is false (the lag is real).
    assert not np.allclose(loc["warehouse_order"][start:], e["warehouse_order"][start:])
    # The upstream safety stock really was ample in both systems (the premise of the relation).
    assert (e["warehouse_shipped"][start:] >= e["store_orders"][start:] - 1e-9).all()
    assert (loc["warehouse_shipped"][start:] >= loc["store_orders"][start:] - 1e-9).all()
    assert (loc["supplier_shipped"][start:] >= loc["warehouse_order"][start:] - 1e-9).all()


# --- the warehouse's allocation rules ------------------------------------------------------------

def _sequential_allocation(available: float, orders: list[float], cover: list[float]) -> list[float]:
    shipped = [0.0] * len(orders)
    left = available
    for i in sorted(range(len(orders)), key=lambda j: (cover[j], j)):
        shipped[i] = min(orders[i], left)
        left -= shipped[i]
    return shipped


@pytest.mark.parametrize("rule", ["proportional", "lowest_cover_first"])
def test_allocation_rules(rule: str) -> None:
    rng = np.random.default_rng(17)
    for _ in range(300):
        n = int(rng.integers(1, 7))
        orders = rng.uniform(0, 50, (4, n)) * (rng.random((4, n)) < 0.8)
        available = rng.uniform(0, 1.2, 4) * orders.sum(axis=1)
        cover = rng.integers(-3, 4, (4, n)).astype(float)  # many ties: broken by store index
        shipped = allocate(available, orders, cover, rule)
        assert (shipped >= 0).all() and (shipped <= orders + 1e-12).all()
        np.testing.assert_allclose(shipped.sum(axis=1), np.minimum(available, orders.sum(axis=1)), atol=1e-9)
        for b in range(4):
            if rule == "proportional":
                asked = orders[b] > 0
                if not asked.any():
                    continue
                fractions = shipped[b, asked] / orders[b, asked]
                assert np.allclose(fractions, min(1.0, available[b] / orders[b].sum()))
            else:
                np.testing.assert_allclose(shipped[b], _sequential_allocation(available[b], list(orders[b]),
                                                                             list(cover[b])), atol=1e-9)


@pytest.mark.parametrize("huge", [1e12, 1e15, 1e17])
def test_allocation_is_exact_with_huge_orders(huge: float) -> None:
    """A store asking for an absurd quantity must not change what the others get, and the
    warehouse must ship exactly its stock: no unit created, none left behind."""
    available = np.array([100.0])
    orders = np.array([[10.3, huge]])
    cover = np.array([[0.0, 1.0]])  # store 0 first
    for rule in ("lowest_cover_first", "proportional"):
        shipped = allocate(available, orders, cover, rule)
        assert shipped.sum() <= 100.0 + 1e-9, (rule, shipped)
        assert shipped.sum() >= 100.0 - 1e-9, (rule, shipped)
    shipped = allocate(available, orders, cover, "lowest_cover_first")
    np.testing.assert_allclose(shipped, [[10.3, 89.7]], atol=1e-9)


# --- agent memory ------------------------------------------------------------------------------

def test_memory_is_observed_not_physical() -> None:
    """The physics ignores ``State.memory``; the memory is an EWMA of the documented flows."""
    rng = np.random.default_rng(23)
    scenario = dataclasses.replace(get_preset("steady"), allocation="lowest_cover_first")
    state = reset(scenario, 3)
    means = np.array([m.mean for m in scenario.stores])
    assert np.allclose(state.memory.demand, means) and np.allclose(state.memory.warehouse_order, means.sum())
    for _ in range(20):
        actions, demand = random_actions(rng, scenario, 3), random_demand(rng, scenario, 3)
        scrambled = dataclasses.replace(state, memory=type(state.memory)(
            rng.uniform(0, 1e3, state.memory.stores.shape), rng.uniform(0, 1e3, state.memory.upstream.shape),
            rng.uniform(0, 1e3, state.memory.last_demand.shape)))
        nxt, flows = step(state, actions, demand, scenario)
        nxt2, flows2 = step(scrambled, actions, demand, scenario)
        for name in FLOW_FIELDS:
            assert np.array_equal(getattr(flows, name), getattr(flows2, name)), name
        for name in STATE_ARRAYS:
            assert np.array_equal(getattr(nxt, name), getattr(nxt2, name)), name
        w = MEMORY_WEIGHT
        assert 0 < w < 1
        old = state.memory
        np.testing.assert_allclose(nxt.memory.demand, (1 - w) * old.demand + w * flows.demand)
        np.testing.assert_allclose(nxt.memory.filled, (1 - w) * old.filled + w * flows.filled)
        np.testing.assert_allclose(nxt.memory.store_orders, (1 - w) * old.store_orders + w * flows.store_orders)
        np.testing.assert_allclose(nxt.memory.store_shipped, (1 - w) * old.store_shipped + w * flows.warehouse_shipped)
        np.testing.assert_allclose(nxt.memory.warehouse_order,
                                   (1 - w) * old.warehouse_order + w * flows.warehouse_order)
        np.testing.assert_allclose(nxt.memory.supplier_shipped,
                                   (1 - w) * old.supplier_shipped + w * flows.supplier_shipped)
        assert np.array_equal(nxt.memory.last_demand, demand)
        state = nxt
