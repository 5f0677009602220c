"""A model set is replaced atomically as a whole: an export interrupted at any step leaves the
previous set serving exactly as before (and no temporary file), a finished export switches to
the new set, and the version before it is kept for a rollback while older ones are deleted."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from test_serving import untrained_model

import core.learning.export as export
from core.agents.observations import FEATURES
from core.agents.roles import ROLES
from core.evaluation.report import EvaluationReport, Interval, PresetResult, record_evaluation
from core.learning.export import export_run
from core.learning.training import TrainConfig
from core.serving import files, model_sets
from core.serving.models import learned_mix, load_manifest, load_policy


class Interrupted(Exception):
    """Stands for the process being killed at that step."""


def make_run(folder: Path, seed: int) -> Path:
    """A training run folder with every role learned (untrained but distinct weights); its
    models' step count is ``seed``, which tells the runs apart (``cached_actors``)."""
    folder.mkdir()
    for i, role in enumerate(ROLES):
        model = untrained_model(role, seed=seed + i)
        model.num_timesteps = seed
        model.save(folder / f"{role}.zip")
    (folder / "hierarchy.json").write_text(json.dumps({"roles": {r: f"{r}.zip" for r in ROLES}, "phases": []}))
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(TrainConfig())))
    return folder


OBSERVATIONS = {role: np.random.default_rng(5).uniform(-5, 40, (256, len(FEATURES[role]))).astype(np.float32)
                for role in ROLES}


def decisions(folder: Path) -> dict[str, np.ndarray]:
    """What the served set decides: every role file (actions, probabilities) and the one-call
    hierarchy, loaded with all of serving's checks."""
    decided = {}
    for role in ROLES:
        decided[f"{role} actions"], decided[f"{role} probabilities"] = load_policy(role, folder).run(OBSERVATIONS[role])
    for role, (actions, probabilities) in learned_mix(folder).joint.run(OBSERVATIONS).items():
        decided[f"{role} one-call actions"], decided[f"{role} one-call probabilities"] = actions, probabilities
    return decided


def same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(model_sets.STAGING)]


def versions(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if model_sets.VERSION.fullmatch(p.name))


def reweighted(model: bytes, seed: int) -> bytes:
    """Another policy of the same shape: the exported graph with its action head's bias shaken."""
    graph = onnx.load_from_string(model)
    for tensor in graph.graph.initializer:
        if tensor.name == "head.bias":
            bias = numpy_helper.to_array(tensor)
            shaken = bias + np.random.default_rng(seed).normal(0.0, 3.0, bias.shape).astype(bias.dtype)
            tensor.CopyFrom(numpy_helper.from_array(shaken, tensor.name))
    return graph.SerializeToString()


def replay(onnx_files: dict[tuple[int, str], bytes]):
    """export_actor replayed from ``onnx_files`` (its conversion is tested in test_serving; here it
    would take seconds per export): the steps under test are the writes, renames and fsyncs."""
    def write(model, role: str, path: Path) -> None:
        Path(path).write_bytes(onnx_files[model.num_timesteps, role])
    return write


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two runs with different models, a flat folder of the first layout (the shipped one: files
    directly in it) and a versioned export, both serving the old run; each run's decisions."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("sets")
    old_run, new_run = make_run(base / "old_run", seed=20), make_run(base / "new_run", seed=30)
    versioned = base / "versioned"
    export_run(old_run, versioned)  # the real conversion, once
    served = versioned / model_sets.current_version(versioned)
    onnx_files = {(20, role): (served / f"{role}_policy.onnx").read_bytes() for role in ROLES}
    onnx_files |= {(30, role): reweighted(onnx_files[20, role], seed=30 + i) for i, role in enumerate(ROLES)}
    flat = base / "flat"
    flat.mkdir()
    for path in model_sets.set_files(versioned):
        (flat / path.name).write_bytes(path.read_bytes())
    fresh = base / "fresh"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(export, "export_actor", replay(onnx_files))
        export_run(new_run, fresh)
    old, new = decisions(flat), decisions(fresh)
    for role in ROLES:
        assert not np.array_equal(old[f"{role} actions"], new[f"{role} actions"]), "the runs must decide differently"
    return {"old_run": old_run, "new_run": new_run, "layouts": {"flat": flat, "versioned": versioned},
            "old": old, "new": new, "onnx_files": onnx_files}


