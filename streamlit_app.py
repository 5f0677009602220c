"""Entry point: ``streamlit run streamlit_app.py``. Pages live in ``pages/``; logic in ``core/``."""

import streamlit as st

st.set_page_config(page_title="HMARL retail inventory lab", page_icon=":package:", layout="wide")
navigation = st.navigation([
    st.Page("pages/live_twin.py", title="Live twin", icon=":material/play_circle:", default=True),
    st.Page("pages/head_to_head.py", title="Head-to-head", icon=":material/compare_arrows:"),
    st.Page("pages/policy_inspector.py", title="Policy inspector", icon=":material/grid_on:"),
    st.Page("pages/train_and_export.py", title="Train and export", icon=":material/model_training:"),
    st.Page("pages/about.py", title="About", icon=":material/info:"),
])
navigation.run()
