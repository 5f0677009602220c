"""Learned role policies at training time: an SB3 model as a ``Chooser``, and the hierarchy
of learned roles as a ``PolicyMix``. (Serving uses ONNX instead: ``core.serving.models``.)"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, MlpExtractor
from torch import nn

from core.agents.menus import SAFETY_FACTORS, Chooser, MenuPolicy, TunedEntry, Tuning, tuned_entry_policy
from core.agents.roles import ROLES
from core.agents.rules import PolicyMix

STANDARD_CLIP = 10.0  # standardised features are clipped to +-this


class Standardize(BaseFeaturesExtractor):
    """The observation normalisation inside every policy: (obs - mean) / std, clipped to +-10, followed by the
    role's tuned safety factor (``TUNED``, the last observation) as it is, clipped to the same range: the rule the
    policy corrects (``ResidualExtractor``).

    Context features (critical ratio, demand CV, lead times) vary little in absolute terms next to
    stock levels; standardised, the network can tell situations apart. The statistics are measured
    once per training phase and saved (and exported) with the model."""

    def __init__(self, observation_space: gym.spaces.Box, mean: list[float], std: list[float]) -> None:
        super().__init__(observation_space, len(mean) + 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        standardised = torch.clamp((observations - self.mean) / self.std, -STANDARD_CLIP, STANDARD_CLIP)
        tuned = torch.clamp(observations[:, -1:], self.mean[-1] - STANDARD_CLIP * self.std[-1],
                            self.mean[-1] + STANDARD_CLIP * self.std[-1])
        return torch.cat([standardised, tuned], dim=1)


class ResidualExtractor(MlpExtractor):
    """SB3's actor and critic networks on the standardised features; the actor's latent carries the tuned safety
    factor (``Standardize``'s last column) on to the head as its last column."""

    def __init__(self, feature_dim: int, *args, **kwargs) -> None:
        super().__init__(feature_dim - 1, *args, **kwargs)
        self.latent_dim_pi += 1

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.policy_net(features[:, :-1]), features[:, -1:]], dim=1)

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        return self.value_net(features[:, :-1])


class SafetyFactorHead(nn.Module):
    """Menu logits from one number per row, the safety factor mu the policy aims at: the tuned safety factor (the
    latent's last column) plus a learned correction, ``correction`` of the rest, which starts at zero, so that a fresh
    policy is the scenario's tuned rule exactly. logits_k = (mu z_k - z_k^2 / 2) / sigma^2, a normal density of
    spread sigma over the menu's safety factors z_k (the softmax drops the term constant in k). The menu is ordered,
    and this head knows it: what is learned about one entry moves its neighbours too, and the greedy entry is the
    z_k nearest mu. sigma is PPO's exploration, fixed (learned, it collapses long before mu has found its place).
    Being linear in mu, the head is a linear layer of rank one (``as_linear``), which is what the ONNX export holds."""

    def __init__(self, latent: int, spread: float) -> None:
        super().__init__()
        self.correction = nn.Linear(latent - 1, 1)
        with torch.no_grad():
            self.correction.weight.zero_()
            self.correction.bias.zero_()
        self.register_buffer("log_spread", torch.tensor(math.log(spread)))
        self.register_buffer("z", torch.tensor(SAFETY_FACTORS, dtype=torch.float32))

    def aim(self, latent: torch.Tensor) -> torch.Tensor:
        """(M,) safety factors aimed at: the tuned one plus the correction."""
        return latent[:, -1] + self.correction(latent[:, :-1])[:, 0]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        precision = torch.exp(-2.0 * self.log_spread)
        return precision * (self.aim(latent)[:, None] * self.z - 0.5 * self.z**2)

    def as_linear(self, features: int) -> tuple[nn.Linear, nn.Linear]:
        """The same logits as the sum of two ``nn.Linear``: one of the latent's correction part, one of the
        ``features`` observations whose last is the tuned safety factor (the ONNX export has no slicing)."""
        correction = nn.Linear(self.correction.in_features, self.z.numel())
        tuned = nn.Linear(features, self.z.numel(), bias=False)
        with torch.no_grad():
            precision = torch.exp(-2.0 * self.log_spread)
            correction.weight.copy_(precision * self.z[:, None] * self.correction.weight)
            correction.bias.copy_(precision * (self.z * self.correction.bias - 0.5 * self.z**2))
            tuned.weight.zero_()
            tuned.weight[:, -1] = precision * self.z
        return correction, tuned


class SafetyFactorPolicy(ActorCriticPolicy):
    """SB3's actor-critic with the ``ResidualExtractor`` and the ``SafetyFactorHead``: it starts out as the tuned
    rule, exploring with spread ``spread`` (standard deviations of demand) around its aim."""

    def __init__(self, *args, spread: float, **kwargs) -> None:
        self.spread = spread
        super().__init__(*args, **kwargs)

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = ResidualExtractor(self.features_dim, net_arch=self.net_arch,
                                               activation_fn=self.activation_fn, device=self.device)

    def _build(self, lr_schedule) -> None:
        super()._build(lr_schedule)
        self.action_net = SafetyFactorHead(self.mlp_extractor.latent_dim_pi, self.spread)
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def aims(self, observations: torch.Tensor) -> torch.Tensor:
        """(M,) safety factors the policy aims at."""
        latent = self.mlp_extractor.forward_actor(self.extract_features(observations, self.pi_features_extractor))
        return self.action_net.aim(latent)

    def actor_parameters(self) -> list[nn.Parameter]:
        """What decides the aims: the actor's layers and the head's correction."""
        return [*self.mlp_extractor.policy_net.parameters(), *self.action_net.correction.parameters()]


def model_chooser(model) -> Chooser:
    """Greedy (most probable) menu index of an SB3 PPO model, batched, without gradients."""
    policy = model.policy

    def choose(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = policy.get_distribution(torch.as_tensor(obs, dtype=torch.float32)).distribution.logits
        return logits.argmax(dim=1).numpy()

    return choose


def model_mix(models: dict[str, object], tuning: Tuning) -> PolicyMix:
    """The SB3 models of the roles in ``models`` (training time: torch); the tuned entry for the others."""
    return PolicyMix(*(MenuPolicy(role, model_chooser(models[role]), tuning=tuning) if role in models
                       else tuned_entry_policy(role, tuning) for role in ROLES))


def frozen_choosers(models: dict[str, object], trained_role: str) -> dict[str, Chooser]:
    """Choosers for every role but ``trained_role``: learned where available, else the tuned entry."""
    return {role: model_chooser(models[role]) if role in models else TunedEntry() for role in ROLES
            if role != trained_role}
