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
import math
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from stable_baselines3 import PPO

from core.evaluation.glossary import CURRENCY
from core.evaluation.report import LEARNED, Difference, EvaluationReport, evaluate
from core.learning.export import export_actor, export_run
from core.learning.hierarchy import PhaseRecord
from core.learning.training import TOLERATED_RISE, TrainConfig, TrainingProgress, phase_folder, run_phases
from core.serving.model_sets import set_files
from core.serving.registry import POLICIES, uniform

PHASE = 1  # the store policy, shared by every store
ROLE = "store"
TRAINED_FILE = "store_policy_trained.onnx"  # the phase's policy, kept or not
EVALUATION_PRESET = "steady"
EVALUATION_SEEDS = 10
COMPARED_RULES = ("reorder_point", "tuned_base_stock", "forecast_base_stock")
EXPORT = "phase1_stores"  # the report's row of the run's export: the stores' policy, the rest on forecast base-stock
START = "tuned_forecast_base_stock"  # what every role runs before phase 1: its tuned menu entry
POOL_SCENARIOS = 8  # random training scenarios of an in-app run, besides the presets (each tuned first, 1-5 s)
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
    evaluation: list[dict[str, str]]  # the export against three rules on evaluation demand (``evaluation_rows``)
    episodes: list[dict] = field(default_factory=list)  # the learning curve's points (``metrics.json``)
    updates: list[dict] = field(default_factory=list)


def in_app_config(budget: int) -> TrainConfig:
    """An in-app run of ``budget`` transitions: a small pool, accepted on the presets alone, 4 seeds each."""
    return TrainConfig(timesteps=budget, store_timesteps=budget, progress_bar=False, acceptance_seeds=4,
                       pool_scenarios=POOL_SCENARIOS, acceptance_scenarios=0)


def rows(config: TrainConfig) -> int:
    """Store agents stepped together while training phase 1: scenarios x stores per scenario."""
    return config.groups * config.rows


def curve_note(config: TrainConfig, run: InAppRun) -> str:
    """What the learning curve can show for this budget: an episode point needs a whole training year of every
    row, a PPO update a rollout; without an episode point, the budget that draws one."""
    episode, rollout = config.horizon * rows(config), config.n_steps * rows(config)
    note = (f"PPO updates the policy every {rollout:,} transitions and an episode (a {config.horizon}-day year of "
            f"all {rows(config)} training stores) takes {episode:,}: this run of {config.timesteps:,} logged "
            f"{len(run.updates)} updates and {len(run.episodes)} episode points.")
    if not run.episodes:
        note += (f" The reward, fill-rate and cost curves need whole episodes: a budget of at least {episode:,} "
                 "transitions draws their first point, each further episode one more.")
    return note


def verdict(record: PhaseRecord) -> str:
    """'kept' or 'not kept' with the acceptance check's number: the mean over its presets of the held-out cost with
    the trained stores over the cost with the rule they started from (``acceptance_rows`` has each preset's); for
    a phase not kept, which condition failed."""
    ratio = (f"held-out system cost x{record.relative_cost:.3f} of the rule it started from ({POLICIES[START].label}"
             f"), the mean of the {len(record.cost_before)} presets' ratios in the acceptance check below")
    if record.kept:
        return f"kept: {ratio}"
    worst = max(record.cost_before, key=lambda k: record.cost_after[k] / record.cost_before[k])
    rise = record.cost_after[worst] / record.cost_before[worst] - 1
    why = ("the mean ratio must be below x1.000" if record.relative_cost >= 1 else
           f"{worst} rose {100 * rise:.1f} %, above the {100 * TOLERATED_RISE:g} % any preset may rise")
    return f"not kept: {ratio}; {why}, so the run's export serves the stores' rule"


def percent(value: float, spread: float = 0.0) -> str:
    """A signed percentage with the decimals that show the smaller of ``spread`` (if any) and the value itself to
    one significant digit, at least one: never "-0.0 %" for a change that is not zero."""
    size = min((x for x in (abs(spread), abs(value)) if x > 0), default=0.0)
    decimals = 1 if size == 0 or not math.isfinite(size) else max(1, min(4, -math.floor(math.log10(size))))
    return f"{round(value, decimals) + 0.0:+.{decimals}f} %"


def acceptance_rows(record: PhaseRecord) -> list[dict[str, str]]:
    """The acceptance check preset by preset: held-out cost per day before the phase (every role on its reference
    entry: forecast base-stock) and after (the trained stores), and the change."""
    before, after = f"Before: {POLICIES[START].label} ({CURRENCY}/day)", f"After: trained stores ({CURRENCY}/day)"
    return [{"Preset": preset, before: f"{cost:,.2f}", after: f"{record.cost_after[preset]:,.2f}",
             "Change": percent(100 * (record.cost_after[preset] / cost - 1))}
            for preset, cost in record.cost_before.items()]


def _versus(difference: Difference, base: float) -> str:
    """A paired difference in percent of ``base``, with its 95 % interval and whether it excludes zero."""
    if difference.low == difference.high == 0.0:
        return "the same cost on every path"
    low, high = (100 * x / base for x in (difference.low, difference.high))
    verdict = "significant" if difference.significant else "not significant"
    spread = (high - low) / 2
    mean, lower, upper = (percent(value, spread) for value in (100 * difference.relative, low, high))
    return f"{mean} ({lower} to {upper}), {verdict}"


def evaluation_rows(report: EvaluationReport, kept: bool) -> list[dict[str, str]]:
    """The run's export and ``COMPARED_RULES`` on ``EVALUATION_PRESET`` in words: cost per day with its 95 %
    interval, fill rate, and the paired change against the best of these rules."""
    entry = report.presets[EVALUATION_PRESET]
    best = entry.policies[entry.best_rule]["cost_per_day"].mean
    export = "your run's export (trained stores" + (")" if kept else " not kept: the stores' rule)")
    names = {EXPORT: export, **{key: POLICIES[key].label for key in COMPARED_RULES}}
    table = []
    for policy in [EXPORT, *COMPARED_RULES]:
        cost, fill = entry.policies[policy]["cost_per_day"], entry.policies[policy]["fill_rate"]
        versus = entry.differences[policy].get("vs_best_rule", {}).get("cost_per_day")
        table.append({"Policy": names[policy] + (" (best of these rules)" if policy == entry.best_rule else ""),
                      f"Cost per day ({CURRENCY}, 95 % interval)": f"{cost.mean:,.2f} ({cost.low:,.2f} to "
                                                                  f"{cost.high:,.2f})",
                      "Fill rate": f"{100 * fill.mean:.1f} %",
                      "Against the best of these rules": "-" if versus is None else _versus(versus, best)})
    return table


def evaluation_table(export: Path, kept: bool) -> list[dict[str, str]]:
    """The run's export (``EXPORT``) against ``COMPARED_RULES`` on ``EVALUATION_SEEDS`` evaluation demand paths of
    ``EVALUATION_PRESET`` (never the acceptance check's), as ``evaluation_rows``."""
    policies = {key: uniform(key) for key in COMPARED_RULES}
    policies[EXPORT] = LEARNED[EXPORT]
    return evaluation_rows(evaluate([EVALUATION_PRESET], EVALUATION_SEEDS, export, policies=policies), kept)


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
                    trained_policy=trained.read_bytes(), evaluation=evaluation_table(export, record.kept),
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
