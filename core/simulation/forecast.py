"""What the agents know about the future: the demand model's expected demand (planned
promotions, seasonality and weekly pattern included, random shocks not), production capacity and
supplier lead time per day (planned disruptions included). Sums over windows are O(1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.simulation.demand import expected_demand_matrix
from core.simulation.scenario import Scenario
from core.simulation.twin import production_capacity, supplier_lead_time

LOOKAHEAD = 120  # days of forecast kept beyond the horizon
FIRST_PERIODS = 365  # days a growing forecast covers at first (see ``grow``)


@dataclass(frozen=True)
class Forecast:
    base_mean: np.ndarray  # (N,) units per day, the demand model's mean
    cumulative: np.ndarray  # (T + LOOKAHEAD + 1, N) cumulative expected demand from day 0
    total_cumulative: np.ndarray  # (T + LOOKAHEAD + 1,) the same, summed over stores
    capacity: np.ndarray  # (T + LOOKAHEAD,) units the supplier can start before each day
    supplier_lead_time: np.ndarray  # (T + LOOKAHEAD,) days, for shipments sent before each day
    supplier_days_covered: np.ndarray  # (T + LOOKAHEAD,) days an order sent before each day must cover (see below)
    periods: int  # days of a run this forecast serves (see ``of``)

    @staticmethod
    def of(scenario: Scenario, periods: int | None = None) -> Forecast:
        """Forecast for a run of ``periods`` days (default: the horizon).

        It covers T = min(periods + reach, max(periods, horizon)) days plus ``LOOKAHEAD``, where reach
        is the longest protection window (the three lead times, disruptions included). A policy reads at
        most reach + ``LOOKAHEAD`` days past its day, so every value a run of ``periods`` days reads is
        the one the forecast of the whole horizon holds, while a short run builds only what it reads.
        """
        periods = scenario.horizon if periods is None else periods
        lead = scenario.lead_times
        reach = lead.warehouse_to_store + scenario.max_supplier_lead_time + lead.production
        days = np.arange(min(periods + reach, max(periods, scenario.horizon)) + LOOKAHEAD)
        daily = expected_demand_matrix(scenario, days)
        lead_time = np.array([supplier_lead_time(scenario, int(d)) for d in days])
        cumulative = np.concatenate([np.zeros((1, scenario.num_stores)), np.cumsum(daily, axis=0)])
        return Forecast(
            base_mean=np.array([m.mean for m in scenario.stores]),
            cumulative=cumulative,
            total_cumulative=cumulative.sum(axis=1),
            capacity=np.array([production_capacity(scenario, int(d)) for d in days]),
            supplier_lead_time=lead_time,
            supplier_days_covered=_days_covered(lead_time),
            periods=periods,
        )

    @staticmethod
    def grow(cached: Forecast | None, scenario: Scenario, periods: int) -> Forecast:
        """``cached`` if it serves a run of ``periods`` days, otherwise a forecast for at least ``periods``
        days: ``FIRST_PERIODS`` (at most the horizon) at first, then twice the cached run, never past the
        horizon while the run is inside it. A caller asking day by day pays for O(days run) in total."""
        if cached is not None and cached.periods >= periods:
            return cached
        grown = 2 * cached.periods if cached is not None else min(FIRST_PERIODS, scenario.horizon)
        if periods <= scenario.horizon:
            grown = min(grown, scenario.horizon)
        return Forecast.of(scenario, max(periods, grown))

    def store_demand(self, day: int, days: int) -> np.ndarray:
        """(N,) expected demand of each store over days [day, day + days)."""
        last = min(day + days, self.cumulative.shape[0] - 1)
        return self.cumulative[last] - self.cumulative[min(day, last)]

    def supplier_days_to_cover(self, day: int) -> int:
        """Supplier -> warehouse days an order sent before ``day`` must cover: until the next order's shipment
        arrives, min over k >= 1 of (k + the lead time planned for day + k) - 1. That is the planned lead time,
        except where a disruption will change it: the last order before a longer lead time must bridge the days
        no shipment arrives, and before a shorter one the next orders arrive sooner."""
        return int(self.supplier_days_covered[min(day, self.supplier_days_covered.size - 1)])

    def capacity_over(self, day: int, days: int) -> float:
        """Units the supplier can start over the reviews before days [day, day + days)."""
        return float(self.capacity[day: day + days].sum())

    def prebuild(self, day: int, window: int, days: int = LOOKAHEAD) -> float:
        """Units to hold beyond the protection ``window`` now so that planned capacity covers the
        forecast: the largest cumulative excess of demand from day ``day + window`` on over the
        capacity of the production starts after today, looking ``days`` ahead (0 if none)."""
        start = min(day + window, self.total_cumulative.size - 1)
        end = min(start + days, self.total_cumulative.size - 1)
        demand = np.diff(self.total_cumulative[start: end + 1])
        capacity = np.minimum(self.capacity[day + 1: day + 1 + demand.size], 1e12)
        excess = np.cumsum(demand[: capacity.size] - capacity)
        return max(float(excess.max(initial=0.0)), 0.0)


def _days_covered(lead_time: np.ndarray) -> np.ndarray:
    """``Forecast.supplier_days_to_cover`` for every day of ``lead_time`` (the planned lead time per day), at once."""
    ahead = np.arange(1, int(lead_time.max()) + 1)
    later = np.minimum(np.arange(lead_time.size)[:, None] + ahead, lead_time.size - 1)
    return (ahead + lead_time[later]).min(axis=1) - 1
