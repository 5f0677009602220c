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
capacity); zero when capacity suffices. Where demand comes in whole units the target is rounded to a whole unit.
The original design's menus (store: no order, 0.5x, 1x or 1.5x forecast; warehouse 4 and supplier 3
levels) could not express a base-stock policy, the best rule-based
policy. This menu contains every forecast-driven echelon base-stock policy (a constant choice),
and measuring safety stock in standard deviations makes one choice good across demand levels,
volatilities and lead times (the textbook's optimum is z of about 1.4 at every stage); a learned
policy moves z with the season, promotions, disruptions and its own stock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from core.agents.observations import observe
from core.agents.roles import ROLE, STORE, actions_of
from core.agents.rules import base_stock_level, demand_sd, order_up_to
from core.simulation.forecast import LOOKAHEAD, Forecast
from core.simulation.scenario import Scenario
from core.simulation.twin import Actions, State

# Tenths of a standard deviation from -4 to 4 (fine enough that a store selling a few units a day can order any
# whole number of units; below -2 for stock that costs more than the sales it saves, upstream where a lost sale is
# cheap), then halves to 8 and 9, 10 for stock held upstream for many stores or ahead of a peak. (From -2 to 4 with
# 5, 7 and 10, the tuned entries of held-out scenarios sat on the menu's ends or its gaps: tuned base-stock, with
# any safety factor, cost up to 4 % less than the tuned menu there.)
SAFETY_FACTORS = tuple(round(-4.0 + 0.1 * k, 1) for k in range(81)) + tuple(4.5 + 0.5 * k for k in range(8)) \
    + (9.0, 10.0)
ACTION_LABELS = tuple(f"z = {z:g}" for z in SAFETY_FACTORS)  # short labels for charts
ACTION_MEANINGS = tuple(f"order up to forecast + {z:g} standard deviations" for z in SAFETY_FACTORS)
NUM_ACTIONS = len(SAFETY_FACTORS)

Chooser = Callable[[np.ndarray], np.ndarray]  # observations (M, F) -> action indices (M,)
Tuning = Callable[[Scenario], Mapping[str, float]]  # a scenario -> each role's tuned safety factor (its best constant
# menu entry, ``core.agents.tuning.tuned_safety_factors``): what a learned policy observes and corrects


def menu_index(safety_factor: float) -> int:
    """Index of the menu entry nearest ``safety_factor``."""
    return int(np.argmin(np.abs(np.asarray(SAFETY_FACTORS) - safety_factor)))


def menu_quantities(state: State, scenario: Scenario, forecast: Forecast, role: str,
                    choice: np.ndarray) -> np.ndarray:
    """Order (production) quantities for action indices ``choice``: (B, N) stores, (B,) upstream."""
    spec, day = ROLE[role], state.day
    days = spec.protection_days(scenario, forecast, day)
    f = spec.daily_forecast(scenario, forecast, day)
    sd = spec.pool_sd(demand_sd(scenario, STORE.daily_forecast(scenario, forecast, day)))
    target = base_stock_level(f, sd, days, np.asarray(SAFETY_FACTORS)[choice])
    if spec.holds_prebuild:
        target = target + forecast.prebuild(day, days, prebuild_days(scenario))
    if scenario.whole_units:
        target = np.round(target)
    return order_up_to(target, spec.echelon_position(state))


def prebuild_days(scenario: Scenario) -> int:
    """How far ahead the supplier pre-builds for planned shortfalls of capacity: the days a unit can wait at the
    supplier before its holding costs more than the lost sale (or day of backorder) it saves, at most
    ``LOOKAHEAD``. (Looking ``LOOKAHEAD`` days ahead whatever the costs, a held-out chain whose lost sale cost 16 days
    of supplier holding pre-built for a 41-day outage a month ahead: its tuned menu cost 317 a day, 36 % more than
    tuned base-stock; looking 15 days ahead, 227.)"""
    holding = scenario.costs.supplier_holding
    return LOOKAHEAD if holding <= 0 else int(min(max(scenario.costs.stockout / holding, 1), LOOKAHEAD))


def decide(state: State, scenario: Scenario, forecast: Forecast, choices: Mapping[str, np.ndarray]) -> Actions:
    """The day's actions from every role's menu indices (its agents' shape)."""
    return actions_of({role: menu_quantities(state, scenario, forecast, role, choice)
                       for role, choice in choices.items()})


@dataclass
class MenuPolicy:
    """A role policy that observes, asks ``choose`` for menu indices, and orders accordingly.

    The forecast is built for the scenario on first use, grown when a run goes past it
    (``Forecast.grow``), and kept while the scenario is the same; so are the scenario's tuned safety
    factors (from ``tuning``), which a chooser that observes (a learned one) or ``TunedEntry`` needs.
    """

    role: str
    choose: Chooser
    name: str = "learned"
    tuning: Tuning | None = None
    _cache: tuple[Scenario, Forecast, Mapping[str, float] | None] | None = None

    def context(self, scenario: Scenario, periods: int) -> tuple[Forecast, Mapping[str, float] | None]:
        """The scenario's forecast for a run of ``periods`` days, and its tuned safety factors (None without
        ``tuning``)."""
        same = self._cache is not None and self._cache[0] is scenario
        forecast = Forecast.grow(self._cache[1] if same else None, scenario, periods)
        tuned = self._cache[2] if same else None if self.tuning is None else dict(self.tuning(scenario))
        self._cache = (scenario, forecast, tuned)
        return forecast, tuned

    def choices(self, state: State, scenario: Scenario, forecast: Forecast,
                tuned: Mapping[str, float] | None) -> np.ndarray:
        """Menu indices of the role's agents."""
        return choose(self.choose, self.role, state, scenario, forecast, tuned)

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        forecast, tuned = self.context(scenario, state.day + 1)
        return menu_quantities(state, scenario, forecast, self.role,
                               self.choices(state, scenario, forecast, tuned))


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


@dataclass(frozen=True)
class BlockChooser:
    """Menu entry ``indices[k]`` for every agent of the k-th block of ``block`` chains: constant choices side by side
    in one batched rollout (the menu tuner's candidates)."""

    indices: np.ndarray  # (blocks,)
    block: int  # chains per block


@dataclass(frozen=True)
class TunedEntry:
    """The role's tuned constant menu entry for the scenario (forecast base-stock, tuned): what a learned policy
    starts from and corrects, and what a role without a learned policy does."""

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices and (one-hot) probabilities of observations, like an ONNX policy's outputs: the entry nearest each
        observation's tuned safety factor (its last feature, ``core.agents.observations.TUNED``)."""
        indices = np.abs(np.asarray(obs)[:, -1:] - np.asarray(SAFETY_FACTORS)).argmin(axis=1)
        probabilities = np.zeros((len(indices), NUM_ACTIONS), np.float32)
        probabilities[np.arange(len(indices)), indices] = 1.0
        return indices.astype(np.int64), probabilities


class NoTuning(ValueError):
    """A chooser needs the scenario's tuned safety factors, and its policy has no ``tuning``."""


def choose(chooser: Chooser, role: str, state: State, scenario: Scenario, forecast: Forecast,
           tuned: Mapping[str, float] | None) -> np.ndarray:
    """Menu indices of the role's agents: (B, N) for stores, (B,) upstream. Constant, block and tuned-entry
    choosers need no observation, so none is computed for them."""
    shape = ROLE[role].agents_shape(state)
    if isinstance(chooser, ConstantChooser):
        return np.full(shape, chooser.index, dtype=np.int64)
    if tuned is None and not isinstance(chooser, BlockChooser):
        raise NoTuning(f"the {role} policy needs the scenario's tuned safety factors (its tuning is not set)")
    if isinstance(chooser, TunedEntry):
        return np.full(shape, menu_index(tuned[role]), dtype=np.int64)
    if isinstance(chooser, BlockChooser):
        chains = np.repeat(np.asarray(chooser.indices, dtype=np.int64), chooser.block)
        return np.broadcast_to(chains.reshape(-1, *[1] * (len(shape) - 1)), shape).copy()
    obs = observe(role, state, scenario, forecast, tuned)
    return chooser(obs.reshape(-1, obs.shape[-1])).reshape(obs.shape[:-1])


def reference_index(role: str) -> int:
    """Menu index of the role's reference entry (what it does while not learned; where a fresh policy
    starts). The reference entries are the best constant entries on ``steady``
    (``python -m core tune --scenario steady --menu``)."""
    return SAFETY_FACTORS.index(ROLE[role].reference_safety_factor)


def reference_policy(role: str) -> MenuPolicy:
    """The role's reference entry as a policy (forecast base-stock)."""
    return forecast_base_stock(role, ROLE[role].reference_safety_factor)


def tuned_entry_policy(role: str, tuning: Tuning) -> MenuPolicy:
    """The role's tuned constant menu entry for each scenario (``TunedEntry``)."""
    return MenuPolicy(role, TunedEntry(), name="tuned_forecast_base_stock", tuning=tuning)


def forecast_base_stock(role: str, safety_factor: float) -> MenuPolicy:
    """The menu entry closest to ``safety_factor`` standard deviations of safety stock, every day."""
    index = menu_index(safety_factor)
    return MenuPolicy(role, ConstantChooser(index), name=f"forecast_base_stock(z={SAFETY_FACTORS[index]:g})")
