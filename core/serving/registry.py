"""The policy registry: every policy a person can pick, once, with its key, display label and factory.

The CLI's ``--policy`` SPECs, the app's pickers and the evaluation report all read this table. A key names
a role policy kind (``reorder_point``, ``tuned_base_stock``, ``forecast_base_stock``, ``learned``, ``random``);
a mix gives each role a key. ``learned`` is served from ONNX (``core.serving.models``); the ``tuned_*`` rules
are tuned for the scenario by simulation (``core.agents.tuning``), once per scenario; the rest are fixed rules.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.agents.menus import Chooser, MenuPolicy, forecast_base_stock, reference_policy
from core.agents.roles import ROLES
from core.agents.rules import PolicyMix, RandomPolicy, ReorderPoint, RolePolicy
from core.agents.tuning import tune_base_stock, tune_capped_base_stock, tune_menu
from core.serving.models import EXPORTED_MODELS, learned_mix, learned_policy
from core.simulation.scenario import Scenario


@dataclass
class Sources:
    """What the factories may draw on: the exported models (or choosers that replace them, such as a
    person's uploads) and a random generator."""

    models: Path = EXPORTED_MODELS
    learned: Mapping[str, Chooser] = field(default_factory=dict)  # role -> chooser, instead of ``models``
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


class PolicyChoiceError(ValueError):
    """A policy key that the registry does not have, or that does not apply to the scenario."""


@functools.lru_cache(maxsize=32)
def tuned_mix(scenario: Scenario) -> PolicyMix:
    """Base-stock levels tuned for ``scenario`` (about 1.5 s; kept for the 32 latest scenarios)."""
    return tune_base_stock(scenario).mix()


@functools.lru_cache(maxsize=32)
def tuned_menu(scenario: Scenario) -> dict[str, float]:
    """Each role's best constant menu entry (safety factor) on ``scenario`` (about 2 s)."""
    return tune_menu(scenario, seeds=8)["safety_factors"]


@functools.lru_cache(maxsize=32)
def tuned_capped_mix(scenario: Scenario) -> PolicyMix:
    """Capped base-stock (S, cap) tuned for a single-store ``scenario`` (about 2 s)."""
    return tune_capped_base_stock(scenario).mix()


def _learned(role: str, scenario: Scenario, sources: Sources) -> RolePolicy:
    if role in sources.learned:
        return MenuPolicy(role, sources.learned[role])
    return learned_policy(role, sources.models)


@dataclass(frozen=True)
class PolicyKind:
    """One entry of the registry."""

    key: str
    label: str  # what the app shows
    description: str
    build: Callable[[str, Scenario, Sources], RolePolicy]  # (role, scenario, sources) -> the role's policy
    rule: bool = True  # a rule-based policy (a candidate for the best rule)
    applies: Callable[[Scenario], bool] = lambda scenario: True


POLICIES = {kind.key: kind for kind in (
    PolicyKind("learned", "learned (PPO, ONNX)", "the exported PPO policies, served by onnxruntime", _learned,
               rule=False),
    PolicyKind("forecast_base_stock", "forecast base-stock",
               "every role on its reference menu entry: order up to the forecast plus z standard deviations",
               lambda role, scenario, sources: reference_policy(role)),
    PolicyKind("tuned_forecast_base_stock", "forecast base-stock, tuned",
               "every role on the constant menu entry that is best for the scenario (tuned by simulation)",
               lambda role, scenario, sources: forecast_base_stock(role, tuned_menu(scenario)[role])),
    PolicyKind("tuned_base_stock", "tuned base-stock", "base-stock levels tuned by simulation for the scenario",
               lambda role, scenario, sources: getattr(tuned_mix(scenario), role)),
    PolicyKind("tuned_capped_base_stock", "capped base-stock, tuned",
               "order up to S but at most a cap a day (Xin 2021), tuned by simulation; one store only",
               lambda role, scenario, sources: getattr(tuned_capped_mix(scenario), role),
               applies=lambda scenario: scenario.num_stores == 1),
    PolicyKind("reorder_point", "reorder point (s, S)", "textbook (s, S): the original project's baseline",
               lambda role, scenario, sources: ReorderPoint(role)),
    PolicyKind("random", "random", "uniform random quantities",
               lambda role, scenario, sources: RandomPolicy(role, sources.rng), rule=False),
)}


def applicable(scenario: Scenario) -> list[str]:
    """The registry keys that apply to ``scenario``."""
    return [key for key, kind in POLICIES.items() if kind.applies(scenario)]


def uniform(key: str) -> dict[str, str]:
    """Every role on policy ``key``."""
    return dict.fromkeys(ROLES, key)


def mix_of(choices: Mapping[str, str], scenario: Scenario, sources: Sources | None = None) -> PolicyMix:
    """The mix that gives each role the policy its key names. With every role learned from the exported
    models, the hierarchy decides each day in one onnxruntime call."""
    sources = sources or Sources()
    for role in ROLES:
        key = choices.get(role)
        if key not in POLICIES:
            raise PolicyChoiceError(f"policy for {role}: got {key!r}; allowed: {', '.join(POLICIES)}")
        if not POLICIES[key].applies(scenario):
            raise PolicyChoiceError(f"policy for {role}: {key} does not apply to scenario {scenario.name!r} "
                                    f"({POLICIES[key].description})")
    if all(choices[role] == "learned" for role in ROLES) and not sources.learned:
        return learned_mix(sources.models)
    return PolicyMix(*(POLICIES[choices[role]].build(role, scenario, sources) for role in ROLES))
