"""Hierarchical PPO training on a tiny budget: every phase runs and writes its artifacts, the
hierarchy is recorded, training resumes, the run exports to ONNX and the evaluation report is
reproducible. Each run lives in pytest's temporary folders (never runs/ or exported_models/)."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import logging
import math
import types
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from stable_baselines3 import PPO

import core.evaluation.statistics as statistics
import core.learning.training as training
from core.agents.menus import (
    ACTION_MEANINGS,
    NUM_ACTIONS,
    SAFETY_FACTORS,
    ConstantChooser,
    reference_index,
    reference_policy,
)
from core.agents.observations import FEATURES, newsvendor_safety_factor
from core.agents.roles import ROLE, ROLES
from core.agents.rules import PolicyMix
from core.agents.tuning import tune_menu
from core.cli import main
from core.evaluation.report import EvaluationReport, evaluate, record_evaluation, write
from core.evaluation.statistics import EVAL_SEED
from core.learning.export import OPSET, export_run
from core.learning.hierarchy import Hierarchy
from core.learning.policies import frozen_choosers, model_chooser
from core.learning.training import PHASES, TOLERATED_RISE, TrainConfig, run_phases, start_aims, train_role
from core.learning.vec_env import RoleVecEnv
from core.serving.models import OUTPUTS, OnnxChooser, learned_mix, load_manifest, load_policy, sha256
from core.simulation.demand import sample_demand
from core.simulation.presets import PRESETS, get_preset
from core.simulation.rollout import run_mixes, simulate
from core.simulation.scenario import Scenario

TINY = {"timesteps": 2000, "store_timesteps": 2000, "groups": 2, "chains": 2, "n_steps": 8, "batch_size": 32,
        "acceptance_seeds": 2, "acceptance_days": 20, "checkpoint_every": 500, "progress_bar": False, "horizon": 20}
ROWS = 2 * 2 * 3  # groups x chains x stores: the same for every role (upstream roles get 3x the chains)
EPISODE_KEYS = {"reward", "fill_rate", "lost_sales_per_day", "holding_cost_per_day", "cost_per_day", "timesteps"}
AFTER_FACTOR = 1e-3


def biased_acceptance(factor: float):
    """The real held-out check, with every phase's "after" cost multiplied by ``factor`` (run_phases
    calls it before and after each phase, in turn): factor < 1 keeps every phase, > 1 rejects it.
    Which phases a 2000-step run keeps is otherwise a coin toss."""
    calls = itertools.count()
    real = training.acceptance_cost

    def acceptance(config: TrainConfig, models: dict) -> dict[str, float]:
        costs = real(config, models)
        scale = factor if next(calls) % 2 else 1.0
        return {name: cost * scale for name, cost in costs.items()}

    return acceptance


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainConfig, dict]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(out=str(out), **TINY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "acceptance_cost", biased_acceptance(AFTER_FACTOR))
        hierarchy = run_phases(config, list(PHASES))
    return out, config, hierarchy


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    torch.set_num_threads(1)
    models = tmp_path_factory.mktemp("models")
    manifest = export_run(run[0], models, command="pytest")
    return models, manifest


def phase_dirs(out: Path) -> list[tuple[Path, str]]:
    dirs = [(out / f"phase{p}_{role}", role) for p, role in PHASES.items() if role in ROLES]
    dirs += [(out / "phase4_joint" / f"round{r}_{role}", role) for r in range(2) for role in ROLES]
    return dirs


# --- configuration ------------------------------------------------------------------------------

@pytest.mark.parametrize("field", ["timesteps", "groups", "batch_size", "checkpoint_every", "horizon"])
@pytest.mark.parametrize("value", [0, -5, 2.5])
def test_config_rejects_non_positive_integers(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_config_rejects_an_anchor_pull_outside_its_range(share: float) -> None:
    with pytest.raises(ValueError, match="anchor_pull"):
        TrainConfig(anchor_pull=share)


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_config_rejects_a_critic_warmup_outside_its_range(share: float) -> None:
    with pytest.raises(ValueError, match="critic_warmup"):
        TrainConfig(critic_warmup=share)


@pytest.mark.parametrize("share", [0.0, -0.5, 1.5])
def test_config_rejects_a_learning_rate_end_outside_its_range(share: float) -> None:
    with pytest.raises(ValueError, match="learning_rate_end"):
        TrainConfig(learning_rate_end=share)


@pytest.mark.parametrize("first", [0, 500, 6_000])
def test_learning_rate_falls_linearly_over_the_phase_whatever_came_before(first: int) -> None:
    """A phase starts at the full rate and ends at ``end_share`` of it, halfway at the mean of the two, counted from
    the phase's first transition (a continued model has earlier ones); the schedule left on the model is SB3's."""
    phase = 1_000
    decay = training.LearningRateDecay(1e-3, 0.1, first, phase)
    rates = []
    for done in (0, phase // 2, phase, 2 * phase):
        decay.model = types.SimpleNamespace(num_timesteps=first + done, lr_schedule=None)
        decay.on_rollout_end()
        assert type(decay.model.lr_schedule).__module__.startswith("stable_baselines3.")
        rates.append(decay.model.lr_schedule(1.0))
    assert rates == pytest.approx([1e-3, 0.55e-3, 0.1e-3, 0.1e-3])


def test_the_start_anchor_pulls_the_aims_its_share_of_the_way_back(tmp_path: Path) -> None:
    """After an update, ``StartAnchor`` moves the aims about pull x the learning rate's share of the way back to
    ``start_aims``, and no further (a policy aiming one safety factor above its start)."""
    torch.set_num_threads(1)
    config = TrainConfig(out=str(tmp_path), **TINY)
    model = train_role(config, "store", tmp_path / "phase1_store", {}, 0, config.learning_rate, seed=1)
    env = RoleVecEnv("store", frozen_choosers({}, "store"), groups=2, chains=4, num_stores=3, horizon=60, seed=3)
    sample = training.observation_sample(env, seed=3, days=40).astype(np.float32)
    start = training.start_aims(sample, "store")
    model.policy.aim_at(sample, start + 1.0, seed=1)

    def gap() -> float:
        with torch.no_grad():
            return float(np.sqrt(np.mean((model.policy.aims(torch.as_tensor(sample)).numpy() - start) ** 2)))

    before = gap()
    anchor = training.StartAnchor("store", pull=0.04, share=lambda: 0.5, seed=0)
    anchor.model = types.SimpleNamespace(policy=model.policy,
                                         rollout_buffer=types.SimpleNamespace(observations=sample[None]))
    anchor.on_rollout_end()
    anchor.on_rollout_start()
    assert 1.0 - gap() / before == pytest.approx(0.02, rel=0.5)


# --- a full tiny run ------------------------------------------------------------------------------

def test_every_phase_writes_its_artifacts(run) -> None:
    out, config, _ = run
    saved = json.loads((out / "config.json").read_text())
    assert saved == json.loads(json.dumps(dataclasses.asdict(config)))
    for phase_dir, role in phase_dirs(out):
        assert (phase_dir / "model.zip").is_file(), phase_dir
        assert not list(phase_dir.glob("*.tmp*")), "no temporary files left behind"
        metrics = json.loads((phase_dir / "metrics.json").read_text())
        assert metrics["role"] == role
        assert set(metrics) >= {"episodes", "updates"}
        assert metrics["updates"], phase_dir
        assert all(math.isfinite(u["timesteps"]) for u in metrics["updates"])
        assert any("train/value_loss" in u for u in metrics["updates"])
        for episode in metrics["episodes"]:
            assert set(episode) >= EPISODE_KEYS, episode
            assert 0.0 <= episode["fill_rate"] <= 1.0
            for key in ("reward", "lost_sales_per_day", "holding_cost_per_day", "cost_per_day"):
                assert math.isfinite(episode[key]), (key, episode)
            assert episode["lost_sales_per_day"] >= 0 and episode["holding_cost_per_day"] >= 0
        events = list((phase_dir / "tensorboard").rglob("events.out.tfevents.*"))
        assert events, f"{phase_dir}: no TensorBoard events"
        assert (phase_dir / "learning_curves.html").is_file() == bool(metrics["episodes"])
        if metrics["episodes"]:
            assert "plotly" in (phase_dir / "learning_curves.html").read_text()[:2_000_000].lower()


@pytest.mark.parametrize("phase", [1, 2, 3])
def test_role_phases_train_their_budget_and_log_every_episode(run, phase: int) -> None:
    out, config, _ = run
    role = PHASES[phase]
    phase_dir = out / f"phase{phase}_{role}"
    model = PPO.load(phase_dir / "model.zip", device="cpu")
    rollout = config.n_steps * ROWS
    assert config.timesteps <= model.num_timesteps < config.timesteps + rollout
    assert model.observation_space.shape == (len(FEATURES[role]),)
    assert model.action_space.n == NUM_ACTIONS
    metrics = json.loads((phase_dir / "metrics.json").read_text())
    days = model.num_timesteps // ROWS
    assert len(metrics["episodes"]) == config.groups * (days // config.horizon)
    stamps = [e["timesteps"] for e in metrics["episodes"]]
    assert stamps == sorted(stamps)
    checkpoints = sorted((phase_dir / "checkpoints").glob(f"{role}_*_steps.zip"))
    assert len(checkpoints) == model.num_timesteps // (config.checkpoint_every // ROWS * ROWS)


def test_hierarchy_records_every_phase(run) -> None:
    out, _, hierarchy = run
    assert json.loads((out / "hierarchy.json").read_text()) == hierarchy.to_dict()
    assert Hierarchy.load(out) == hierarchy  # the record round-trips
    records = hierarchy.to_dict()["phases"]
    assert [r["phase"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["role"] for r in records] == ["start", "store", "warehouse", "supplier", "joint"]
    for record in records:
        assert set(record) >= {"kept", "relative_cost", "cost_before", "cost_after", "seconds"}
        assert set(record["cost_before"]) == set(PRESETS) == set(record["cost_after"])
        assert all(c > 0 and math.isfinite(c) for c in record["cost_before"].values())
        ratios = [record["cost_after"][k] / record["cost_before"][k] for k in PRESETS]
        assert record["relative_cost"] == pytest.approx(float(np.mean(ratios)), rel=1e-12)
        assert record["kept"] == (record["relative_cost"] < 1.0 and max(ratios) <= 1.0 + TOLERATED_RISE)
        assert record["kept"]  # forced by biased_acceptance
    # the held-out check is deterministic: a phase's "before" is the previous phase's "after"
    for previous, record in itertools.pairwise(records):
        for name in PRESETS:
            assert record["cost_before"][name] == pytest.approx(previous["cost_after"][name] / AFTER_FACTOR, rel=1e-9)
    # every phase kept: each role ends with its last joint fine-tuning round
    assert hierarchy.roles == {role: f"phase4_joint/round1_{role}/model.zip" for role in ROLES}
    for path in hierarchy.roles.values():
        assert (out / path).is_file()


def test_joint_phase_fine_tunes_from_the_kept_models(run) -> None:
    out, config, _ = run
    budget = config.timesteps // (config.joint_rounds * len(ROLES))
    rollout = config.n_steps * ROWS
    for role in ROLES:
        previous = PPO.load(out / f"phase{ROLES.index(role) + 1}_{role}" / "model.zip", device="cpu").num_timesteps
        for round_ in range(config.joint_rounds):
            model = PPO.load(out / "phase4_joint" / f"round{round_}_{role}" / "model.zip", device="cpu")
            assert previous + budget <= model.num_timesteps < previous + budget + rollout, (role, round_)
            assert model.learning_rate == config.joint_learning_rate
            previous = model.num_timesteps


def test_rerunning_skips_the_phases_already_done(run, caplog: pytest.LogCaptureFixture) -> None:
    out, config, hierarchy = run
    before = (out / "hierarchy.json").read_bytes()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("model.zip")}
    with caplog.at_level(logging.INFO, logger=training.__name__):
        again = run_phases(config, list(PHASES))
    printed = [record.getMessage() for record in caplog.records]
    assert len(printed) == len(PHASES)
    for line, (phase, role) in zip(printed, PHASES.items(), strict=True):
        assert line.startswith(f"phase {phase} ({role})") and "skipped" in line, line
    assert again == hierarchy
    assert (out / "hierarchy.json").read_bytes() == before
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.zip")} == stamps


def test_rejected_phases_leave_the_roles_rule_based(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = TrainConfig(out=str(tmp_path / "run"), **{**TINY, "timesteps": 200, "store_timesteps": 200})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "acceptance_cost", biased_acceptance(1e3))
        run_phases(config, [1])
    hierarchy = run_phases(config, [4])  # resumes the hierarchy written by the first call
    first, joint = hierarchy.to_dict()["phases"]
    assert first["phase"] == 1 and not first["kept"] and first["relative_cost"] > 1.0
    assert (tmp_path / "run" / "phase1_store" / "model.zip").is_file()  # trained, then rejected
    assert hierarchy.roles == {}
    # with no learned role there is nothing to fine-tune
    assert joint["phase"] == 4 and not joint["kept"] and joint["relative_cost"] == 1.0
    assert not (tmp_path / "run" / "phase4_joint").exists()

    manifest = export_run(tmp_path / "run", tmp_path / "models")
    assert not list((tmp_path / "models").glob("*.onnx*"))
    for role in ROLES:
        card = manifest["roles"][role]
        assert card["kind"] == "rule" and card["safety_factor"] == ROLE[role].reference_safety_factor
        assert card["features"] == list(FEATURES[role])
    mix = learned_mix(tmp_path / "models")
    for role in ROLES:
        policy = getattr(mix, role)
        assert policy.choose == ConstantChooser(reference_index(role))
    assert simulate(dataclasses.replace(get_preset("steady"), horizon=30), mix, seeds=2)["fill_rate"]["mean"] > 0.5


# --- resumption -----------------------------------------------------------------------------------

def _resume_config(tmp_path: Path) -> TrainConfig:
    return TrainConfig(out=str(tmp_path), **{**TINY, "checkpoint_every": 100})


def test_train_role_resumes_from_its_latest_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = _resume_config(tmp_path)
    phase_dir = tmp_path / "phase1_store"
    rollout = config.n_steps * ROWS
    first = train_role(config, "store", phase_dir, {}, 600, config.learning_rate, seed=1)
    assert 600 <= first.num_timesteps < 600 + rollout
    reached = max(int(p.stem.split("_")[1]) for p in (phase_dir / "checkpoints").glob("store_*_steps.zip"))
    assert reached <= first.num_timesteps
    logged_first = len(json.loads((phase_dir / "metrics.json").read_text())["updates"])

    # a larger budget continues from the checkpoint instead of starting again; the log is extended
    second = train_role(config, "store", phase_dir, {}, 1000, config.learning_rate, seed=1)
    assert 1000 <= second.num_timesteps < 1000 + rollout
    updates = json.loads((phase_dir / "metrics.json").read_text())["updates"][logged_first:]
    assert updates[0]["timesteps"] == reached + rollout, "the first update after resuming follows the checkpoint"
    assert len(updates) == math.ceil((1000 - reached) / rollout)

    # the same budget again: the last checkpoint is the finished model, so nothing more is trained
    third = train_role(config, "store", phase_dir, {}, 1000, config.learning_rate, seed=1)
    assert third.num_timesteps == second.num_timesteps


def _steps(checkpoint: Path) -> int:
    return int(checkpoint.stem.split("_")[-2])


@pytest.mark.parametrize("kept", [0.5, -1], ids=["half", "all_but_the_last_byte"])
def test_resuming_skips_a_truncated_latest_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                      kept: float) -> None:
    """A latest checkpoint cut short (a crash while it was written, before writes were atomic; a
    full disk) is skipped with a logged reason, and training continues from the one before. Cut
    in half, the file still opens as a zip: the one torch nested inside it."""
    torch.set_num_threads(1)
    config = _resume_config(tmp_path)
    phase_dir = tmp_path / "phase1_store"
    rollout = config.n_steps * ROWS
    train_role(config, "store", phase_dir, {}, 600, config.learning_rate, seed=1)
    checkpoints = sorted((phase_dir / "checkpoints").glob("store_*_steps.zip"), key=_steps)
    assert len(checkpoints) >= 2 and not [p for p in phase_dir.rglob("*") if p.name.endswith(".tmp")]
    latest, previous = checkpoints[-1], checkpoints[-2]
    data = latest.read_bytes()
    latest.write_bytes(data[: int(len(data) * kept) if kept > 0 else len(data) - 1])
    logged = len(json.loads((phase_dir / "metrics.json").read_text())["updates"])

    with caplog.at_level(logging.WARNING, logger=training.__name__):
        resumed = train_role(config, "store", phase_dir, {}, 1000, config.learning_rate, seed=1)
    skipped = [r.getMessage() for r in caplog.records if "skipped checkpoint" in r.getMessage()]
    assert len(skipped) == 1 and f"{latest} (cannot resume from it: " in skipped[0], skipped
    updates = json.loads((phase_dir / "metrics.json").read_text())["updates"][logged:]
    assert updates[0]["timesteps"] == _steps(previous) + rollout, "the first update follows the previous checkpoint"
    assert 1000 <= resumed.num_timesteps < 1000 + rollout
    with zipfile.ZipFile(latest) as archive:  # written again, whole, when training passed its step count
        assert archive.testzip() is None
    assert not [p for p in phase_dir.rglob("*") if p.name.endswith(".tmp")]


def test_reentering_a_finished_phase_keeps_its_training_log(tmp_path: Path) -> None:
    """run_phases records a phase only after its held-out check; interrupted during that check, the
    next run re-enters the phase, whose training is already complete. Its log must survive."""
    torch.set_num_threads(1)
    config = _resume_config(tmp_path)
    phase_dir = tmp_path / "phase1_store"
    first = train_role(config, "store", phase_dir, {}, 600, config.learning_rate, seed=1)
    logged = json.loads((phase_dir / "metrics.json").read_text())
    assert logged["episodes"] and logged["updates"]
    again = train_role(config, "store", phase_dir, {}, 600, config.learning_rate, seed=1)
    assert again.num_timesteps == first.num_timesteps  # nothing left to train
    after = json.loads((phase_dir / "metrics.json").read_text())
    assert len(after["episodes"]) >= len(logged["episodes"]), "metrics.json lost the phase's episodes"
    assert len(after["updates"]) >= len(logged["updates"]), "metrics.json lost the phase's updates"


def test_interrupted_joint_round_resumes_its_budget(tmp_path: Path) -> None:
    """A phase-4 round starts from the previous model (``start_from``) and trains ``timesteps`` more.
    Interrupted after its first checkpoint, it should train what is left of that budget."""
    torch.set_num_threads(1)
    config = _resume_config(tmp_path)
    base = train_role(config, "store", tmp_path / "phase1_store", {}, 200, config.learning_rate, seed=1)
    start = tmp_path / "phase1_store" / "model.zip"
    round_dir = tmp_path / "phase4_joint" / "round0_store"
    budget = 300
    full = train_role(config, "store", round_dir, {"store": base}, budget, config.joint_learning_rate, seed=2,
                      start_from=start)
    assert full.num_timesteps >= base.num_timesteps + budget

    # interruption right after the round's first checkpoint
    checkpoints = sorted((round_dir / "checkpoints").glob("*.zip"), key=lambda p: p.stat().st_mtime)
    assert len(checkpoints) >= 2
    for later in checkpoints[1:]:
        later.unlink()
    (round_dir / "model.zip").unlink()
    resumed = train_role(config, "store", round_dir, {"store": base}, budget, config.joint_learning_rate, seed=2,
                         start_from=start)
    assert resumed.num_timesteps >= base.num_timesteps + budget, (
        f"resumed at {checkpoints[0].name} and stopped at {resumed.num_timesteps} transitions; "
        f"the round should reach {base.num_timesteps} + {budget}")


# --- export -----------------------------------------------------------------------------------------

def test_export_writes_a_checked_model_card_per_role(run, exported) -> None:
    out, config, hierarchy = run
    models, manifest = exported
    assert json.loads((models / "manifest.json").read_text()) == json.loads(json.dumps(manifest, default=float))
    assert not list(models.rglob("*.tmp")) and not list(models.rglob("*.onnx.data"))
    assert manifest["command"] == "pytest"
    assert manifest["training"]["phases"] == hierarchy.to_dict()["phases"]
    assert manifest["training"]["config"]["timesteps"] == config.timesteps
    assert set(manifest["packages"]) >= {"numpy", "onnxruntime", "torch", "stable-baselines3"}
    for role in ROLES:
        card = manifest["roles"][role]
        assert card["kind"] == "learned"
        path = models / card["file"]
        assert card["file"] == f"{manifest['version']}/{role}_policy.onnx" and path.is_file()
        assert card["sha256"] == sha256(path)
        assert not path.with_name(path.name + ".data").exists()
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
        assert graph.graph.initializer and all(t.data_location != onnx.TensorProto.EXTERNAL
                                               for t in graph.graph.initializer)
        assert card["opset"] == OPSET and card["input"] == "observation" and tuple(card["outputs"]) == OUTPUTS
        assert card["features"] == list(FEATURES[role])
        assert card["actions"] == list(ACTION_MEANINGS) and card["safety_factor_menu"] == list(SAFETY_FACTORS)
        assert card["trained_from"] == hierarchy.roles[role]
        assert card["training_steps"] == PPO.load(out / hierarchy.roles[role], device="cpu").num_timesteps
        chooser = load_policy(role, models)
        assert isinstance(chooser, OnnxChooser)
        probabilities = chooser.probabilities(np.zeros((3, len(FEATURES[role])), np.float32))
        assert probabilities.shape == (3, NUM_ACTIONS)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


# --- evaluation -------------------------------------------------------------------------------------

def test_evaluation_is_reproducible_and_written(exported, tmp_path: Path) -> None:
    models, _ = exported
    report = evaluate(["steady"], seeds=3, models=models)
    again = evaluate(["steady"], seeds=3, models=models)
    assert report.to_json() == again.to_json()
    assert EvaluationReport.from_dict(json.loads(report.to_json())) == report  # the JSON round-trips
    assert report.seeds == 3 and list(report.presets) == ["steady"]
    entry = report.presets["steady"]
    rules = ["forecast_base_stock", "tuned_forecast_base_stock", "tuned_base_stock", "reorder_point"]
    policies = [*rules, "phase1_stores", "phase2_warehouse", "learned_hierarchy"]
    assert list(entry.policies) == policies
    costs = {policy: kpis["cost_per_day"].mean for policy, kpis in entry.policies.items()}
    assert entry.best_rule == min(rules, key=costs.__getitem__)
    for policy, kpis in entry.policies.items():
        assert set(kpis) >= {"cost_per_day", "fill_rate", "lost_sales_per_day", "holding_cost_per_day"}
        cost = kpis["cost_per_day"]
        assert cost.low <= cost.mean <= cost.high and cost.mean > 0
        assert 0.0 <= kpis["fill_rate"].mean <= 1.0
        references = {"vs_reorder_point": "reorder_point", "vs_best_rule": entry.best_rule}
        assert set(entry.differences[policy]) == {key for key, ref in references.items() if ref != policy}
        for diffs in entry.differences[policy].values():
            assert set(diffs) == {"cost_per_day", "fill_rate"}
        gap = entry.gap_to_bound[policy]  # the bound lies below every policy, path by path
        assert gap.low > 0 and gap.mean == pytest.approx(cost.mean - entry.bound.mean, rel=1e-9)
    assert entry.optimum is None  # three stores: no exact optimum
    best, rop = costs[entry.best_rule], costs["reorder_point"]
    assert entry.differences["reorder_point"]["vs_best_rule"]["cost_per_day"].mean == \
        pytest.approx(rop - best, rel=1e-9, abs=1e-9)

    out = tmp_path / "evaluation"
    write(report, out)
    assert {p.name for p in out.iterdir()} == {"evaluation.json", "evaluation.csv", "evaluation.md",
                                                "comparison.html"}
    assert json.loads((out / "evaluation.json").read_text()) == report.to_dict()
    table = list(csv.DictReader((out / "evaluation.csv").read_text().splitlines()))
    assert [(r["preset"], r["policy"]) for r in table] == [("steady", p) for p in policies]
    assert float(table[policies.index("reorder_point")]["cost_per_day"]) == pytest.approx(rop)
    markdown = (out / "evaluation.md").read_text()
    assert markdown.startswith("| preset | policy |")
    assert all(f"| steady | {p} |" in markdown or f"| steady | **{p}** |" in markdown for p in policies)
    assert "plotly" in (out / "comparison.html").read_text().lower()

    record_evaluation(models, report)
    manifest = load_manifest(models)
    assert manifest["evaluation"]["seeds"] == 3
    summary = manifest["evaluation"]["presets"]["steady"]
    assert summary["best_rule"] == entry.best_rule and summary["bound"] == pytest.approx(entry.bound.mean)
    assert summary["policies"]["learned_hierarchy"]["cost_per_day"] == pytest.approx(
        entry.policies["learned_hierarchy"]["cost_per_day"].mean)
    learned_mix(models)  # the models still pass their checks after the manifest is rewritten


# --- the reference entries ---------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_a_fresh_policy_picks_its_start_entry(tmp_path: Path, role: str) -> None:
    """Phase 0's untrained policy (no transition learned) picks the menu entry its start aims at: on steady, the
    role's reference entry, on the states it visits there."""
    torch.set_num_threads(1)
    scenario = dataclasses.replace(get_preset("steady"), horizon=TINY["horizon"])
    config = TrainConfig(out=str(tmp_path), scenario=scenario.to_json(), **TINY)
    model = train_role(config, role, tmp_path / role, {}, 0, config.learning_rate, seed=3)
    assert model.num_timesteps == 0
    env = RoleVecEnv(role, frozen_choosers({}, role), groups=2, chains=3, num_stores=scenario.num_stores,
                     horizon=scenario.horizon, seed=9, scenarios=[scenario])
    observations = training.observation_sample(env, seed=9)
    assert np.mean(model_chooser(model)(observations) == reference_index(role)) > 0.99


