"""HMARL retail inventory lab: digital twin, agents, training, evaluation and ONNX export."""
