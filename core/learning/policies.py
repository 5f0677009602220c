"""Learned role policies at training time: an SB3 model as a ``Chooser``, and the hierarchy
of learned roles as a ``PolicyMix``. (Serving uses ONNX instead: ``core.serving.models``.)"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

from core.agents.menus import Chooser, MenuPolicy, reference_policy
from core.agents.roles import ROLES
from core.agents.rules import PolicyMix

STANDARD_CLIP = 10.0  # standardised features are clipped to +-this


class Standardize(BaseFeaturesExtractor):
    """The observation normalisation inside every policy: (obs - mean) / std, clipped to +-10.

    Context features (critical ratio, demand CV, lead times) vary little in absolute terms next to
    stock levels; standardised, the network can tell situations apart. The statistics are measured
    once per training phase and saved (and exported) with the model."""

    def __init__(self, observation_space: gym.spaces.Box, mean: list[float], std: list[float]) -> None:
        super().__init__(observation_space, len(mean))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return torch.clamp((observations - self.mean) / self.std, -STANDARD_CLIP, STANDARD_CLIP)


def model_chooser(model) -> Chooser:
    """Greedy (most probable) menu index of an SB3 PPO model, batched, without gradients."""
    policy = model.policy

    def choose(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = policy.get_distribution(torch.as_tensor(obs, dtype=torch.float32)).distribution.logits
        return logits.argmax(dim=1).numpy()

    return choose


def model_mix(models: dict[str, object]) -> PolicyMix:
    """The SB3 models of the roles in ``models`` (training time: torch); the reference menu entry for the others."""
    return PolicyMix(*(MenuPolicy(role, model_chooser(models[role])) if role in models
                       else reference_policy(role) for role in ROLES))


def frozen_choosers(models: dict[str, object], trained_role: str) -> dict[str, Chooser]:
    """Choosers for every role but ``trained_role``: learned where available."""
    mix = model_mix(models)
    return {role: getattr(mix, role).choose for role in ROLES if role != trained_role}
