"""Serving exported policies: ONNX parity with the SB3 policies they came from, clear errors for
every broken model or manifest, and a torch-free serving path."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from pools import TUNED
from stable_baselines3 import PPO
from torch import nn

import core.serving.registry as registry
from core.agents.menus import (
    NUM_ACTIONS,
    SAFETY_FACTORS,
    ConstantChooser,
    MenuPolicy,
    NoTuning,
    TunedEntry,
    forecast_base_stock,
    menu_index,
)
from core.agents.observations import FEATURES
from core.agents.roles import ROLES
from core.agents.rules import PolicyMix
from core.cli import main
from core.learning.export import export_actor, export_run, merge_roles, torch_probabilities
from core.learning.policies import SafetyFactorPolicy, Standardize, model_chooser, model_mix
from core.learning.pool import PoolScenario, drawn_scenarios
from core.learning.training import TrainConfig
from core.learning.vec_env import RoleVecEnv
from core.serving.model_sets import set_files
from core.serving.models import (
    HIERARCHY_FILE,
    OUTPUTS,
    HierarchyMix,
    OnnxChooser,
    PolicyLoadError,
    learned_mix,
    load_manifest,
    load_policy,
    sha256,
)
from core.serving.policy_spec import PolicySpecError, parse_policy
from core.simulation.demand import sample_demand
from core.simulation.presets import get_preset
from core.simulation.rollout import kpis, rollout, run_mixes
from core.simulation.twin import reset

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INDEX = SAFETY_FACTORS.index(2.0)
# onnxruntime vs torch, float32: the exported head folds 1 / sigma^2 (about 11) and the menu (z up to 10, z^2 / 2 up
# to 50) into one layer, so logits reach about 1,000, where float32 rounds by about 6e-5
PROBABILITY_TOLERANCE = 1e-4
WIDTH = {role: len(FEATURES[role]) for role in ROLES}  # each role's observation width


def random_pool(n: int = 24) -> list[PoolScenario]:
    """Scenarios of the training family, each with tuned factors drawn from the menu (what a tuning may find)."""
    rng = np.random.default_rng(17)
    return [PoolScenario(scenario, {role: float(rng.choice(SAFETY_FACTORS)) for role in ROLES})
            for scenario in drawn_scenarios(n, 5, "training")]


POOL = random_pool()


def role_env(role: str, groups: int = 2, rows: int = 48, horizon: int = 60, seed: int = 0) -> RoleVecEnv:
    frozen = {r: ConstantChooser(DEFAULT_INDEX) for r in ROLES if r != role}
    return RoleVecEnv(role, frozen, POOL, groups=groups, rows=rows, horizon=horizon, seed=seed)


def untrained_model(role: str, seed: int) -> PPO:
    """An SB3 PPO policy as training builds it (standardised observations), with its weights shaken
    so that the menu probabilities are far from uniform (a fresh action head is almost flat). The
    standardisation statistics are random, narrow enough that its +-10 clip often applies."""
    env = role_env(role, rows=48 if role == "store" else 12)
    rng = np.random.default_rng(seed)
    width = len(FEATURES[role])
    standardize = {"mean": rng.normal(0.0, 3.0, width).tolist(), "std": rng.uniform(0.2, 5.0, width).tolist()}
    model = PPO(SafetyFactorPolicy, env, n_steps=8, batch_size=32, seed=seed, device="cpu",
                policy_kwargs={"net_arch": [64, 64], "features_extractor_class": Standardize,
                               "features_extractor_kwargs": standardize, "spread": 0.3})
    generator = torch.Generator().manual_seed(seed)
    correction = {id(p) for p in model.policy.action_net.correction.parameters()}
    with torch.no_grad():
        for parameter in model.policy.parameters():
            # the correction less: aims within a few safety factors of the tuned one, as a trained policy's (shaken
            # as much as the rest, it aims up to 20, where the logits reach 1,600 and float32 rounds by 1e-4)
            scale = 0.1 if id(parameter) in correction else 0.4
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, PPO]]:
    """An export folder with all three roles learned, and the SB3 models behind it."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("run")
    models = {}
    for i, role in enumerate(ROLES):
        models[role] = untrained_model(role, seed=10 + i)
        models[role].save(run / f"{role}.zip")
    (run / "hierarchy.json").write_text(json.dumps({"roles": {r: f"{r}.zip" for r in ROLES}, "phases": []}))
    (run / "config.json").write_text(json.dumps(dataclasses.asdict(TrainConfig())))
    out = tmp_path_factory.mktemp("models")
    export_run(run, out)
    return out, models


