"""Tools that drive the served app from outside, as a person does: the browser harness and its benchmark (no
streamlit import: the app runs in its own server process)."""
