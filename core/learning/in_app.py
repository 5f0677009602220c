"""The app's short training run: phase 1 (the store policy), exported whether or not the phase is kept, and
evaluated.

A phase is kept only if it lowers the held-out system cost (``training.run_phases``); a short in-app run
often does not, and the export of the run then serves the stores' rule. The trained store policy is still
exported on its own (``TRAINED_FILE``), labelled "not kept" with the reason, so that a person can download
it, inspect it or try it on the Live page.

``run_in_app`` trains in a temporary folder that is removed afterwards, whether the run succeeds or fails; what
the page still shows and offers for download (the run's model set, the trained policy, the evaluation) comes back
as bytes and text, kept in the person's browser session and nowhere else. One run at a time per process (torch's
ONNX export fails when several threads run it at once, and two trainings would share two cores): a run started
while another goes on raises ``RunInProgress``."""

from __future__ import annotations

import dataclasses
import json
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from stable_baselines3 import PPO

from core.evaluation.report import LEARNED, evaluate, markdown
from core.learning.export import export_actor, export_run
from core.learning.hierarchy import PhaseRecord
from core.learning.training import TrainConfig, TrainingProgress, phase_folder, run_phases
from core.serving.model_sets import set_files
from core.serving.registry import uniform

PHASE = 1  # the store policy, shared by every store
ROLE = "store"
TRAINED_FILE = "store_policy_trained.onnx"  # the phase's policy, kept or not
EVALUATION_PRESET = "steady"
EVALUATION_SEEDS = 10
COMPARED_RULES = ("reorder_point", "tuned_base_stock", "forecast_base_stock")
_ONE_RUN = threading.Lock()  # held by the process's in-app run while it goes on

Result = TypeVar("Result")


class RunInProgress(RuntimeError):
    """Another in-app training run of this process is going on."""


@dataclass(frozen=True)
class InAppRun:
    """What the page shows and offers after a run."""

    record: PhaseRecord
    verdict: str  # "kept" or "not kept: <reason>"
    export: dict[str, bytes]  # the run's model set (``export_run``: the hierarchy the run ended with), file by file
    trained_policy: bytes  # the phase's store policy as ONNX (``TRAINED_FILE``), kept or not
    evaluation: str  # markdown table: the export against three rules on held-out demand (``evaluation_table``)
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


def evaluation_table(export: Path) -> str:
    """The run's export (``phase1_stores``) against ``COMPARED_RULES`` on ``EVALUATION_SEEDS`` held-out demand paths
    of ``EVALUATION_PRESET``, as a markdown table."""
    policies = {key: uniform(key) for key in COMPARED_RULES}
    policies["phase1_stores"] = LEARNED["phase1_stores"]
    return markdown(evaluate([EVALUATION_PRESET], EVALUATION_SEEDS, export, policies=policies))


def train_store_policy(config: TrainConfig, progress: Callable[[TrainingProgress], None] | None = None
                       ) -> InAppRun:
    """Train phase 1 as ``config`` says (in ``config.out``), export the run and the trained policy, and evaluate
    the run's export."""
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
    return InAppRun(record=record, verdict=verdict(record), export={p.name: p.read_bytes() for p in set_files(export)},
                    trained_policy=trained.read_bytes(), evaluation=evaluation_table(export),
                    episodes=metrics.get("episodes", []), updates=metrics.get("updates", []))


def in_temporary_folder(work: Callable[[Path], Result]) -> Result:
    """``work`` on a new temporary folder, removed afterwards whether ``work`` succeeds or fails; one call at a
    time in this process (``RunInProgress`` while another goes on)."""
    if not _ONE_RUN.acquire(blocking=False):
        raise RunInProgress("another training run is going on in this app (started from another browser tab or "
                            "session); try again when it has finished")
    try:
        with tempfile.TemporaryDirectory(prefix="hmarl_train_") as folder:
            return work(Path(folder))
    finally:
        _ONE_RUN.release()


def run_in_app(config: TrainConfig, progress: Callable[[TrainingProgress], None] | None = None) -> InAppRun:
    """``train_store_policy`` in a temporary folder (``in_temporary_folder``) in place of ``config.out``."""
    return in_temporary_folder(
        lambda folder: train_store_policy(dataclasses.replace(config, out=str(folder / "run")), progress))
