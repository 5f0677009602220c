"""The app's short training run: phase 1 (the store policy), exported whether or not the phase is kept.

A phase is kept only if it lowers the held-out system cost (``training.run_phases``); a short in-app run
often does not, and the export of the run then serves the stores' rule. The trained store policy is still
exported on its own (``TRAINED_FILE``), labelled "not kept" with the reason, so that a person can download
it, inspect it or try it on the Live page."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stable_baselines3 import PPO

from core.learning.export import export_actor, export_run
from core.learning.hierarchy import PhaseRecord
from core.learning.training import TrainConfig, TrainingProgress, phase_folder, run_phases

PHASE = 1  # the store policy, shared by every store
ROLE = "store"
TRAINED_FILE = "store_policy_trained.onnx"  # the phase's policy, kept or not


@dataclass(frozen=True)
class InAppRun:
    """What the page shows and offers after a run."""

    record: PhaseRecord
    verdict: str  # "kept" or "not kept: <reason>"
    export: Path  # the run's model set (``export_run``): the hierarchy the run ended with
    trained_policy: Path  # the phase's store policy as ONNX, kept or not
    episodes: list[dict] = field(default_factory=list)  # the learning curve's points (``metrics.json``)
    updates: list[dict] = field(default_factory=list)


def rows(config: TrainConfig) -> int:
    """Store agents stepped together while training phase 1: scenarios x chains x stores."""
    return config.groups * config.chains * config.num_stores


def curve_note(config: TrainConfig, run: InAppRun) -> str:
    """What the learning curve can show for this budget: an episode point needs a whole training year of every
    row, a PPO update a rollout."""
    episode, rollout = config.horizon * rows(config), config.n_steps * rows(config)
    return (f"PPO updates the policy every {rollout:,} transitions and an episode (a {config.horizon}-day year of "
            f"all {rows(config)} training stores) takes {episode:,}: this run of {config.timesteps:,} logged "
            f"{len(run.updates)} updates and {len(run.episodes)} episode points.")


def verdict(record: PhaseRecord) -> str:
    """'kept', or 'not kept: <reason>' (the held-out cost did not go down)."""
    if record.kept:
        return f"kept: held-out system cost x{record.relative_cost:.3f} of the rule it started from"
    return (f"not kept: held-out system cost x{record.relative_cost:.3f} of the rule it started from (a phase is "
            "kept only below x1.000), so the run's export serves the stores' rule")


def train_store_policy(config: TrainConfig, progress: Callable[[TrainingProgress], None] | None = None
                       ) -> InAppRun:
    """Train phase 1 as ``config`` says (in ``config.out``), then export the run and the trained policy."""
    run_dir = Path(config.out)
    hierarchy = run_phases(config, [PHASE], progress=progress)
    record = next(r for r in hierarchy.phases if r.phase == PHASE)
    export = run_dir / "export"
    export_run(run_dir, export, command="streamlit: Train and export")
    phase_dir = phase_folder(run_dir, PHASE)
    trained = run_dir / TRAINED_FILE
    export_actor(PPO.load(phase_dir / "model.zip", device="cpu"), ROLE, trained)
    metrics_path = phase_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    return InAppRun(record=record, verdict=verdict(record), export=export, trained_policy=trained,
                    episodes=metrics.get("episodes", []), updates=metrics.get("updates", []))
