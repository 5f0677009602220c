"""Entry point: ``streamlit run streamlit_app.py``. Pages live in ``pages/``; logic in ``core/``.

A page that raises an error it did not expect shows it in one line (``core.app.errors``), with the traceback in the
server's log; its widgets keep their values. ``st.rerun`` and ``st.stop`` pass through (they are not ``Exception``s),
and so does an error a fragment has already shown in its own place (``FragmentHandledException``)."""

import streamlit as st
from streamlit.errors import FragmentHandledException
from streamlit.logger import get_logger

from core.app.errors import unexpected_error

st.set_page_config(page_title="HMARL retail inventory lab", page_icon=":package:", layout="wide")
navigation = st.navigation([
    st.Page("pages/live_twin.py", title="Live twin", icon=":material/play_circle:", default=True),
    st.Page("pages/head_to_head.py", title="Head-to-head", icon=":material/compare_arrows:"),
    st.Page("pages/policy_inspector.py", title="Policy inspector", icon=":material/grid_on:"),
    st.Page("pages/train_and_export.py", title="Train and export", icon=":material/model_training:"),
    st.Page("pages/about.py", title="About", icon=":material/info:"),
])
try:
    navigation.run()
except FragmentHandledException:
    raise
except Exception as exc:  # noqa: BLE001 - any error a page did not expect: one line, never a traceback
    get_logger(__name__).error("page %s stopped", navigation.title, exc_info=exc)
    st.error(unexpected_error(exc))