def test_start_aims_follow_the_newsvendor_safety_factor() -> None:
    """Where the critical ratio is steady's: the reference entry; lower: stores scaled by the ratio of newsvendor
    factors, upstream roles shifted by their difference; always within the menu."""
    steady = PRESETS["steady"].costs
    steady_factor = newsvendor_safety_factor(steady.stockout / (steady.stockout + steady.store_holding))
    factors = np.array([steady_factor, 0.84, -3.0])
    for role in ROLES:
        observations = np.zeros((3, len(FEATURES[role])))
        observations[:, FEATURES[role].index("newsvendor_safety_factor")] = factors
        aims = start_aims(observations, role)
        reference = ROLE[role].reference_safety_factor
        lower = reference * 0.84 / steady_factor if ROLE[role].per_store else reference + 0.84 - steady_factor
        np.testing.assert_allclose(aims[:2], [reference, lower], rtol=1e-12)
        assert min(SAFETY_FACTORS) <= aims[2] < aims[1]


def test_the_critic_warms_up_with_the_actor_frozen(tmp_path: Path) -> None:
    """Inside ``actor_frozen`` PPO's updates move the value function only; afterwards the actor learns again."""
    torch.set_num_threads(1)
    config = TrainConfig(out=str(tmp_path), **TINY)
    model = train_role(config, "store", tmp_path / "store", {}, 0, config.learning_rate, seed=3)
    policy = model.policy
    actor = {name: p.detach().clone() for name, p in policy.named_parameters()
             if name.startswith(("mlp_extractor.policy_net", "action_net"))}
    critic = {name: p.detach().clone() for name, p in policy.named_parameters() if name.startswith("value_net")}
    with training.actor_frozen(policy):
        model.learn(2 * config.n_steps * model.n_envs)
    parameters = dict(policy.named_parameters())
    assert all(torch.equal(parameters[name], value) for name, value in actor.items())
    assert not all(torch.equal(parameters[name], value) for name, value in critic.items())
    assert all(p.requires_grad for p in policy.parameters())
    model.learn(2 * config.n_steps * model.n_envs)
    assert not all(torch.equal(parameters[name], value) for name, value in actor.items())


