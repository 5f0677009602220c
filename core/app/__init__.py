"""What the Streamlit pages compute and draw; no streamlit import here."""
