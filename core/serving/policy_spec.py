"""Parse a policy SPEC from the command line into a ``PolicyMix``.

SPEC is either a key of the policy registry (``core.serving.registry``), every role on that policy:
    learned, forecast_base_stock, tuned_forecast_base_stock, tuned_base_stock, tuned_capped_base_stock (one
    store), reorder_point, random
or one policy per role, comma-separated (roles left out use reorder_point):
    store=base_stock:level=40/25/15,warehouse=echelon_base_stock:level=300,supplier=learned
where a role's policy is a registry key or one of these kinds with parameters:
    reorder_point[:z=1.65][:cycle_days=7]
    base_stock:level=L            local; stores accept one level or one per store (a/b/c)
    capped_base_stock:level=L:cap=C   local, and at most C units per order
    echelon_base_stock:level=L    warehouse and supplier only
    random[:scale=2]
"""

from __future__ import annotations

import numpy as np

from core.agents.roles import ROLE, ROLES
from core.agents.rules import BaseStock, CappedBaseStock, PolicyMix, RandomPolicy, ReorderPoint, RolePolicy
from core.serving.models import PolicyLoadError
from core.serving.registry import POLICIES, PolicyChoiceError, Sources, mix_of, uniform
from core.simulation.limits import (
    MAX_POLICY_CYCLE_DAYS,
    MAX_POLICY_LEVEL,
    MAX_POLICY_SAFETY_FACTOR,
    MAX_POLICY_SCALE,
)
from core.simulation.scenario import Scenario

KINDS = {"reorder_point": ("z", "cycle_days"), "base_stock": ("level",), "echelon_base_stock": ("level",),
         "capped_base_stock": ("level", "cap"), "random": ("scale",)}
MAXIMA = {"z": MAX_POLICY_SAFETY_FACTOR, "cycle_days": MAX_POLICY_CYCLE_DAYS, "level": MAX_POLICY_LEVEL,
          "cap": MAX_POLICY_LEVEL, "scale": MAX_POLICY_SCALE}


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


def _role_policy(role: str, text: str, scenario: Scenario, sources: Sources) -> RolePolicy:
    kind, *params = text.split(":")
    if kind in POLICIES and not params:
        if not POLICIES[kind].applies(scenario):
            raise PolicySpecError(f"policy {role}: {kind} does not apply to scenario {scenario.name!r} "
                                  f"({POLICIES[kind].description})")
        return POLICIES[kind].build(role, scenario, sources)
    if kind not in KINDS:
        raise PolicySpecError(f"policy {role}: got kind {kind!r}; allowed: {', '.join(sorted({*KINDS, *POLICIES}))}")
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
        return RandomPolicy(role, sources.rng, **{k: _number(role, k, v) for k, v in values.items()})
    if "level" not in values:
        raise PolicySpecError(f"policy {role}.{kind}: missing level=...")
    levels = [_number(role, "level", v) for v in values["level"].split("/")]
    per_store = ROLE[role].per_store
    if kind == "echelon_base_stock" and per_store:
        raise PolicySpecError(f"policy {role}: got echelon_base_stock; allowed for {role}: base_stock "
                              f"(its echelon is itself)")
    if not per_store and len(levels) != 1:
        raise PolicySpecError(f"policy {role}.level: got {values['level']!r}; allowed: one number")
    if per_store and len(levels) not in (1, scenario.num_stores):
        raise PolicySpecError(f"policy {role}.level: got {len(levels)} levels; allowed: 1 or "
                              f"{scenario.num_stores} (one per store)")
    level = np.array(levels) if per_store else levels[0]
    if kind == "capped_base_stock":
        if "cap" not in values:
            raise PolicySpecError(f"policy {role}.{kind}: missing cap=...")
        return CappedBaseStock(role, level, _number(role, "cap", values["cap"]))
    return BaseStock(role, level, echelon=kind == "echelon_base_stock")


def parse_policy(spec: str, scenario: Scenario, rng: np.random.Generator) -> PolicyMix:
    """The mix described by ``spec`` for ``scenario`` (see the module docstring)."""
    sources = Sources(rng=rng)
    try:
        if spec in POLICIES:
            return mix_of(uniform(spec), scenario, sources)
        chosen: dict[str, RolePolicy] = {}
        for part in spec.split(","):
            role, sep, text = part.strip().partition("=")
            if not sep or role not in ROLES:
                raise PolicySpecError(f"policy: got {part!r}; allowed: one of {', '.join(POLICIES)} "
                                      f"or ROLE=KIND[:param=value] with ROLE in {', '.join(ROLES)}")
            if role in chosen:
                raise PolicySpecError(f"policy: role {role!r} given twice")
            chosen[role] = _role_policy(role, text, scenario, sources)
    except PolicyLoadError as exc:
        raise PolicySpecError(f"policy learned: {exc}") from None
    except PolicyChoiceError as exc:
        raise PolicySpecError(str(exc)) from None
    return PolicyMix(*(chosen.get(role) or ReorderPoint(role) for role in ROLES))
