"""The scenarios a training run learns on and accepts its phases on, each with its tuned safety factors.

Both are draws of ``core.simulation.randomization.draw_scenario`` (the family the generalisation benchmark draws
from) from seeds of their own (``pool_seed``: from ``POOL_SEED`` = 2**96 up, far below the benchmark's 2**128), plus
the presets. Every scenario is tuned once (``core.agents.tuning.tuned_safety_factors``, as the registry tunes the
rule ``tuned_forecast_base_stock`` at serving time), in parallel, and kept in ``OUT/pool.json``, so a resumed run
does not tune again. A training scenario's stores are one of ``STORE_COUNTS``, so that a group of the VecEnv always
holds the same number of store rows (``core.learning.vec_env``).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.agents.tuning import tuned_safety_factors
from core.serving.files import write_json_atomic
from core.simulation.presets import PRESETS
from core.simulation.randomization import draw_scenario
from core.simulation.scenario import Scenario

POOL_SEED = 2**96  # the pools' first seed
STREAMS = {"training": 0, "acceptance": 1}  # seed streams of one run seed
STORE_ROWS = 48  # store rows per VecEnv group
STORE_COUNTS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 48)  # the divisors of ``STORE_ROWS``


@dataclass(frozen=True)
class PoolScenario:
    """A scenario, each role's tuned safety factor on it, and whether it is a preset."""

    scenario: Scenario
    tuned: dict[str, float]
    preset: bool = False

    def to_dict(self) -> dict:
        return {"scenario": self.scenario.to_dict(), "tuned": self.tuned, "preset": self.preset}

    @staticmethod
    def from_dict(data: dict) -> PoolScenario:
        return PoolScenario(Scenario.from_dict(data["scenario"]), dict(data["tuned"]), bool(data["preset"]))


def pool_seed(seed: int, stream: str) -> int:
    """The seed of a run seed's training or acceptance draws."""
    return POOL_SEED + 2 * seed + STREAMS[stream]


def drawn_scenarios(n: int, seed: int, stream: str) -> list[Scenario]:
    """The first ``n`` scenarios of the stream (``train_<k>_<preset>`` or ``accept_<k>_<preset>``)."""
    rng = np.random.default_rng(pool_seed(seed, stream))
    prefix = {"training": "train", "acceptance": "accept"}[stream]
    counts = STORE_COUNTS if stream == "training" else None
    return [draw_scenario(rng, f"{prefix}_{k}", counts) for k in range(1, n + 1)]


def tune_all(scenarios: list[Scenario], processes: int | None = None) -> list[dict[str, float]]:
    """``tuned_safety_factors`` of every scenario, over ``processes`` processes (default: one per CPU)."""
    processes = processes or os.cpu_count() or 1
    if processes == 1 or len(scenarios) < 2:
        return [tuned_safety_factors(s) for s in scenarios]
    with ProcessPoolExecutor(processes) as executor:
        return list(executor.map(tuned_safety_factors, scenarios, chunksize=1))


def build_pool(scenarios: list[Scenario], presets: list[Scenario]) -> list[PoolScenario]:
    """``scenarios`` and ``presets``, tuned."""
    tuned = tune_all([*scenarios, *presets])
    return [PoolScenario(s, t, preset=i >= len(scenarios)) for i, (s, t) in enumerate(zip([*scenarios, *presets],
                                                                                          tuned, strict=True))]


def load_or_build(path: Path, scenarios: list[Scenario], presets: list[Scenario]) -> list[PoolScenario]:
    """The pool of ``scenarios`` and ``presets`` kept in ``path`` if it holds exactly those, else built and kept."""
    wanted = [s.to_dict() for s in [*scenarios, *presets]]
    if path.is_file():
        kept = [PoolScenario.from_dict(entry) for entry in json.loads(path.read_text())]
        if [entry.scenario.to_dict() for entry in kept] == wanted:
            return kept
    pool = build_pool(scenarios, presets)
    write_json_atomic(path, [entry.to_dict() for entry in pool])
    return pool


def preset_scenarios(fixed: Scenario | None) -> list[Scenario]:
    """The presets a run trains and accepts on (only ``fixed``, if it trains on one scenario)."""
    return list(PRESETS.values()) if fixed is None else [fixed]
