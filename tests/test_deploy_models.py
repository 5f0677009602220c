"""``exported_models/deploy_policy.py`` loads a role's policy through serving's checks (``onnx_checks.py`` beside
it, a byte-identical copy of ``core/serving/onnx_checks.py``), the same way in single mode (``--role store
--observation``) and batch mode (``--input --output``): hostile model folders end in exit code 2 with one printable
stderr line ``error: ...`` and nothing written, never a traceback; seeded mutations of the shipped model and of its
manifest card end in that or in the decisions a plain onnxruntime session makes. Most cases call the script's
``main`` in this process (the module loaded by path, as ``core.bench`` does); a subset runs it as a command."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow.csv as pcsv
import pytest
import test_untrusted_models as untrusted
from onnx import TensorProto, helper
from test_untrusted_models import (
    DEPLOY,
    SHIPPED,
    WIDTH,
    W,
    action_plus,
    band_backdoor,
    broadcast_blowup,
    constant_of_shape_gigabytes,
    edit,
    heads,
    linear,
    loop_of_1e12,
    nan_probabilities,
    setter,
    shared_weights_work,
    weights,
)

from core.agents.menus import NUM_ACTIONS
from core.agents.observations import FEATURES
from core.serving.model_sets import set_files

REPO = Path(__file__).resolve().parents[1]
STATES = SHIPPED / "example_states.csv"
folder = untrusted.folder  # the fixture: the served set copied flat into tmp_path / "models"


def load_deploy():
    spec = importlib.util.spec_from_file_location("deploy_policy", DEPLOY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy = load_deploy()


def test_the_scripts_checks_are_servings() -> None:
    shipped = (SHIPPED / "onnx_checks.py").read_bytes()
    assert shipped == (REPO / "core" / "serving" / "onnx_checks.py").read_bytes(), \
        "exported_models/onnx_checks.py differs: copy core/serving/onnx_checks.py over it"
    assert deploy.checks.__file__ == str((SHIPPED / "onnx_checks.py").resolve())


# --- models and manifests ------------------------------------------------------------------------------------

def install(folder: Path, data: bytes, fix_sha: bool = True) -> None:
    """``data`` as the folder's store model (with its sha256 in the manifest unless ``fix_sha`` is False)."""
    (folder / "store_policy.onnx").write_bytes(data)
    if fix_sha:
        edit(folder, setter("roles", "store", "sha256", value=hashlib.sha256(data).hexdigest()))


