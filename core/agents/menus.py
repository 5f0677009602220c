"""The agents' action menus, and the policy that acts through them.

Every role chooses a safety factor z from ``SAFETY_FACTORS`` and orders up to its
protection-window forecast plus z standard deviations of demand over that window:

    store i:    order       = max(0, f_i L1 + z sd_i sqrt(L1) - IP_i)
    warehouse:  order       = max(0, f L2 + z sd sqrt(L2) - echelon IP),   L2 = L_ws + L_sw
    supplier:   production  = max(0, f L3 + z sd sqrt(L3) + P - echelon IP),   L3 = L2 + L_p

with f the expected demand per day over the window (from the forecast: season, weekly pattern and
planned promotions included) and sd the daily standard deviation of demand at that level (stores
pooled upstream). P is the supplier's pre-build: the stock it must hold beyond its window now so
that planned production capacity covers the forecast (a planned disruption, a peak season above
capacity); zero when capacity suffices. The original design's menus (store: no order, 0.5x, 1x or 1.5x forecast;
warehouse 4 and supplier 3 levels) could not express a base-stock policy, the best rule-based
policy. This menu contains every forecast-driven echelon base-stock policy (a constant choice),
and measuring safety stock in standard deviations makes one choice good across demand levels,
volatilities and lead times (the textbook's optimum is z of about 1.4 at every stage); a learned
policy moves z with the season, promotions, disruptions and its own stock.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.agents.observations import OBSERVERS, daily_forecast, protection_days
from core.agents.rules import demand_sd, echelon_position
from core.simulation.forecast import Forecast
from core.simulation.scenario import Scenario
from core.simulation.twin import State

SAFETY_FACTORS = (-1.0, -0.5, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75, 3.0, 3.5, 4.0,
                  5.0, 7.0, 10.0)
ACTION_MEANINGS = tuple(f"order up to forecast + {z:g} standard deviations" for z in SAFETY_FACTORS)
NUM_ACTIONS = len(SAFETY_FACTORS)
# The reference entries: what a role with no learned policy does, and where a fresh policy starts.
# They are the best constant entries on ``steady`` (``python -m core tune --scenario steady --menu``).
REFERENCE_SAFETY_FACTORS = {"store": 2.25, "warehouse": 2.5, "supplier": 2.25}

Chooser = Callable[[np.ndarray], np.ndarray]  # observations (M, F) -> action indices (M,)


def menu_quantities(state: State, scenario: Scenario, forecast: Forecast, role: str,
                    choice: np.ndarray) -> np.ndarray:
    """Order (production) quantities for action indices ``choice``: (B, N) stores, (B,) upstream."""
    day = state.day
    z = np.asarray(SAFETY_FACTORS)[choice]
    days = protection_days(scenario, forecast, role, day)
    per_store = daily_forecast(scenario, forecast, "store", day) if role != "store" else None
    f = daily_forecast(scenario, forecast, role, day)
    sd = demand_sd(scenario, f if role == "store" else per_store)
    if role != "store":
        sd = np.sqrt((sd**2).sum())
    target = f * days + z * sd * np.sqrt(days)
    if role == "supplier":
        target = target + forecast.prebuild(day, days)
    return np.maximum(target - echelon_position(state, role), 0.0)


@dataclass
class MenuPolicy:
    """A role policy that observes, asks ``choose`` for menu indices, and orders accordingly.

    The forecast is built for the scenario on first use, grown when a run goes past it
    (``Forecast.grow``), and kept while the scenario is the same.
    """

    role: str
    choose: Chooser
    name: str = "learned"
    _cache: tuple[Scenario, Forecast] | None = None

    def forecast(self, scenario: Scenario, periods: int) -> Forecast:
        cached = self._cache[1] if self._cache is not None and self._cache[0] is scenario else None
        self._cache = (scenario, Forecast.grow(cached, scenario, periods))
        return self._cache[1]

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        forecast = self.forecast(scenario, state.day + 1)
        return menu_quantities(state, scenario, forecast, self.role,
                               choose(self.choose, self.role, state, scenario, forecast))


@dataclass(frozen=True)
class ConstantChooser:
    """Always the same menu entry: a forecast-driven echelon base-stock policy."""

    index: int

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.full(obs.shape[0], self.index, dtype=np.int64)

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices and (one-hot) probabilities, like an ONNX policy's outputs."""
        probabilities = np.zeros((obs.shape[0], NUM_ACTIONS), np.float32)
        probabilities[:, self.index] = 1.0
        return self(obs), probabilities


def choose(chooser: Chooser, role: str, state: State, scenario: Scenario, forecast: Forecast) -> np.ndarray:
    """Menu indices of the role's agents: (B, N) for stores, (B,) upstream. A constant chooser
    needs no observation, so none is computed for it."""
    if isinstance(chooser, ConstantChooser):
        shape = state.store_on_hand.shape if role == "store" else state.warehouse_on_hand.shape
        return np.full(shape, chooser.index, dtype=np.int64)
    obs = OBSERVERS[role](state, scenario, forecast)
    return chooser(obs.reshape(-1, obs.shape[-1])).reshape(obs.shape[:-1])


def reference_index(role: str) -> int:
    """Menu index of the role's reference entry."""
    return SAFETY_FACTORS.index(REFERENCE_SAFETY_FACTORS[role])


def reference_policy(role: str) -> MenuPolicy:
    """The role's reference entry as a policy (forecast base-stock)."""
    return forecast_base_stock(role, REFERENCE_SAFETY_FACTORS[role])


def forecast_base_stock(role: str, safety_factor: float) -> MenuPolicy:
    """The menu entry closest to ``safety_factor`` standard deviations of safety stock, every day."""
    index = int(np.argmin(np.abs(np.asarray(SAFETY_FACTORS) - safety_factor)))
    return MenuPolicy(role, ConstantChooser(index), name=f"forecast_base_stock(z={SAFETY_FACTORS[index]:g})")
