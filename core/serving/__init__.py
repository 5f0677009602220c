"""Exported policies served with numpy and onnxruntime only (never torch), and the policy registry."""
