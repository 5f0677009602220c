"""Independent training runs, one per seed, as tasks of an ``Executor`` (serial or Ray: ``python -m core
train --runs K --ray``); the run with the lowest held-out cost is the one to export.

Each run is an ordinary training run in ``OUT/seed<N>/`` (resumable on its own). Its held-out cost is the mean
over the presets of the system cost per day of its final hierarchy on the acceptance seeds
(``training.acceptance_cost``): the same seeds for every run, so the runs are compared on the same customers.
``OUT/best.json`` names the best run folder and every run's cost.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from core.evaluation.distributed import Executor
from core.learning.hierarchy import Hierarchy
from core.learning.training import TrainConfig, run_phases
from core.serving.files import write_json_atomic

BEST = "best.json"


def held_out_cost(hierarchy: Hierarchy) -> float:
    """Mean over presets of the final hierarchy's held-out cost per day (after its last kept phase, or before its
    first phase if none was kept)."""
    kept = [record for record in hierarchy.phases if record.kept]
    costs = kept[-1].cost_after if kept else hierarchy.phases[0].cost_before
    return float(np.mean(list(costs.values())))


def train_one(task: tuple[TrainConfig, tuple[int, ...]]) -> tuple[str, float]:
    """One run's folder and held-out cost (a task: picklable arguments in, plain values out)."""
    config, phases = task
    return config.out, held_out_cost(run_phases(config, list(phases)))


def train_runs(config: TrainConfig, runs: int, phases: list[int], run: Executor) -> dict:
    """``runs`` runs with seeds ``config.seed`` .. ``config.seed + runs - 1`` under ``config.out``; writes and
    returns ``best.json``: {"best": folder, "runs": {folder: held-out cost}}."""
    tasks = [(dataclasses.replace(config, seed=config.seed + k, out=str(Path(config.out) / f"seed{config.seed + k}"),
                                  progress_bar=False), tuple(phases)) for k in range(runs)]
    costs = dict(run.map(train_one, tasks))
    summary = {"best": min(costs, key=costs.__getitem__), "runs": costs}
    write_json_atomic(Path(config.out) / BEST, summary)
    return summary