def rollout_observations(role: str, steps: int) -> np.ndarray:
    """Observations an agent of ``role`` really sees, from random play in random scenarios."""
    env = role_env(role, groups=4, rows=48, horizon=steps, seed=3)
    rng = np.random.default_rng(4)
    seen = [env.reset()]
    for _ in range(steps):
        obs, _, dones, infos = env.step(rng.integers(NUM_ACTIONS, size=env.num_envs))
        seen.append(obs)
        if dones.any():
            seen.append(np.stack([info["terminal_observation"] for info in infos]))
    return np.concatenate(seen)


# --- parity -------------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_onnx_matches_the_sb3_policy(learned, role: str) -> None:
    folder, models = learned
    model = models[role]
    real = rollout_observations(role, steps=60)
    rng = np.random.default_rng(5)
    random = rng.uniform(-20.0, 40.0, size=(10_000, len(FEATURES[role]))).astype(np.float32)
    random[:, -1] = rng.choice(SAFETY_FACTORS, size=len(random))  # a tuned factor is a menu entry
    obs = np.concatenate([real, random])
    assert obs.shape[0] >= 15_000 and real.shape[0] >= 5_000
    chooser = load_policy(role, folder)
    actions, probabilities = chooser.run(obs)
    expected = torch_probabilities(model, obs)
    assert actions.dtype == np.int64 and actions.shape == (obs.shape[0],)
    assert probabilities.dtype == np.float32 and probabilities.shape == (obs.shape[0], NUM_ACTIONS)
    # Probabilities agree to PROBABILITY_TOLERANCE everywhere (float32 rounding differs by CPU and kernel), so
    # the two argmaxes can differ only where torch's two best entries are within twice that of each other.
    assert np.abs(probabilities - expected).max() <= PROBABILITY_TOLERANCE
    top_two = np.sort(expected, axis=1)[:, -2:]
    decided = top_two[:, 1] - top_two[:, 0] > 2 * PROBABILITY_TOLERANCE
    assert decided.mean() > 0.95  # where the aim falls between two entries, the head makes them nearly equally likely
    np.testing.assert_array_equal(actions[decided], model_chooser(model)(obs)[decided])
    np.testing.assert_array_equal(actions[decided], expected.argmax(axis=1)[decided])
    chosen = expected[np.arange(len(actions)), actions]
    assert (chosen >= expected.max(axis=1) - 2 * PROBABILITY_TOLERANCE).all()  # a near-tie picks a best entry
    # the check means something: confident, varied decisions
    assert probabilities.max(axis=1).mean() > 3.0 / NUM_ACTIONS
    assert np.unique(actions).size >= 3 and np.unique(actions[: real.shape[0]]).size >= 2
    # batches of one row give the same answers
    for i in (0, real.shape[0] - 1, obs.shape[0] - 1):
        single, _ = chooser.run(obs[i: i + 1])
        assert single.tolist() == [actions[i]]


