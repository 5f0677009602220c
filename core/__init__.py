"""HMARL retail inventory lab.

Layers, each importing only from the ones above it in this list:

- ``core.simulation``: scenarios, demand, the batched twin, the reconciliation ledger, rollouts and KPIs.
- ``core.agents``: the roles, what they observe, their action menu, rule-based policies and their tuner.
- ``core.serving``: exported ONNX policies checked and served with onnxruntime (never torch), the policy registry.
- ``core.evaluation``: statistics on common random numbers, the evaluation report, the twin's self-checks.
- ``core.learning``: the training environments, hierarchical PPO, ONNX export (torch and SB3 live here only).
- ``core.app``: what the Streamlit pages compute and draw (``core`` never imports streamlit).
- ``core.tools``: the served app driven in Chromium as a person does (the browser harness and its benchmark).

``core.cli`` and ``core.bench`` sit on top.
"""