def graph(nodes: list, initializers: list, input_shape: list = ("batch", WIDTH),
          action_type: int = TensorProto.INT64) -> bytes:
    """A store policy graph as ``policy`` builds it, but of any input shape and action type (no onnx checker)."""
    made = helper.make_graph(
        nodes, "hostile", [helper.make_tensor_value_info("observation", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info("action", action_type, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", NUM_ACTIONS])],
        initializer=initializers)
    model = helper.make_model(made, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return model.SerializeToString()


def scalar_input() -> bytes:
    """One float observation (a scalar) broadcast to a row: every operator allowed, the input's shape not."""
    return graph([helper.make_node("Mul", ["observation", "ones"], ["row"]),
                  helper.make_node("MatMul", ["row", "W"], ["logits"]), *heads()],
                 [W, untrusted.scalar("ones", np.ones((1, WIDTH)), np.float32)], input_shape=[])


def width_of(width: int) -> bytes:
    return graph([helper.make_node("MatMul", ["observation", "V"], ["logits"]), *heads()],
                 [weights("V", (width, NUM_ACTIONS))], input_shape=["batch", width])


def float_actions() -> bytes:
    """Fractional actions: a float per row (the observation times a vector), declared float."""
    return graph([helper.make_node("MatMul", ["observation", "v"], ["action"]), *linear(), heads()[1]],
                 [W, untrusted.scalar("v", np.full(WIDTH, 0.37), np.float32)], action_type=TensorProto.FLOAT)


def escaping_operator() -> bytes:
    """An operator whose name carries a newline and terminal escapes."""
    return graph(linear("z") + [helper.make_node("Relu\n\x1b[2JEvil", ["z"], ["logits"])] + heads(), [W])


def card(change):
    """A manifest change of the store card."""
    return lambda folder: edit(folder, lambda manifest: change(manifest["roles"]["store"]))


def model(build, fix_sha: bool = True):
    return lambda folder: install(folder, build(), fix_sha)


def shortened(count: int):
    def change(store: dict) -> None:
        store["safety_factor_menu"] = store["safety_factor_menu"][:count]
        store["actions"] = store["actions"][:count]
    return card(change)


HOSTILE = {  # name -> (change of the folder, the one line's pattern)
    "loop_of_1e12": (model(loop_of_1e12), r"operator Loop; allowed: "),
    "constant_of_shape_1_gib": (model(constant_of_shape_gigabytes), r"operator ConstantOfShape; allowed: "),
    "broadcast_to_500_000_values_a_row": (model(broadcast_blowup), r"tensor values per observation row; allowed"),
    "giant_matmuls": (model(shared_weights_work), r"operations per observation row; allowed: at most 2,000,000"),
    "scalar_input": (model(scalar_input), rf"input shape \[\[\]\]; allowed: one input of width {WIDTH} "),
    "width_10_input": (model(lambda: width_of(10)), rf"input shape \[\['batch', 10\]\]; allowed: one input of width "
                                                     rf"{WIDTH} "),
    "feature_dropped": (card(lambda store: store["features"].pop(3)),
                        rf"input shape \[\['batch', {WIDTH}\]\]; allowed: one input of width {WIDTH - 1} "),
    "float_actions": (model(float_actions), r"action of type float and shape \['rows of store'\]; allowed: int64"),
    "actions_outside_the_menu": (model(lambda: action_plus(99)), r"action 99 on a probe observation; allowed: a menu "
                                                                 rf"index from 0 to {NUM_ACTIONS - 1}"),
    "nan_probabilities": (model(nan_probabilities), r"probabilities not finite on a probe observation"),
    "menu_1e300": (card(lambda store: store["safety_factor_menu"].__setitem__(5, 1e300)),
                   r"safety_factor_menu entry 5: 1e\+300; allowed: -10 to 10"),
    "menu_nan": (card(lambda store: store["safety_factor_menu"].__setitem__(0, math.nan)),
                 r"safety_factor_menu entry 0: 'nan'; allowed: a finite number"),
    "menu_string": (card(lambda store: store["safety_factor_menu"].__setitem__(7, "2.5")),
                    r"safety_factor_menu entry 7: '2\.5'; allowed: a finite number"),
    "menu_longer_than_actions": (card(lambda store: store["actions"].pop()),
                                 rf"actions \[.*; allowed: a list of {NUM_ACTIONS} texts, one per safety_factor_menu"),
    "menu_shorter_than_the_model": (shortened(10),
                                    rf"probabilities of shape \({NUM_ACTIONS},\); allowed: \(10,\), one per menu"),
    "not_onnx": (model(lambda: b"store_policy = {'weights': [1, 2, 3]}\n"), r"not a loadable ONNX model \("),
    "sha256_mismatch": (model(lambda: untrusted.well_formed(), fix_sha=False), r"does not match the manifest's sha256"),
    "escapes_in_an_operator": (model(escaping_operator), r"operator Relu\\n\\x1b\[2JEvil; allowed"),
    "escapes_in_a_feature_name": (card(lambda store: store["features"].__setitem__(0, "on_hand\x1b]0;owned\x07")),
                                  r"features \['on_hand\\x1b\]0;owned\\x07'"),
    "rule_factor_off_the_menu": (card(lambda store: store.update(kind="rule", safety_factor=1e300)),
                                 r"safety_factor 1e\+300 is not on the menu"),
    "kind_unknown": (card(lambda store: store.update(kind="learned\r")), r"kind 'learned\\r'; allowed: 'learned' or "),
}
SUBPROCESS = ("loop_of_1e12", "scalar_input", "feature_dropped", "float_actions", "menu_1e300")


# --- running the script ---------------------------------------------------------------------------------------

def observation(tmp_path: Path, features: dict[str, float] | None = None) -> Path:
    path = tmp_path / "observation.json"
    path.write_text(json.dumps({"features": features or dict.fromkeys(FEATURES["store"], 1.0),
                                "order": {"forecast_per_day": 40, "protection_days": 2, "demand_sd_per_day": 12,
                                          "inventory_position": 50}}))
    return path


def arguments(mode: str, folder: Path, tmp_path: Path) -> list[str]:
    if mode == "single":
        return ["--role", "store", "--observation", str(observation(tmp_path)), "--models", str(folder)]
    return ["--input", str(STATES), "--output", str(tmp_path / "out" / "orders.csv"), "--models", str(folder)]


def in_process(args: list[str], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """``main`` of the loaded script: its exit code, stdout and stderr (any other exception fails the test)."""
    monkeypatch.setattr(sys, "argv", ["deploy_policy.py", *args])
    code = deploy.main()
    out, err = capsys.readouterr()
    return code, out, err


def as_command(args: list[str]) -> tuple[int, str, str]:
    result = subprocess.run([sys.executable, str(DEPLOY), *args], capture_output=True, text=True, timeout=60)
    return result.returncode, result.stdout, result.stderr


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def refused(outcome: tuple[int, str, str], pattern: str) -> None:
    code, out, err = outcome
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and err.endswith("\n"), (code, out, err)
    assert lines[0].startswith("error: ") and lines[0].isprintable(), lines[0]
    assert re.search(pattern, lines[0]), lines[0]


def setup_case(folder: Path, tmp_path: Path, change) -> tuple[Path, dict[str, bytes]]:
    change(folder)
    (tmp_path / "out").mkdir(exist_ok=True)
    return tmp_path / "out", files(tmp_path)


@pytest.mark.parametrize("mode", ["single", "batch"])
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_model_folders_are_refused_in_one_line(folder: Path, tmp_path: Path, case: str, mode: str,
                                                       capsys: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    change, pattern = HOSTILE[case]
    args = arguments(mode, folder, tmp_path)
    _, before = setup_case(folder, tmp_path, change)
    refused(in_process(args, capsys, monkeypatch), pattern)
    assert files(tmp_path) == before  # nothing written, the models untouched
    if case in SUBPROCESS:
        refused(as_command(args), pattern)
        assert files(tmp_path) == before


TUNED_HINT = "tuned_safety_factor is the role's tuned constant menu entry for the scenario, from `python -m core tune"


@pytest.mark.parametrize("case, pattern", [
    ("dropped", r"observation lacks features: tuned_safety_factor \(the names are in manifest\.json\); "
                + re.escape(TUNED_HINT)),
    ("list without it", rf"observation has {WIDTH - 1} features; allowed: {WIDTH}, in the manifest's order "
                        rf"\(on_hand_days, .*, \.\.\., tuned_safety_factor\); " + re.escape(TUNED_HINT)),
    ("above the menu", r"feature tuned_safety_factor: 10\.5; allowed: -4 to 10 \(a safety factor of the menu\)"),
    ("below the menu", r"feature tuned_safety_factor: -4\.01; allowed: -4 to 10"),
])
def test_an_observation_without_a_valid_tuned_safety_factor_is_one_clear_line(
        folder: Path, tmp_path: Path, case: str, pattern: str, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The single mode reads the store card's features by name; the last is the tuned safety factor: an observation
    written without it (by name or as a list of the other features) or with one off the menu's range is refused in
    one line that says what the feature is and where it comes from."""
    names = json.loads((folder / "manifest.json").read_text())["roles"]["store"]["features"]
    assert names == list(FEATURES["store"]) and names[-1] == "tuned_safety_factor"
    features: dict | list = dict.fromkeys(names, 1.0)
    if case == "dropped":
        features.pop("tuned_safety_factor")
    elif case == "list without it":
        features = [1.0] * (len(names) - 1)
    else:
        features["tuned_safety_factor"] = 10.5 if case == "above the menu" else -4.01
    path = tmp_path / "observation.json"
    path.write_text(json.dumps({"features": features}))
    refused(in_process(["--role", "store", "--observation", str(path), "--models", str(folder)], capsys, monkeypatch),
            pattern)
    if case == "dropped":
        refused(as_command(["--role", "store", "--observation", str(path), "--models", str(folder)]), pattern)


@pytest.mark.parametrize("mode", ["single", "batch"])
def test_a_rule_card_decides_without_a_model(folder: Path, tmp_path: Path, mode: str, capsys: pytest.CaptureFixture,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    edit(folder, lambda manifest: manifest["roles"]["store"].update(kind="rule", safety_factor=1.5, file="gone.onnx"))
    (folder / "store_policy.onnx").unlink()
    (tmp_path / "out").mkdir()
    code, out, err = in_process(arguments(mode, folder, tmp_path), capsys, monkeypatch)
    assert code == 0 and err == "", err
    index = json.loads((folder / "manifest.json").read_text())["roles"]["store"]["safety_factor_menu"].index(1.5)
    if mode == "single":
        assert out == expected_single(folder) and f"(menu entry {index}, probability 1.000)" in out
    else:
        check_batch(folder, tmp_path / "out" / "orders.csv")
        assert set(pcsv.read_csv(tmp_path / "out" / "orders.csv").column("safety_factor").to_pylist()) == {1.5}


def test_a_backdoor_no_probe_hits_is_stopped_when_it_fires(folder: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Every later run is checked: on_hand_days in (30, 30.001] makes the model choose entry 94 of 64."""
    install(folder, band_backdoor())
    args = ["--role", "store", "--observation", str(observation(tmp_path)), "--models", str(folder)]
    code, out, err = in_process(args, capsys, monkeypatch)
    assert code == 0 and "(menu entry " in out, err
    features = {**dict.fromkeys(FEATURES["store"], 1.0), "on_hand_days": 30.0005}
    args[3] = str(observation(tmp_path, features))
    refused(in_process(args, capsys, monkeypatch), rf"action {untrusted.BACKDOOR_ENTRY} on an input row; allowed: a "
                                                   rf"menu index from 0 to {NUM_ACTIONS - 1}")


def test_runs_past_the_per_row_limit_are_stopped(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No model within the static bounds takes 5 ms a row, so the limit is shrunk (the test asserts no speed of this
    machine): at load, the timed probes refuse; after it, a run is stopped."""
    monkeypatch.setattr(deploy.checks, "MAX_SECONDS_PER_ROW", 1e-12)
    with pytest.raises(deploy.InputError, match=r"ms per observation row on a batch of 1; allowed: at most 1e-09 ms"):
        deploy.StoreDecider(folder)
    monkeypatch.undo()
    decider = deploy.StoreDecider(folder)
    obs = np.random.default_rng(3).uniform(-5, 30, (2 * deploy.RUN_ROWS, WIDTH)).astype(np.float32)
    monkeypatch.setattr(deploy.checks, "MAX_SECONDS_PER_ROW", 1e-12)
    monkeypatch.setattr(deploy, "RUN_FLOOR_SECONDS", 0.0)
    with pytest.raises(deploy.InputError, match=rf"a run of {deploy.RUN_ROWS:,} rows was stopped after 0\.00 s"):
        decider.indices(obs)


# --- seeded fuzz -----------------------------------------------------------------------------------------------

def plain_actions(folder: Path, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Actions and probabilities of an unguarded onnxruntime session on the folder's store model."""
    sess = ort.InferenceSession((folder / "store_policy.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    return tuple(sess.run(None, {"observation": obs}))


def expected_single(folder: Path) -> str:
    """What the single mode prints for ``observation``'s all-ones features and order, from the manifest and a plain
    session (or the rule's entry)."""
    store = json.loads((folder / "manifest.json").read_text())["roles"]["store"]
    menu = store["safety_factor_menu"]
    if store["kind"] == "rule":
        index, probability = menu.index(store["safety_factor"]), 1.0
    else:
        obs = np.ones((1, len(store["features"])), np.float32)
        action, probabilities = plain_actions(folder, obs)
        index, probability = int(action[0]), float(probabilities[0, action[0]])
    quantity = max(0.0, 40 * 2 + menu[index] * 12 * math.sqrt(2) - 50)
    meaning = deploy.checks.printable(store["actions"][index][:200])
    return (f"store: {meaning} (menu entry {index}, probability {probability:.3f})\n"
            f"order quantity: {quantity:.3f} units\n")


def check_batch(folder: Path, orders: Path) -> None:
    """The orders: the plain session's (or the rule's) menu entry of every row's features, its safety factor."""
    store = json.loads((folder / "manifest.json").read_text())["roles"]["store"]
    menu = np.array(store["safety_factor_menu"])
    table = pcsv.read_csv(STATES)
    features, _ = deploy.store_features(deploy.checked_states(table))
    if store["kind"] == "rule":
        index = np.full(table.num_rows, store["safety_factor_menu"].index(store["safety_factor"]))
    else:
        index = plain_actions(folder, deploy.observation_matrix(features, store["features"]))[0]
    written = pcsv.read_csv(orders)
    assert "menu_index" not in written.column_names  # the menu's index stays inside the script
    np.testing.assert_array_equal(written.column("safety_factor").to_numpy(), menu[index])
    quantity = written.column("order_quantity_units").to_numpy()
    assert np.isfinite(quantity).all() and (quantity >= 0).all()


STORE_FIELDS = ("features", "safety_factor_menu", "actions", "kind", "file", "sha256", "safety_factor")


def pick(rng: np.random.Generator, options: list) -> object:
    return options[int(rng.integers(len(options)))]


def mutate_card(rng: np.random.Generator, store: dict) -> None:
    """One random change of the store card: a field's type or value, an entry of a list, a rule, an order."""
    field = str(rng.choice(STORE_FIELDS))
    kind = rng.integers(7)
    if kind == 0:
        store[field] = untrusted.random_value(rng)
    elif kind == 1:
        store.pop(field, None)
    elif kind in (2, 3) and isinstance(store.get(field), list) and store[field]:
        at = int(rng.integers(len(store[field])))
        if kind == 2:
            store[field][at] = pick(rng, [untrusted.random_value(rng), float(rng.uniform(-12, 12)), "x\x1b[31m"])
        else:
            del store[field][at]
    elif kind == 4:
        store.update(kind="rule", safety_factor=pick(rng, [*store["safety_factor_menu"][:3], 0.05, 11.0, "1", None]))
    elif kind == 5:
        store["features"] = [str(n) for n in rng.permutation(store["features"])]  # decided in the listed order
    else:
        store["trained_from"] = untrusted.random_value(rng)  # a field the script does not read


def fuzzed_folder(rng: np.random.Generator, folder: Path, model: bytes, manifest: dict, case: int) -> None:
    """Even cases: a few flipped bytes of the shipped store model, the sha256 fixed; odd ones: a changed card."""
    changed = copy.deepcopy(manifest)
    data = bytearray(model)
    if case % 2 == 0:
        for at in rng.integers(0, len(data), int(rng.integers(1, 6))):
            data[at] ^= int(rng.integers(1, 256))
        changed["roles"]["store"]["sha256"] = hashlib.sha256(data).hexdigest()
    else:
        for _ in range(int(rng.integers(1, 3))):
            mutate_card(rng, changed["roles"]["store"])
    (folder / "store_policy.onnx").write_bytes(data)
    text = json.dumps(changed).replace(json.dumps(untrusted.DEEP), "[" * 40 + "]" * 40)
    (folder / "manifest.json").write_bytes(text.encode("utf-8", "surrogatepass"))


def test_fuzzed_folders_end_in_one_line_or_the_right_decisions(folder: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """40 seeded cases, alternating the modes; a few of them also as a command."""
    rng = np.random.default_rng(2212)
    model, manifest = (folder / "store_policy.onnx").read_bytes(), json.loads((folder / "manifest.json").read_text())
    outcomes = {"decided": 0, "refused": 0}
    for case in range(40):
        fuzzed_folder(rng, folder, model, manifest, case)
        mode = ("single", "batch")[case // 2 % 2]
        args = arguments(mode, folder, tmp_path)
        out_dir, before = setup_case(folder, tmp_path, lambda _folder: None)
        command = case in (0, 3, 10, 13)  # single and batch mode, each with a flipped model and a changed card
        outcome = as_command(args) if command else in_process(args, capsys, monkeypatch)
        code, out, err = outcome
        if code == 0:
            assert err == "", (case, err)
            if mode == "single":
                assert out == expected_single(folder), (case, out)
            else:
                check_batch(folder, out_dir / "orders.csv")
                (out_dir / "orders.csv").unlink()
            outcomes["decided"] += 1
        else:
            refused(outcome, r".")
            outcomes["refused"] += 1
        assert files(tmp_path) == before, case  # nothing else written
    assert outcomes["decided"] >= 8 and outcomes["refused"] >= 8, outcomes


# --- the downloaded set ----------------------------------------------------------------------------------------

def test_the_downloaded_set_runs_only_with_its_checks(tmp_path: Path) -> None:
    """The files the app offers (the served set, deploy_policy.py and onnx_checks.py) run from any folder; without
    onnx_checks.py the script says so in one line."""
    download = tmp_path / "download"
    download.mkdir()
    for path in [*set_files(SHIPPED), DEPLOY, SHIPPED / "onnx_checks.py"]:
        shutil.copyfile(path, download / path.name)
    args = ["--role", "store", "--observation", str(observation(tmp_path))]
    result = subprocess.run([sys.executable, str(download / "deploy_policy.py"), *args], capture_output=True,
                            text=True, timeout=60, cwd="/")
    assert result.returncode == 0 and result.stdout == expected_single(download), result.stderr
    (download / "onnx_checks.py").unlink()
    result = subprocess.run([sys.executable, str(download / "deploy_policy.py"), *args], capture_output=True,
                            text=True, timeout=60, cwd="/")
    refused((result.returncode, result.stdout, result.stderr), r"onnx_checks\.py is missing; keep onnx_checks\.py "
                                                               r"beside deploy_policy\.py")