def test_export_actor_writes_one_self_contained_file(learned, tmp_path: Path) -> None:
    _, models = learned
    torch.set_num_threads(1)
    path = tmp_path / "store.onnx"
    export_actor(models["store"], "store", path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.onnx"]
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert [i.name for i in graph.graph.input] == ["observation"]
    assert tuple(o.name for o in graph.graph.output) == OUTPUTS
    obs = np.random.default_rng(0).uniform(-20, 40, size=(2_000, len(FEATURES["store"]))).astype(np.float32)
    chooser = OnnxChooser.checked(path.read_bytes(), "store")  # from bytes as well as from a path
    np.testing.assert_array_equal(chooser(obs), model_chooser(models["store"])(obs))
    # the graph clips observations to the range the features are clipped to when observed
    wild = obs * 1000.0
    np.testing.assert_array_equal(chooser(wild), chooser(np.clip(wild, -60.0, 60.0)))


# --- broken models ----------------------------------------------------------------------------------

def tiny_onnx(width: int, actions: int = NUM_ACTIONS, names: tuple[str, str] = OUTPUTS, batch: str | int = "batch",
              dtype: int = TensorProto.FLOAT) -> bytes:
    """A one-layer policy graph: observation @ W -> (argmax, softmax)."""
    numpy_type = np.float64 if dtype == TensorProto.DOUBLE else np.float32
    weights = np.random.default_rng(width + actions).normal(size=(width, actions)).astype(numpy_type)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["observation", "W"], ["logits"]),
         helper.make_node("ArgMax", ["logits"], [names[0]], axis=1, keepdims=0),
         helper.make_node("Softmax", ["logits"], [names[1]], axis=1)],
        "policy",
        [helper.make_tensor_value_info("observation", dtype, [batch, width])],
        [helper.make_tensor_value_info(names[0], TensorProto.INT64, [batch]),
         helper.make_tensor_value_info(names[1], dtype, [batch, actions])],
        initializer=[numpy_helper.from_array(weights, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


class Linear(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.layer = nn.Linear(width, NUM_ACTIONS)

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.layer(observation)
        return torch.argmax(logits, dim=-1), torch.softmax(logits, dim=-1)


def torch_onnx(width: int, path: Path) -> bytes:
    torch.set_num_threads(1)
    batch = torch.export.Dim("batch", min=1, max=100_000)
    torch.onnx.export(Linear(width).eval(), (torch.zeros(4, width),), str(path), input_names=["observation"],
                      output_names=list(OUTPUTS), dynamic_shapes=({0: batch},), dynamo=True, external_data=False)
    return path.read_bytes()


def test_a_well_formed_tiny_graph_is_accepted() -> None:
    """The control for the broken variants below."""
    chooser = OnnxChooser.checked(tiny_onnx(len(FEATURES["store"])), "store")
    actions, probabilities = chooser.run(np.ones((5, len(FEATURES["store"])), np.float32))
    assert actions.shape == (5,) and probabilities.shape == (5, NUM_ACTIONS)


def test_wrong_input_width_from_torch_is_rejected(tmp_path: Path) -> None:
    model = torch_onnx(10, tmp_path / "narrow.onnx")
    with pytest.raises(PolicyLoadError, match=rf"store policy: input shape .*width {WIDTH['store']}") as error:
        OnnxChooser.checked(model, "store")
    assert "on_hand_days" in str(error.value)  # names the features the role expects
    OnnxChooser.checked(torch_onnx(WIDTH["store"], tmp_path / "right.onnx"), "store")  # while the right width is fine


BROKEN = {
    "garbage": (lambda: b"this is not an ONNX model \x00\xff" * 40, "store", r"not a loadable ONNX model"),
    "empty": (lambda: b"", "store", r"not a loadable ONNX model"),
    "wrong_width": (lambda: tiny_onnx(12), "store", rf"store policy: input shape .*width {WIDTH['store']}"),
    "store_model_as_warehouse": (lambda: tiny_onnx(WIDTH["store"]), "warehouse",
                                 rf"warehouse policy: input shape .*width {WIDTH['warehouse']}"),
    "output_names": (lambda: tiny_onnx(WIDTH["store"], names=("logits_argmax", "softmax")), "store",
                     r"store policy: outputs \('logits_argmax', 'softmax'\); allowed: \('action', 'probabilities'\)"),
    "menu_size": (lambda: tiny_onnx(WIDTH["supplier"], actions=4), "supplier",
                  r"supplier policy: probabilities of shape \(4,\)"),
    "fixed_batch": (lambda: tiny_onnx(WIDTH["store"], batch=4), "store", r"store policy"),
    "float64": (lambda: tiny_onnx(WIDTH["store"], dtype=TensorProto.DOUBLE), "store", r"store policy"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_model_raises_policy_load_error(case: str) -> None:
    """Every unusable graph is refused with ``PolicyLoadError`` (what the CLI turns into a one-line
    error), never an onnxruntime exception or a chooser that fails on first use."""
    build, role, message = BROKEN[case]
    with pytest.raises(PolicyLoadError, match=message):
        OnnxChooser.checked(build(), role)


# --- manifests ---------------------------------------------------------------------------------------

def copy_export(source: Path, target: Path) -> Path:
    """The served model set of ``source`` with its own manifest, its files directly in ``target``."""
    target.mkdir()
    for path in set_files(source):
        (target / path.name).write_bytes(path.read_bytes())
    return target


def edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_the_intact_export_loads(learned) -> None:
    folder, _ = learned
    manifest = load_manifest(folder)
    assert {manifest["roles"][r]["kind"] for r in ROLES} == {"learned"}
    mix = learned_mix(folder)
    for role in ROLES:
        assert isinstance(getattr(mix, role).choose, OnnxChooser)
    assert isinstance(mix, HierarchyMix) and mix.joint.roles == ROLES


def test_one_call_hierarchy_decides_like_the_role_files(learned) -> None:
    """hierarchy_policy.onnx gives every role the same actions and probabilities as its own file,
    and a simulated year with one call a day equals the year with one call per role."""
    folder, _ = learned
    mix = learned_mix(folder)
    obs = {role: np.concatenate([rollout_observations(role, steps=20),
                                 np.random.default_rng(1).uniform(-20, 40, (2_000, len(FEATURES[role])))])
           for role in ROLES}
    decided = mix.joint.run(obs)
    for role in ROLES:
        actions, probabilities = load_policy(role, folder).run(obs[role])
        np.testing.assert_array_equal(decided[role][0], actions)
        np.testing.assert_allclose(decided[role][1], probabilities, atol=1e-7)
    scenario = get_preset("promo_shock")
    demand = sample_demand(scenario, 3, np.random.default_rng(2))
    one_call = kpis(rollout(scenario, mix, demand))
    per_role = kpis(rollout(scenario, PolicyMix(*(getattr(mix, role) for role in ROLES)), demand))
    for key, values in per_role.items():
        np.testing.assert_array_equal(one_call[key], values, err_msg=key)


def test_the_served_policies_observe_the_tuning_they_are_given(learned) -> None:
    """``learned_mix(folder, tuning)``: every learned role observes its tuned factor from ``tuning`` (last), and the
    served year is the SB3 policies' year with the same tuning, decision for decision; another tuning, another
    year. Without a tuning, a learned chooser refuses to act (``NoTuning``)."""
    folder, models = learned
    scenario = dataclasses.replace(get_preset("thin_margin"), horizon=60)
    other = {"store": 3.0, "warehouse": -1.0, "supplier": 5.0}
    served = learned_mix(folder, tuning=lambda s: TUNED)
    seen = []
    real_run = served.joint.run

    def recording(observations):
        seen.append({role: o[:, -1].copy() for role, o in observations.items()})
        return real_run(observations)

    served.joint.run = recording
    demand = sample_demand(scenario, 3, np.random.default_rng(8))
    year = kpis(rollout(scenario, served, demand))
    assert len(seen) == scenario.horizon
    for day in seen:
        for role in ROLES:
            np.testing.assert_array_equal(day[role], np.float32(TUNED[role]))
    trained = kpis(rollout(scenario, model_mix(models, lambda s: TUNED), demand))
    for key, values in trained.items():
        np.testing.assert_allclose(year[key], values, rtol=1e-12, err_msg=key)
    elsewhere = kpis(rollout(scenario, learned_mix(folder, tuning=lambda s: other), demand))
    assert not np.array_equal(elsewhere["cost_per_day"], year["cost_per_day"])
    with pytest.raises(NoTuning, match="store"):
        MenuPolicy("store", load_policy("store", folder)).act(reset(scenario, 1), scenario)


def test_a_rule_role_of_the_manifest_acts_by_its_tuned_entry(learned, tmp_path: Path) -> None:
    """A role of kind "rule" (no phase of it kept) acts by its tuned entry for the scenario, whatever its card's
    safety factor: the hierarchy of the learned store and two rule roles is the learned store with the tuned
    forecast base-stock upstream."""
    folder = copy_export(learned[0], tmp_path / "models")

    def rules_upstream(manifest: dict) -> None:
        for role in ("warehouse", "supplier"):
            manifest["roles"][role] = {"kind": "rule", "safety_factor": -2.0, "features": list(FEATURES[role])}
        manifest["hierarchy"] = {}

    edit_manifest(folder, rules_upstream)
    mix = learned_mix(folder, tuning=lambda s: TUNED)
    assert isinstance(mix.store.choose, OnnxChooser)
    assert mix.warehouse.choose == TunedEntry() == mix.supplier.choose
    scenario = dataclasses.replace(get_preset("steady"), horizon=40)
    expected = PolicyMix(mix.store, *(forecast_base_stock(role, TUNED[role]) for role in ("warehouse", "supplier")))
    costs = run_mixes(scenario, {"served": mix, "expected": expected}, 3, 5)
    np.testing.assert_array_equal(costs["served"]["cost_per_day"], costs["expected"]["cost_per_day"])
    state = reset(scenario, 2)
    forecast, tuned = mix.warehouse.context(scenario, 1)
    assert tuned == TUNED
    np.testing.assert_array_equal(mix.warehouse.choices(state, scenario, forecast, tuned),
                                  np.full(2, menu_index(TUNED["warehouse"])))


def _another_warehouse_hierarchy(folder: Path) -> None:
    """A hierarchy file whose warehouse graph is not the one in warehouse_policy.onnx."""
    other = folder / "other_warehouse.onnx"
    export_actor(untrained_model("warehouse", seed=99), "warehouse", other)
    files = {"store": folder / "store_policy.onnx", "warehouse": other, "supplier": folder / "supplier_policy.onnx"}
    onnx.save(merge_roles(files), str(folder / HIERARCHY_FILE))
    edit_manifest(folder, lambda m: m["hierarchy"].update(sha256=sha256(folder / HIERARCHY_FILE)))


HIERARCHY_PROBLEMS = {
    "missing": (lambda f: (f / HIERARCHY_FILE).unlink(), r"file missing or its sha256 does not match"),
    "byte_flipped": (lambda f: _flip_byte(f / HIERARCHY_FILE), r"file missing or its sha256 does not match"),
    "roles_edited": (lambda f: edit_manifest(f, lambda m: m["hierarchy"].update(roles=["store"])),
                     r"roles \('store',\); the manifest's learned roles are"),
    "other_warehouse": (_another_warehouse_hierarchy, r"its warehouse policy differs from warehouse_policy\.onnx"),
}


@pytest.mark.parametrize("case", list(HIERARCHY_PROBLEMS))
def test_hierarchy_file_problems_raise_policy_load_error(learned, tmp_path: Path, case: str) -> None:
    spoil, message = HIERARCHY_PROBLEMS[case]
    folder = copy_export(learned[0], tmp_path / "models")
    spoil(folder)
    with pytest.raises(PolicyLoadError, match=message):
        learned_mix(folder)
    load_policy("warehouse", folder)  # the role files themselves are still fine


def _drop(role: str, key: str | None = None):
    def change(manifest: dict) -> None:
        if key is None:
            del manifest["roles"][role]
        else:
            del manifest["roles"][role][key]
    return change


MANIFEST_PROBLEMS = {
    "missing_role": (lambda f: edit_manifest(f, _drop("warehouse")), "warehouse",
                     r"manifest: no complete entry for role 'warehouse'"),
    "missing_sha256": (lambda f: edit_manifest(f, _drop("supplier", "sha256")), "supplier",
                       r"manifest: no complete entry for role 'supplier' \(needs file, sha256, features\)"),
    "features_changed": (lambda f: edit_manifest(f, lambda m: m["roles"]["store"]["features"].reverse()), "store",
                         r"manifest store: features differ"),
    "file_missing": (lambda f: (f / "store_policy.onnx").unlink(), "store", r"store_policy\.onnx: missing"),
    "byte_flipped": (lambda f: _flip_byte(f / "warehouse_policy.onnx"), "warehouse",
                     r"warehouse_policy\.onnx: sha256 .* does not match the manifest"),
    "hash_edited": (lambda f: edit_manifest(f, lambda m: m["roles"]["supplier"].update(sha256="0" * 64)),
                    "supplier", r"supplier_policy\.onnx: sha256 .* does not match the manifest's 000000000000"),
    "manifest_missing": (lambda f: (f / "manifest.json").unlink(), "store", r"manifest\.json: cannot read"),
    "manifest_not_json": (lambda f: (f / "manifest.json").write_text("roles: {store: store_policy.onnx}\n"),
                          "store", r"manifest\.json: not valid JSON"),
    "manifest_truncated": (lambda f: _truncate(f / "manifest.json"), "store", r"manifest\.json: not valid JSON"),
    "roles_not_an_object": (lambda f: (f / "manifest.json").write_text('{"roles": ["store", "warehouse"]}'),
                            "store", r"manifest\.json: no 'roles' object"),
    "manifest_is_binary": (lambda f: (f / "manifest.json").write_bytes((f / "store_policy.onnx").read_bytes()),
                           "store", r"manifest\.json"),
}


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


@pytest.mark.parametrize("case", list(MANIFEST_PROBLEMS))
def test_manifest_problems_raise_policy_load_error(learned, tmp_path: Path, case: str) -> None:
    spoil, role, message = MANIFEST_PROBLEMS[case]
    folder = copy_export(learned[0], tmp_path / "models")
    spoil(folder)
    with pytest.raises(PolicyLoadError, match=message):
        load_policy(role, folder)
    with pytest.raises(PolicyLoadError, match=message):  # the whole hierarchy: all or nothing
        learned_mix(folder)


def test_load_policy_errors_name_the_file(learned, tmp_path: Path) -> None:
    """core.serving.models promises: "Any problem raises PolicyLoadError naming the file and what is wrong"."""
    folder = copy_export(learned[0], tmp_path / "models")
    for model, what in ((tiny_onnx(12), "input shape"), (tiny_onnx(WIDTH["store"], names=("a", "p")), "outputs"),
                        (b"garbage", "not a loadable ONNX model")):
        (folder / "store_policy.onnx").write_bytes(model)
        edit_manifest(folder, lambda m: m["roles"]["store"].update(sha256=sha256(folder / "store_policy.onnx")))
        with pytest.raises(PolicyLoadError, match=what) as error:
            load_policy("store", folder)
        assert "store_policy.onnx" in str(error.value), str(error.value)


def test_learned_mix_of_a_folder_without_models_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError, match=r"manifest\.json: cannot read \(No such file or directory\)"):
        learned_mix(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"roles": {role: {"kind": "learned"} for role in ROLES}}))
    with pytest.raises(PolicyLoadError, match=r"no complete entry for role 'store'"):
        learned_mix(tmp_path)


def test_policy_spec_learned_reports_load_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--policy learned`` reads the default export folder; point it at an empty one."""
    real = registry.learned_mix
    monkeypatch.setattr(registry, "learned_mix", lambda folder: real(tmp_path))
    with pytest.raises(PolicySpecError, match=r"^policy learned: .*manifest\.json: cannot read"):
        parse_policy("learned", get_preset("steady"), np.random.default_rng(0))


def test_cli_simulate_learned_without_models_exits_2_with_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    real = registry.learned_mix
    monkeypatch.setattr(registry, "learned_mix", lambda folder: real(tmp_path))
    code = main(["simulate", "--scenario", "steady", "--policy", "learned", "--seeds", "2", "--periods", "5"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: policy learned: "), captured.err
    assert "manifest.json" in lines[0] and "Traceback" not in captured.err


# --- torch-free serving ---------------------------------------------------------------------------------

SERVE = """
import json, sys
import numpy as np
from core.serving.models import OnnxChooser, learned_mix
from core.simulation.demand import sample_demand
from core.simulation.presets import get_preset
from core.simulation.rollout import kpis, rollout

mix = learned_mix(sys.argv[1])
assert all(isinstance(getattr(mix, role).choose, OnnxChooser) for role in ("store", "warehouse", "supplier"))
scenario = get_preset("seasonal")
demand = sample_demand(scenario, 2, np.random.default_rng(int(sys.argv[2])))
run = rollout(scenario, mix, demand)
assert run.store_orders.shape == (365, 2, 3), run.store_orders.shape
costs = kpis(run)["cost_per_day"]
assert np.isfinite(costs).all()
loaded = sorted(name for name in sys.modules if name == "torch" or name.startswith("torch."))
assert not loaded, loaded
print("SERVED WITHOUT TORCH " + json.dumps({"cost_per_day": costs.tolist(),
                                            "store_orders": float(run.store_orders.sum())}))
"""


def test_serving_needs_no_torch_and_matches_the_sb3_policies(learned) -> None:
    folder, models = learned
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", SERVE, str(folder), "21"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    marker = [line for line in result.stdout.splitlines() if line.startswith("SERVED WITHOUT TORCH ")]
    assert len(marker) == 1, result.stdout
    served = json.loads(marker[0].removeprefix("SERVED WITHOUT TORCH "))
    # the same year with the SB3 policies themselves (torch, in this process): the same decisions
    scenario = get_preset("seasonal")
    demand = sample_demand(scenario, 2, np.random.default_rng(21))
    run = rollout(scenario, model_mix(models, registry.scenario_tuning(folder)), demand)
    np.testing.assert_allclose(served["cost_per_day"], kpis(run)["cost_per_day"], rtol=1e-12)
    assert served["store_orders"] == pytest.approx(float(run.store_orders.sum()), rel=1e-12)


def test_bench_times_one_call_and_per_role_decisions(learned) -> None:
    from core.bench import decision_latency

    result = decision_latency(learned[0], repeats=20)
    assert result["learned_roles"] == list(ROLES) and result["agents"] == 5
    # torch rebuilds the exported layers (the head and the tuned factor's part) and checks them against the files
    assert "torch_skipped" not in result
    for engine in ("onnxruntime_one_call", "onnxruntime", "torch", "sb3_predict"):
        assert 0 < result[engine]["median_us"] <= result[engine]["p99_us"]


@pytest.mark.parametrize("role", ROLES)
def test_deploy_script_decides_like_the_serving_code(learned, tmp_path: Path, role: str) -> None:
    """exported_models/deploy_policy.py (numpy and onnxruntime only) picks the same menu entry as
    load_policy for an observation given by feature name, and turns it into the menu's quantity."""
    folder, _ = learned
    obs = rollout_observations(role, steps=5)[7]
    observation = {"features": dict(zip(FEATURES[role], map(float, obs), strict=True)),
                   "order": {"forecast_per_day": 40.0, "protection_days": 4, "demand_sd_per_day": 10.0,
                             "inventory_position": 100.0, "prebuild": 5.0}}
    path = tmp_path / "observation.json"
    path.write_text(json.dumps(observation))
    script = REPO / "exported_models" / "deploy_policy.py"
    result = subprocess.run([sys.executable, str(script), "--role", role, "--observation", str(path),
                             "--models", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    index = int(load_policy(role, folder)(obs[None, :])[0])
    z = SAFETY_FACTORS[index]
    assert f"(menu entry {index}," in result.stdout
    assert f"order quantity: {max(0.0, 160.0 + z * 10.0 * 2.0 + 5.0 - 100.0):.3f} units" in result.stdout

    del observation["features"][FEATURES[role][0]]
    path.write_text(json.dumps(observation))
    result = subprocess.run([sys.executable, str(script), "--role", role, "--observation", str(path),
                             "--models", str(folder)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and f"observation lacks features: {FEATURES[role][0]}" in result.stderr
