"""Writers of one models folder take turns, and what is written is about the set it was measured on.

An export holds the folder's writer lock from its staging folder to the switch: a second writer (another process
or thread) waits a little, then is refused in one line naming the holder, and never deletes the holder's staging
folder. ``record_evaluation`` writes only into the set the evaluation loaded. The app's training runs take turns
across browser sessions and leave no temporary folder. The Live page says why there is no exact optimum and
offers only the policies that apply to the scenario it shows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app import ROOT, _exceptions, assert_clean, needs_models, open_page
from test_atomic_export import (  # noqa: F401  (fixtures)
    _report,
    cached_actors,
    decisions,
    leftovers,
    same,
    sets,
    snapshot,
    versions,
)

from core.evaluation.report import evaluate, record_evaluation
from core.learning import in_app
from core.learning.export import export_run
from core.learning.hierarchy import PhaseRecord
from core.learning.in_app import RunInProgress, in_temporary_folder
from core.serving import model_sets, writer_lock
from core.serving.models import PolicyLoadError, load_manifest
from core.serving.registry import POLICIES, applicable, uniform
from core.serving.writer_lock import LOCK, FolderBusy
from core.simulation.presets import PRESETS

SHORT_WAIT = 0.2  # seconds a refused writer waits here (the default is longer)
SAFETY_TIMEOUT = 120  # seconds: only so that a broken test fails instead of hanging
HOLDER = "python -m core export --from runs/other --out models"


@pytest.fixture
def out(sets, tmp_path: Path) -> Path:  # noqa: F811
    """A versioned models folder serving the old run's set."""
    folder = tmp_path / "models"
    shutil.copytree(sets["layouts"]["versioned"], folder)
    return folder


def without_lock(files: dict[str, bytes]) -> dict[str, bytes]:
    return {name: data for name, data in files.items() if name != LOCK}


def assert_one_line_refusal(exc: BaseException, pid: int, command: str) -> None:
    text = str(exc)
    assert "\n" not in text and f"pid {pid}: {command}" in text and "changed nothing" in text, text


# ------------------------------------------------------------------------------------ two processes

def hold_lock(folder: Path) -> subprocess.Popen:
    """Another process holding ``folder``'s writer lock (as an export would) until it is killed."""
    script = ("import sys\nfrom core.serving.writer_lock import writer_lock\n"
              f"with writer_lock(sys.argv[1], {HOLDER!r}):\n    print('holding', flush=True)\n    sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", script, str(folder)], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    return holder


def test_an_export_while_another_process_writes_is_refused_naming_it(sets, cached_actors, out: Path,  # noqa: F811
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_lock, "WAIT_SECONDS", SHORT_WAIT)
    before = snapshot(out)
    holder = hold_lock(out)
    try:
        with pytest.raises(FolderBusy) as refused:
            export_run(sets["new_run"], out)
        assert isinstance(refused.value, PolicyLoadError)  # the CLI's one-line error, exit 2
        assert_one_line_refusal(refused.value, holder.pid, HOLDER)
        assert without_lock(snapshot(out)) == before  # nothing changed, nothing left
        assert same(decisions(out), sets["old"])
    finally:
        holder.kill()  # a killed writer's lock goes with its process; its lock file stays behind
        holder.wait()
    assert (out / LOCK).exists()
    manifest = export_run(sets["new_run"], out)
    assert manifest["version"] == model_sets.current_version(out)
    assert same(decisions(out), sets["new"])
    assert not (out / LOCK).exists() and not leftovers(out)


# ------------------------------------------------------------------------------------- two threads

