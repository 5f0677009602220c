"""Honest comparisons: policy mixes on the same demand (common random numbers), many seeds,
means with 95 % confidence intervals and paired differences against each baseline.

Evaluation seeds start at ``EVAL_SEED``; training draws its scenarios and demand from its own
seed stream, so evaluation days are never training days, and a training phase is accepted or rejected
on demand from ``ACCEPTANCE_SEED``, so no model is chosen on the evaluation's customers.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from core.agents.rules import PolicyMix
from core.simulation.rollout import run_mixes
from core.simulation.scenario import Scenario

EVAL_SEED = 1_000_000
ACCEPTANCE_SEED = 2_000_000
REPORTED = ("cost_per_day", "fill_rate", "lost_sales_per_day", "holding_cost_per_day", "stockout_cost_per_day",
            "bullwhip_store", "bullwhip_warehouse", "bullwhip_supplier")


def mean_ci(values: np.ndarray) -> dict[str, float]:
    """Mean and 95 % t-interval of per-seed values (NaN seeds dropped)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan}
    mean = float(v.mean())
    if v.size < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan}
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return {"mean": mean, "low": mean - half, "high": mean + half}


def paired(candidate: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """Candidate minus baseline, seed by seed: mean, 95 % interval, and relative change of the means."""
    out = mean_ci(candidate - baseline)
    out["relative"] = out["mean"] / float(np.mean(baseline)) if np.mean(baseline) else math.nan
    return out


def mean_cost(scenarios: list[Scenario], mix: PolicyMix, seeds: int, seed: int = ACCEPTANCE_SEED
              ) -> dict[str, float]:
    """Mean cost per day of one mix on each scenario (for phase acceptance checks: held-out demand by default)."""
    return {s.name: float(run_mixes(s, {"mix": mix}, seeds, seed)["mix"]["cost_per_day"].mean()) for s in scenarios}
