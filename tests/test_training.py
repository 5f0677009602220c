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
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from pools import pool_of
from stable_baselines3 import PPO

import core.evaluation.statistics as statistics
import core.learning.training as training
from core.agents.menus import (
    ACTION_MEANINGS,
    NUM_ACTIONS,
    SAFETY_FACTORS,
    TunedEntry,
    menu_index,
    reference_policy,
)
from core.agents.observations import FEATURES, TUNED
from core.agents.roles import ROLE, ROLES
from core.agents.rules import PolicyMix
from core.agents.tuning import tune_menu, tuned_safety_factors
from core.cli import main
from core.evaluation.report import EvaluationReport, evaluate, record_evaluation, write
from core.evaluation.statistics import EVAL_SEED
from core.learning import pool as pools
from core.learning.export import OPSET, export_actor, export_run, torch_probabilities
from core.learning.hierarchy import Hierarchy
from core.learning.policies import model_chooser, model_mix
from core.learning.pool import PoolScenario
from core.learning.training import PHASES, TOLERATED_RISE, Pools, TrainConfig, run_phases, start_aims, train_role
from core.serving.models import OUTPUTS, OnnxChooser, learned_mix, load_manifest, load_policy, sha256
from core.serving.registry import Sources, mix_of, scenario_tuning, uniform
from core.simulation.demand import sample_demand
from core.simulation.presets import PRESETS, get_preset
from core.simulation.rollout import run_mixes, simulate
from core.simulation.scenario import Scenario

TINY = {"timesteps": 2000, "store_timesteps": 2000, "groups": 2, "rows": 48, "upstream_chains": 4,
        "pool_scenarios": 2, "acceptance_scenarios": 1, "n_steps": 8, "batch_size": 32, "acceptance_seeds": 2,
        "acceptance_days": 20, "checkpoint_every": 500, "progress_bar": False, "horizon": 20}
ROWS = {"store": 2 * 48, "warehouse": 2 * 4, "supplier": 2 * 4}  # groups x store rows, groups x upstream chains
EPISODE_KEYS = {"reward", "fill_rate", "lost_sales_per_day", "holding_cost_per_day", "cost_per_day", "timesteps"}
AFTER_FACTOR = 1e-3
REAL_TUNE_ALL = pools.tune_all


def quick_tuned(scenario: Scenario) -> dict[str, float]:
    """A stand-in for ``tuned_safety_factors`` (seconds per scenario): menu entries from -1 to 3, different per
    scenario and role, the same every time."""
    return {role: SAFETY_FACTORS[10 + zlib.crc32(f"{scenario.name}/{role}".encode()) % 41] for role in ROLES}


@pytest.fixture(autouse=True, scope="module")
def quick_tuning():
    """Every pool a run builds here is tuned by ``quick_tuned`` (what the tuning finds is the tuner's tests' business;
    ``test_a_run_s_pools_are_tuned_and_kept`` tunes for real)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pools, "tune_all", lambda scenarios, processes=None: [quick_tuned(s) for s in scenarios])
        yield


# a training pool of 1, 3 and 4 stores (they divide TINY's 48 store rows), each scenario with its own tuned factors,
# spread over the menu (the policy's standardisation clips the tuned factor to +-10 standard deviations of the ones
# it measured: a pool whose factors nearly agree leaves an outlier outside)
POOL = [*pool_of(get_preset("serial_textbook"), tuned={"store": -1.5, "warehouse": 4.4, "supplier": 0.0}),
        *pool_of(get_preset("steady"), tuned={"store": 0.7, "warehouse": 1.3, "supplier": 2.6}),
        *pool_of(get_preset("thin_margin"), tuned={"store": 3.0, "warehouse": -0.5, "supplier": 7.0})]


def biased_acceptance(factor: float):
    """The real held-out check, with every phase's "after" cost multiplied by ``factor`` (run_phases
    calls it before and after each phase, in turn): factor < 1 keeps every phase, > 1 rejects it.
    Which phases a 2000-step run keeps is otherwise a coin toss."""
    calls = itertools.count()
    real = training.acceptance_cost

    def acceptance(config: TrainConfig, models: dict, run_pools: Pools) -> dict[str, float]:
        costs = real(config, models, run_pools)
        scale = factor if next(calls) % 2 else 1.0
        return {name: cost * scale for name, cost in costs.items()}

    return acceptance


def acceptance_names(config: TrainConfig) -> set[str]:
    """The scenarios a run's phases are accepted on: the presets and its drawn acceptance scenarios."""
    drawn = pools.drawn_scenarios(config.acceptance_scenarios, config.seed, "acceptance")
    return set(PRESETS) | {s.name for s in drawn}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainConfig, dict]:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run")
    # upstream budgets of 4,800: every joint round of the stores (800 transitions) takes two rollouts of 768, so that
    # SB3 logs its losses (it writes an update's losses at the next rollout's end)
    config = TrainConfig(out=str(out), **{**TINY, "timesteps": 4800})
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


