"""The agents' action menus, and the policy that acts through them.

Every role chooses a safety stock, in days of forecast demand, from ``SAFETY_DAYS``, and orders
up to its protection-window forecast plus that safety stock:

    store i:    order       = max(0, f_i * (L_ws + s) - IP_i)
    warehouse:  order       = max(0, f * (L_ws + L_sw + s) - echelon IP)
    supplier:   production  = max(0, f * (L_ws + L_sw + L_p + s) - echelon IP)

with f the expected demand per day over the window. The original design's menus (store: no
order, 0.5x, 1x or 1.5x forecast; warehouse 4 and supplier 3 levels) could not express a
base-stock policy, the best rule-based policy; this menu contains every forecast-driven echelon
base-stock policy (a constant choice) and lets a learned policy change its safety stock with the
season, promotions, disruptions and its stock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.forecast import Forecast
from core.observations import OBSERVERS, daily_forecast, protection_days
from core.policies import echelon_position
from core.scenario import Scenario
from core.twin import State

SAFETY_DAYS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0,
               14.0, 20.0)
ACTION_MEANINGS = tuple(f"order up to forecast + {s:g} days of safety stock" for s in SAFETY_DAYS)
NUM_ACTIONS = len(SAFETY_DAYS)

Chooser = Callable[[np.ndarray], np.ndarray]  # observations (M, F) -> action indices (M,)


def menu_quantities(state: State, scenario: Scenario, forecast: Forecast, role: str,
                    choice: np.ndarray) -> np.ndarray:
    """Order (production) quantities for action indices ``choice``: (B, N) stores, (B,) upstream."""
    day = state.day
    safety = np.asarray(SAFETY_DAYS)[choice]
    target = daily_forecast(scenario, forecast, role, day) * (protection_days(scenario, forecast, role, day) + safety)
    return np.maximum(target - echelon_position(state, role), 0.0)


@dataclass
class MenuPolicy:
    """A role policy that observes, asks ``choose`` for menu indices, and orders accordingly.

    The forecast is built for the scenario on first use and kept while the scenario is the same.
    """

    role: str
    choose: Chooser
    name: str = "learned"
    _cache: tuple[Scenario, Forecast] | None = None

    def forecast(self, scenario: Scenario, periods: int) -> Forecast:
        if self._cache is None or self._cache[0] is not scenario or self._cache[1].capacity.size < periods:
            self._cache = (scenario, Forecast.of(scenario, max(periods, scenario.horizon)))
        return self._cache[1]

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        forecast = self.forecast(scenario, state.day + 1)
        obs = OBSERVERS[self.role](state, scenario, forecast)
        choice = self.choose(obs.reshape(-1, obs.shape[-1])).reshape(obs.shape[:-1])
        return menu_quantities(state, scenario, forecast, self.role, choice)


def constant_chooser(index: int) -> Chooser:
    """Always the same menu entry: a forecast-driven echelon base-stock policy."""
    return lambda obs: np.full(obs.shape[0], index, dtype=np.int64)


def forecast_base_stock(role: str, safety_days: float) -> MenuPolicy:
    """The menu entry closest to ``safety_days`` of safety stock, every day."""
    index = int(np.argmin(np.abs(np.asarray(SAFETY_DAYS) - safety_days)))
    return MenuPolicy(role, constant_chooser(index), name=f"forecast_base_stock({SAFETY_DAYS[index]:g}d)")
