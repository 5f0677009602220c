"""Domain randomisation: the ranges the learned policies are trained on (the app's sliders span them,
``core.app.live.SLIDERS``), and a sampler of training scenarios inside them.

A training scenario starts from a preset (so every preset's neighbourhood is well covered) and redraws
its demand level, volatility, seasonality, promotions, shocks, disruption, lead times, capacity and
half the time its cost of a stockout relative to holding (and now and then lost sales for backorders
or the reverse) within ``RANGES``. Presets with an ample source upstream are drawn only when the stores
are trained (``ample=True``): upstream roles have no work there.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from core.simulation.presets import PRESETS
from core.simulation.scenario import Capacities, Costs, DemandModel, Disruption, LeadTimes, Promotion, Scenario

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
PRESET_SHARE = 0.8  # probability that a training scenario is a preset as it is (each is a setting the policies
# must master; the rest of the time they learn the neighbourhood the sliders span)
PRESET_WEIGHT = {"lost_sales_textbook": 3.0}  # how often a preset is drawn relative to the others (1): the stores
# learn most slowly where sales are lost at a low margin (one preset in eight, the generalist stalled 3 % above its
# optimum, where a specialist got within 1.3 %)
SWITCH_UNMET_DEMAND = 0.15  # probability that a training scenario trades lost sales for backorders (or back)


def _uniform(rng: np.random.Generator, key: str) -> float:
    lo, hi = RANGES[key]
    return float(rng.uniform(lo, hi))


def _integer(rng: np.random.Generator, key: str) -> int:
    lo, hi = RANGES[key]
    return int(rng.integers(lo, hi + 1))


def _costs(rng: np.random.Generator, base: Scenario) -> tuple[Costs, str]:
    """The preset's costs and unmet-demand rule, or (half the time) a stockout cost drawn log-uniformly
    in ``RANGES`` relative to store holding, now and then with the other unmet-demand rule."""
    unmet = base.unmet_demand
    if rng.random() < SWITCH_UNMET_DEMAND:
        unmet = "backorders" if unmet == "lost_sales" else "lost_sales"
    if unmet == base.unmet_demand and rng.random() < 0.5:
        return base.costs, unmet
    lo, hi = RANGES["stockout_to_holding"]
    ratio = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    return dataclasses.replace(base.costs, stockout=ratio * base.costs.store_holding), unmet


def _textbook(rng: np.random.Generator, base: Scenario) -> Scenario:
    """A textbook instance (one product, integer or normal demand) with its demand, lead times and costs redrawn."""
    scale = _uniform(rng, "demand_scale")
    stores = tuple(dataclasses.replace(m, mean=m.mean * scale * rng.uniform(0.8, 1.25),
                                       dispersion=float(rng.uniform(0.1, 0.6))) for m in base.stores)
    costs, unmet = _costs(rng, base)
    lead = base.lead_times
    return dataclasses.replace(
        base, name=f"random_{base.name}", stores=stores, horizon=365, costs=costs, unmet_demand=unmet,
        lead_times=LeadTimes(production=_integer(rng, "production"),
                             supplier_to_warehouse=int(rng.integers(1, 3)) if base.upstream == "network"
                             else lead.supplier_to_warehouse,
                             warehouse_to_store=_integer(rng, "warehouse_to_store")))


def sample_scenario(rng: np.random.Generator, num_stores: int, ample: bool = False) -> Scenario:
    """A random training scenario with ``num_stores`` stores (from an ample-source preset only if ``ample``)."""
    names = [name for name, preset in PRESETS.items() if ample or preset.upstream == "network"]
    weights = np.array([PRESET_WEIGHT.get(name, 1.0) for name in names])
    base = PRESETS[rng.choice(names, p=weights / weights.sum())].with_num_stores(num_stores)
    if rng.random() < PRESET_SHARE:
        return base
    if base.name.endswith("_textbook"):
        return _textbook(rng, base)
    scale = _uniform(rng, "demand_scale")
    amplitude = _uniform(rng, "seasonality_amplitude") if rng.random() < 0.5 else base.stores[0].seasonality_amplitude
    promotions = tuple(
        Promotion(start_day=int(rng.integers(0, 350)), length=_integer(rng, "promotion_length"),
                  lift=_uniform(rng, "promotion_lift"))
        for _ in range(int(rng.integers(0, 4)))
    ) if rng.random() < 0.5 else base.stores[0].promotions
    dispersion = _uniform(rng, "dispersion")
    shock = _uniform(rng, "shock_probability") if rng.random() < 0.5 else 0.0
    peak = int(rng.integers(0, 365))
    stores = tuple(
        DemandModel(mean=m.mean * scale * rng.uniform(0.7, 1.4), dispersion=dispersion, distribution=m.distribution,
                    weekly_pattern=m.weekly_pattern, seasonality_amplitude=amplitude,
                    seasonality_peak_day=peak if amplitude != m.seasonality_amplitude else m.seasonality_peak_day,
                    promotions=promotions, shock_probability=shock, shock_size=float(rng.uniform(0.5, 2.0)))
        for m in base.stores
    )
    disruptions = (
        Disruption(start_day=int(rng.integers(20, 320)), length=_integer(rng, "disruption_length"),
                   capacity_loss=_uniform(rng, "disruption_capacity_loss"),
                   extra_lead_time=_integer(rng, "disruption_extra_lead_time")),
    ) if rng.random() < 0.3 else base.disruptions
    mean_total = sum(m.mean for m in stores)
    costs, unmet = _costs(rng, base)
    return dataclasses.replace(
        base, name=f"random_{base.name}", stores=stores, disruptions=disruptions, costs=costs, unmet_demand=unmet,
        lead_times=LeadTimes(production=_integer(rng, "production"),
                             supplier_to_warehouse=_integer(rng, "supplier_to_warehouse"),
                             warehouse_to_store=_integer(rng, "warehouse_to_store")),
        capacities=Capacities(production=_uniform(rng, "capacity_factor") * mean_total),
    )
