"""Pre-training validation: reset and step a scenario with random actions for every agent and
check that states, observations of the ledger, rewards and reconciliation are finite and sensible.

Each check yields one ``Check``; the CLI prints one line per check and fails if any fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from core.agents.roles import ROLE
from core.agents.rules import random_mix, store_demand_stats
from core.simulation.demand import sample_demand
from core.simulation.reconcile import Ledger, reconcile
from core.simulation.scenario import RewardWeights, Scenario
from core.simulation.twin import State, reset, step, units_entered

TOLERANCE = 1e-6


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def _state_arrays(state: State) -> list[np.ndarray]:
    return [state.store_on_hand, state.store_backorders, state.store_pipeline, state.warehouse_on_hand,
            state.warehouse_pipeline, state.supplier_on_hand, state.production_pipeline]


def _sound(arrays: list[np.ndarray]) -> bool:
    return all(np.isfinite(a).all() and (a >= -TOLERANCE).all() for a in arrays)


def validate(scenario: Scenario, batch_size: int = 16, periods: int | None = None, seed: int = 0) -> Iterator[Check]:
    """Run ``periods`` (default: the horizon, at most 365) days of random actions and check them."""
    periods = min(scenario.horizon, 365) if periods is None else periods
    rng = np.random.default_rng(seed)
    demand = sample_demand(scenario, batch_size, rng, periods)
    yield Check("demand", bool(np.isfinite(demand).all() and (demand >= 0).all()),
                f"{demand.size} draws, mean {demand.mean():.2f} units/day per store")

    state = reset(scenario, batch_size)
    yield Check("reset", _sound(_state_arrays(state)), f"{batch_size} chains, {state.units_in_network[0]:.1f} units")

    mix = random_mix(rng)
    opening = state.units_in_network
    entered = np.zeros(batch_size)
    sold = np.zeros(batch_size)
    worst_conservation = worst_split = worst_reward = 0.0
    states_ok = ledgers_ok = True
    actions_seen = {"store": [], "warehouse": [], "supplier": []}
    ledgers: list[Ledger] = []
    default_weights = scenario.reward_weights == RewardWeights()
    for t in range(periods):
        actions = mix.actions(state, scenario)
        actions_seen["store"].append(actions.store_orders)
        actions_seen["warehouse"].append(actions.warehouse_order)
        actions_seen["supplier"].append(actions.production)
        state, flows = step(state, actions, demand[:, t], scenario)
        ledger = reconcile(flows, state, scenario)
        ledgers.append(ledger)
        entered += units_entered(flows, scenario)
        sold += flows.sold.sum(axis=1)
        imbalance = state.units_in_network - opening - entered + sold
        worst_conservation = max(worst_conservation, float(np.abs(imbalance).max()))
        worst_split = max(worst_split, float(np.abs(flows.demand - flows.filled - flows.unmet).max()))
        states_ok &= _sound(_state_arrays(state))
        values = ledger.as_dict()
        ledgers_ok &= all(np.isfinite(v).all() for v in values.values())
        ledgers_ok &= bool(((values["fill_rate"] >= 0) & (values["fill_rate"] <= 1 + TOLERANCE)).all())
        if default_weights:
            worst_reward = max(worst_reward, float(np.abs(values["reward"].sum(1) + values["total_cost"].sum(1)).max()))

    yield Check("step", states_ok, f"{periods} periods x {batch_size} chains: every stock finite and >= 0")
    yield Check("conservation", worst_conservation < TOLERANCE * max(1.0, float(opening.max())),
                f"units in network = opening + produced (or shipped by an ample source) - sold, "
                f"worst error {worst_conservation:.2e} units")
    yield Check("demand split", worst_split < TOLERANCE,
                f"demand = filled + lost/backordered, worst error {worst_split:.2e}")
    yield Check("reconciliation", ledgers_ok, "every ledger metric finite, fill rates in [0, 1]")
    if default_weights:
        yield Check("rewards", worst_reward < TOLERANCE * max(1.0, float(np.abs(values["total_cost"]).max())),
                    f"sum of agent rewards = -system cost, worst error {worst_reward:.2e}")
    else:
        yield Check("rewards", ledgers_ok, "custom reward weights: every reward finite")
    costs = np.stack([led.total_cost for led in ledgers])
    yield Check("trade-off", bool((costs > 0).any()), f"mean system cost {costs.sum(axis=2).mean():.2f} per day")

    mean, _ = store_demand_stats(scenario)
    for role, seen in actions_seen.items():
        scale = ROLE[role].pool(mean)
        relative = np.concatenate([np.ravel(a / scale) for a in seen])
        low, high = np.quantile(relative, [0.02, 0.98])
        yield Check(f"actions {role}", bool(low < 0.1 and high > 1.8),
                    f"random requests covered {low:.2f}..{high:.2f} x mean demand")
