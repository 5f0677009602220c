"""Training environments (SB3 VecEnv, PettingZoo), hierarchical PPO and ONNX export: torch lives here only."""
