"""Learned role policies at training time: an SB3 model as a ``Chooser``, and the hierarchy
of learned roles as a ``PolicyMix``. (Serving uses ONNX instead: ``core.serving``.)"""

from __future__ import annotations

import numpy as np
import torch

from core.menus import DEFAULT_SAFETY_FACTOR, Chooser, MenuPolicy, forecast_base_stock
from core.policies import ROLES, PolicyMix


def model_chooser(model) -> Chooser:
    """Greedy (most probable) menu index of an SB3 PPO model, batched, without gradients."""
    policy = model.policy

    def choose(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = policy.get_distribution(torch.as_tensor(obs, dtype=torch.float32)).distribution.logits
        return logits.argmax(dim=1).numpy()

    return choose


def learned_mix(models: dict[str, object]) -> PolicyMix:
    """Learned policies for the roles in ``models``; the default menu entry for the others."""
    return PolicyMix(*(MenuPolicy(role, model_chooser(models[role])) if role in models
                       else forecast_base_stock(role, DEFAULT_SAFETY_FACTOR) for role in ROLES))


def frozen_choosers(models: dict[str, object], trained_role: str) -> dict[str, Chooser]:
    """Choosers for every role but ``trained_role``: learned where available."""
    mix = learned_mix(models)
    return {role: getattr(mix, role).choose for role in ROLES if role != trained_role}