@pytest.fixture
def cached_actors(sets, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export, "export_actor", replay(sets["onnx_files"]))


def interrupt_at(monkeypatch: pytest.MonkeyPatch, step: int) -> list[str]:
    """Count every step that writes, renames or syncs a file of the export and raise at ``step``."""
    done: list[str] = []

    def counted(name: str, real):
        def call(*args, **kwargs):
            if len(done) == step:
                raise Interrupted(f"step {step}: {name}")
            done.append(name)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(export, "export_actor", counted("export_actor", export.export_actor))
    monkeypatch.setattr(onnx, "save", counted("onnx.save", onnx.save))
    for name in ("fsync", "replace", "rename"):
        monkeypatch.setattr(os, name, counted(f"os.{name}", getattr(os, name)))
    return done


@pytest.mark.parametrize("layout", ["flat", "versioned"])
def test_an_export_interrupted_at_any_step_leaves_the_previous_set(sets, cached_actors, tmp_path: Path,
                                                                   layout: str) -> None:
    """Interrupted before the manifest's switch, the folder is byte-for-byte as before; after it,
    the new set serves complete. Never a mix, never a temporary file left."""
    outcomes = []
    for step in range(100):
        out = tmp_path / f"step{step}"
        shutil.copytree(sets["layouts"][layout], out)
        before = snapshot(out)
        with pytest.MonkeyPatch.context() as mp:
            done = interrupt_at(mp, step)
            try:
                export_run(sets["new_run"], out)
            except Interrupted:
                interrupted = True
            else:
                interrupted = False
        assert not leftovers(out), (step, leftovers(out))
        if not interrupted:
            break
        if snapshot(out) == before:
            assert same(decisions(out), sets["old"]), step
            outcomes.append("old")
        else:
            assert same(decisions(out), sets["new"]), step
            outcomes.append("new")
    else:
        pytest.fail("the export never finished")
    steps = len(done)
    assert done.count("export_actor") == 3 and done.count("onnx.save") == 1
    assert done.count("os.rename") == 1 and done.count("os.replace") == 2  # the set's own manifest, the switch
    assert done.count("os.fsync") >= 4 + 2 + 2, done  # 4 files, 2 manifests, their folders
    # the switch is the last replace; only a failure at the fsync after it leaves the new set
    assert outcomes == ["old"] * (steps - 1) + ["new"], outcomes
    assert same(decisions(out), sets["new"])


def test_exports_switch_sets_and_keep_only_the_previous_version(sets, cached_actors, tmp_path: Path) -> None:
    out = tmp_path / "models"
    shutil.copytree(sets["layouts"]["flat"], out)
    shipped = snapshot(out)
    served = []
    for run, expected in [("new_run", "new"), ("old_run", "old"), ("new_run", "new"), ("old_run", "old")]:
        manifest = export_run(sets[run], out)
        served.append(manifest["version"])
        assert load_manifest(out) == json.loads(json.dumps(manifest))
        assert same(decisions(out), sets[expected]), run
        assert versions(out) == sorted(served[-2:]), "the current and the previous version only"
        assert not leftovers(out)
    assert all((out / version).stat().st_mode & 0o777 == 0o755 for version in versions(out))
    for name, data in shipped.items():  # the first layout's files stay where they are
        if name != "manifest.json":
            assert (out / name).read_bytes() == data, name
    # a rollback: the previous version folder serves on its own, as it did
    previous = out / served[-2]
    assert same(decisions(previous), sets["new"])
    assert model_sets.set_files(out) == sorted((out / served[-1]).glob("*.onnx")) + [out / served[-1] / "manifest.json"]
    own = load_manifest(out / served[-1])
    assert {card["file"] for card in own["roles"].values()} == {f"{role}_policy.onnx" for role in ROLES}


