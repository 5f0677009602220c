"""Throughput benchmarks of the twin and the tuner (``python -m core bench``).

An agent-step is one agent's period: with 3 stores a chain has 5 agents, so one call of
``step`` on B chains is 5 B agent-steps. Timed work is what an environment does every period:
the twin's step plus the reconciliation of every agent's reward. Each figure is the median of
several repeats, so a busy moment on a shared machine moves it little.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from core.demand import sample_demand
from core.policies import reorder_point_mix
from core.presets import get_preset
from core.reconcile import reconcile
from core.scenario import Scenario
from core.tuning import tune_base_stock
from core.twin import reset, step


def step_rate(scenario: Scenario, batch_size: int, periods: int, repeats: int = 5) -> dict[str, float]:
    """Median chain-steps and agent-steps per second of step + reward, fixed actions."""
    demand = sample_demand(scenario, batch_size, np.random.default_rng(0), periods)
    start = reset(scenario, batch_size)
    actions = reorder_point_mix().actions(start, scenario)
    seconds = []
    for _ in range(repeats):
        state = start
        begin = time.perf_counter()
        for t in range(periods):
            state, flows = step(state, actions, demand[:, t], scenario)
            reconcile(flows, state, scenario).reward  # noqa: B018 - computing the reward is the point
        seconds.append((time.perf_counter() - begin) / periods)
    per_step = statistics.median(seconds)
    agents = scenario.num_stores + 2
    return {"batch_size": batch_size, "chain_steps_per_s": batch_size / per_step,
            "agent_steps_per_s": agents * batch_size / per_step, "microseconds_per_step": per_step * 1e6}


def tuner_seconds(scenario: Scenario, repeats: int = 3) -> float:
    """Median wall-clock seconds of ``tune_base_stock`` on the scenario."""
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        tune_base_stock(scenario)
        seconds.append(time.perf_counter() - begin)
    return statistics.median(seconds)


def run_bench(scenario_name: str = "steady") -> dict[str, object]:
    scenario = get_preset(scenario_name)
    return {
        "scenario": scenario_name,
        "agents_per_chain": scenario.num_stores + 2,
        "single_chain": step_rate(scenario, 1, 2000),
        "batched": step_rate(scenario, 4096, 100),
        "tuner_seconds": tuner_seconds(scenario),
    }
