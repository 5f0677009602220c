"""The multi-agent environments: the PettingZoo ``ParallelEnv`` over one chain and the SB3
``RoleVecEnv`` that trains one role with parameter sharing."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test
from pools import TUNED as TUNED_FACTORS
from pools import pool_of, preset_pool

from core.agents.menus import NUM_ACTIONS, SAFETY_FACTORS, ConstantChooser, TunedEntry, menu_index, menu_quantities
from core.agents.observations import FEATURES, TUNED, observe
from core.agents.roles import ROLE, ROLES
from core.learning.pz_env import SupplyChainParallelEnv
from core.learning.vec_env import RoleVecEnv
from core.simulation.presets import get_preset
from core.simulation.scenario import Capacities
from core.simulation.twin import Actions, State, reset, step

HORIZON = 10
GROUPS, CHAINS, STORES = 2, 3, 3
DEFAULT_INDEX = SAFETY_FACTORS.index(2.0)


def short(name: str, horizon: int = 40):
    return dataclasses.replace(get_preset(name), horizon=horizon)


def frozen_for(role: str) -> dict[str, ConstantChooser]:
    return {r: ConstantChooser(DEFAULT_INDEX) for r in ROLES if r != role}


def role_env(role: str, pool=None, **kwargs) -> RoleVecEnv:
    """``CHAINS`` chains of ``STORES`` stores per group (``steady`` by default)."""
    options = {"groups": GROUPS, "rows": CHAINS * (STORES if role == "store" else 1), "horizon": HORIZON, "seed": 7}
    options.update(kwargs)
    return RoleVecEnv(role, frozen_for(role), preset_pool("steady") if pool is None else pool, **options)


def spread_actions(num_envs: int, k: int = 0) -> np.ndarray:
    """A different menu entry for every row, spread over the menu (23 is coprime with NUM_ACTIONS)."""
    return (np.arange(num_envs) * 23 + k) % NUM_ACTIONS


# --- PettingZoo ParallelEnv ---------------------------------------------------------------------

@pytest.mark.parametrize("name", ["steady", "supply_disruption", "serial_textbook"])
def test_parallel_api(name: str) -> None:
    parallel_api_test(SupplyChainParallelEnv(short(name)), num_cycles=100)


@pytest.mark.parametrize("name", ["steady", "serial_textbook"])
def test_parallel_env_spaces_state_and_truncation(name: str) -> None:
    scenario = short(name, horizon=25)
    env = SupplyChainParallelEnv(scenario)
    n = scenario.num_stores
    assert env.possible_agents == [f"store_{i}" for i in range(n)] + ["warehouse", "supplier"]
    for agent in env.possible_agents:
        role = "store" if agent.startswith("store_") else agent
        assert env.observation_space(agent).shape == (len(FEATURES[role]),)
        assert env.action_space(agent).n == NUM_ACTIONS

    observations, infos = env.reset(seed=3)
    width = sum(env.observation_space(a).shape[0] for a in env.possible_agents)
    assert width == n * len(FEATURES["store"]) + len(FEATURES["warehouse"]) + len(FEATURES["supplier"])
    state = env.state()
    assert state.shape == (width,)
    np.testing.assert_array_equal(state, np.concatenate([observations[a] for a in env.possible_agents]))

    rng = np.random.default_rng(0)
    for day in range(1, scenario.horizon + 1):
        assert env.agents == env.possible_agents
        actions = {a: int(rng.integers(NUM_ACTIONS)) for a in env.agents}
        observations, rewards, terminations, truncations, infos = env.step(actions)
        assert env.twin_state.day == day
        assert not any(terminations.values()), "inventory has no terminal state"
        assert set(truncations) == set(env.possible_agents)
        assert all(truncations.values()) == (day == scenario.horizon)
        assert all(np.isfinite(r) for r in rewards.values())
        for agent, obs in observations.items():
            assert obs.shape == env.observation_space(agent).shape and np.isfinite(obs).all()
        assert env.state().shape == (width,)
        np.testing.assert_array_equal(env.state(), np.concatenate([observations[a] for a in env.possible_agents]))
    assert env.agents == []


def test_parallel_env_reset_seed_is_reproducible() -> None:
    def episode(seed: int) -> list[float]:
        env = SupplyChainParallelEnv(short("promo_shock", horizon=30))
        env.reset(seed=seed)
        rng = np.random.default_rng(1)
        total = []
        while env.agents:
            _, rewards, _, _, _ = env.step({a: int(rng.integers(NUM_ACTIONS)) for a in env.agents})
            total.append(sum(rewards.values()))
        return total

    assert episode(11) == episode(11)
    assert episode(11) != episode(12)


# --- RoleVecEnv -----------------------------------------------------------------------------------

def test_role_vec_env_rejects_bad_roles_missing_frozen_policies_and_pools_it_cannot_use() -> None:
    pool = preset_pool("steady")
    with pytest.raises(ValueError, match="role"):
        RoleVecEnv("retailer", frozen_for("store"), pool)
    with pytest.raises(ValueError, match="supplier"):
        RoleVecEnv("store", {"warehouse": ConstantChooser(0)}, pool)
    with pytest.raises(ValueError, match="stores \\[3\\]"):  # 3 stores do not divide 8 rows
        RoleVecEnv("store", frozen_for("store"), pool, rows=8)
    with pytest.raises(ValueError, match="no scenario for the warehouse"):  # an ample source: no upstream work
        RoleVecEnv("warehouse", frozen_for("warehouse"), preset_pool("lost_sales_textbook"))
    RoleVecEnv("warehouse", frozen_for("warehouse"), pool, rows=8)  # upstream rows are chains, any number


@pytest.mark.parametrize("role", ROLES)
def test_role_vec_env_rows_and_observations(role: str) -> None:
    env = role_env(role)
    per_chain = STORES if role == "store" else 1
    assert env.num_envs == GROUPS * CHAINS * per_chain
    assert env.observation_space.shape == (len(FEATURES[role]),)
    assert env.action_space.n == NUM_ACTIONS
    obs = env.reset()
    assert obs.shape == (env.num_envs, len(FEATURES[role])) and obs.dtype == np.float32
    assert np.isfinite(obs).all()
    assert FEATURES[role][-1] == TUNED
    np.testing.assert_array_equal(obs[:, -1], np.float32(TUNED_FACTORS[role]))  # the role's own tuned factor
    agents = [env.row_agent(row) for row in range(env.num_envs)]
    expected = [(g, c, f"store_{s}" if role == "store" else role)
                for g in range(GROUPS) for c in range(CHAINS) for s in range(per_chain)]
    assert agents == expected  # every agent exactly once, groups contiguous


@pytest.mark.parametrize("role", ROLES)
def test_role_vec_env_truncates_at_the_horizon(role: str) -> None:
    env = role_env(role)
    obs = env.reset()
    width = len(FEATURES[role])
    sin, cos = FEATURES[role].index("season_sin"), FEATURES[role].index("season_cos")
    assert np.allclose(obs[:, sin], 0.0) and np.allclose(obs[:, cos], 1.0)  # day 0
    rng = np.random.default_rng(0)
    for k in range(1, HORIZON + 1):
        env.step_async(rng.integers(NUM_ACTIONS, size=env.num_envs))
        obs, rewards, dones, infos = env.step_wait()
        assert obs.shape == (env.num_envs, width) and np.isfinite(obs).all()
        assert rewards.shape == (env.num_envs,) and rewards.dtype == np.float32 and np.isfinite(rewards).all()
        assert dones.shape == (env.num_envs,) and len(infos) == env.num_envs
        if k < HORIZON:
            assert not dones.any(), k
            assert all("terminal_observation" not in info for info in infos)
            assert all(g.state.day == k for g in env.groups)
            assert np.allclose(obs[:, sin], math.sin(2 * math.pi * k / 365), atol=1e-6)
    assert dones.all()
    for info in infos:
        terminal = info["terminal_observation"]
        assert terminal.shape == (width,) and np.isfinite(terminal).all()
        assert info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == HORIZON
        # the terminal observation is the evening of the last day ...
        assert terminal[sin] == pytest.approx(math.sin(2 * math.pi * HORIZON / 365), abs=1e-6)
    # ... while the returned observation opens a new episode
    assert all(g.state.day == 0 and g.shadow.day == 0 for g in env.groups)
    assert np.allclose(obs[:, sin], 0.0) and np.allclose(obs[:, cos], 1.0)
    assert np.all(env.returns == 0.0)
    assert len(env.completed_episodes) == GROUPS
    for episode in env.completed_episodes:
        assert 0.0 <= episode["fill_rate"] <= 1.0
        assert all(np.isfinite(episode[k]) for k in ("reward", "lost_sales_per_day", "holding_cost_per_day"))


def test_role_vec_env_auto_reset_is_a_fresh_episode_of_a_fixed_scenario() -> None:
    env = role_env("warehouse", pool=preset_pool("steady"))
    first = env.reset()
    rng = np.random.default_rng(1)
    for _ in range(HORIZON):
        obs, _, dones, infos = env.step(rng.integers(NUM_ACTIONS, size=env.num_envs))
    assert dones.all()
    np.testing.assert_array_equal(obs, first)  # opening stock: the same observation as the first reset
    terminal = np.stack([info["terminal_observation"] for info in infos])
    assert not np.array_equal(terminal, first)


def _mixed_pool():
    """Three pool scenarios of 1, 3 and 4 stores (12 store rows: 12, 4 or 3 chains), each with its own tuned
    factors, no initial cover (so that every action orders something)."""
    names = {"serial_textbook": -0.5, "steady": 0.7, "thin_margin": 1.6}
    return [entry for name, store in names.items()
            for entry in pool_of(get_preset(name), tuned={**TUNED_FACTORS, "store": store}, initial_cover_days=0.0)]


MIXED_ROWS = {"store": 12, "warehouse": CHAINS, "supplier": CHAINS}


def mixed_env(role: str, frozen=None, groups: int = 6, seed: int = 3) -> RoleVecEnv:
    env = RoleVecEnv(role, frozen_for(role) if frozen is None else frozen, _mixed_pool(), groups=groups,
                     rows=MIXED_ROWS[role], horizon=HORIZON, seed=seed)
    env.reset()
    assert {g.scenario.num_stores for g in env.groups} == {1, 3, 4}, "the test needs every store count drawn"
    return env


@pytest.mark.parametrize("role", ROLES)
def test_role_vec_env_groups_of_different_store_counts_fill_their_rows(role: str) -> None:
    env = mixed_env(role)
    assert env.num_envs == 6 * MIXED_ROWS[role]
    agents = [env.row_agent(row) for row in range(env.num_envs)]
    expected = []
    for g, group in enumerate(env.groups):
        n = group.scenario.num_stores
        chains = MIXED_ROWS[role] // (n if role == "store" else 1)
        assert group.state.store_on_hand.shape == (chains, n) == group.shadow.store_on_hand.shape
        assert group.demand.shape[:1] == (chains,)
        expected += [(g, c, f"store_{s}" if role == "store" else role)
                     for c in range(chains) for s in range(n if role == "store" else 1)]
    assert agents == expected  # every agent of every group exactly once, groups contiguous
    obs = env._observe()
    for g, group in enumerate(env.groups):  # each group's rows observe the tuned factor of its own scenario
        np.testing.assert_array_equal(obs[g * env.rows: (g + 1) * env.rows, -1], np.float32(group.tuned[role]))
    assert len({g.tuned["store"] for g in env.groups}) == 3


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("mixed", [False, True], ids=["same_stores", "mixed_stores"])
def test_row_agent_maps_actions_to_the_right_agent(role: str, mixed: bool) -> None:
    """Each row's action drives exactly the (group, chain, store) ``row_agent`` names: replaying
    the twin with orders built from that mapping reproduces the environment's state bit for bit (also where the
    groups' scenarios have different numbers of stores, hence of chains)."""
    if mixed:
        env = mixed_env(role)
    else:
        env = role_env(role, pool=pool_of(get_preset("steady"), get_preset("seasonal"), initial_cover_days=0.0))
        env.reset()
    rows = env.rows
    for k in range(4):
        actions = spread_actions(env.num_envs, k)
        before = [g.state for g in env.groups]
        env.step(actions)
        for g, (group, state) in enumerate(zip(env.groups, before, strict=True)):
            sc, fc = group.scenario, group.forecast
            picked = np.full(ROLE[role].agents_shape(state), -1)
            for row in range(g * rows, (g + 1) * rows):
                group_index, chain, agent = env.row_agent(row)
                assert group_index == g
                if role == "store":
                    picked[chain, int(agent.removeprefix("store_"))] = actions[row]
                else:
                    assert agent == role
                    picked[chain] = actions[row]
            assert (picked >= 0).all()
            quantities = {}
            for r in ROLES:
                choice = picked if r == role else np.full(ROLE[r].agents_shape(state), DEFAULT_INDEX)
                quantities[r] = menu_quantities(state, sc, fc, r, choice)
            assert np.unique(np.round(quantities[role], 9)).size > 1, "the test needs actions that matter"
            expected, _ = step(state, Actions(quantities["store"], quantities["warehouse"], quantities["supplier"]),
                               group.demand[:, state.day], sc)
            _assert_same_state(group.state, expected)


