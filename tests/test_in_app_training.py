"""The app's short training run (``core.learning.in_app``): whether its phase is kept or not, it yields a
checked ONNX store policy, the run's model set, its evaluation, a verdict with the reason, and the learning
curve's points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_training import TINY, biased_acceptance

from core.agents.observations import FEATURES
from core.learning import training
from core.learning.in_app import TRAINED_FILE, curve_note, train_store_policy
from core.learning.training import TrainConfig
from core.serving.models import OnnxChooser


@pytest.mark.parametrize(("factor", "kept"), [(1e3, False), (1e-3, True)])
def test_a_short_run_always_exports_its_store_policy(tmp_path: Path, factor: float, kept: bool) -> None:
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "acceptance_cost", biased_acceptance(factor))
        config = TrainConfig(out=str(tmp_path / "run"), **TINY)
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
    assert "| steady | phase1_stores |" in run.evaluation and "| steady | reorder_point |" in run.evaluation
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
