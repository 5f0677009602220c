"""The app's short training run (``core.learning.in_app``): whether its phase is kept or not, it yields a
checked ONNX store policy, the run's model set, its evaluation, a verdict with the reason, and the learning
curve's points."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import TINY, biased_acceptance, quick_tuned

from core.agents.observations import FEATURES
from core.evaluation.report import evaluate
from core.learning import pool as pools
from core.learning import training
from core.learning.hierarchy import PhaseRecord
from core.learning.in_app import (
    EVALUATION_PRESET,
    EVALUATION_SEEDS,
    POOL_SCENARIOS,
    TRAINED_FILE,
    acceptance_rows,
    curve_note,
    in_app_config,
    percent,
    train_store_policy,
    verdict,
)
from core.learning.training import TrainConfig
from core.serving.models import OnnxChooser
from core.serving.registry import POLICIES, uniform
from core.simulation.presets import PRESETS


@pytest.mark.parametrize(("factor", "kept"), [(1e3, False), (1e-3, True)])
def test_a_short_run_always_exports_its_store_policy(tmp_path: Path, factor: float, kept: bool) -> None:
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "acceptance_cost", biased_acceptance(factor))
        # the pool's tuning is the tuner's tests' business (seconds a scenario): a stand-in here
        mp.setattr(pools, "tune_all", lambda scenarios, processes=None: [quick_tuned(s) for s in scenarios])
        config = TrainConfig(out=str(tmp_path / "run"), **{**TINY, "acceptance_scenarios": 0})
        reports = []  # (fraction, episode points, update points) as each report came
        run = train_store_policy(config, progress=lambda r: reports.append((r.fraction, len(r.episodes),
                                                                            len(r.updates))))
    assert run.record.kept is kept
    assert run.verdict.startswith("kept: " if kept else "not kept: ")
    assert f"x{run.record.relative_cost:.3f}" in run.verdict
    assert run.trained_policy == (tmp_path / "run" / TRAINED_FILE).read_bytes()
    chooser = OnnxChooser.checked(run.trained_policy, "store")  # the served checks pass
    observations = np.zeros((5, len(FEATURES["store"])), np.float32)
    actions, probabilities = chooser.run(observations)
    assert actions.shape == (5,) and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)  # float32 softmax
    card = json.loads(run.export["manifest.json"])["roles"]["store"]
    assert card["kind"] == ("learned" if kept else "rule")  # the run's export serves it only if it was kept
    assert set(run.export) == {"manifest.json"} | ({"store_policy.onnx", "hierarchy_policy.onnx"} if kept else set())
    policies = [row["Policy"] for row in run.evaluation]  # in words, no code names
    assert policies[0] == ("your run's export (trained stores)" if kept else
                           "your run's export (trained stores not kept: the stores' rule)")
    assert {p.removesuffix(" (best of these rules)") for p in policies[1:]} == {
        POLICIES[k].label for k in ("reorder_point", "tuned_base_stock", "forecast_base_stock")}
    assert sum(p.endswith(" (best of these rules)") for p in policies) == 1
    assert not any("_" in p for p in policies)
    if not kept:  # the export serves the tuned forecast base-stock, every role on its tuned entry: the same costs
        report = evaluate([EVALUATION_PRESET], EVALUATION_SEEDS, tmp_path / "run" / "export",
                          policies={"start": uniform("tuned_forecast_base_stock")})
        cost = report.presets[EVALUATION_PRESET].policies["start"]["cost_per_day"]
        assert run.evaluation[0]["Cost per day ($, 95 % interval)"] == \
            f"{cost.mean:,.2f} ({cost.low:,.2f} to {cost.high:,.2f})"
    acceptance = acceptance_rows(run.record)  # the verdict's ratio is the mean of these presets' ratios
    assert [row["Preset"] for row in acceptance] == list(run.record.cost_before) == list(PRESETS)
    assert f"the mean of the {len(acceptance)} presets' ratios" in run.verdict
    assert "forecast base-stock" in run.verdict
    assert run.episodes and all({"timesteps", "reward", "cost_per_day"} <= set(e) for e in run.episodes)
    assert run.episodes[-1]["timesteps"] >= TINY["timesteps"] // 2  # the curve covers the run, not its start
    assert run.updates
    # the page's progress bar and live curve: the fraction grows to 1 and the curve is drawn before the run ends
    fractions = [fraction for fraction, _, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert any(updates and fraction < 1.0 for fraction, _, updates in reports)
    assert reports[-1][1] == len(run.episodes) and reports[-1][2] <= len(run.updates)
    assert curve_note(config, run).endswith(f"logged {len(run.updates)} updates and {len(run.episodes)} episode "
                                            "points.")


def record(before: dict[str, float], after: dict[str, float]) -> PhaseRecord:
    ratio = sum(after[k] / before[k] for k in before) / len(before)
    return PhaseRecord(phase=1, role="store", kept=False, cost_before=before, cost_after=after, relative_cost=ratio,
                       seconds=1.0)


def test_the_verdict_says_what_is_compared_with_what_and_why_a_phase_was_not_kept() -> None:
    """The verdict's ratio and the acceptance table's rows are one comparison (each preset: after over before);
    a phase not kept says which condition failed; a change is never "-0.0 %"."""
    rose = record({"steady": 140.0, "thin_margin": 40.0}, {"steady": 141.7, "thin_margin": 33.0})
    assert rose.relative_cost < 1.0
    assert verdict(rose).startswith(f"not kept: held-out system cost x{rose.relative_cost:.3f} of the rule it "
                                    "started from (forecast base-stock, tuned), the mean of the 2 presets' ratios")
    assert "steady rose 1.2 %, above the 1 % any preset may rise" in verdict(rose)
    rows = acceptance_rows(rose)
    assert [row["Change"] for row in rows] == ["+1.2 %", "-17.5 %"]
    assert rows[0]["Before: forecast base-stock, tuned ($/day)"] == "140.00"
    dearer = record({"steady": 140.0}, {"steady": 140.04})
    assert "the mean ratio must be below x1.000" in verdict(dearer)
    assert acceptance_rows(dearer)[0]["Change"] == "+0.03 %"


@pytest.mark.parametrize(("value", "spread", "shown"), [
    (-0.0004, 0.0, "-0.0004 %"), (-0.03, 0.0, "-0.03 %"), (-8.6, 0.0, "-8.6 %"), (0.0, 0.0, "+0.0 %"),
    (-0.031, 0.12, "-0.03 %"), (12.345, 2.0, "+12.3 %"),
])
def test_percentages_never_round_a_change_away(value: float, spread: float, shown: str) -> None:
    assert percent(value, spread) == shown


def test_an_in_app_run_trains_on_a_small_pool_and_is_accepted_on_the_presets(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pools, "tune_all", lambda scenarios, processes=None: [quick_tuned(s) for s in scenarios])
    config = in_app_config(5_000)
    assert (config.timesteps, config.store_timesteps, config.acceptance_seeds) == (5_000, 5_000, 4)
    run_pools = training.Pools.of(dataclasses.replace(config, out=str(tmp_path)))
    assert [p.scenario.name for p in run_pools.acceptance] == list(PRESETS)
    assert [p.scenario for p in run_pools.training if p.preset] == list(PRESETS.values())
    assert sum(not p.preset for p in run_pools.training) == POOL_SCENARIOS