def test_two_exports_started_together_one_refused_while_the_other_builds(sets, out: Path,  # noqa: F811
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Whichever gets the lock first stops in its first model file until the other has given up: the other is
    refused naming it, and the staging folder it is building is still there, then published whole."""
    monkeypatch.setattr(writer_lock, "WAIT_SECONDS", SHORT_WAIT)
    runs = {"old export": sets["old_run"], "new export": sets["new_run"]}
    finished = {name: threading.Event() for name in runs}
    gate, outcomes, staging_seen = threading.Lock(), {}, []
    replayed = sets["onnx_files"]

    def export_actor(model, role: str, path: Path) -> None:
        if gate.acquire(blocking=False):  # the first model file of the writer holding the lock
            other = next(name for name in runs if name != threading.current_thread().name)
            assert finished[other].wait(SAFETY_TIMEOUT)
            staging_seen.append(Path(path).parent.is_dir())
        Path(path).write_bytes(replayed[model.num_timesteps, role])

    monkeypatch.setattr("core.learning.export.export_actor", export_actor)
    barrier = threading.Barrier(len(runs))

    def export(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = export_run(runs[name], out, command=name)
        except FolderBusy as exc:
            outcomes[name] = exc
        finally:
            finished[name].set()

    threads = [threading.Thread(target=export, args=(name,), name=name) for name in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY_TIMEOUT)
    published = [name for name, outcome in outcomes.items() if isinstance(outcome, dict)]
    refused = [name for name, outcome in outcomes.items() if isinstance(outcome, FolderBusy)]
    assert len(published) == 1 and len(refused) == 1, outcomes
    assert_one_line_refusal(outcomes[refused[0]], os.getpid(), published[0])
    assert staging_seen == [True]  # the refused writer deleted nothing of the live one's
    assert outcomes[published[0]]["version"] == model_sets.current_version(out)
    assert same(decisions(out), sets["old" if published[0] == "old export" else "new"])
    assert not leftovers(out) and not (out / LOCK).exists()


def test_two_exports_started_together_take_turns(sets, cached_actors, out: Path) -> None:  # noqa: F811
    """Without a gate: each export either waits for the other and then publishes, or is refused naming it; the
    folder serves one whole set, the last one published."""
    runs = {"old export": sets["old_run"], "new export": sets["new_run"]}
    barrier, outcomes = threading.Barrier(len(runs)), {}

    def export(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = export_run(runs[name], out, command=name)
        except FolderBusy as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=export, args=(name,)) for name in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(SAFETY_TIMEOUT)
    published = {outcome["version"]: name for name, outcome in outcomes.items() if isinstance(outcome, dict)}
    assert published, outcomes
    for name, outcome in outcomes.items():
        if isinstance(outcome, FolderBusy):
            assert_one_line_refusal(outcome, os.getpid(), next(n for n in runs if n != name))
    last = published[max(published)]  # versions start with their UTC time: the latest switch serves
    assert model_sets.current_version(out) == max(published)
    assert same(decisions(out), sets["old" if last == "old export" else "new"])
    assert set(published) <= set(versions(out)) and not leftovers(out) and not (out / LOCK).exists()


def test_recording_an_evaluation_while_an_export_builds_is_refused(out: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_lock, "WAIT_SECONDS", SHORT_WAIT)
    served = model_sets.served_set(out)[1]
    before = snapshot(out)
    with model_sets.new_set(out, "an export") as staging:
        (staging / "store_policy.onnx").write_bytes(b"half built")
        with pytest.raises(FolderBusy) as refused:
            record_evaluation(out, _report(served))
        assert_one_line_refusal(refused.value, os.getpid(), "an export")
        assert (staging / "store_policy.onnx").read_bytes() == b"half built"
    assert snapshot(out) == before  # the staging folder and the lock file are gone with their writer
    record_evaluation(out, _report(served))
    assert load_manifest(out)["evaluation"]["seeds"] == 2


# --------------------------------------------------------------------------- --record into its own set

def test_record_evaluation_refuses_once_the_served_set_changed(sets, cached_actors, out: Path) -> None:  # noqa: F811
    policies = {"learned_hierarchy": uniform("learned"), "reorder_point": uniform("reorder_point")}
    report = evaluate(["steady"], 2, out, policies=policies)
    old_version = model_sets.current_version(out)
    assert report.model_set["version"] == old_version
    assert report.model_set["files"] == {p.name: model_sets.sha256(p) for p in (out / old_version).glob("*.onnx")}
    export_run(sets["new_run"], out)  # the set switches before the evaluation is recorded
    before = snapshot(out)
    with pytest.raises(model_sets.ModelSetChanged) as refused:
        record_evaluation(out, report)
    text = str(refused.value)
    assert "\n" not in text and old_version in text and model_sets.current_version(out) in text, text
    assert snapshot(out) == before  # both manifests as they were
    fresh = evaluate(["steady"], 2, out, policies=policies)
    record_evaluation(out, fresh)
    own = load_manifest(out / model_sets.current_version(out))["evaluation"]
    assert own == load_manifest(out)["evaluation"] and own["seeds"] == 2


def test_an_evaluation_loads_one_set_even_if_an_export_switches_meanwhile(sets, cached_actors, out: Path,  # noqa: F811
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """An export that switches the folder to the new set while the evaluation is running changes nothing in it:
    it measures the set it started on, and says which."""
    from core.evaluation import report as report_module

    policies = {"learned_hierarchy": uniform("learned"), "reorder_point": uniform("reorder_point")}
    old_version = model_sets.current_version(out)
    expected = evaluate(["steady"], 2, out / old_version, policies=policies)  # the old set on its own
    real = report_module.evaluate_preset

    def switched_first(*args, **kwargs):
        export_run(sets["new_run"], out)
        return real(*args, **kwargs)

    monkeypatch.setattr(report_module, "evaluate_preset", switched_first)
    during = evaluate(["steady"], 2, out, policies=policies)
    assert model_sets.current_version(out) != old_version
    assert during.model_set["version"] == old_version
    assert during.presets == expected.presets
    with pytest.raises(model_sets.ModelSetChanged):
        record_evaluation(out, during)


# ------------------------------------------------------------------------------------- in-app runs

def stub_training(folder: Path, sets: dict) -> dict:  # noqa: F811
    """What an in-app run leaves in its folder, made the same way (a run folder and its real export, with the
    conversion replayed); returns the export's files as the page keeps them."""
    run = folder / "run"
    shutil.copytree(sets["new_run"], run)
    export_run(run, run / "export", command="streamlit: Train and export")
    return {path.name: path.read_bytes() for path in model_sets.set_files(run / "export")}


def test_an_in_app_run_leaves_no_folder_on_success_or_failure(sets, cached_actors) -> None:  # noqa: F811
    used = []

    def work(folder: Path) -> dict:
        used.append(folder)
        return stub_training(folder, sets)

    files = in_temporary_folder(work)
    assert set(files) == {"manifest.json", "hierarchy_policy.onnx"} | {f"{r}_policy.onnx" for r in
                                                                       ("store", "warehouse", "supplier")}
    assert not used[-1].exists()

    def failing(folder: Path) -> None:
        used.append(folder)
        stub_training(folder, sets)
        raise RuntimeError("torch.onnx.export failed")

    with pytest.raises(RuntimeError, match="torch.onnx.export failed"):
        in_temporary_folder(failing)
    assert not used[-1].exists() and used[-1].parent.exists()
    assert in_temporary_folder(lambda folder: folder.is_dir())  # the lock was released after the failure


def test_a_second_in_app_run_while_one_goes_on_is_refused(sets, cached_actors) -> None:  # noqa: F811
    inside, release = threading.Event(), threading.Event()
    results = {}

    def slow(folder: Path) -> dict:
        files = stub_training(folder, sets)
        inside.set()
        assert release.wait(SAFETY_TIMEOUT)
        return files

    first = threading.Thread(target=lambda: results.update(first=in_temporary_folder(slow)))
    first.start()
    assert inside.wait(SAFETY_TIMEOUT)
    with pytest.raises(RunInProgress, match="another training run is going on"):
        in_temporary_folder(lambda folder: stub_training(folder, sets))
    release.set()
    first.join(SAFETY_TIMEOUT)
    assert "manifest.json" in results["first"]
    assert "manifest.json" in in_temporary_folder(lambda folder: stub_training(folder, sets))  # its turn now


def test_run_in_app_trains_in_the_temporary_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen = []

    def train(config, progress=None) -> str:
        seen.append(Path(config.out))
        Path(config.out).mkdir()
        (Path(config.out) / "checkpoint.zip").write_bytes(b"weights")
        return "run"

    monkeypatch.setattr(in_app, "train_store_policy", train)
    assert in_app.run_in_app(in_app.TrainConfig(out=str(tmp_path / "ignored"))) == "run"
    assert not seen[0].parent.exists() and not (tmp_path / "ignored").exists()


def stub_run_in_app(sets: dict, used: list[Path]):  # noqa: F811
    """``run_in_app`` with the training replaced by ``stub_training`` (the real lock and temporary folder)."""
    def run_in_app(config, progress=None) -> in_app.InAppRun:
        def work(folder: Path) -> in_app.InAppRun:
            used.append(folder)
            files = stub_training(folder, sets)
            record = PhaseRecord(phase=1, role="store", kept=True, cost_before={"steady": 10.0},
                                 cost_after={"steady": 9.9}, relative_cost=0.99, seconds=1.0)
            return in_app.InAppRun(record=record, verdict=in_app.verdict(record), export=files,
                                   trained_policy=files["store_policy.onnx"],
                                   evaluation=[{"Policy": "your run's export (trained stores)"}])
        return in_temporary_folder(work)
    return run_in_app


@needs_models
def test_train_page_refuses_a_second_run_and_offers_a_finished_one_from_memory(sets, cached_actors,  # noqa: F811
                                                                              monkeypatch: pytest.MonkeyPatch
                                                                              ) -> None:
    used: list[Path] = []
    monkeypatch.setattr(in_app, "run_in_app", stub_run_in_app(sets, used))
    at = open_page("train_and_export.py")
    with in_app._ONE_RUN:  # another session's run is going on
        at.button(key="train_go").click().run()
    assert_clean(at)
    assert any("another training run is going on" in w.value for w in at.warning), [w.value for w in at.warning]
    assert "trained_run" not in at.session_state and not used
    at.button(key="train_go").click().run()
    assert_clean(at)
    assert len(used) == 1 and not used[0].exists()  # the run's folder is gone; the page serves its files
    files = at.session_state["trained_run"]["export"]
    assert set(files) == {path.name for path in model_sets.set_files(sets["layouts"]["versioned"])}
    for name in files:
        assert at.download_button(key=f"trained_{name}").label == name
    assert at.download_button(key="trained_policy_download").label == "store_policy_trained.onnx (kept)"
    at.button(key="trained_policy_use").click().run()
    assert_clean(at)
    assert at.session_state["uploaded_models"]["store"] == files["store_policy.onnx"]


# ---------------------------------------------------------------------------------------- Live page

def live_on(preset: str) -> AppTest:
    at = open_page("live_twin.py")
    at.selectbox(key="live_preset").set_value(preset).run()
    assert_clean(at)
    return at


@needs_models
def test_live_says_why_there_is_no_exact_optimum() -> None:
    at = live_on("lost_sales_textbook")
    at.toggle(key="live_references").set_value(True).run()
    assert_clean(at)
    assert any("exact optimum of any policy" in c.value for c in at.caption)  # lead time 5: it fits
    at.slider(key="live_warehouse_to_store").set_value(7).run()
    assert_clean(at)
    notes = [i.value for i in at.info if i.value.startswith("No exact optimum")]
    assert len(notes) == 1 and "transitions (lead time 7 days" in notes[0], notes
    assert any("clairvoyant bound" in c.value for c in at.caption)
    assert not any("exact optimum of any policy" in c.value for c in at.caption)


@needs_models
@pytest.mark.parametrize("preset", list(PRESETS))
def test_live_every_store_option_runs(preset: str) -> None:
    at = live_on(preset)
    picker = at.selectbox(key="live_store")
    keys = applicable(PRESETS[preset])
    assert picker.options == [POLICIES[k].label for k in keys]
    for key in keys:
        at.selectbox(key="live_store").set_value(key).run()
        assert not at.exception, (preset, key, _exceptions(at))
        assert not at.error, (preset, key, [e.value for e in at.error])
        assert at.selectbox(key="live_store").value == key


@needs_models
def test_live_a_choice_that_no_longer_applies_falls_back_with_a_message() -> None:
    capped = POLICIES["tuned_capped_base_stock"]
    at = live_on("lost_sales_textbook")
    at.selectbox(key="live_compare").set_value("reorder_point").run()  # a person's pick (the default follows the
    at.selectbox(key="live_store").set_value(capped.key)                # preset: capped base-stock here)
    at.selectbox(key="live_compare").set_value(capped.key).run()
    assert_clean(at)
    at.selectbox(key="live_preset").set_value("steady").run()  # three stores
    assert_clean(at)
    assert at.selectbox(key="live_store").value == "learned"
    assert at.selectbox(key="live_compare").value == "forecast_base_stock"
    messages = [i.value for i in at.info if capped.label in i.value]
    assert len(messages) == 2 and all("does not apply to this scenario" in m for m in messages), messages
    at.selectbox(key="live_preset").set_value("lost_sales_textbook").run()
    at.selectbox(key="live_store").set_value(capped.key).run()
    at.slider(key="live_num_stores").set_value(3).run()  # the same preset, three stores: capped no longer applies
    assert_clean(at)
    assert at.selectbox(key="live_store").value == "learned"
    assert capped.label not in at.selectbox(key="live_store").options