def test_a_phase_raising_one_preset_beyond_the_tolerance_is_rejected(tmp_path: Path) -> None:
    """Kept only if no preset's held-out cost rises by more than ``TOLERATED_RISE``, however much the others fall."""
    torch.set_num_threads(1)
    config = TrainConfig(out=str(tmp_path / "run"), **{**TINY, "timesteps": 200, "store_timesteps": 200})
    calls = itertools.count()
    real = training.acceptance_cost

    def acceptance(config: TrainConfig, models: dict) -> dict[str, float]:
        costs = real(config, models)
        if next(calls) % 2 == 0:
            return costs
        return {name: cost * (1.0 + 2 * TOLERATED_RISE if name == "steady" else 0.5) for name, cost in costs.items()}

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "acceptance_cost", acceptance)
        (record,) = run_phases(config, [1]).phases
    assert record.relative_cost < 1.0 and not record.kept


def test_a_rejected_phase_keeps_its_latest_checkpoint_that_passes(tmp_path: Path) -> None:
    """Rejected at its end, a role phase tries its checkpoints nearest below 90, 80 and 70 % of its budget, latest
    first, and keeps the first that passes; the record and the hierarchy name that checkpoint."""
    torch.set_num_threads(1)
    config = TrainConfig(out=str(tmp_path / "run"), **TINY)  # checkpoints every 492 transitions of a 2,000 budget
    returned: list[dict[str, float]] = []  # 0: before, 1: the end, 2 and 3: checkpoints
    real = training.acceptance_cost

    def acceptance(config: TrainConfig, models: dict) -> dict[str, float]:
        costs, call = real(config, models), len(returned)
        if call == 0:
            returned.append(costs)
        else:
            returned.append({name: returned[0][name] * (0.9 if call == 3 else 1.0 + 2 * TOLERATED_RISE
                                                        if name == "steady" else 0.5) for name in costs})
        return returned[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "acceptance_cost", acceptance)
        hierarchy = run_phases(config, [1])
    assert len(returned) == 4
    (record,) = hierarchy.phases
    assert record.kept and record.checkpoint == 984 and record.cost_after == returned[3]
    assert record.relative_cost == pytest.approx(0.9)
    assert hierarchy.roles["store"] == "phase1_store/checkpoints/store_984_steps.zip"
    assert PPO.load(hierarchy.model_path(tmp_path / "run", "store"), device="cpu").num_timesteps == 984
    assert Hierarchy.load(tmp_path / "run").phases[0].checkpoint == 984


