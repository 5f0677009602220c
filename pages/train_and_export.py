"""Train and export: a short store-policy training run, its evaluation and export; downloads;
and uploading an ONNX policy to use on the Live page."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import streamlit as st

from core.agents.roles import ROLES
from core.evaluation.plots import learning_curves_figure
from core.serving.guard import MAX_MODEL_BYTES
from core.serving.model_sets import set_files
from core.serving.models import EXPORTED_MODELS, PolicyLoadError
from pages.common import KEEP, ROLE_LABELS, uploaded_chooser, uploaded_label, uploaded_models, uploaded_names

DEPLOY_SCRIPT = EXPORTED_MODELS / "deploy_policy.py"
CHECKS_SCRIPT = EXPORTED_MODELS / "onnx_checks.py"  # deploy_policy.py imports it from its own folder


def download(column, path: Path, key: str, label: str | None = None) -> None:
    """A button that downloads ``path``; the page does not rerun (a rerun would redraw it under a person's next
    click)."""
    column.download_button(label or path.name, path.read_bytes(), file_name=path.name, key=key, on_click="ignore")


st.title("Train and export")

st.header("Download the shipped policies")
shipped = [p for p in set_files(EXPORTED_MODELS) + [DEPLOY_SCRIPT, CHECKS_SCRIPT] if p.exists()]
for row in range(0, len(shipped), 3):  # three to a row: the file names stay readable
    for col, path in zip(st.columns(3), shipped[row: row + 3], strict=False):
        download(col, path, f"download_{path.name}")

st.header("Train a store policy")
st.caption("Phase 1 only (the store policy, shared by every store), on randomised scenarios; the warehouse and "
           "supplier keep their rule. About a minute on 2 cores for the default budget.")
budget = st.select_slider("Budget (agent transitions)", [50_000, 100_000, 200_000, 400_000, 800_000], 400_000,
                          key="train_budget", persist_state=KEEP)
if st.button("Train, evaluate and export", key="train_go"):
    from core.evaluation.report import LEARNED, evaluate, markdown
    from core.learning.in_app import curve_note, train_store_policy
    from core.learning.training import TrainConfig, TrainingProgress
    from core.serving.registry import uniform

    folder = Path(st.session_state.setdefault("train_dir", tempfile.mkdtemp(prefix="hmarl_")))
    bar = st.progress(0.0, text="training the store policy")
    live_curve = st.empty()
    drawn = {"points": 0}

    def show(progress: TrainingProgress) -> None:
        """The progress bar on every step; the learning curve so far whenever it has a new point."""
        bar.progress(progress.fraction, text=f"training: {100 * progress.fraction:.0f}%")
        points = len(progress.episodes) + len(progress.updates)
        if points > drawn["points"]:
            drawn["points"] = points
            live_curve.plotly_chart(learning_curves_figure(progress.episodes, progress.updates,
                                                           "Learning curves of the store policy, so far"),
                                    width="stretch")

    with st.spinner("training, then checking the policy on held-out demand and exporting it"):
        config = TrainConfig(out=str(folder / f"run_{budget}"), timesteps=budget, store_timesteps=budget,
                             progress_bar=False, acceptance_seeds=4)
        trained = train_store_policy(config, progress=show)
    bar.progress(1.0, text="trained")
    live_curve.empty()
    with st.spinner("evaluating"):
        policies = {key: uniform(key) for key in ("reorder_point", "tuned_base_stock", "forecast_base_stock")}
        policies["phase1_stores"] = LEARNED["phase1_stores"]
        report = evaluate(["steady"], 10, trained.export, policies=policies)
    st.session_state.trained_run = {"verdict": trained.verdict, "kept": trained.record.kept,
                                    "curve_note": curve_note(config, trained),
                                    "export": str(trained.export), "policy": str(trained.trained_policy),
                                    "episodes": trained.episodes, "updates": trained.updates,
                                    "report": markdown(report)}

if "trained_run" in st.session_state:
    trained_run = st.session_state.trained_run
    st.markdown(f"**Your store policy: {trained_run['verdict']}.**")
    if trained_run["episodes"] or trained_run["updates"]:
        st.plotly_chart(learning_curves_figure(trained_run["episodes"], trained_run["updates"],
                                               "Learning curves of the store policy"), width="stretch",
                        key="train_curves")
    st.caption(trained_run["curve_note"])
    st.markdown(trained_run["report"])
    st.caption("phase1_stores: the run's export, which serves the trained policy only if it was kept.")
    policy = Path(trained_run["policy"])
    kept = "kept" if trained_run["kept"] else "not kept"
    left, right = st.columns(2)
    download(left, policy, "trained_policy_download", label=f"{policy.name} ({kept})")
    if right.button("Use this store policy on the other pages (this session)", key="trained_policy_use"):
        data = policy.read_bytes()
        try:
            uploaded_chooser("store", data, hashlib.sha256(data).hexdigest())
        except PolicyLoadError as exc:
            st.error(f"The trained policy cannot be used: {exc}.")
        else:
            uploaded_models()["store"] = data
            uploaded_names()["store"] = f"{policy.name} ({kept})"
    st.markdown("**The run's export** (the hierarchy it ended with)")
    files = set_files(Path(trained_run["export"]))
    for col, path in zip(st.columns(len(files)), files, strict=True):
        download(col, path, f"trained_{path.name}")

st.header("Upload a policy")
st.caption("An ONNX file exported by this project (input: the role's observation features; outputs: action, "
           f"probabilities), at most {MAX_MODEL_BYTES // 2**20} MB. It is checked before use (operators, size, "
           "cost, decisions over the training range); if it passes, the Live page's 'learned' choice uses it.")
role = st.selectbox("Role", ROLES, format_func=ROLE_LABELS.get, key="upload_role", persist_state=KEEP)
generation = st.session_state.setdefault("upload_generation", 0)  # a new uploader forgets its file
upload = st.file_uploader("ONNX policy", type=["onnx"], key=f"upload_file_{generation}",
                          max_upload_size=MAX_MODEL_BYTES // 2**20)
if upload is not None and upload.size > MAX_MODEL_BYTES:
    st.error(f"Rejected {upload.name}: {upload.size:,} bytes; allowed: at most {MAX_MODEL_BYTES:,}. "
             "Nothing was changed.")
elif upload is not None:
    data = upload.getvalue()
    try:
        uploaded_chooser(role, data, hashlib.sha256(data).hexdigest())  # checked once, then cached
    except PolicyLoadError as exc:
        st.error(f"Rejected {upload.name}: {exc}. Nothing was changed.")
    else:
        uploaded_models()[role] = data
        uploaded_names()[role] = upload.name
        st.success(f"{upload.name} ({hashlib.sha256(data).hexdigest()[:12]}) now serves the {role} role "
                   "on the Live page for this browser session.")
if uploaded_models():
    st.write("Uploaded in this session (used instead of the shipped policies): " + ", ".join(
        f"{role} ({uploaded_label(role)})" for role in uploaded_models()))
    if st.button("Forget uploaded policies", key="upload_clear"):
        uploaded_models().clear()
        uploaded_names().clear()
        st.session_state.upload_generation += 1
        st.rerun()
