"""The family of scenarios the learned policies are trained on and the generalisation benchmark draws from: what a
person can build on the Live page, and a business can be (``draw_scenario``). ``RANGES`` are the ranges the app's
sliders span (``core.app.live.SLIDERS``).

A scenario is a preset drawn evenly, reshaped the way the page's sliders reshape it (``core.app.live.apply_controls``),
each slider drawn evenly over its range (``SLIDERS``; a promotion and a supplier disruption each half the time), with
the stores drawn log-uniformly from 1 to 50 (about as many chains of 1 to 7 stores as of 8 to 50), normal or integer
demand, lost sales or backorders (each half the time), and a stockout costing 3 to 60 days of store holding, drawn
evenly in log scale. The production capacity keeps the preset's proportion to mean demand (the page scales it with
the number of stores, which leaves a single retail store, the busiest, short of supply for good). Every draw is a
valid scenario over the app's year (365 days). Who draws with which seeds: ``core.evaluation.generalisation`` (the
benchmark) and ``core.learning.pool`` (training and phase acceptance), never the same.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from core.simulation.limits import MAX_STORES
from core.simulation.presets import PRESETS, WEEKLY_RETAIL
from core.simulation.scenario import DISTRIBUTIONS, UNMET_DEMAND, Disruption, LeadTimes, Promotion, Scenario

RANGES = {
    "demand_scale": (0.5, 2.0),  # multiplier of the preset's store means
    "dispersion": (0.1, 1.0),  # coefficient of variation of daily demand
    "seasonality_amplitude": (0.0, 0.6),
    "promotion_lift": (0.3, 1.5),
    "promotion_length": (3, 14),  # days
    "shock_probability": (0.0, 0.06),
    "disruption_length": (10, 45),  # days
    "disruption_capacity_loss": (0.3, 1.0),
    "disruption_extra_lead_time": (0, 5),  # days
    "warehouse_to_store": (1, 7),  # days
    "supplier_to_warehouse": (1, 6),  # days
    "production": (1, 4),  # days
    "capacity_factor": (1.15, 2.5),  # production capacity / mean demand
    "num_stores": (1, 50),
    "stockout_to_holding": (3.0, 60.0),  # a lost sale's (or a day's backorder's) cost / a day's store holding
}
HORIZON = 365  # days: the Live page's year
SLIDERS = {  # the Live page's slider ranges (``core.app.live.SLIDERS``), a promotion's and a disruption's when on
    "demand_scale": RANGES["demand_scale"],
    "dispersion": RANGES["dispersion"],
    "weekly_seasonality": (0.0, 2.0),  # 0 flat, 1 the retail week (``WEEKLY_RETAIL``), 2 twice as peaked
    "seasonality_amplitude": RANGES["seasonality_amplitude"],
    "promotion_start_day": (0, 364),
    "promotion_length": RANGES["promotion_length"],
    "promotion_lift": RANGES["promotion_lift"],
    "disruption_start_day": (0, 364),
    "disruption_length": RANGES["disruption_length"],
    "disruption_capacity_loss": RANGES["disruption_capacity_loss"],
    "warehouse_to_store": RANGES["warehouse_to_store"],
    "supplier_to_warehouse": RANGES["supplier_to_warehouse"],
    "production": RANGES["production"],
}
STOCKOUT_RATIO = RANGES["stockout_to_holding"]  # a stockout's cost in days of store holding, drawn log-uniformly


def _uniform(rng: np.random.Generator, key: str) -> float:
    low, high = SLIDERS[key]
    return float(rng.uniform(low, high))


def _integer(rng: np.random.Generator, key: str) -> int:
    low, high = SLIDERS[key]
    return int(rng.integers(low, high + 1))


def draw_scenario(rng: np.random.Generator, name: str, store_counts: tuple[int, ...] | None = None) -> Scenario:
    """The next scenario of ``rng``, named ``NAME_<preset>``: a preset reshaped as the Live page's sliders reshape it,
    with the draws the module docstring describes (every value is drawn, used or not, so each scenario takes the same
    share of the stream); its stores are the nearest of ``store_counts`` to the count drawn, if given."""
    base = PRESETS[list(PRESETS)[int(rng.integers(len(PRESETS)))]]
    num_stores = min(int(math.exp(rng.uniform(0.0, math.log(MAX_STORES + 1)))), MAX_STORES)
    if store_counts:
        num_stores = min(store_counts, key=lambda count: abs(math.log(count / num_stores)))
    scale, dispersion = _uniform(rng, "demand_scale"), _uniform(rng, "dispersion")
    weekly = 1.0 + _uniform(rng, "weekly_seasonality") * (np.asarray(WEEKLY_RETAIL) - 1.0)
    amplitude = _uniform(rng, "seasonality_amplitude")
    distribution = DISTRIBUTIONS[int(rng.integers(len(DISTRIBUTIONS)))]
    promotion = Promotion(start_day=_integer(rng, "promotion_start_day"), length=_integer(rng, "promotion_length"),
                          lift=_uniform(rng, "promotion_lift"))
    disruption = Disruption(start_day=_integer(rng, "disruption_start_day"), length=_integer(rng, "disruption_length"),
                            capacity_loss=_uniform(rng, "disruption_capacity_loss"))
    promoted, disrupted = rng.random(2) < 0.5
    lead_times = LeadTimes(production=_integer(rng, "production"),
                           supplier_to_warehouse=_integer(rng, "supplier_to_warehouse"),
                           warehouse_to_store=_integer(rng, "warehouse_to_store"))
    ratio = float(math.exp(rng.uniform(math.log(STOCKOUT_RATIO[0]), math.log(STOCKOUT_RATIO[1]))))
    unmet = UNMET_DEMAND[int(rng.integers(len(UNMET_DEMAND)))]
    stores = tuple(dataclasses.replace(m, mean=m.mean * scale, dispersion=dispersion, distribution=distribution,
                                       weekly_pattern=tuple(float(x) for x in weekly), seasonality_amplitude=amplitude,
                                       promotions=(promotion,) if promoted else ())
                   for m in base.with_num_stores(num_stores).stores)
    demand = sum(m.mean for m in stores) / sum(m.mean for m in base.stores)  # x the preset's total mean demand
    capacity = base.capacities.production * demand  # the preset's capacity per unit of demand; unlimited stays so
    return dataclasses.replace(
        base, name=f"{name}_{base.name}", stores=stores, horizon=HORIZON, lead_times=lead_times,
        disruptions=(disruption,) if disrupted else (), unmet_demand=unmet,
        capacities=dataclasses.replace(base.capacities, production=capacity),
        costs=dataclasses.replace(base.costs, stockout=ratio * base.costs.store_holding))


