"""Train and export: a short store-policy training run, its evaluation and export; downloads;
and uploading an ONNX policy to use on the Live page."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import streamlit as st

from core.agents.roles import ROLES
from core.serving.guard import MAX_MODEL_BYTES
from core.serving.model_sets import set_files
from core.serving.models import EXPORTED_MODELS, PolicyLoadError
from pages.common import KEEP, ROLE_LABELS, uploaded_chooser, uploaded_models

DEPLOY_SCRIPT = EXPORTED_MODELS / "deploy_policy.py"

st.title("Train and export")

st.header("Download the shipped policies")
shipped = [p for p in set_files(EXPORTED_MODELS) + [DEPLOY_SCRIPT] if p.exists()]
for row in range(0, len(shipped), 3):  # three to a row: the file names stay readable
    for col, path in zip(st.columns(3), shipped[row: row + 3], strict=False):
        col.download_button(path.name, path.read_bytes(), file_name=path.name, key=f"download_{path.name}")

st.header("Train a store policy")
st.caption("Phase 1 only (the store policy, shared by every store), on randomised scenarios; the warehouse and "
           "supplier keep their rule. About a minute on 2 cores for the default budget.")
budget = st.select_slider("Budget (agent transitions)", [50_000, 100_000, 200_000, 400_000, 800_000], 400_000,
                          key="train_budget", persist_state=KEEP)
if st.button("Train, evaluate and export", key="train_go"):
    from core.evaluation.report import LEARNED, evaluate, markdown
    from core.learning.export import export_run
    from core.learning.training import TrainConfig, run_phases
    from core.serving.registry import uniform

    folder = Path(st.session_state.setdefault("train_dir", tempfile.mkdtemp(prefix="hmarl_")))
    run_dir = folder / f"run_{budget}"
    bar = st.progress(0.0, text="training the store policy")
    with st.spinner("training"):
        config = TrainConfig(out=str(run_dir), timesteps=budget, store_timesteps=budget, progress_bar=False,
                             acceptance_seeds=4)
        hierarchy = run_phases(config, [1], progress=lambda f: bar.progress(f, text=f"training: {100 * f:.0f}%"))
    record = hierarchy.phases[-1]
    bar.progress(1.0, text="trained")
    verdict = "kept" if record.kept else "not kept: the stores keep their rule-based policy"
    st.write(f"Held-out system cost, new / previous: **x{record.relative_cost:.3f}** ({verdict}).")
    with st.spinner("exporting and evaluating"):
        export_run(run_dir, run_dir / "export", command="streamlit: Train and export")
        policies = {key: uniform(key) for key in ("reorder_point", "tuned_base_stock", "forecast_base_stock")}
        policies["phase1_stores"] = LEARNED["phase1_stores"]
        report = evaluate(["steady"], 10, run_dir / "export", policies=policies)
    st.markdown(markdown(report))
    st.session_state.trained_export = str(run_dir / "export")

if "trained_export" in st.session_state:
    export = Path(st.session_state.trained_export)
    st.markdown("**Your trained export**")
    files = set_files(export)
    for col, path in zip(st.columns(len(files)), files, strict=True):
        col.download_button(path.name, path.read_bytes(), file_name=path.name, key=f"trained_{path.name}")

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
        st.success(f"{upload.name} ({hashlib.sha256(data).hexdigest()[:12]}) now serves the {role} role "
                   "on the Live page for this browser session.")
if uploaded_models():
    st.write("Uploaded in this session: " + ", ".join(uploaded_models()))
    if st.button("Forget uploaded policies", key="upload_clear"):
        uploaded_models().clear()
        st.session_state.upload_generation += 1
        st.rerun()