def test_what_a_killed_export_left_is_ignored_then_deleted(sets, cached_actors, tmp_path: Path) -> None:
    out = tmp_path / "models"
    shutil.copytree(sets["layouts"]["versioned"], out)
    current = versions(out)
    (out / ".manifest.json.k1ll3d.tmp").write_text('{"roles": {}')
    (out / f"{model_sets.STAGING}k1ll3d").mkdir()
    (out / f"{model_sets.STAGING}k1ll3d" / "store_policy.onnx").write_bytes(b"half a mod")
    orphan = out / "20260101T000000000000Z-0badc0de"  # complete, renamed, never switched to
    shutil.copytree(out / current[0], orphan)
    assert same(decisions(out), sets["old"])
    manifest = export_run(sets["new_run"], out)
    assert not leftovers(out)
    assert versions(out) == sorted([*current, manifest["version"]])
    assert same(decisions(out), sets["new"])


def _report(model_set: dict | None) -> EvaluationReport:
    """An evaluation of ``model_set`` (``model_sets.served_set``)."""
    kpis = {"cost_per_day": Interval(12.5, 12.0, 13.0), "fill_rate": Interval(0.97, 0.96, 0.98)}
    entry = PresetResult(policies={"learned_hierarchy": kpis}, differences={"learned_hierarchy": {}},
                         best_rule="tuned_base_stock", bound=Interval(8.0, 7.5, 8.5), gap_to_bound={}, optimum=None)
    return EvaluationReport(seeds=2, first_seed=0, models="models", presets={"steady": entry}, model_set=model_set)


def test_record_evaluation_rewrites_both_manifests_atomically(sets, tmp_path: Path) -> None:
    """Interrupted at any step, the served manifest is as before, or (interrupted after its
    replace) complete with the evaluation; the version's own manifest gets it too."""
    out = tmp_path / "models"
    shutil.copytree(sets["layouts"]["versioned"], out)
    version = versions(out)[0]
    before = (out / "manifest.json").read_bytes()
    report = _report(model_sets.served_set(out)[1])
    steady = {"best_rule": "tuned_base_stock", "bound": 8.0, "optimum": None,
              "policies": {"learned_hierarchy": {"cost_per_day": 12.5, "fill_rate": 0.97}}}
    expected = {"command": "", "seeds": 2, "presets": {"steady": steady}}
    outcomes = []
    for step in range(100):
        with pytest.MonkeyPatch.context() as mp:
            done = interrupt_at(mp, step)
            try:
                record_evaluation(out, report)
            except Interrupted:
                outcomes.append("old" if (out / "manifest.json").read_bytes() == before else "new")
                if outcomes[-1] == "new":
                    assert load_manifest(out)["evaluation"] == expected
                assert not leftovers(out)
                continue
        break
    assert done == ["os.fsync", "os.replace", "os.fsync"] * 2  # the version's manifest, then the served one
    assert outcomes == ["old"] * 5 + ["new"]
    for folder in (out, out / version):
        assert load_manifest(folder)["evaluation"] == expected
    assert not leftovers(out)
    assert same(decisions(out), sets["old"])


def test_write_atomic_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    files.write_bytes_atomic(path, b"old contents")

    def half_then_fail(file) -> None:
        file.write(b"new con")
        raise Interrupted("killed mid-write")

    with pytest.raises(Interrupted):
        files.write_atomic(path, half_then_fail)
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]
    files.write_json_atomic(path, {"a": np.float32(0.5)})
    assert json.loads(path.read_text()) == {"a": 0.5} and oct(path.stat().st_mode & 0o777) == "0o644"
