"""Learned role policies at training time: an SB3 model as a ``Chooser``, and the hierarchy
of learned roles as a ``PolicyMix``. (Serving uses ONNX instead: ``core.serving.models``.)"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from core.agents.menus import SAFETY_FACTORS, Chooser, MenuPolicy, reference_policy
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


class SafetyFactorHead(nn.Module):
    """Menu logits from one number per row, the safety factor mu the policy aims at:
    logits_k = (mu z_k - z_k^2 / 2) / sigma^2, a normal density of spread sigma over the menu's
    safety factors z_k (the softmax drops the term constant in k). The menu is ordered, and this head
    knows it: what is learned about one entry moves its neighbours too, and the greedy entry is the
    z_k nearest mu. sigma is PPO's exploration, fixed (learned, it collapses long before mu has found
    its place). Being linear in mu, the head is a linear layer of rank one (``as_linear``), which is
    what the ONNX export holds."""

    def __init__(self, latent: int, safety_factor: float, spread: float) -> None:
        super().__init__()
        self.aim = nn.Linear(latent, 1)
        with torch.no_grad():
            self.aim.weight.mul_(0.01)
            self.aim.bias.fill_(safety_factor)
        self.register_buffer("log_spread", torch.tensor(math.log(spread)))
        self.register_buffer("z", torch.tensor(SAFETY_FACTORS, dtype=torch.float32))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        precision = torch.exp(-2.0 * self.log_spread)
        return precision * (self.aim(latent) * self.z - 0.5 * self.z**2)

    def as_linear(self) -> nn.Linear:
        """The same logits as one ``nn.Linear``."""
        linear = nn.Linear(self.aim.in_features, self.z.numel())
        with torch.no_grad():
            precision = torch.exp(-2.0 * self.log_spread)
            linear.weight.copy_(precision * self.z[:, None] * self.aim.weight)
            linear.bias.copy_(precision * (self.z * self.aim.bias - 0.5 * self.z**2))
        return linear


class SafetyFactorPolicy(ActorCriticPolicy):
    """SB3's actor-critic with the ``SafetyFactorHead``, starting out aiming at ``safety_factor`` (the role's
    reference entry) with exploration spread ``spread`` (standard deviations of demand)."""

    def __init__(self, *args, safety_factor: float, spread: float, **kwargs) -> None:
        self.start = (safety_factor, spread)
        super().__init__(*args, **kwargs)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = SafetyFactorHead(self.mlp_extractor.latent_dim_pi, *self.start)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def aims(self, observations: torch.Tensor) -> torch.Tensor:
        """(M,) safety factors the policy aims at."""
        latent = self.mlp_extractor.forward_actor(self.extract_features(observations, self.pi_features_extractor))
        return self.action_net.aim(latent)[:, 0]

    def actor_parameters(self) -> list[nn.Parameter]:
        """What decides the aims: the actor's layers and the head's aim."""
        return [*self.mlp_extractor.policy_net.parameters(), *self.action_net.aim.parameters()]

    def aim_at(self, observations: np.ndarray, targets: np.ndarray, steps: int = 2000, seed: int = 0) -> float:
        """Fit the actor so that it aims at ``targets`` (M,) on ``observations`` (M, F) (least squares, Adam):
        a start from a rule that differs by situation. Returns the root-mean-square miss."""
        generator = torch.Generator().manual_seed(seed)
        x = torch.as_tensor(observations, dtype=torch.float32)
        y = torch.as_tensor(targets, dtype=torch.float32)
        optimizer = torch.optim.Adam(self.actor_parameters(), lr=3e-3)
        for _ in range(steps):
            rows = torch.randint(0, len(x), (min(4096, len(x)),), generator=generator)
            loss = torch.mean((self.aims(x[rows]) - y[rows]) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            return float(torch.sqrt(torch.mean((self.aims(x) - y) ** 2)))


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
