"""An SB3 ``VecEnv`` that trains one role with parameter sharing, at NumPy speed.

The environment holds ``groups`` batches of supply chains; every group runs its own scenario drawn from the run's
pool (``core.learning.pool``: a preset ``preset_share`` of the time, else a random scenario) through the batched twin,
redrawn every episode. Each row of the VecEnv is one agent of the trained role: for stores a (group, chain, store)
triple, so one policy learns from every store of every chain (centralised training, decentralised execution), ``rows``
of them per group (``rows / stores`` chains); for the warehouse and the supplier a (group, chain) pair, ``rows``
chains per group. The other roles act through fixed choosers (their tuned entries or frozen learned policies).

Rewards are per day, scale-free (cost divided by mean demand x stockout price) and measured
against a shadow copy of every chain run by every role's tuned entry on the same demand
(common random numbers). The shadow's cost does not depend on the agent's actions, so
subtracting it leaves the policy gradient unbiased while cancelling most of the demand noise.
A store is charged an equal share of its chain's cost (charged only its own, a store learns to
over-order to win a larger share of the warehouse's stock when it is short, at its siblings'
cost); the warehouse its own cost plus its stores' (its echelon); the supplier the whole chain's.
The horizon is a truncation: every row is done together, with ``terminal_observation`` and
``TimeLimit.truncated`` in its info so PPO bootstraps the value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from core.agents.menus import NUM_ACTIONS, Chooser, TunedEntry, choose, decide
from core.agents.observations import FEATURES, observe
from core.agents.roles import ROLE, ROLES
from core.learning.pool import PoolScenario
from core.simulation.demand import sample_demand
from core.simulation.forecast import Forecast
from core.simulation.reconcile import Ledger, reconcile
from core.simulation.rollout import day_sums, flow_rates
from core.simulation.scenario import Scenario
from core.simulation.twin import Actions, State, reset, step

TRAINING_KPIS = ("fill_rate", "lost_sales_per_day", "holding_cost_per_day", "cost_per_day")  # the training log's


@dataclass
class Group:
    scenario: Scenario
    tuned: dict[str, float]  # each role's tuned safety factor on the scenario
    forecast: Forecast
    demand: np.ndarray  # (chains, T, N)
    state: State
    shadow: State  # the same chains run by the reference mix, on the same demand
    reward_scale: np.ndarray  # (N,) for stores, () upstream
    totals: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # episode sums per chain (training log)

    def record(self, ledger: Ledger) -> None:
        for key, value in day_sums(ledger, self.scenario.num_stores).items():
            self.totals[key] = self.totals.get(key, 0.0) + value

    def summary(self, mean_return: float) -> dict[str, float | str]:
        """The episode's KPIs (``core.simulation.rollout.flow_rates``), averaged over the group's chains."""
        rates = flow_rates(self.totals, self.state.day)
        return {"scenario": self.scenario.name, "reward": mean_return,
                **{key: float(np.mean(rates[key])) for key in TRAINING_KPIS}}


class RoleVecEnv(VecEnv):
    """Rows are the trained role's agents, ``rows`` per group, in ``groups`` groups of chains."""

    def __init__(self, role: str, frozen: dict[str, Chooser], pool: list[PoolScenario], *, groups: int = 16,
                 rows: int = 48, horizon: int = 365, seed: int = 0, preset_share: float = 0.2) -> None:
        if role not in ROLES:
            raise ValueError(f"role: got {role!r}; allowed: {', '.join(ROLES)}")
        missing = [r for r in ROLES if r != role and r not in frozen]
        if missing:
            raise ValueError(f"frozen: no policy for {', '.join(missing)}")
        self.role, self.frozen = role, frozen
        # upstream roles have no work where the source is ample
        usable = [p for p in pool if ROLE[role].per_store or p.scenario.upstream == "network"]
        uneven = sorted({p.scenario.num_stores for p in usable
                         if ROLE[role].per_store and rows % p.scenario.num_stores})
        if not usable or uneven:
            raise ValueError(f"pool: {'no scenario for the ' + role if not usable else f'stores {uneven}'}; "
                             f"allowed: scenarios whose store counts divide rows ({rows})")
        self.presets = [p for p in usable if p.preset] or usable
        self.drawn = [p for p in usable if not p.preset] or usable
        self.num_groups, self.rows, self.horizon, self.preset_share = groups, rows, horizon, preset_share
        self.rng = np.random.default_rng(seed)
        observation_space = gym.spaces.Box(-np.inf, np.inf, (len(FEATURES[role]),), np.float32)
        super().__init__(groups * rows, observation_space, gym.spaces.Discrete(NUM_ACTIONS))
        self.groups: list[Group] = []
        self.returns = np.zeros(self.num_envs)
        self.pending: np.ndarray | None = None
        self.completed_episodes: list[dict[str, float | str]] = []  # drained by the training log
        # The tuned entries run a shadow copy of every chain on the same demand; rewards are
        # measured against it (see the module docstring).
        self.reference = dict.fromkeys(ROLES, TunedEntry())

    # --- episode management -------------------------------------------------------------
    def _new_group(self) -> Group:
        candidates = self.presets if self.rng.random() < self.preset_share else self.drawn
        drawn = candidates[int(self.rng.integers(len(candidates)))]
        scenario = dataclasses.replace(drawn.scenario, horizon=self.horizon)
        chains = self.rows // ROLE[self.role].agents_per_chain(scenario.num_stores)
        scale = ROLE[self.role].pool(np.array([m.mean for m in scenario.stores]) * scenario.costs.stockout)
        start = reset(scenario, chains)
        return Group(scenario, drawn.tuned, Forecast.of(scenario), sample_demand(scenario, chains, self.rng), start,
                     start, scale)

    def _observe(self) -> np.ndarray:
        obs = [observe(self.role, g.state, g.scenario, g.forecast, g.tuned) for g in self.groups]
        return np.concatenate([o.reshape(-1, o.shape[-1]) for o in obs])

    def reset(self) -> np.ndarray:
        self.groups = [self._new_group() for _ in range(self.num_groups)]
        self.returns[:] = 0.0
        return self._observe()

    # --- stepping --------------------------------------------------------------------------
    def step_async(self, actions: np.ndarray) -> None:
        self.pending = np.asarray(actions).reshape(-1)

    def _decide(self, group: Group, state: State, choosers: dict[str, Chooser],
                choice: np.ndarray | None = None) -> Actions:
        """Actions of every role: ``choice`` for the trained role if given, else the choosers'."""
        choices = {role: choose(choosers[role], role, state, group.scenario, group.forecast, group.tuned)
                   for role in ROLES if role != self.role or choice is None}
        if choice is not None:
            choices[self.role] = choice.reshape(ROLE[self.role].agents_shape(state))
        return decide(state, group.scenario, group.forecast, choices)

    def step_wait(self):
        assert self.pending is not None, "step_async first"
        rows = self.rows
        rewards = np.empty(self.num_envs)
        for i, group in enumerate(self.groups):
            choice = self.pending[i * rows: (i + 1) * rows]
            actions = self._decide(group, group.state, self.frozen, choice)
            t = group.state.day
            group.state, flows = step(group.state, actions, group.demand[:, t], group.scenario)
            ledger = reconcile(flows, group.state, group.scenario)
            group.record(ledger)
            group.shadow, shadow_flows = step(group.shadow, self._decide(group, group.shadow, self.reference),
                                              group.demand[:, t], group.scenario)
            shadow_reward = reconcile(shadow_flows, group.shadow, group.scenario).reward
            reward = ROLE[self.role].reward_share(ledger.reward - shadow_reward, group.scenario)
            rewards[i * rows: (i + 1) * rows] = (reward / group.reward_scale).reshape(-1)
        self.returns += rewards
        obs = self._observe()
        horizon_reached = self.groups[0].state.day >= self.groups[0].demand.shape[1]
        dones = np.full(self.num_envs, horizon_reached)
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        if horizon_reached:
            length = self.groups[0].state.day
            self.completed_episodes.extend(g.summary(float(self.returns[i * self.rows: (i + 1) * self.rows].mean()))
                                           for i, g in enumerate(self.groups))
            for j, info in enumerate(infos):
                info.update({"terminal_observation": obs[j], "TimeLimit.truncated": True,
                             "episode": {"r": float(self.returns[j]), "l": length}})
            obs = self.reset()
        return obs, rewards.astype(np.float32), dones, infos

    # --- the rest of the VecEnv interface -------------------------------------------------
    def close(self) -> None:
        self.groups = []

    def get_attr(self, attr_name, indices=None):
        return [getattr(self, attr_name)] * len(self._get_indices(indices))

    def set_attr(self, attr_name, value, indices=None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name, *method_args, indices=None, **method_kwargs):
        return [getattr(self, method_name)(*method_args, **method_kwargs) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class, indices=None):
        return [False] * len(self._get_indices(indices))

    def seed(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)
        return [seed] * self.num_envs

    def row_agent(self, row: int) -> tuple[int, int, str]:
        """(group, chain, agent id) of a row (after ``reset``)."""
        role = ROLE[self.role]
        group, rest = divmod(row, self.rows)
        num_stores = self.groups[group].scenario.num_stores
        chain, agent = divmod(rest, role.agents_per_chain(num_stores))
        return group, chain, role.agent_ids(num_stores)[agent]