@pytest.mark.parametrize("role", ROLES)
def test_role_vec_env_shadow_runs_every_role_s_tuned_entry(role: str) -> None:
    """The shadow chains run every role's tuned entry (of each group's own scenario) on the same demand: a trained
    role that picks its tuned entry, the others frozen at theirs, is the shadow bit for bit and earns a reward of
    exactly zero; one entry above it, the chains part from the shadow and the rewards do not stay zero."""
    env = mixed_env(role, frozen={r: TunedEntry() for r in ROLES if r != role})
    tuned_actions = np.concatenate([np.full(env.rows, menu_index(g.tuned[role])) for g in env.groups])
    for _ in range(HORIZON // 2):
        _, rewards, _, _ = env.step(tuned_actions)
        np.testing.assert_array_equal(rewards, 0.0)
        for group in env.groups:
            _assert_same_state(group.state, group.shadow)
    moved = []
    for _ in range(HORIZON - HORIZON // 2 - 1):
        _, rewards, _, _ = env.step(tuned_actions + 1)
        moved.append(rewards)
    assert np.any(np.concatenate(moved) != 0.0)
    assert any(not np.array_equal(g.state.warehouse_on_hand, g.shadow.warehouse_on_hand)
               or not np.array_equal(g.state.store_on_hand, g.shadow.store_on_hand) for g in env.groups)


def _assert_same_state(got: State, want: State) -> None:
    assert got.day == want.day
    for field in dataclasses.fields(State):
        if field.name in ("day", "memory"):
            continue
        np.testing.assert_array_equal(getattr(got, field.name), getattr(want, field.name), err_msg=field.name)
    np.testing.assert_array_equal(got.memory.stores, want.memory.stores)
    np.testing.assert_array_equal(got.memory.upstream, want.memory.upstream)


def test_role_vec_env_draws_presets_the_preset_share_of_the_time() -> None:
    pool = [*preset_pool("steady"), *pool_of(get_preset("seasonal").with_num_stores(2), preset=False)]
    for share, expected in ((1.0, {"steady"}), (0.0, {"seasonal"})):
        env = RoleVecEnv("store", frozen_for("store"), pool, groups=8, rows=6, horizon=HORIZON, seed=1,
                         preset_share=share)
        names = set()
        for _ in range(3):
            env.reset()
            names |= {g.scenario.name for g in env.groups}
        assert names == expected, share
    env = RoleVecEnv("store", frozen_for("store"), pool, groups=64, rows=6, horizon=HORIZON, seed=1, preset_share=0.2)
    env.reset()
    presets = sum(g.scenario.name == "steady" for g in env.groups)
    assert 4 <= presets <= 24  # 12.8 expected (binomial, sd 3.2)
    assert all(g.scenario.horizon == HORIZON for g in env.groups)


def test_role_vec_env_store_rows_order_more_with_a_higher_safety_factor() -> None:
    """On identical chains, the store row given the top of the menu orders at least as much as the
    one given the bottom, and strictly more once there is anything to order."""
    env = RoleVecEnv("store", frozen_for("store"), pool_of(get_preset("steady"), initial_cover_days=0.0), groups=1,
                     rows=6, horizon=HORIZON)
    env.reset()
    g = env.groups[0]
    g.demand[1] = g.demand[0]  # identical chains
    low, high = 0, NUM_ACTIONS - 1
    actions = np.full(env.num_envs, DEFAULT_INDEX)
    row_low, row_high = 1, 4  # chain 0 store_1, chain 1 store_1
    assert env.row_agent(row_low) == (0, 0, "store_1") and env.row_agent(row_high) == (0, 1, "store_1")
    actions[row_low], actions[row_high] = low, high
    env.step(actions)
    ordered = g.state.memory.store_orders  # every chain started equal: orders differ only by the action
    assert ordered[1, 1] > ordered[0, 1]
    np.testing.assert_array_equal(ordered[0, [0, 2]], ordered[1, [0, 2]])


# --- observations do not depend on the number of stores ------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_observation_width_does_not_depend_on_num_stores(role: str) -> None:
    widths = set()
    for stores in (1, 4):
        env = role_env(role, pool=pool_of(get_preset("steady").with_num_stores(stores)), groups=1,
                       rows=2 * (stores if role == "store" else 1))
        obs = env.reset()
        assert obs.shape[0] == 2 * (stores if role == "store" else 1)
        widths.add(obs.shape[1])
        widths.add(env.observation_space.shape[0])
    assert widths == {len(FEATURES[role])}


def _with_identical_stores(n: int):
    base = get_preset("seasonal")
    store = base.stores[0]
    return dataclasses.replace(base, stores=(store,) * n,
                               capacities=Capacities(production=1.25 * store.mean * n))


def test_observations_of_identical_stores_do_not_depend_on_their_number() -> None:
    one, three = _with_identical_stores(1), _with_identical_stores(3)
    env_one, env_three = SupplyChainParallelEnv(one), SupplyChainParallelEnv(three)
    for env in (env_one, env_three):  # every agent observes its role's tuned factor of the env's scenario, last
        obs, _ = env.reset(seed=0)
        for agent, observation in obs.items():
            assert observation[-1] == np.float32(env.tuned[agent if agent in ROLES else "store"])
    # tuning (8 demand paths of each chain) may settle on neighbouring menu entries for the two chains: what this test
    # checks is the observers, so both chains are given the same tuned factors
    env_three.tuned = env_one.tuned
    obs_one, _ = env_one.reset(seed=0)
    obs_three, _ = env_three.reset(seed=0)
    assert len(obs_three) == 5 and len(obs_one) == 3
    for i in range(3):
        np.testing.assert_array_equal(obs_three[f"store_{i}"], obs_one["store_0"])
    for role in ("warehouse", "supplier"):
        assert obs_three[role].shape == obs_one[role].shape
        np.testing.assert_allclose(obs_three[role], obs_one[role], rtol=1e-6, atol=1e-6)


def test_observations_stay_equal_when_identical_stores_see_the_same_customers() -> None:
    """Thirty days of the same customers at every store and orders scaled with the number of stores:
    the three-store chain looks to every agent exactly like the one-store chain (features are per
    store, or pooled and divided by pooled forecasts)."""
    from core.simulation.forecast import Forecast

    one, three = _with_identical_stores(1), _with_identical_stores(3)
    f_one, f_three = Forecast.of(one), Forecast.of(three)
    s_one, s_three = reset(one), reset(three)
    demand = np.random.default_rng(5).poisson(one.stores[0].mean, size=30).astype(float)
    rng = np.random.default_rng(6)
    for t in range(30):
        o_one = {r: observe(r, s_one, one, f_one, TUNED_FACTORS) for r in ROLES}
        o_three = {r: observe(r, s_three, three, f_three, TUNED_FACTORS) for r in ROLES}
        for i in range(3):
            np.testing.assert_allclose(o_three["store"][0, i], o_one["store"][0, 0], rtol=1e-5, atol=1e-5,
                                       err_msg=f"store_{i} day {t}")
        for r in ("warehouse", "supplier"):
            np.testing.assert_allclose(o_three[r], o_one[r], rtol=1e-5, atol=1e-5, err_msg=f"{r} day {t}")
        q = {r: menu_quantities(s_one, one, f_one, r, rng.integers(NUM_ACTIONS, size=(1, 1) if r == "store" else 1))
             for r in ROLES}
        s_one, _ = step(s_one, Actions(q["store"], q["warehouse"], q["supplier"]), np.full((1, 1), demand[t]), one)
        s_three, _ = step(s_three, Actions(np.tile(q["store"], (1, 3)), 3 * q["warehouse"], 3 * q["supplier"]),
                          np.full((1, 3), demand[t]), three)


# --- the stock a store expects when tonight's order arrives ----------------------------------------------------

def test_normal_cdf_matches_the_standard_library() -> None:
    from statistics import NormalDist

    from core.agents.observations import normal_cdf

    x = np.linspace(-8.0, 8.0, 3201)
    np.testing.assert_allclose(normal_cdf(x), [NormalDist().cdf(v) for v in x], rtol=0, atol=2e-7)


def _expected(stock: float, arrivals: list[float], lost_sales: bool, f: float = 5.0, sd: float = 2.0) -> float:
    from core.agents.observations import expected_stock_at_arrival

    return float(expected_stock_at_arrival(np.array([stock]), [np.array([a]) for a in arrivals], np.array([f]),
                                           np.array([sd]), lost_sales)[0])


@pytest.mark.parametrize("stock, arrivals", [(0.0, [0.0, 0.0, 0.0]), (3.0, [5.0, 5.0, 5.0]), (-4.0, [9.0, 0.0, 2.0]),
                                             (60.0, [5.0, 5.0, 5.0])])
def test_expected_stock_at_arrival_with_backorders_is_the_position_less_the_demand_until_then(
        stock: float, arrivals: list[float]) -> None:
    assert _expected(stock, arrivals, lost_sales=False) == pytest.approx(stock + sum(arrivals) - 5.0 * len(arrivals))


def test_expected_stock_at_arrival_under_lost_sales_counts_the_sales_lost_before() -> None:
    """Never below zero, never below the backorder projection, equal to it when a run-out is out of reach, and
    more valuable stock arriving early than late (sales lost in the gap do not come back)."""
    for stock, arrivals in [(0.0, [0.0, 0.0, 0.0]), (2.0, [0.0, 0.0, 12.0]), (8.0, [5.0, 5.0, 5.0])]:
        expected = _expected(stock, arrivals, lost_sales=True)
        assert expected >= max(0.0, stock + sum(arrivals) - 15.0) - 1e-12
    assert _expected(60.0, [5.0, 5.0, 5.0], lost_sales=True) == pytest.approx(60.0, abs=1e-9)
    assert _expected(0.0, [12.0, 0.0, 0.0], lost_sales=True) < _expected(0.0, [0.0, 0.0, 12.0], lost_sales=True)


def test_expected_stock_at_arrival_is_close_to_simulated_lost_sales() -> None:
    """Against 200,000 simulated Poisson(5) runs per case, the normal approximation is within a unit (it overstates
    what is left when arrivals fall short of demand day after day: 0.8 units against 0.06 in the last case)."""
    rng = np.random.default_rng(3)
    for stock, arrivals in [(4.0, [5.0, 5.0, 5.0, 5.0]), (12.0, [0.0, 3.0, 8.0, 5.0]), (1.0, [2.0, 2.0, 2.0, 2.0])]:
        level = np.full(200_000, stock)
        for arriving in arrivals:
            level = np.maximum(level + arriving - rng.poisson(5.0, level.size), 0.0)
        assert _expected(stock, arrivals, lost_sales=True, sd=math.sqrt(5.0)) == pytest.approx(level.mean(), abs=1.0)
