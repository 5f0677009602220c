"""Small training pools for tests (``core.learning.pool.PoolScenario``), with hand-written tuned safety factors so
that no test waits for ``core.agents.tuning.tuned_safety_factors`` unless it checks tuning itself."""

from __future__ import annotations

import dataclasses

from core.learning.pool import PoolScenario
from core.simulation.presets import get_preset
from core.simulation.scenario import Scenario

# on the menu, different per role, and away from the reference entries (2.3, 2.6, 2.3), so that a test can tell a
# tuned entry from the reference one
TUNED = {"store": 1.0, "warehouse": 0.5, "supplier": -0.3}


def pool_of(*scenarios: Scenario, tuned: dict[str, float] | None = None, preset: bool = True,
            horizon: int | None = None, **changes) -> list[PoolScenario]:
    """``scenarios`` (with ``changes`` and ``horizon`` applied) as pool entries with the tuned factors ``tuned``."""
    tuned = dict(TUNED if tuned is None else tuned)
    if horizon is not None:
        changes["horizon"] = horizon
    return [PoolScenario(dataclasses.replace(s, **changes), dict(tuned), preset=preset) for s in scenarios]


def preset_pool(*names: str, **kwargs) -> list[PoolScenario]:
    """The presets ``names`` as a pool (``pool_of``'s keywords)."""
    return pool_of(*(get_preset(name) for name in names), **kwargs)
