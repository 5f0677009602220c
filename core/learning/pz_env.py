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

from core.agents.menus import NUM_ACTIONS, menu_quantities
from core.agents.observations import FEATURES, OBSERVERS
from core.simulation.demand import sample_demand
from core.simulation.forecast import Forecast
from core.simulation.presets import get_preset
from core.simulation.reconcile import node_names, reconcile
from core.simulation.scenario import Scenario
from core.simulation.twin import Actions, reset, step


def role_of(agent: str) -> str:
    return "store" if agent.startswith("store_") else agent


class SupplyChainParallelEnv(ParallelEnv):
    metadata = {"name": "retail_supply_chain_v0", "render_modes": []}

    def __init__(self, scenario: Scenario | str = "steady") -> None:
        self.scenario = get_preset(scenario) if isinstance(scenario, str) else scenario
        self.possible_agents = node_names(self.scenario.num_stores)
        self.forecast = Forecast.of(self.scenario)
        self.agents: list[str] = []

    @functools.cache  # noqa: B019 - PettingZoo expects the same space object per agent
    def observation_space(self, agent: str) -> gym.spaces.Box:
        return gym.spaces.Box(-np.inf, np.inf, (len(FEATURES[role_of(agent)]),), np.float32)

    @functools.cache  # noqa: B019
    def action_space(self, agent: str) -> gym.spaces.Discrete:
        return gym.spaces.Discrete(NUM_ACTIONS)

    def _observations(self) -> dict[str, np.ndarray]:
        obs = {role: OBSERVERS[role](self.twin_state, self.scenario, self.forecast)[0] for role in FEATURES}
        out = {f"store_{i}": obs["store"][i] for i in range(self.scenario.num_stores)}
        out.update(warehouse=obs["warehouse"], supplier=obs["supplier"])
        return out

    def reset(self, seed: int | None = None, options: dict | None = None):
        rng = np.random.default_rng(seed)
        self.demand = sample_demand(self.scenario, 1, rng)
        self.twin_state = reset(self.scenario, 1)
        self.agents = list(self.possible_agents)
        return self._observations(), {agent: {} for agent in self.agents}

    def step(self, actions: dict[str, int]):
        n = self.scenario.num_stores
        choice = {
            "store": np.array([[actions[f"store_{i}"] for i in range(n)]]),
            "warehouse": np.array([actions["warehouse"]]),
            "supplier": np.array([actions["supplier"]]),
        }
        state = self.twin_state
        quantities = {role: menu_quantities(state, self.scenario, self.forecast, role, c) for role, c in choice.items()}
        self.twin_state, flows = step(state, Actions(quantities["store"], quantities["warehouse"],
                                                     quantities["supplier"]),
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
