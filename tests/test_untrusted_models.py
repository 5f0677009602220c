"""Untrusted models and manifests: hostile ONNX graphs are refused with a one-line ``PolicyLoadError`` (and the
ones that would hang or exhaust memory before anything runs), manifest file names stay inside their folder,
wrongly typed or random manifests end in ``PolicyLoadError`` or a valid load, nothing a manifest names is
unpickled, and ``exported_models/deploy_policy.py`` refuses bad inputs with exit code 2."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import core.serving.guard as guard
from core.agents.menus import NUM_ACTIONS, SAFETY_FACTORS
from core.agents.observations import FEATURES
from core.agents.roles import ROLES
from core.serving.model_sets import set_files
from core.serving.models import (
    OnnxChooser,
    PolicyLoadError,
    learned_mix,
    learned_policy,
    load_manifest,
    load_policy,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "exported_models"
DEPLOY = SHIPPED / "deploy_policy.py"
WIDTH = len(FEATURES["store"])
needs_models = pytest.mark.skipif(not (SHIPPED / "manifest.json").exists(), reason="no shipped models")


# --- hostile graphs ---------------------------------------------------------------------------------

def weights(name: str, shape: tuple[int, ...], seed: int = 0, dtype=np.float32) -> onnx.TensorProto:
    return numpy_helper.from_array(np.random.default_rng(seed).normal(size=shape).astype(dtype), name)


def scalar(name: str, value, dtype) -> onnx.TensorProto:
    return numpy_helper.from_array(np.array(value, dtype=dtype), name)


def policy(nodes: list, initializers: list, opsets: tuple = (("", 18),), functions: tuple = ()) -> bytes:
    """A store policy graph (observation (batch, WIDTH) -> action (batch,), probabilities (batch, NUM_ACTIONS))
    made of ``nodes``; onnx's checker accepts it, so what the guard refuses is its content, not its form."""
    graph = helper.make_graph(
        nodes, "hostile", [helper.make_tensor_value_info("observation", TensorProto.FLOAT, ["batch", WIDTH])],
        [helper.make_tensor_value_info("action", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", NUM_ACTIONS])],
        initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets],
                              functions=list(functions))
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def linear(logits: str = "logits") -> list:
    return [helper.make_node("MatMul", ["observation", "W"], [logits])]


def heads(logits: str = "logits", action: str = "action", probabilities: str = "probabilities") -> list:
    return [helper.make_node("ArgMax", [logits], [action], axis=1, keepdims=0),
            helper.make_node("Softmax", [logits], [probabilities], axis=1)]


W = weights("W", (WIDTH, NUM_ACTIONS))


def well_formed() -> bytes:
    return policy(linear() + heads(), [W])


def loop_of_1e12() -> bytes:
    body = helper.make_graph(
        [helper.make_node("Identity", ["condition_in"], ["condition_out"]),
         helper.make_node("Add", ["carried", "zero"], ["carried_out"])],
        "body",
        [helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
         helper.make_tensor_value_info("condition_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("carried", TensorProto.FLOAT, ["batch", NUM_ACTIONS])],
        [helper.make_tensor_value_info("condition_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("carried_out", TensorProto.FLOAT, ["batch", NUM_ACTIONS])])
    return policy(linear("z") + [helper.make_node("Loop", ["trips", "go", "z"], ["logits"], body=body)] + heads(),
                  [W, scalar("trips", 10**12, np.int64), scalar("go", True, np.bool_), scalar("zero", 0.0, np.float32)])


def if_branches() -> bytes:
    branch = helper.make_graph([helper.make_node("Identity", ["z"], ["out"])], "branch", [],
                               [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", NUM_ACTIONS])])
    return policy(linear("z") + [helper.make_node("If", ["go"], ["logits"], then_branch=branch, else_branch=branch)]
                  + heads(), [W, scalar("go", True, np.bool_)])


def constant_of_shape_gigabytes() -> bytes:
    """16,384 x 16,384 float32 zeros (1 GiB) from 16 bytes of shape, reduced and added to the logits."""
    return policy([helper.make_node("ConstantOfShape", ["shape"], ["zeros"]),
                   helper.make_node("ReduceMax", ["zeros"], ["nothing"], keepdims=0)] + linear("z")
                  + [helper.make_node("Add", ["z", "nothing"], ["logits"])] + heads(),
                  [W, numpy_helper.from_array(np.array([2**14, 2**14], np.int64), "shape")])


def expand_gigabytes() -> bytes:
    """The logits broadcast to (65,536, rows, NUM_ACTIONS) and averaged back: 256 KiB per menu entry and row."""
    return policy(linear("z") + [helper.make_node("Expand", ["z", "shape"], ["wide"]),
                                 helper.make_node("ReduceMean", ["wide", "axis"], ["logits"], keepdims=0)] + heads(),
                  [W, numpy_helper.from_array(np.array([2**16, 1, 1], np.int64), "shape"),
                   numpy_helper.from_array(np.array([0], np.int64), "axis")])


def broadcast_blowup() -> bytes:
    """Allowed operators only, but broadcasting (rows, 1) + (1, 5,000) + (100, 1, 1) makes 500,000 values a row."""
    return policy([helper.make_node("MatMul", ["observation", "column"], ["one"]),
                   helper.make_node("Add", ["one", "row"], ["wide"]),
                   helper.make_node("Add", ["wide", "deep"], ["huge"])] + linear() + heads(),
                  [W, weights("column", (WIDTH, 1)), weights("row", (1, 5_000)), weights("deep", (100, 1, 1))])


def shared_weights_work() -> bytes:
    """A 900 x 900 layer applied four times: under 1 M parameters, but ``SHARED_WORK`` (over 3.2 M) multiply-adds
    per row."""
    nodes = [helper.make_node("MatMul", ["observation", "up"], ["h0"])]
    for i in range(4):
        nodes.append(helper.make_node("MatMul", [f"h{i}", "square"], [f"h{i + 1}"]))
    nodes.append(helper.make_node("MatMul", ["h4", "down"], ["logits"]))
    return policy(nodes + heads(), [weights("up", (WIDTH, 900)), weights("square", (900, 900)),
                                    weights("down", (900, NUM_ACTIONS))])


SHARED_WORK = WIDTH * 900 + 4 * 900 * 900 + 900 * NUM_ACTIONS  # shared_weights_work's multiply-adds per row


def about(count: int) -> str:
    """A pattern for a count of the same magnitude and first two digits as ``count`` (the guard's estimate adds the
    heads' and the additions' few operations to the multiply-adds)."""
    shown = f"{count:,}"
    return re.escape(shown[:3]) + re.sub(r"\d", r"\\d", shown[3:])


def action_plus(offset: int) -> bytes:
    return policy(linear() + heads(action="greedy") + [helper.make_node("Add", ["greedy", "offset"], ["action"])],
                  [W, scalar("offset", offset, np.int64)])


def nan_probabilities() -> bytes:
    return policy(linear() + heads(probabilities="p") + [helper.make_node("Mul", ["p", "nan"], ["probabilities"])],
                  [W, scalar("nan", np.nan, np.float32)])


def argmin_posing_as_argmax() -> bytes:
    """The least probable entry as its action: on all-zero observations every entry ties, so the old zeros-only
    probe saw nothing wrong."""
    return policy(linear() + [helper.make_node("Neg", ["logits"], ["negated"])]
                  + heads(probabilities="probabilities")[1:]
                  + [helper.make_node("ArgMax", ["negated"], ["action"], axis=1, keepdims=0)], [W])


def unused_weights(count: int) -> bytes:
    return policy(linear() + heads(), [W, weights("ballast", (count,))])


def custom_domain() -> bytes:
    return policy(linear("z") + [helper.make_node("Run", ["z"], ["logits"], domain="com.evil")] + heads(),
                  [W], opsets=(("", 18), ("com.evil", 1)))


def local_function() -> bytes:
    function = helper.make_function("local", "Double", ["x"], ["y"], [helper.make_node("Add", ["x", "x"], ["y"])],
                                    [helper.make_opsetid("", 18)])
    return policy(linear("z") + [helper.make_node("Double", ["z"], ["logits"], domain="local")] + heads(), [W],
                  opsets=(("", 18), ("local", 1)), functions=(function,))


def external_weights() -> bytes:
    model = onnx.load_model_from_string(well_formed())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value="../../../etc/passwd")
    return model.SerializeToString()


def many_nodes(count: int) -> bytes:
    nodes = linear("n0") + [helper.make_node("Identity", [f"n{i}"], [f"n{i + 1}"]) for i in range(count)]
    return policy(nodes + heads(f"n{count}"), [W])


def data_shaped_reshape() -> bytes:
    return policy(linear("z") + [helper.make_node("Shape", ["z"], ["shape"]),
                                 helper.make_node("Reshape", ["z", "shape"], ["logits"])] + heads(), [W])


HOSTILE = {
    "loop_of_1e12_iterations": (loop_of_1e12, r"operator Loop; allowed: "),
    "if_with_subgraphs": (if_branches, r"operator If; allowed: "),
    "constant_of_shape_1_gib": (constant_of_shape_gigabytes, r"operator ConstantOfShape; allowed: "),
    "expand_to_gigabytes": (expand_gigabytes, r"operator Expand; allowed: "),
    "reshape_from_data": (data_shaped_reshape, r"operator Shape; allowed: "),
    "broadcast_blowup": (broadcast_blowup, r"505,\d{3} tensor values per observation row; allowed: at most 20,000"),
    "shared_weights_work": (shared_weights_work,
                            rf"about {about(SHARED_WORK)} operations per observation row; allowed: at most 2,000,000"),
    "too_many_parameters": (lambda: unused_weights(1_100_000),
                            rf"{1_100_000 + WIDTH * NUM_ACTIONS:,} parameters; allowed: at most 1,000,000"),
    "oversized_file": (lambda: unused_weights(1_400_000), r"\d{1,3}(,\d{3})+ bytes; allowed: at most 5,242,880"),
    "too_many_nodes": (lambda: many_nodes(300), r"30\d nodes; allowed: at most 256"),
    "custom_domain": (custom_domain, r"operator domain 'com\.evil'; allowed: the standard domain"),
    "local_function": (local_function, r"defines functions; allowed: standard operators only"),
    "external_data": (external_weights, r"external data \(W\); allowed: weights inside the file"),
}
MISBEHAVING = {
    "action_plus_99": (lambda: action_plus(99),
                       rf"action 99 on a probe observation; allowed: a menu index from 0 to {NUM_ACTIONS - 1}"),
    "negative_actions": (lambda: action_plus(-NUM_ACTIONS),  # every action negative
                         r"action -\d+ on a probe observation; allowed: a menu index"),
    "nan_probabilities": (nan_probabilities, r"probabilities not finite on a probe observation"),
    "argmin_on_nonzero_inputs": (argmin_posing_as_argmax, r"action \d+ \(probability .*\) is not the most probable"),
}


@pytest.fixture
def no_session(monkeypatch: pytest.MonkeyPatch) -> list:
    """Records every onnxruntime session the guard creates (a statically refused model must create none)."""
    created = []
    real = ort.InferenceSession

    def recording(*args, **kwargs):
        created.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(guard.ort, "InferenceSession", recording)
    return created


def test_the_well_formed_control_is_accepted(no_session: list) -> None:
    chooser = OnnxChooser.checked(well_formed(), "store")
    assert len(no_session) == 1
    actions, probabilities = chooser.run(guard.probe_observations("store"))
    assert actions.min() >= 0 and actions.max() < NUM_ACTIONS and np.isfinite(probabilities).all()


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_graphs_are_refused_before_anything_runs(case: str, no_session: list) -> None:
    """Each is refused with a one-line message naming the problem, from the bytes alone: no onnxruntime session
    exists, so the 1e12-iteration Loop and the gigabyte allocations never start."""
    build, message = HOSTILE[case]
    data = build()
    with pytest.raises(PolicyLoadError, match=r"^uploaded store policy: " + message) as error:
        OnnxChooser.checked(data, "store")
    assert "\n" not in str(error.value)
    assert no_session == []


@pytest.mark.parametrize("case", list(MISBEHAVING))
def test_models_deciding_nonsense_are_refused_by_the_probes(case: str) -> None:
    build, message = MISBEHAVING[case]
    with pytest.raises(PolicyLoadError, match=r"^uploaded store policy: " + message) as error:
        OnnxChooser.checked(build(), "store")
    assert "\n" not in str(error.value)


def test_the_argmin_model_passes_a_zeros_only_probe() -> None:
    """Why the probes cover the training range: on zeros, the argmin model's action is a most probable entry."""
    sess = ort.InferenceSession(argmin_posing_as_argmax(), providers=["CPUExecutionProvider"])
    action, probabilities = sess.run(None, {"observation": np.zeros((3, WIDTH), np.float32)})
    assert (probabilities[np.arange(3), action] == probabilities.max(axis=1)).all()


def test_the_probe_observations_span_the_training_range() -> None:
    for role in ROLES:
        obs = guard.probe_observations(role)
        assert obs.dtype == np.float32 and obs.shape[1] == len(FEATURES[role]) and np.isfinite(obs).all()
        assert obs.min() == -60.0 and obs.max() == 60.0  # the observations' clip
        real = guard.rollout_observations()[role]
        assert len(real) >= 300 and np.unique(real, axis=0).shape[0] >= 300 and (np.abs(real) <= 60.0).all()


def test_a_decision_outside_the_menu_at_run_time_is_an_error() -> None:
    """A model may misbehave only on inputs no probe tried: every decision is checked."""
    obs = np.ones((2, WIDTH), np.float32)
    (greedy,) = ort.InferenceSession(well_formed(), providers=["CPUExecutionProvider"]).run(["action"],
                                                                                            {"observation": obs})
    chooser = OnnxChooser(ort.InferenceSession(action_plus(99), providers=["CPUExecutionProvider"]), "observation")
    with pytest.raises(PolicyLoadError, match=rf"chose menu entry {99 + greedy[0]}; allowed: 0 to {NUM_ACTIONS - 1}"):
        chooser(obs)
    chooser = OnnxChooser(ort.InferenceSession(action_plus(-NUM_ACTIONS), providers=["CPUExecutionProvider"]),
                          "observation")
    with pytest.raises(PolicyLoadError,
                       match=rf"chose menu entry {greedy[0] - NUM_ACTIONS}; allowed: 0 to {NUM_ACTIONS - 1}"):
        chooser(obs)


BACKDOOR_ENTRY = NUM_ACTIONS + 30  # beyond the menu


def band_backdoor() -> bytes:
    """Decides like its probabilities everywhere except when on_hand_days lies in (30, 30.001]: then entry
    ``BACKDOOR_ENTRY`` of an argmax wider than the menu. Only allowed operators, and no probe observation falls in
    that band."""
    wide = np.zeros((WIDTH, NUM_ACTIONS + 80), np.float32)
    wide[:, :NUM_ACTIONS] = numpy_helper.to_array(W)
    offset = np.full((1, NUM_ACTIONS + 80), -1e4, np.float32)
    offset[0, :NUM_ACTIONS] = 0.0
    trigger = np.zeros((1, NUM_ACTIONS + 80), np.float32)
    trigger[0, BACKDOOR_ENTRY] = 1e9
    pick = np.zeros((WIDTH, 1), np.float32)
    pick[0, 0] = 1.0
    return policy(linear() + [
        helper.make_node("MatMul", ["observation", "pick"], ["on_hand"]),
        helper.make_node("Sub", ["on_hand", "low"], ["above_low"]),
        helper.make_node("Sub", ["on_hand", "middle"], ["above_middle"]),
        helper.make_node("Sub", ["on_hand", "high"], ["above_high"]),
        helper.make_node("Relu", ["above_low"], ["ramp_low"]),
        helper.make_node("Relu", ["above_middle"], ["ramp_middle"]),
        helper.make_node("Relu", ["above_high"], ["ramp_high"]),
        helper.make_node("Sub", ["ramp_low", "ramp_middle"], ["rise"]),
        helper.make_node("Sub", ["ramp_middle", "ramp_high"], ["fall"]),
        helper.make_node("Sub", ["rise", "fall"], ["band"]),  # a hat: 0 outside (30, 30.001), 0.0005 at its peak
        helper.make_node("Mul", ["band", "trigger"], ["boost"]),
        helper.make_node("MatMul", ["observation", "wide"], ["wide_logits"]),
        helper.make_node("Add", ["wide_logits", "offset"], ["shifted"]),
        helper.make_node("Add", ["shifted", "boost"], ["chosen"]),
        helper.make_node("ArgMax", ["chosen"], ["action"], axis=1, keepdims=0),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ], [W, numpy_helper.from_array(pick, "pick"), scalar("low", 30.0, np.float32),
        scalar("middle", 30.0005, np.float32), scalar("high", 30.001, np.float32),
        numpy_helper.from_array(trigger, "trigger"), numpy_helper.from_array(wide, "wide"),
        numpy_helper.from_array(offset, "offset")])


def test_a_backdoor_no_probe_hits_is_stopped_at_decision_time() -> None:
    """Probes cannot prove the absence of a trigger; the check of every decision catches it when it fires."""
    on_hand = guard.probe_observations("store")[:, 0]
    assert not ((on_hand > 30.0) & (on_hand <= 30.001)).any()  # the precondition: the probes miss the band
    chooser = OnnxChooser.checked(band_backdoor(), "store")
    obs = np.ones((3, WIDTH), np.float32)
    np.testing.assert_array_equal(chooser(obs), chooser.probabilities(obs).argmax(axis=1))
    obs[1, 0] = 30.0005
    with pytest.raises(PolicyLoadError, match=rf"chose menu entry {BACKDOOR_ENTRY}; allowed: 0 to {NUM_ACTIONS - 1}"):
        chooser(obs)


def test_slow_decisions_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The timing check itself (its limit shrunk: the test asserts no speed of this machine)."""
    monkeypatch.setattr(guard, "MAX_SECONDS_PER_ROW", 1e-12)
    with pytest.raises(PolicyLoadError, match=r"ms per observation row on a batch of 1; allowed: at most 1e-09 ms"):
        OnnxChooser.checked(well_formed(), "store")


def test_a_run_past_its_deadline_is_stopped() -> None:
    """``RunOptions.terminate`` ends a run that takes a thousand times its deadline (4,096 rows of about 2.5 M
    multiply-adds each, about 10 G, against a deadline of 1 ms)."""
    nodes = [helper.make_node("MatMul", ["observation", "up"], ["h0"])]
    nodes += [helper.make_node("MatMul", [f"h{i}", "square"], [f"h{i + 1}"]) for i in range(3)]
    model = policy(nodes + [helper.make_node("MatMul", ["h3", "down"], ["logits"])] + heads(),
                   [weights("up", (WIDTH, 900)), weights("square", (900, 900)), weights("down", (900, NUM_ACTIONS))])
    sess = ort.InferenceSession(model, guard.session_options(), providers=["CPUExecutionProvider"])
    outputs, _ = guard.timed_run(sess, {"observation": np.ones((4096, WIDTH), np.float32)}, 1e-3, "slow")
    assert outputs is None


@needs_models
def test_shipped_models_decide_exactly_as_an_unguarded_session() -> None:
    """The guard changes no decision: the shipped files give the same bits as a plain onnxruntime session."""
    manifest = load_manifest(SHIPPED)
    for role in ROLES:
        if manifest["roles"][role].get("kind") != "learned":
            continue
        plain = ort.InferenceSession(str(SHIPPED / manifest["roles"][role]["file"]), providers=["CPUExecutionProvider"])
        obs = np.concatenate([guard.probe_observations(role),
                              np.random.default_rng(7).uniform(-80, 80, (2_000, len(FEATURES[role])))])
        obs = obs.astype(np.float32)
        actions, probabilities = load_policy(role, SHIPPED).run(obs)
        expected_actions, expected_probabilities = plain.run(None, {"observation": obs})
        np.testing.assert_array_equal(actions, expected_actions)
        np.testing.assert_array_equal(probabilities, expected_probabilities)
    assert learned_mix(SHIPPED).joint.roles == ROLES


# --- manifests ---------------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped models and manifest: the served set with its own manifest, its files directly in the
    folder (``set_files``: the files of the served version folder, or of the first layout)."""
    if not (SHIPPED / "manifest.json").exists():
        pytest.skip("no shipped models")
    target = tmp_path / "models"
    target.mkdir()
    for path in set_files(SHIPPED):
        shutil.copyfile(path, target / path.name)
    return target


def edit(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def setter(*keys: str, value: object):
    def change(manifest: dict) -> None:
        target = manifest
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return change


ESCAPES = {
    "parent_path": (("roles", "store", "file"), "../../etc/passwd", r"manifest store: file '\.\./\.\./etc/passwd'"),
    "absolute_path": (("roles", "store", "file"), "/etc/passwd", r"manifest store: file '/etc/passwd'; allowed"),
    "hidden_parent": (("roles", "warehouse", "file"), "sub/../../warehouse_policy.onnx",
                      r"manifest warehouse: file 'sub/\.\./\.\./warehouse_policy\.onnx'; allowed"),
    "hierarchy_parent": (("hierarchy", "file"), "../hierarchy_policy.onnx", r"manifest hierarchy: file '\.\./"),
    "backslashes": (("roles", "supplier", "file"), "..\\..\\x.onnx", r"manifest supplier: file"),
}


@pytest.mark.parametrize("case", list(ESCAPES))
def test_manifest_file_names_stay_inside_the_folder(folder: Path, case: str) -> None:
    keys, value, message = ESCAPES[case]
    edit(folder, setter(*keys, value=value))
    with pytest.raises(PolicyLoadError, match=message):
        learned_mix(folder)


def test_a_symlink_out_of_the_folder_is_refused(folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(folder / "store_policy.onnx", outside)  # the same bytes: the sha256 would match
    (folder / "store_policy.onnx").unlink()
    (folder / "store_policy.onnx").symlink_to(outside)
    with pytest.raises(PolicyLoadError, match=r"manifest store: file 'store_policy\.onnx' resolves outside"):
        load_policy("store", folder)
    (folder / "store_policy.onnx").unlink()  # the control: a symlink that stays inside is fine
    shutil.copyfile(outside, folder / "copy.onnx")
    (folder / "store_policy.onnx").symlink_to(folder / "copy.onnx")
    load_policy("store", folder)


TYPED = {
    "features_number": (setter("roles", "store", "features", value=5), r"manifest store: features differ"),
    "file_number": (setter("roles", "store", "file", value=3), r"manifest store: file 3; allowed"),
    "sha256_null": (setter("roles", "store", "sha256", value=None), r"manifest store: sha256 None; allowed: 64"),
    "roles_list": (setter("roles", value=[]), r"manifest\.json: no 'roles' object"),
    "kind_number": (setter("roles", "warehouse", "kind", value=5), r"manifest warehouse: kind 5; allowed"),
    "rule_factor_text": (lambda m: m["roles"].update(supplier={"kind": "rule", "safety_factor": "2"}),
                         rf"manifest supplier: safety_factor '2'; allowed: a number from {min(SAFETY_FACTORS):g} to "
                         rf"{max(SAFETY_FACTORS):g}"),
    "rule_factor_huge": (lambda m: m["roles"].update(supplier={"kind": "rule", "safety_factor": 1e300}),
                         r"manifest supplier: safety_factor 1e\+300; allowed"),
    "hierarchy_number": (setter("hierarchy", value=5), r"manifest hierarchy: 5; allowed: an object"),
    "hierarchy_roles_text": (setter("hierarchy", "roles", value="store"), r"manifest hierarchy: roles 'store'"),
    "hierarchy_roles_repeated": (setter("hierarchy", "roles", value=["store", "store"]),
                                 r"manifest hierarchy: roles \['store', 'store'\]; allowed: a list of distinct"),
    "role_card_list": (setter("roles", "store", value=["file"]), r"manifest: no complete entry for role 'store'"),
}


@pytest.mark.parametrize("case", list(TYPED))
def test_wrongly_typed_manifest_fields_raise_policy_load_error(folder: Path, case: str) -> None:
    change, message = TYPED[case]
    edit(folder, change)
    with pytest.raises(PolicyLoadError, match=message):
        learned_mix(folder)


RAW = {
    "nested_100000_deep": (lambda: b'{"roles": {}, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                           r"nested too deeply; allowed: at most 32 levels"),
    "nested_40_deep": (lambda: b'{"roles": {}, "x": ' + b"[" * 40 + b"]" * 40 + b"}", r"nested too deeply"),
    "not_utf8": (lambda: b'{"roles": {"store": "\xff\xfe"}}', r"manifest\.json: not UTF-8 text"),
    "over_1_mb": (lambda: b'{"roles": {}, "pad": "' + b"x" * 2**20 + b'"}',
                  r"manifest\.json: 1,048,\d{3} bytes; allowed: at most 1,048,576"),
    "duplicate_keys": (lambda: b'{"roles": {}, "roles": {}}', r"not valid JSON \(duplicate key 'roles'\)"),
    "nan_literal": (lambda: b'{"roles": {}, "x": NaN}', r"not valid JSON \(NaN is not a number\)"),
    "float_overflow": (lambda: b'{"roles": {}, "x": 1e400}', r"not valid JSON \(number 1e400 out of range\)"),
    "integer_of_5000_digits": (lambda: b'{"roles": {}, "x": ' + b"9" * 5000 + b"}", r"not valid JSON"),
}


@pytest.mark.parametrize("case", list(RAW))
def test_malformed_manifest_files_raise_policy_load_error(folder: Path, case: str) -> None:
    build, message = RAW[case]
    (folder / "manifest.json").write_bytes(build())
    with pytest.raises(PolicyLoadError, match=message) as error:
        learned_mix(folder)
    assert "\n" not in str(error.value)


def test_a_manifest_that_is_a_pipe_is_refused_without_blocking(folder: Path) -> None:
    (folder / "manifest.json").unlink()
    os.mkfifo(folder / "manifest.json")
    with pytest.raises(PolicyLoadError, match=r"manifest\.json: not a regular file"):
        learned_mix(folder)


FUZZ_FIELDS = (
    ("roles",), ("roles", "store"), ("roles", "store", "file"), ("roles", "store", "sha256"),
    ("roles", "store", "features"), ("roles", "store", "kind"), ("roles", "warehouse"), ("roles", "warehouse", "kind"),
    ("roles", "warehouse", "safety_factor"), ("roles", "supplier", "file"), ("roles", "supplier", "features"),
    ("hierarchy",), ("hierarchy", "file"), ("hierarchy", "sha256"), ("hierarchy", "roles"), ("training",),
    ("created",), ("evaluation",),
)
STRINGS = ("", "store_policy.onnx", "hierarchy_policy.onnx", "manifest.json", "../../etc/passwd", "/etc/passwd",
           "rule", "learned", "store", "\x00", "\u202eevil.onnx", "\ud800", "é" * 300, "a/" * 40, "nul\x00.onnx",
           "C:\\Windows\\x.onnx", "0" * 64, " store_policy.onnx")
DEEP = "@@deep@@"


def random_value(rng: np.random.Generator, depth: int = 0) -> object:
    kind = rng.integers(11 if depth < 3 else 7)
    if kind == 0:
        return None
    if kind == 1:
        return bool(rng.integers(2))
    if kind == 2:
        return int(rng.choice([0, -1, 1, 5, 2**63, -(10**30), 10**300]))
    if kind == 3:
        return float(rng.choice([0.0, -0.0, 2.0, -1.0, 1e308, -1e308, 5e-324, 0.1]))
    if kind in (4, 5, 6):
        return str(rng.choice(STRINGS))
    if kind in (7, 8):
        return [random_value(rng, depth + 1) for _ in range(rng.integers(4))]
    if kind == 9:
        return {str(rng.choice(("file", "sha256", "features", "kind", "roles", "safety_factor", "x"))):
                random_value(rng, depth + 1) for _ in range(rng.integers(4))}
    return DEEP


def fuzzed_manifest(rng: np.random.Generator, base: dict, base_bytes: bytes) -> bytes:
    """A manifest with a random value in one or two fields, or random bytes, or a damaged copy of the real one."""
    kind = rng.integers(10)
    if kind == 0:
        return rng.bytes(int(rng.integers(0, 400)))
    if kind == 1:
        data = bytearray(base_bytes)
        for i in rng.integers(0, len(data), size=int(rng.integers(1, 8))):
            data[i] = int(rng.integers(256))
        return bytes(data)
    if kind == 2:
        return base_bytes[: int(rng.integers(len(base_bytes)))]
    manifest = json.loads(json.dumps(base))
    for _ in range(int(rng.integers(1, 3))):
        keys = FUZZ_FIELDS[rng.integers(len(FUZZ_FIELDS))]
        target = manifest
        for key in keys[:-1]:
            target = target.get(key) if isinstance(target, dict) else None
        if isinstance(target, dict):
            target[keys[-1]] = random_value(rng)
    depth = int(rng.choice([5, 31, 33, 5_000]))
    text = json.dumps(manifest).replace(json.dumps(DEEP), "[" * depth + "]" * depth)
    return text.encode("utf-8", "surrogatepass")


def test_fuzzed_manifests_end_in_policy_load_error_or_a_valid_load(folder: Path) -> None:
    """Seeded and bounded (a fixed number of cases): every manifest loads or raises PolicyLoadError, never
    another exception."""
    base_bytes = (folder / "manifest.json").read_bytes()
    base = json.loads(base_bytes)
    rng = np.random.default_rng(2026)
    outcomes = {"loaded": 0, "refused": 0}
    for case in range(160):
        data = fuzzed_manifest(rng, base, base_bytes)
        (folder / "manifest.json").write_bytes(data)
        try:
            mix = learned_mix(folder)
            for role in ROLES:
                learned_policy(role, folder)
        except PolicyLoadError as exc:
            assert "\n" not in str(exc), (case, str(exc))
            outcomes["refused"] += 1
        except Exception as exc:  # the defect this test exists to find
            pytest.fail(f"case {case}: {type(exc).__name__}: {exc} for manifest {data[:300]!r}")
        else:
            assert all(getattr(mix, role).role == role for role in ROLES)
            outcomes["loaded"] += 1
    assert outcomes["loaded"] >= 10 and outcomes["refused"] >= 50, outcomes


# --- no pickles from manifest-named paths -----------------------------------------------------------------

class Bomb:
    """Unpickling this creates a file: what a crafted SB3 zip could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@needs_models
def test_fuzzed_onnx_uploads_end_in_policy_load_error_or_a_valid_policy() -> None:
    """Seeded mutations of a shipped policy (flipped, inserted and deleted bytes, truncations, splices of
    another role's file) through the upload check: each one is refused in one line or decides within the menu."""
    rng = np.random.default_rng(20261122)
    manifest = load_manifest(SHIPPED)  # files named relative to SHIPPED (a version folder's, or directly in it)
    originals = {role: (SHIPPED / manifest["roles"][role]["file"]).read_bytes() for role in ROLES}
    accepted = 0
    for case in range(60):
        role = ROLES[case % len(ROLES)]
        data = bytearray(originals[role])
        kind = case % 5
        if kind == 0:  # flip a few bytes
            for at in rng.integers(0, len(data), rng.integers(1, 8)):
                data[at] ^= int(rng.integers(1, 256))
        elif kind == 1:  # truncate
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == 2:  # insert random bytes
            at = int(rng.integers(0, len(data)))
            data[at:at] = rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif kind == 3:  # delete a run of bytes
            at = int(rng.integers(0, len(data)))
            del data[at: at + int(rng.integers(1, 64))]
        else:  # splice the head of this role's file onto the tail of another's
            other = originals[ROLES[(case + 1) % len(ROLES)]]
            cut = int(rng.integers(1, len(data)))
            data = data[:cut] + other[cut:]
        try:
            chooser = OnnxChooser.checked(bytes(data), role)
        except PolicyLoadError as exc:
            assert "\n" not in str(exc) and str(exc)
            continue
        accepted += 1
        actions, probabilities = chooser.run(np.random.default_rng(case).uniform(-5, 30, (64, len(FEATURES[role])))
                                             .astype(np.float32))
        assert ((actions >= 0) & (actions < NUM_ACTIONS)).all() and np.isfinite(probabilities).all()
    assert accepted < 60  # the mutations do reach the checks


def test_bench_reads_no_training_run_that_a_manifest_names(folder: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The manifest points ``training.config.out`` and ``trained_from`` at crafted pickles: the bench's torch and
    SB3 figures never read them (and PPO.load / torch.load are not called at all)."""
    from stable_baselines3 import PPO

    from core.bench import decision_latency

    run = tmp_path / "crafted_run"
    marker = tmp_path / "unpickled"
    for role in ROLES:
        (run / f"{role}").mkdir(parents=True)
        (run / role / "model.zip").write_bytes(pickle.dumps(Bomb(marker)))
    edit(folder, lambda m: m["training"]["config"].update(out=str(run)))
    edit(folder, lambda m: [m["roles"][r].update(trained_from=f"{r}/model.zip") for r in ROLES])

    def refuse(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(PPO, "load", refuse)
    monkeypatch.setattr("torch.load", refuse)
    result = decision_latency(folder, repeats=5)
    assert not marker.exists()
    assert {"onnxruntime_one_call", "onnxruntime", "torch", "sb3_predict"} <= set(result)
    assert 0 < result["torch"]["median_us"] <= result["torch"]["p99_us"]


def test_no_library_code_unpickles_a_manifest_named_path() -> None:
    """Every PPO.load / torch.load / pickle use in core and pages is in the training layer, reading a run folder
    the user names on the command line (or the app's own temporary run)."""
    call = re.compile(r"\b(PPO\.load|torch\.load|pickle\.loads?|load_from_zip_file|Unpickler)\s*\(")
    hits = []
    for path in sorted([*(REPO / "core").rglob("*.py"), *(REPO / "pages").rglob("*.py"), REPO / "streamlit_app.py"]):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if call.search(line):
                hits.append(f"{path.relative_to(REPO)}:{number}")
    training_layer = ("core/learning/training.py", "core/learning/export.py",
                      "core/learning/in_app.py")  # the app's own temporary run folder
    assert hits and all(hit.startswith(training_layer) for hit in hits), hits


# --- deploy_policy.py ----------------------------------------------------------------------------------

def deploy(observation: object, tmp_path: Path, *extra: str, raw: bytes | None = None,
           cwd: Path | None = None) -> subprocess.CompletedProcess:
    path = tmp_path / "observation.json"
    path.write_bytes(raw if raw is not None else json.dumps(observation).encode())
    return subprocess.run([sys.executable, str(DEPLOY), "--role", "store", "--observation", str(path), *extra],
                          capture_output=True, text=True, timeout=120, cwd=cwd or tmp_path)


def store_features(value: float = 1.0) -> dict[str, float]:
    return dict.fromkeys(FEATURES["store"], value)


@needs_models
def test_deploy_script_runs_from_any_folder_without_models_argument(tmp_path: Path) -> None:
    result = deploy({"features": store_features()}, tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    index = int(load_policy("store", SHIPPED)(np.ones((1, WIDTH), np.float32))[0])
    assert f"(menu entry {index}," in result.stdout
    listed = deploy({"features": list(store_features().values())}, tmp_path, cwd=Path("/"))  # a list, in order
    assert listed.returncode == 0 and listed.stdout == result.stdout, listed.stderr


BAD_OBSERVATIONS = {
    "nan_feature": (None, json.dumps({"features": {**store_features(), "on_hand_days": math.nan}}).encode(),
                    r"feature on_hand_days: 'nan'; allowed: a finite number"),
    "infinite_feature": ({"features": {**store_features(), "backorder_days": math.inf}}, None,
                         r"feature backorder_days: 'inf'; allowed: a finite number"),
    "text_feature": ({"features": {**store_features(), "on_hand_days": "3"}}, None,
                     r"feature on_hand_days: '3'; allowed: a finite number"),
    "boolean_feature": ({"features": {**store_features(), "on_hand_days": True}}, None, r"feature on_hand_days"),
    "huge_integer": ({"features": {**store_features(), "on_hand_days": 10**400}}, None, r"feature on_hand_days"),
    "beyond_float32": ({"features": {**store_features(), "on_hand_days": 1e39}}, None, r"beyond the float32 range"),
    "too_few": ({"features": [1.0] * (WIDTH - 1)}, None, rf"observation has {WIDTH - 1} features; allowed: {WIDTH}"),
    "too_many": ({"features": [1.0] * (WIDTH + 1)}, None, rf"observation has {WIDTH + 1} features; allowed: {WIDTH}"),
    "unknown_name": ({"features": {**store_features(), "price": 3.0}}, None,
                     r"observation has unknown features: price"),
    "not_an_object": ([1, 2, 3], None, r"not a JSON object"),
    "not_json": (None, b"features: 1", r"not valid JSON"),
    "not_utf8": (None, b'{"features": "\xff"}', r"not UTF-8 text"),
    "negative_protection": ({"features": store_features(), "order": {
        "forecast_per_day": 40, "protection_days": -2, "demand_sd_per_day": 12, "inventory_position": 150}}, None,
        r"order protection_days: -2; allowed: 0 or more"),
    "order_lacks_fields": ({"features": store_features(), "order": {"forecast_per_day": 40}}, None, r"order lacks"),
}


@needs_models
@pytest.mark.parametrize("case", list(BAD_OBSERVATIONS))
def test_deploy_script_refuses_bad_observations_with_exit_2(tmp_path: Path, case: str) -> None:
    observation, raw, message = BAD_OBSERVATIONS[case]
    result = deploy(observation, tmp_path, raw=raw)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "../models/store_policy.onnx"])
def test_deploy_script_keeps_model_files_inside_the_folder(folder: Path, tmp_path: Path, name: str) -> None:
    edit(folder, setter("roles", "store", "file", value=name))
    result = deploy({"features": store_features()}, tmp_path, "--models", str(folder))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: manifest file {name!r}"), result.stderr


def test_deploy_script_refuses_a_missing_manifest_in_one_line(tmp_path: Path) -> None:
    result = deploy({"features": store_features()}, tmp_path, "--models", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "manifest.json: cannot read (No such file or directory)" in result.stderr


# --- the app ---------------------------------------------------------------------------------------------

@needs_models
@pytest.mark.parametrize("case", ["oversized", "loop"])
def test_the_app_refuses_hostile_uploads_with_a_message(case: str) -> None:
    from test_app import _exceptions, open_page

    data = unused_weights(1_400_000) if case == "oversized" else loop_of_1e12()
    at = open_page("train_and_export.py")
    at.file_uploader(key="upload_file_0").upload(f"{case}.onnx", data).run()
    assert not at.exception, _exceptions(at)
    assert len(at.error) == 1 and at.error[0].value.startswith(f"Rejected {case}.onnx: ")
    assert ("allowed: at most 5,242,880" if case == "oversized" else "operator Loop") in at.error[0].value
    assert not at.session_state["uploaded_models"]