def _displaced(model, seed: int) -> None:
    """Shake the actor (its network and its correction) so that the policy aims away from its start, by an amount
    that depends on the situation."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.policy.actor_parameters():
            parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator))
        model.policy.action_net.correction.bias.add_(1.0)


def test_the_start_anchor_pulls_the_correction_its_share_of_the_way_back_to_zero(tmp_path: Path) -> None:
    """After an update, ``StartAnchor`` moves the aims about pull x the learning rate's share of the way back to
    ``start_aims`` (the tuned factor: a correction of zero), and no further (a policy whose correction is about one
    safety factor); a policy at its start (a correction of exactly zero) stays exactly there."""
    torch.set_num_threads(1)
    config = TrainConfig(out=str(tmp_path), **{**TINY, "groups": 6})
    model = train_role(config, "store", tmp_path / "phase1_store", {}, POOL, 0, config.learning_rate, seed=1)
    env = training.vec_env(config, "store", {}, POOL, seed=3)
    sample = training.observation_sample(env, seed=3, days=15).astype(np.float32)
    start = training.start_aims(sample, "store")
    np.testing.assert_array_equal(start, sample[:, -1])
    assert len(np.unique(start)) >= 2  # situations of scenarios with different tuned factors

    def correction() -> np.ndarray:
        with torch.no_grad():
            return model.policy.aims(torch.as_tensor(sample)).numpy() - start

    def anchored(pull: float) -> None:
        anchor = training.StartAnchor("store", pull=pull, share=lambda: 0.5, seed=0)
        anchor.model = types.SimpleNamespace(policy=model.policy,
                                             rollout_buffer=types.SimpleNamespace(observations=sample[None]))
        anchor.on_rollout_end()
        anchor.on_rollout_start()

    np.testing.assert_allclose(correction(), 0.0, atol=1e-6)  # fresh: the tuned rule
    fresh = [p.detach().clone() for p in model.policy.actor_parameters()]
    anchored(0.04)
    assert all(torch.equal(p, q) for p, q in zip(model.policy.actor_parameters(), fresh, strict=True))

    _displaced(model, seed=1)
    before = correction()
    assert np.sqrt(np.mean(before**2)) > 0.5 and np.std(before) > 0.05
    anchored(0.04)
    after = correction()
    shrunk = 1.0 - np.sqrt(np.mean(after**2)) / np.sqrt(np.mean(before**2))
    assert shrunk == pytest.approx(0.02, rel=0.5)
    assert np.mean(np.abs(after) < np.abs(before)) > 0.9  # toward zero nearly everywhere, not just on average


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
        assert any("train/value_loss" in u for u in metrics["updates"]), phase_dir
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
    rows = ROWS[role]
    rollout = config.n_steps * rows
    budget = config.store_timesteps if role == "store" else config.timesteps
    assert budget <= model.num_timesteps < budget + rollout
    assert model.observation_space.shape == (len(FEATURES[role]),)
    assert model.action_space.n == NUM_ACTIONS
    metrics = json.loads((phase_dir / "metrics.json").read_text())
    days = model.num_timesteps // rows
    assert len(metrics["episodes"]) == config.groups * (days // config.horizon)
    assert {e["scenario"] for e in metrics["episodes"]} <= {p.scenario.name for p in Pools.of(config).training}
    stamps = [e["timesteps"] for e in metrics["episodes"]]
    assert stamps == sorted(stamps)
    checkpoints = sorted((phase_dir / "checkpoints").glob(f"{role}_*_steps.zip"))
    assert len(checkpoints) == model.num_timesteps // (config.checkpoint_every // rows * rows)


def test_hierarchy_records_every_phase(run) -> None:
    out, _, hierarchy = run
    assert json.loads((out / "hierarchy.json").read_text()) == hierarchy.to_dict()
    assert Hierarchy.load(out) == hierarchy  # the record round-trips
    records = hierarchy.to_dict()["phases"]
    assert [r["phase"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["role"] for r in records] == ["start", "store", "warehouse", "supplier", "joint"]
    for record in records:
        assert set(record) >= {"kept", "relative_cost", "cost_before", "cost_after", "seconds"}
        assert set(record["cost_before"]) == acceptance_names(run[1]) == set(record["cost_after"])
        assert all(c > 0 and math.isfinite(c) for c in record["cost_before"].values())
        ratios = [record["cost_after"][k] / record["cost_before"][k] for k in record["cost_before"]]
        assert record["relative_cost"] == pytest.approx(float(np.mean(ratios)), rel=1e-12)
        passed = record["relative_cost"] < 1.0 and max(ratios) <= 1.0 + TOLERATED_RISE
        assert record["kept"] == (passed or record["role"] == "start")  # the start is always kept
        assert record["kept"]  # forced by biased_acceptance
    # the held-out check is deterministic: a phase's "before" is the previous phase's "after"
    for previous, record in itertools.pairwise(records):
        for name in record["cost_before"]:
            assert record["cost_before"][name] == pytest.approx(previous["cost_after"][name] / AFTER_FACTOR, rel=1e-9)
    # every phase kept: each role ends with its last joint fine-tuning round
    assert hierarchy.roles == {role: f"phase4_joint/round1_{role}/model.zip" for role in ROLES}
    for path in hierarchy.roles.values():
        assert (out / path).is_file()


def test_joint_phase_fine_tunes_from_the_kept_models(run) -> None:
    out, config, _ = run
    budget = config.timesteps // (config.joint_rounds * len(ROLES))
    for role in ROLES:
        rollout = config.n_steps * ROWS[role]
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


def test_rejected_phases_leave_the_roles_on_their_tuned_entries(tmp_path: Path) -> None:
    """With every phase rejected, no role is learned: the export's cards are rules, and the served hierarchy, every
    role on its tuned entry (``TunedEntry``), costs exactly what the registry's ``tuned_forecast_base_stock`` costs on
    the same demand (as does the training-time mix of no models)."""
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
        assert getattr(mix, role).choose == TunedEntry()
    for name in ("steady", "thin_margin"):
        scenario = dataclasses.replace(get_preset(name), horizon=30)
        rule = mix_of(uniform("tuned_forecast_base_stock"), scenario, Sources(models=tmp_path / "models"))
        untrained = model_mix({}, scenario_tuning(tmp_path / "models"))
        costs = run_mixes(scenario, {"served": mix, "rule": rule, "untrained": untrained}, 3, EVAL_SEED)
        np.testing.assert_array_equal(costs["served"]["cost_per_day"], costs["rule"]["cost_per_day"])
        np.testing.assert_array_equal(costs["untrained"]["cost_per_day"], costs["rule"]["cost_per_day"])
    assert simulate(dataclasses.replace(get_preset("steady"), horizon=30), mix, seeds=2)["fill_rate"]["mean"] > 0.5


# --- resumption -----------------------------------------------------------------------------------

def _resume_config(tmp_path: Path) -> TrainConfig:
    return TrainConfig(out=str(tmp_path), **{**TINY, "checkpoint_every": 100, "horizon": 8})  # an episode a rollout


def test_train_role_resumes_from_its_latest_checkpoint(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = _resume_config(tmp_path)
    phase_dir = tmp_path / "phase1_store"
    rollout = config.n_steps * ROWS["store"]
    first = train_role(config, "store", phase_dir, {}, POOL, 600, config.learning_rate, seed=1)
    assert 600 <= first.num_timesteps < 600 + rollout
    reached = max(int(p.stem.split("_")[1]) for p in (phase_dir / "checkpoints").glob("store_*_steps.zip"))
    assert reached <= first.num_timesteps
    logged_first = len(json.loads((phase_dir / "metrics.json").read_text())["updates"])

    # a larger budget continues from the checkpoint instead of starting again; the log is extended
    second = train_role(config, "store", phase_dir, {}, POOL, 1000, config.learning_rate, seed=1)
    assert 1000 <= second.num_timesteps < 1000 + rollout
    updates = json.loads((phase_dir / "metrics.json").read_text())["updates"][logged_first:]
    assert updates[0]["timesteps"] == reached + rollout, "the first update after resuming follows the checkpoint"
    assert len(updates) == math.ceil((1000 - reached) / rollout)

    # the same budget again: the last checkpoint is the finished model, so nothing more is trained
    third = train_role(config, "store", phase_dir, {}, POOL, 1000, config.learning_rate, seed=1)
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
    rollout = config.n_steps * ROWS["store"]
    train_role(config, "store", phase_dir, {}, POOL, 600, config.learning_rate, seed=1)
    checkpoints = sorted((phase_dir / "checkpoints").glob("store_*_steps.zip"), key=_steps)
    assert len(checkpoints) >= 2 and not [p for p in phase_dir.rglob("*") if p.name.endswith(".tmp")]
    latest, previous = checkpoints[-1], checkpoints[-2]
    data = latest.read_bytes()
    latest.write_bytes(data[: int(len(data) * kept) if kept > 0 else len(data) - 1])
    logged = len(json.loads((phase_dir / "metrics.json").read_text())["updates"])

    with caplog.at_level(logging.WARNING, logger=training.__name__):
        resumed = train_role(config, "store", phase_dir, {}, POOL, 1000, config.learning_rate, seed=1)
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
    first = train_role(config, "store", phase_dir, {}, POOL, 600, config.learning_rate, seed=1)
    logged = json.loads((phase_dir / "metrics.json").read_text())
    assert logged["episodes"] and logged["updates"]
    again = train_role(config, "store", phase_dir, {}, POOL, 600, config.learning_rate, seed=1)
    assert again.num_timesteps == first.num_timesteps  # nothing left to train
    after = json.loads((phase_dir / "metrics.json").read_text())
    assert len(after["episodes"]) >= len(logged["episodes"]), "metrics.json lost the phase's episodes"
    assert len(after["updates"]) >= len(logged["updates"]), "metrics.json lost the phase's updates"


def test_interrupted_joint_round_resumes_its_budget(tmp_path: Path) -> None:
    """A phase-4 round starts from the previous model (``start_from``) and trains ``timesteps`` more.
    Interrupted after its first checkpoint, it should train what is left of that budget."""
    torch.set_num_threads(1)
    config = _resume_config(tmp_path)
    base = train_role(config, "store", tmp_path / "phase1_store", {}, POOL, 200, config.learning_rate, seed=1)
    start = tmp_path / "phase1_store" / "model.zip"
    round_dir = tmp_path / "phase4_joint" / "round0_store"
    budget = 300
    full = train_role(config, "store", round_dir, {"store": base}, POOL, budget, config.joint_learning_rate, seed=2,
                      start_from=start)
    assert full.num_timesteps >= base.num_timesteps + budget

    # interruption right after the round's first checkpoint
    checkpoints = sorted((round_dir / "checkpoints").glob("*.zip"), key=lambda p: p.stat().st_mtime)
    assert len(checkpoints) >= 2
    for later in checkpoints[1:]:
        later.unlink()
    (round_dir / "model.zip").unlink()
    resumed = train_role(config, "store", round_dir, {"store": base}, POOL, budget, config.joint_learning_rate, seed=2,
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


# --- the start: the tuned rule ------------------------------------------------------------------

def pool_observations(config: TrainConfig, role: str, seed: int) -> np.ndarray:
    """What an agent of ``role`` sees in the pool's VecEnv: near the start's choices (``observation_sample``) and
    under random menu entries, over a whole episode and into the next."""
    env = training.vec_env(config, role, {}, POOL, seed=seed)
    near = training.observation_sample(env, seed=seed)
    rng = np.random.default_rng(seed)
    seen = [env.reset()]
    for _ in range(config.horizon + 3):
        seen.append(env.step(rng.integers(NUM_ACTIONS, size=env.num_envs))[0])
    return np.concatenate([near, *seen])


@pytest.mark.parametrize("role", ROLES)
def test_a_fresh_policy_is_the_tuned_rule_and_so_is_its_onnx_export(tmp_path: Path, role: str) -> None:
    """Phase 0's untrained policy (no transition learned) picks the role's tuned entry, ``menu_index`` of the tuned
    factor it observes, on every observation of the pool's VecEnv (three scenarios, three tuned factors: each its
    own entry); its ONNX export gives the same probabilities within float32 rounding, hence the same entries."""
    torch.set_num_threads(1)
    config = TrainConfig(out=str(tmp_path), **{**TINY, "groups": 6})
    model = train_role(config, role, tmp_path / role, {}, POOL, 0, config.learning_rate, seed=3)
    assert model.num_timesteps == 0
    observations = pool_observations(config, role, seed=9)
    tuned = np.array([menu_index(z) for z in observations[:, -1]])
    assert set(np.unique(tuned)) == {menu_index(p.tuned[role]) for p in POOL}  # every scenario's entry is seen
    np.testing.assert_array_equal(model_chooser(model)(observations), tuned)
    # whatever else it observes: the correction starts at exactly zero
    rng = np.random.default_rng(4)
    wild = rng.uniform(-20.0, 40.0, size=(5_000, len(FEATURES[role]))).astype(np.float32)
    wild[:, -1] = rng.choice([p.tuned[role] for p in POOL], size=len(wild))
    with torch.no_grad():
        aims = model.policy.aims(torch.as_tensor(wild)).numpy()
    np.testing.assert_array_equal(aims, wild[:, -1])
    np.testing.assert_array_equal(model_chooser(model)(wild), [menu_index(z) for z in wild[:, -1]])

    path = tmp_path / f"{role}.onnx"
    export_actor(model, role, path)
    everything = np.concatenate([observations, wild])
    actions, probabilities = OnnxChooser.checked(path, role).run(everything)
    expected = torch_probabilities(model, everything)
    assert np.abs(probabilities - expected).max() <= 1e-4  # float32: logits reach about 1,000 (test_serving.py)
    np.testing.assert_array_equal(actions, np.concatenate([tuned, [menu_index(z) for z in wild[:, -1]]]))


def test_the_start_phase_is_the_tuned_rule_and_always_kept(tmp_path: Path) -> None:
    """Phase 0 (every role's fresh policy) costs exactly what the roles' tuned entries cost on every acceptance
    scenario, and is kept even where the acceptance check would reject it. (With 16 groups of 8 drawn scenarios the
    observation sample spans the tuned factors widely enough to reach the presets' too: see the next test.)"""
    torch.set_num_threads(1)
    config = TrainConfig(out=str(tmp_path / "run"), **{**TINY, "groups": 16, "pool_scenarios": 8,
                                                       "acceptance_scenarios": 2})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "acceptance_cost", biased_acceptance(1e3))
        hierarchy = run_phases(config, [0])
    (record,) = hierarchy.phases
    assert record.kept and record.role == "start"
    assert hierarchy.roles == {role: f"phase0_start/{role}/model.zip" for role in ROLES}
    assert set(record.cost_before) == acceptance_names(config)
    for name, before in record.cost_before.items():  # the "after" is the real cost x 1000
        assert record.cost_after[name] / 1e3 == pytest.approx(before, rel=1e-12), name


@pytest.mark.xfail(strict=True, reason="core.learning.policies.Standardize (and the export's Actor) clip the tuned "
                   "factor to mean +-10 sd of the observation sample's: a tuned factor outside that range reaches the "
                   "head clipped, so a fresh policy is then not its scenario's tuned rule (a run on one scenario: sd "
                   "1e-3, the range +-0.01)")
def test_a_fresh_policy_is_the_tuned_rule_beyond_the_factors_of_its_sample(tmp_path: Path) -> None:
    """A fresh policy sampled on scenarios whose tuned factors nearly agree is the tuned rule on another scenario."""
    torch.set_num_threads(1)
    near = [*pool_of(get_preset("steady"), tuned={"store": 0.7, "warehouse": 1.3, "supplier": 2.6}),
            *pool_of(get_preset("seasonal"), tuned={"store": 0.8, "warehouse": 1.3, "supplier": 2.6})]
    config = TrainConfig(out=str(tmp_path), **TINY)
    model = train_role(config, "store", tmp_path / "store", {}, near, 0, config.learning_rate, seed=3)
    observations = training.observation_sample(training.vec_env(config, "store", {}, near, seed=4), seed=4, days=5)
    observations[:, -1] = 2.5  # a scenario whose stores are tuned to 2.5
    np.testing.assert_array_equal(model_chooser(model)(observations), menu_index(2.5))


def test_start_aims_are_the_tuned_safety_factor() -> None:
    """Where a fresh policy aims, and where the anchor pulls: the role's tuned factor, its last observation."""
    rng = np.random.default_rng(0)
    for role in ROLES:
        assert FEATURES[role][-1] == TUNED
        observations = rng.normal(size=(50, len(FEATURES[role]))).astype(np.float32)
        observations[:, -1] = rng.choice(SAFETY_FACTORS, size=50)
        np.testing.assert_array_equal(start_aims(observations, role), observations[:, -1].astype(float))


def test_the_critic_warms_up_with_the_actor_frozen(tmp_path: Path) -> None:
    """Inside ``actor_frozen`` PPO's updates move the value function only; afterwards the actor learns again."""
    torch.set_num_threads(1)
    config = TrainConfig(out=str(tmp_path), **TINY)
    model = train_role(config, "store", tmp_path / "store", {}, POOL, 0, config.learning_rate, seed=3)
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
    returned: list[dict[str, float]] = []  # 0: before, 1: the end (relative to the "before")
    real = training.acceptance_cost

    def acceptance(config: TrainConfig, models: dict, run_pools: Pools) -> dict[str, float]:
        costs = real(config, models, run_pools)
        returned.append(costs if not returned else {name: returned[0][name] * (1.0 + 2 * TOLERATED_RISE
                                                                              if name == "steady" else 0.5)
                                                    for name in costs})
        return returned[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "acceptance_cost", acceptance)
        (record,) = run_phases(config, [1]).phases
    assert len(returned) == 2  # no checkpoint below 90 % of the budget to fall back to
    assert record.relative_cost < 1.0 and not record.kept


def test_a_rejected_phase_keeps_its_latest_checkpoint_that_passes(tmp_path: Path) -> None:
    """Rejected at its end, a role phase tries its checkpoints nearest below 90, 80 and 70 % of its budget, latest
    first, and keeps the first that passes; the record and the hierarchy name that checkpoint."""
    torch.set_num_threads(1)
    # checkpoints every 480 transitions (5 steps of 96 store rows) of a 2,000 budget: 90 % (1,800) and 80 % fall back
    # to 1,440, 70 % to 960
    config = TrainConfig(out=str(tmp_path / "run"), **TINY)
    returned: list[dict[str, float]] = []  # 0: before, 1: the end, 2 and 3: checkpoints
    real = training.acceptance_cost

    def acceptance(config: TrainConfig, models: dict, run_pools: Pools) -> dict[str, float]:
        costs, call = real(config, models, run_pools), len(returned)
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
    assert record.kept and record.checkpoint == 960 and record.cost_after == returned[3]
    assert record.relative_cost == pytest.approx(0.9)
    assert hierarchy.roles["store"] == "phase1_store/checkpoints/store_960_steps.zip"
    assert PPO.load(hierarchy.model_path(tmp_path / "run", "store"), device="cpu").num_timesteps == 960
    assert Hierarchy.load(tmp_path / "run").phases[0].checkpoint == 960


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
        seen.extend(env._new_group().scenario.name for _ in range(env.num_groups))
        assert env.num_envs == TINY["groups"] * TINY["rows"]  # 48 chains of its one store per group
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
    accepted_on = Pools(training=[], acceptance=pool_of(scenario))
    drawn: list[np.ndarray] = []
    real_run_mixes = statistics.run_mixes

    def recording_run_mixes(scenario, mixes, seeds, seed, periods=None):
        drawn.append(sample_demand(scenario, seeds, np.random.default_rng(seed), periods))
        return real_run_mixes(scenario, mixes, seeds, seed, periods)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(statistics, "run_mixes", recording_run_mixes)
        training.acceptance_cost(config, {}, accepted_on)
    evaluation = sample_demand(scenario, 30, np.random.default_rng(EVAL_SEED)).reshape(30, -1)
    assert len(drawn) == 1
    for path in drawn[0].reshape(8, -1):
        assert not np.any(np.all(evaluation == path, axis=1))


def test_a_run_s_pools_are_tuned_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Pools.of``: a run on one scenario trains and accepts on it alone, tuned by ``tuned_safety_factors``; a run
    on the family draws its pool's scenarios (store counts that divide the store rows) and its acceptance scenarios
    besides the presets. Both are kept in OUT/pool.json and OUT/acceptance.json, and tuned again only if the run's
    scenarios change."""
    scenario = dataclasses.replace(get_preset("steady"), horizon=40)
    monkeypatch.setattr(pools, "tune_all", REAL_TUNE_ALL)
    for folder in ("one", "family"):
        (tmp_path / folder).mkdir()  # as run_phases makes it
    fixed = Pools.of(TrainConfig(out=str(tmp_path / "one"), scenario=scenario.to_json()))
    tuned = tuned_safety_factors(scenario)
    assert fixed.training == fixed.acceptance == [PoolScenario(scenario, tuned, preset=True)]
    assert fixed.tuning()(scenario) == tuned

    tuned_now: list[str] = []

    def counting(scenarios, processes=None):
        tuned_now.extend(s.name for s in scenarios)
        return [quick_tuned(s) for s in scenarios]

    monkeypatch.setattr(pools, "tune_all", counting)
    assert Pools.of(TrainConfig(out=str(tmp_path / "one"), scenario=scenario.to_json())) == fixed
    assert tuned_now == []  # kept: not tuned again
    config = TrainConfig(out=str(tmp_path / "family"), pool_scenarios=3, acceptance_scenarios=2)
    family = Pools.of(config)
    assert [p.scenario for p in family.training if not p.preset] == pools.drawn_scenarios(3, 0, "training")
    assert [p.scenario for p in family.acceptance if not p.preset] == pools.drawn_scenarios(2, 0, "acceptance")
    for pool in (family.training, family.acceptance):
        assert [p.scenario for p in pool if p.preset] == list(PRESETS.values())
        assert all(p.tuned == quick_tuned(p.scenario) for p in pool)
    assert all(pools.STORE_ROWS % p.scenario.num_stores == 0 for p in family.training)
    assert len(tuned_now) == 3 + 2 + 2 * len(PRESETS)
    saved = json.loads((tmp_path / "family" / "pool.json").read_text())
    assert [PoolScenario.from_dict(entry) for entry in saved] == family.training
    tuned_now.clear()
    assert Pools.of(config) == family and tuned_now == []
    Pools.of(dataclasses.replace(config, seed=1))  # other scenarios in the same folder: tuned and kept anew
    assert len(tuned_now) == 3 + 2 + 2 * len(PRESETS)
