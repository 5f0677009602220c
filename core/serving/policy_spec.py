"""Parse a policy SPEC from the command line into a ``PolicyMix``.

SPEC is either a named mix:
    reorder_point    textbook (s, S) at every echelon (the baseline)
    tuned            base-stock levels tuned by simulation for the scenario
    learned          the exported ONNX policies in exported_models/ (served by onnxruntime)
    random           uniform random quantities
or one policy per role, comma-separated (roles left out use reorder_point):
    store=base_stock:level=40/25/15,warehouse=echelon_base_stock:level=300,supplier=echelon_base_stock:level=560
Kinds and their parameters:
    reorder_point[:z=1.65][:cycle_days=7]
    base_stock:level=L            local; stores accept one level or one per store (a/b/c)
    echelon_base_stock:level=L    warehouse and supplier only
    random[:scale=2]
"""

from __future__ import annotations

import numpy as np

from core.agents.rules import ROLES, BaseStock, PolicyMix, RandomPolicy, ReorderPoint, RolePolicy
from core.simulation.limits import (
    MAX_POLICY_CYCLE_DAYS,
    MAX_POLICY_LEVEL,
    MAX_POLICY_SAFETY_FACTOR,
    MAX_POLICY_SCALE,
)
from core.simulation.scenario import Scenario

NAMED_MIXES = ("reorder_point", "tuned", "random", "learned")
KINDS = {"reorder_point": ("z", "cycle_days"), "base_stock": ("level",), "echelon_base_stock": ("level",),
         "random": ("scale",)}
MAXIMA = {"z": MAX_POLICY_SAFETY_FACTOR, "cycle_days": MAX_POLICY_CYCLE_DAYS, "level": MAX_POLICY_LEVEL,
          "scale": MAX_POLICY_SCALE}


class PolicySpecError(ValueError):
    """A policy SPEC names an unknown role, kind or parameter, or a bad value."""


def _number(role: str, key: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= MAXIMA[key]:  # NaN fails too
        raise PolicySpecError(f"policy {role}.{key}: got {text!r}; allowed: a number from 0 to {MAXIMA[key]:g}")
    return value


def _role_policy(role: str, text: str, scenario: Scenario, rng: np.random.Generator) -> RolePolicy:
    kind, *params = text.split(":")
    if kind not in KINDS:
        raise PolicySpecError(f"policy {role}: got kind {kind!r}; allowed: {', '.join(KINDS)}")
    values: dict[str, str] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep or key not in KINDS[kind]:
            allowed = ", ".join(f"{k}=..." for k in KINDS[kind])
            raise PolicySpecError(f"policy {role}.{kind}: got parameter {param!r}; allowed: {allowed}")
        values[key] = value
    if kind == "reorder_point":
        return ReorderPoint(role, **{k: _number(role, k, v) for k, v in values.items()})
    if kind == "random":
        return RandomPolicy(role, rng, **{k: _number(role, k, v) for k, v in values.items()})
    if "level" not in values:
        raise PolicySpecError(f"policy {role}.{kind}: missing level=...")
    levels = [_number(role, "level", v) for v in values["level"].split("/")]
    if kind == "echelon_base_stock" and role == "store":
        raise PolicySpecError("policy store: got echelon_base_stock; allowed for stores: base_stock "
                              "(a store's echelon is itself)")
    if role != "store" and len(levels) != 1:
        raise PolicySpecError(f"policy {role}.level: got {values['level']!r}; allowed: one number")
    if role == "store" and len(levels) not in (1, scenario.num_stores):
        raise PolicySpecError(f"policy store.level: got {len(levels)} levels; allowed: 1 or "
                              f"{scenario.num_stores} (one per store)")
    level = np.array(levels) if role == "store" else levels[0]
    return BaseStock(role, level, echelon=kind == "echelon_base_stock")


def parse_policy(spec: str, scenario: Scenario, rng: np.random.Generator) -> PolicyMix:
    """The mix described by ``spec`` for ``scenario`` (see the module docstring)."""
    if spec == "learned":
        from core.serving.models import PolicyLoadError, learned_mix

        try:
            return learned_mix()
        except PolicyLoadError as exc:
            raise PolicySpecError(f"policy learned: {exc}") from None
    if spec == "tuned":
        from core.agents.tuning import tune_base_stock

        return tune_base_stock(scenario).mix()
    if spec in ("reorder_point", "random"):
        spec = ",".join(f"{role}={spec}" for role in ROLES)
    chosen: dict[str, RolePolicy] = {}
    for part in spec.split(","):
        role, sep, text = part.strip().partition("=")
        if not sep or role not in ROLES:
            raise PolicySpecError(f"policy: got {part!r}; allowed: one of {', '.join(NAMED_MIXES)} "
                                  f"or ROLE=KIND[:param=value] with ROLE in {', '.join(ROLES)}")
        if role in chosen:
            raise PolicySpecError(f"policy: role {role!r} given twice")
        chosen[role] = _role_policy(role, text, scenario, rng)
    return PolicyMix(*(chosen.get(role) or ReorderPoint(role) for role in ROLES))
