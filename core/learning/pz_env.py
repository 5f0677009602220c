"""A PettingZoo ``ParallelEnv`` over the twin: one supply chain, one agent per node.

Agents ``store_0 .. store_{N-1}``, ``warehouse`` and ``supplier`` each observe their local,
scale-free features (``core.agents.observations``) and choose a menu entry (``core.agents.menus``). Rewards are
the reconciliation engine's per-agent rewards (with default weights, minus the agent's own cost
per day). ``state()`` concatenates every agent's observation for centralised critics. The horizon
is a truncation, never a termination: inventory has no terminal state.
"""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from core.agents.menus import NUM_ACTIONS, decide
from core.agents.observations import FEATURES, observe
from core.agents.roles import ROLE, ROLES, role_of_agent
from core.serving.registry import tuned_menu
from core.simulation.demand import sample_demand
from core.simulation.forecast import Forecast
from core.simulation.presets import get_preset
from core.simulation.reconcile import node_names, reconcile
from core.simulation.scenario import Scenario
from core.simulation.twin import reset, step


class SupplyChainParallelEnv(ParallelEnv):
    metadata = {"name": "retail_supply_chain_v0", "render_modes": []}

    def __init__(self, scenario: Scenario | str = "steady") -> None:
        self.scenario = get_preset(scenario) if isinstance(scenario, str) else scenario
        self.possible_agents = node_names(self.scenario.num_stores)
        self.forecast = Forecast.of(self.scenario)
        self.tuned = tuned_menu(self.scenario)  # what the learned policies observe of the scenario
        self.agents: list[str] = []

    @functools.cache  # noqa: B019 - PettingZoo expects the same space object per agent
    def observation_space(self, agent: str) -> gym.spaces.Box:
        return gym.spaces.Box(-np.inf, np.inf, (len(FEATURES[role_of_agent(agent).name]),), np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(NUM_ACTIONS)

    def _observations(self) -> dict[str, np.ndarray]:
        n = self.scenario.num_stores
        out = {}
        for role in ROLES:
            obs = observe(role, self.twin_state, self.scenario, self.forecast, self.tuned)[0]
            obs = obs.reshape(-1, len(FEATURES[role]))
            out.update(zip(ROLE[role].agent_ids(n), obs, strict=True))
        return out

    def reset(self, seed: int | None = None, options: dict | None = None):
        rng = np.random.default_rng(seed)
        self.demand = sample_demand(self.scenario, 1, rng)
        self.twin_state = reset(self.scenario, 1)
        self.agents = list(self.possible_agents)
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, int]):
        n = self.scenario.num_stores
        state = self.twin_state
        choices = {role: np.array([actions[agent] for agent in ROLE[role].agent_ids(n)])
                   .reshape(ROLE[role].agents_shape(state)) for role in ROLES}
        self.twin_state, flows = step(state, decide(state, self.scenario, self.forecast, choices),
                                      self.demand[:, state.day], self.scenario)
        ledger = reconcile(flows, self.twin_state, self.scenario)
        names = self.possible_agents
        rewards = {a: float(ledger.reward[0, i]) for i, a in enumerate(names)}
        infos = {a: {"ledger": {k: float(v[0, i]) for k, v in ledger.as_dict().items()}} for i, a in enumerate(names)}
        truncated = self.twin_state.day >= self.scenario.horizon
        observations = self._observations()
        terminations = {a: False for a in names}
        truncations = {a: truncated for a in names}
        if truncated:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        return np.concatenate([self._observations()[a] for a in self.possible_agents])
