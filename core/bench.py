"""Throughput benchmarks of the twin and the tuner (``python -m core bench``).

An agent-step is one agent's period: with 3 stores a chain has 5 agents, so one call of
``step`` on B chains is 5 B agent-steps. Timed work is what an environment does every period:
the twin's step plus the reconciliation of every agent's reward. Each figure is the median of
several repeats, so a busy moment on a shared machine moves it little.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from core.agents.observations import FEATURES, observe
from core.agents.roles import ROLES
from core.agents.rules import reorder_point_mix
from core.agents.tuning import tune_base_stock
from core.serving.models import EXPORTED_MODELS, learned_policy, load_hierarchy, load_manifest, load_policy
from core.serving.registry import Sources, mix_of, uniform
from core.simulation.demand import sample_demand
from core.simulation.forecast import Forecast
from core.simulation.presets import get_preset
from core.simulation.reconcile import reconcile
from core.simulation.scenario import Scenario
from core.simulation.twin import reset, step


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


def run_serving_bench() -> dict[str, object]:
    """Decision latency and the one-year recompute, on the shipped policies."""
    return {"decision_latency": decision_latency(), "one_year_recompute_seconds": recompute_seconds()}


def _percentiles(seconds: list[float]) -> dict[str, float]:
    us = np.array(seconds) * 1e6
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99))}


def decision_latency(models: Path = EXPORTED_MODELS, repeats: int = 2000) -> dict[str, object]:
    """Per-day decision of every agent of one chain (3 stores): observations excluded, the
    networks only: onnxruntime in one call (``hierarchy_policy.onnx``, what ``learned_mix`` uses)
    and in one call per role, and where the training run is on disk, torch and SB3's predict."""
    scenario = get_preset("steady")
    state = reset(scenario, 1)
    forecast = Forecast.of(scenario)
    obs = {role: observe(role, state, scenario, forecast).reshape(-1, len(FEATURES[role])) for role in ROLES}
    manifest = load_manifest(models)
    learned = [r for r in ROLES if manifest["roles"][r].get("kind") == "learned"]
    result: dict[str, object] = {"learned_roles": learned, "agents": sum(len(obs[r]) for r in learned)}
    choosers = {r: load_policy(r, models, manifest) for r in learned}

    def timed(decide) -> dict[str, float]:
        for _ in range(50):
            decide()
        seconds = []
        for _ in range(repeats):
            begin = time.perf_counter()
            decide()
            seconds.append(time.perf_counter() - begin)
        return _percentiles(seconds)

    if learned and manifest.get("hierarchy"):
        joint = load_hierarchy(models, manifest, choosers)
        result["onnxruntime_one_call"] = timed(lambda: joint.run(obs))
    result["onnxruntime"] = timed(lambda: [choosers[r].run(obs[r]) for r in learned])
    run = Path(manifest["training"]["config"]["out"])
    if learned and all((run / manifest["roles"][r]["trained_from"]).exists() for r in learned):
        import torch
        from stable_baselines3 import PPO

        from core.learning.export import Actor

        torch.set_num_threads(1)
        ppo = {r: PPO.load(run / manifest["roles"][r]["trained_from"], device="cpu") for r in learned}
        actors = {r: Actor(ppo[r]).eval() for r in learned}
        tensors = {r: torch.as_tensor(obs[r]) for r in learned}

        def torch_decide() -> None:
            with torch.no_grad():
                for r in learned:
                    actors[r](tensors[r])

        result["torch"] = timed(torch_decide)
        result["sb3_predict"] = timed(lambda: [ppo[r].predict(obs[r], deterministic=True) for r in learned])
    return result


def recompute_seconds(repeats: int = 5) -> float:
    """Median seconds for the Live page's work after a slider move: build the scenario and run
    one chain for a year with the shipped policies at every echelon."""
    from core.app.live import Controls, apply_controls, run_year

    sources = Sources(learned={r: learned_policy(r).choose for r in ROLES})
    seconds = []
    for i in range(repeats):
        begin = time.perf_counter()
        scenario = apply_controls("seasonal", Controls(demand_scale=1.0 + 0.05 * i, seasonality_amplitude=0.5))
        run_year(scenario, mix_of(uniform("learned"), scenario, sources), seed=i)
        seconds.append(time.perf_counter() - begin)
    return statistics.median(seconds)
