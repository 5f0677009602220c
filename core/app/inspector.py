"""The policy inspector's choices: the one-store scenario it probes (``live.inspect_store_policy`` builds the same),
the rules it can compare the learned store policy with, and the grid point it opens on."""

from __future__ import annotations

import numpy as np

from core.agents.rules import RolePolicy
from core.app.live import Controls, apply_controls
from core.serving.registry import POLICIES, Sources, applicable
from core.simulation.presets import STORE_MEANS
from core.simulation.scenario import Scenario

DEFAULT_RULE = "forecast_base_stock"  # the rule the learned stores start from (steady's best rule, too)
DIFFERENT = 1.0  # units: orders this far apart differ


def inspected_scenario(demand_level: float, lead_time: int) -> Scenario:
    """One ``steady`` store selling ``demand_level`` units a day, ``lead_time`` days from its warehouse: what
    ``live.inspect_store_policy`` probes."""
    return apply_controls("steady", Controls(demand_scale=demand_level / STORE_MEANS[0],
                                             warehouse_to_store=lead_time, num_stores=1))


def inspector_rules(scenario: Scenario) -> list[str]:
    """The registry's rules that apply to ``scenario``."""
    return [key for key in applicable(scenario) if POLICIES[key].rule]


def store_rule(key: str, scenario: Scenario) -> RolePolicy:
    """The store policy of rule ``key`` on ``scenario`` (a tuned rule tuned for it)."""
    return POLICIES[key].build("store", scenario, Sources())


def default_point(grid: dict[str, np.ndarray]) -> tuple[int, int]:
    """The grid point (on hand, in transit) to open on: where both policies order and their orders differ, the one
    with the most stock (the last such point before the rule stops ordering), then the nearest the diagonal; the
    grid's middle if there is none."""
    learned, rule = grid["learned_order"], grid["rule_order"]
    both = (learned > 0.5) & (rule > 0.5) & (np.abs(learned - rule) >= DIFFERENT)
    if not both.any():
        middle = learned.shape[0] // 2
        return middle, middle
    i, j = np.nonzero(both)
    best = min(zip(i, j, strict=True), key=lambda p: (-(p[0] + p[1]), abs(int(p[0]) - int(p[1])), p[0]))
    return int(best[0]), int(best[1])
