"""Head-to-head: policy mixes compared on the same customers (common random numbers)."""

from __future__ import annotations

import numpy as np

from core.agents.rules import PolicyMix
from core.evaluation.bound import clairvoyant_bound
from core.evaluation.report import optimum_cost
from core.evaluation.statistics import EVAL_SEED, REPORTED, mean_ci, paired
from core.simulation.demand import sample_demand
from core.simulation.rollout import Rollout, kpis, run_mixes
from core.simulation.scenario import Scenario


def run_table(runs: dict[str, Rollout]) -> list[dict[str, object]]:
    """One row per reported KPI: each named run's value (chain 0) and the first minus the second."""
    values = {name: {k: float(v[0]) for k, v in kpis(run).items()} for name, run in runs.items()}
    first, second = list(values)
    return [{"KPI": k, **{name: values[name][k] for name in values}, f"{first} - {second}":
             values[first][k] - values[second][k]} for k in REPORTED]


def summary_table(scenario: Scenario, mixes: dict[str, PolicyMix], seeds: int) -> dict[str, dict[str, dict]]:
    """Per reported KPI: each mix's mean and 95 % interval over ``seeds`` seeds, and the paired difference of
    the first mix minus the second."""
    per_seed = run_mixes(scenario, mixes, seeds, EVAL_SEED)
    first, second = list(mixes)
    return {k: {**{name: mean_ci(per_seed[name][k]) for name in mixes},
                f"{first} - {second}": paired(per_seed[first][k], per_seed[second][k])} for k in REPORTED}


def references(scenario: Scenario, seeds: int) -> str:
    """What no policy can beat on the same ``seeds`` demand paths: the clairvoyant bound, and the exact
    optimum where it can be computed, as one sentence."""
    demand = sample_demand(scenario, seeds, np.random.default_rng(EVAL_SEED))
    bound = mean_ci(clairvoyant_bound(scenario, demand))
    text = (f"Clairvoyant bound (the cheapest plan that knows every day's demand in advance): "
            f"{bound['mean']:.2f} per day ({bound['low']:.2f} to {bound['high']:.2f}).")
    optimum = optimum_cost(scenario)
    if optimum is not None:
        text += f" Exact optimum of any policy (dynamic programme): {optimum:.3f} per day."
    return text