def test_fallback_checkpoints_skip_damaged_ones(tmp_path: Path) -> None:
    """Nearest intact checkpoint below each share of the budget, each once, latest first."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for steps in (100, 300, 500, 700, 900):
        with zipfile.ZipFile(folder / f"store_{steps}_steps.zip", "w") as archive:
            for member in training.CHECKPOINT_MEMBERS:
                archive.writestr(member, b"x")
    (folder / "store_700_steps.zip").write_bytes(b"truncated")
    chosen = training.fallback_checkpoints(tmp_path, 1000)  # 900, 800, 700 -> 900, 500 (700 is damaged), 500
    assert [path.name for path in chosen] == ["store_900_steps.zip", "store_500_steps.zip"]


def test_menu_tuner_is_never_worse_than_the_reference_entries() -> None:
    scenario = dataclasses.replace(get_preset("high_volatility"), horizon=60)
    tuned = tune_menu(scenario, seeds=3, sweeps=1)
    reference = run_mixes(scenario, {"ref": PolicyMix(*(reference_policy(r) for r in ROLES))}, 3, 777)
    assert set(tuned["safety_factors"]) == set(ROLES)
    assert all(z in SAFETY_FACTORS for z in tuned["safety_factors"].values())
    assert tuned["cost_per_day"] <= reference["ref"]["cost_per_day"].mean() + 1e-9


def test_a_run_on_one_scenario_trains_and_accepts_on_it_alone(tmp_path: Path) -> None:
    """``train --scenario``: every training episode and the acceptance check use that scenario (its own number of
    stores), and the run's config.json records it."""
    scenario = PRESETS["lost_sales_textbook"]
    config = TrainConfig(out=str(tmp_path / "run"), scenario=scenario.to_json(), **TINY)
    seen: list[str] = []
    real_env = training.RoleVecEnv

    def recording_env(*args, **kwargs):
        env = real_env(*args, **kwargs)
        seen.extend(group.scenario.name for group in (env._new_group(i) for i in range(env.num_groups)))
        assert env.num_envs == TINY["groups"] * TINY["chains"] * scenario.num_stores
        return env

    accepted_on: list[list[str]] = []
    real_mean_cost = training.mean_cost

    def recording_mean_cost(scenarios, mix, seeds):
        accepted_on.append([s.name for s in scenarios])
        return real_mean_cost(scenarios, mix, seeds)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "RoleVecEnv", recording_env)
        mp.setattr(training, "mean_cost", recording_mean_cost)
        run_phases(config, [1])
    assert seen and set(seen) == {scenario.name}
    assert accepted_on and all(names == [scenario.name] for names in accepted_on)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["scenario"]
    assert Scenario.from_json(recorded) == scenario


def test_train_on_an_unknown_scenario_exits_2(capsys) -> None:
    assert main(["train", "--scenario", "no_such_preset", "--out", "unused"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no_such_preset" in err


def test_phase_acceptance_is_measured_on_other_customers_than_the_evaluation() -> None:
    """A phase is kept or rejected on held-out demand: not one of its paths is among the evaluation's."""
    scenario = dataclasses.replace(get_preset("lost_sales_textbook"), horizon=20)
    config = TrainConfig(scenario=scenario.to_json(), acceptance_seeds=8)
    drawn: list[np.ndarray] = []
    real_run_mixes = statistics.run_mixes

    def recording_run_mixes(scenario, mixes, seeds, seed, periods=None):
        drawn.append(sample_demand(scenario, seeds, np.random.default_rng(seed), periods))
        return real_run_mixes(scenario, mixes, seeds, seed, periods)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(statistics, "run_mixes", recording_run_mixes)
        training.acceptance_cost(config, {})
    evaluation = sample_demand(scenario, 30, np.random.default_rng(EVAL_SEED)).reshape(30, -1)
    assert len(drawn) == 1
    for path in drawn[0].reshape(8, -1):
        assert not np.any(np.all(evaluation == path, axis=1))
