"""Train and export: a short store-policy training run, its evaluation and export; downloads;
and uploading an ONNX policy to use on the Live page."""

from __future__ import annotations

import hashlib

import streamlit as st

from core.agents.roles import ROLES
from core.evaluation.plots import learning_curves_figure
from core.serving.guard import MAX_MODEL_BYTES
from core.serving.model_sets import set_files
from core.serving.models import EXPORTED_MODELS, PolicyLoadError
from pages.common import KEEP, ROLE_LABELS, uploaded_chooser, uploaded_label, uploaded_models, uploaded_names

DEPLOY_FILES = [EXPORTED_MODELS / name for name in (
    "deploy_policy.py",
    "onnx_checks.py",  # deploy_policy.py imports it from its own folder
    "example_states.csv",  # the batch mode's example input (--input)
    "example_observation.json",  # the single mode's (--observation)
)]


def download(column, name: str, data: bytes, key: str, label: str | None = None) -> None:
    """A button that downloads ``data`` as file ``name``; the page does not rerun (a rerun would redraw it under a
    person's next click)."""
    column.download_button(label or name, data, file_name=name, key=key, on_click="ignore")


st.title("Train and export")

st.header("Download the shipped policies")
st.caption("The policies and their manifest, the deployment script with the checks it loads, and an example input for "
           "each of its modes: put them in one folder and run `python deploy_policy.py --input example_states.csv "
           "--output orders.csv`, or `python deploy_policy.py --role store --observation example_observation.json`.")
shipped = [p for p in set_files(EXPORTED_MODELS) + DEPLOY_FILES if p.exists()]
for row in range(0, len(shipped), 3):  # three to a row: the file names stay readable
    for col, path in zip(st.columns(3), shipped[row: row + 3], strict=False):
        download(col, path.name, path.read_bytes(), f"download_{path.name}")

st.header("Train a store policy")
st.caption("Phase 1 only (the store policy, shared by every store), on randomised scenarios; the warehouse and "
           "supplier keep their rule. About a minute on 2 cores for the default budget.")
budget = st.select_slider("Budget (agent transitions)", [50_000, 100_000, 200_000, 400_000, 800_000], 400_000,
                          key="train_budget", persist_state=KEEP)
if st.button("Train, evaluate and export", key="train_go"):
    from core.learning.in_app import (
        EVALUATION_PRESET,
        EVALUATION_SEEDS,
        TRAINED_FILE,
        RunInProgress,
        acceptance_rows,
        curve_note,
        in_app_config,
        run_in_app,
    )
    from core.learning.training import TrainingProgress

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

    config = in_app_config(budget)
    try:
        with st.spinner("training, then checking the policy on held-out demand, exporting and evaluating it"):
            trained = run_in_app(config, progress=show)  # in a temporary folder, removed afterwards
    except RunInProgress as exc:
        bar.empty()
        st.warning(f"Not started: {exc}.")
    else:
        bar.progress(1.0, text="trained")
        live_curve.empty()
        st.session_state.trained_run = {"verdict": trained.verdict, "kept": trained.record.kept,
                                        "curve_note": curve_note(config, trained), "export": trained.export,
                                        "policy": trained.trained_policy, "policy_name": TRAINED_FILE,
                                        "episodes": trained.episodes, "updates": trained.updates,
                                        "acceptance": acceptance_rows(trained.record),
                                        "acceptance_seeds": config.acceptance_seeds, "report": trained.evaluation,
                                        "report_scope": (EVALUATION_PRESET, EVALUATION_SEEDS)}

if "trained_run" in st.session_state:
    trained_run = st.session_state.trained_run
    st.markdown(f"**Your store policy: {trained_run['verdict']}.**")
    st.markdown(f"**The acceptance check** (which decides kept or not): held-out cost per day on "
                f"{trained_run['acceptance_seeds']} demand paths of each preset, before the run and with the trained "
                "stores (the warehouse and supplier keep their rule)")
    st.dataframe(trained_run["acceptance"], hide_index=True, width="stretch", key="train_acceptance")
    if trained_run["episodes"] or trained_run["updates"]:
        st.plotly_chart(learning_curves_figure(trained_run["episodes"], trained_run["updates"],
                                               "Learning curves of the store policy"), width="stretch",
                        key="train_curves")
    st.caption(trained_run["curve_note"])
    preset, paths = trained_run["report_scope"]
    st.markdown(f"**The run's export on {preset} alone**, {paths} evaluation demand paths (not the acceptance "
                "check's), every policy on the same customers")
    st.dataframe(trained_run["report"], hide_index=True, width="stretch", key="train_evaluation")
    st.caption("Your run's export: the hierarchy the run ended with, the trained stores if the run was kept and the "
               "stores' rule if not, the warehouse and supplier on their tuned rule. One preset and few paths: "
               "the acceptance check above weighs every preset.")
    name, data = trained_run["policy_name"], trained_run["policy"]
    kept = "kept" if trained_run["kept"] else "not kept"
    left, right = st.columns(2)
    download(left, name, data, "trained_policy_download", label=f"{name} ({kept})")
    if right.button("Use this store policy on the other pages (this session)", key="trained_policy_use"):
        try:
            uploaded_chooser("store", data, hashlib.sha256(data).hexdigest())
        except PolicyLoadError as exc:
            st.error(f"The trained policy cannot be used: {exc}.")
        else:
            uploaded_models()["store"] = data
            uploaded_names()["store"] = f"{name} ({kept})"
    st.markdown("**The run's export** (the hierarchy it ended with)")
    files = trained_run["export"]
    for col, (file_name, contents) in zip(st.columns(len(files)), files.items(), strict=True):
        download(col, file_name, contents, f"trained_{file_name}")

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
