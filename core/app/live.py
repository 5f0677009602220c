"""What the app's pages compute, without any Streamlit: scenarios from slider values, one-year runs
of a single chain, and a policy's decisions over a grid of stock levels (the policy inspector).
Policy mixes come from the registry (``core.serving.registry``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from core.agents.menus import SAFETY_FACTORS, menu_quantities
from core.agents.observations import observe
from core.agents.rules import PolicyMix, RolePolicy
from core.simulation.demand import sample_demand
from core.simulation.forecast import Forecast
from core.simulation.presets import STORE_MEANS, WEEKLY_RETAIL, get_preset
from core.simulation.rollout import Rollout, rollout
from core.simulation.scenario import Disruption, LeadTimes, Promotion, Scenario
from core.simulation.twin import reset


@dataclass(frozen=True)
class Controls:
    """The Live page's sliders. Multipliers apply to the preset's values."""

    demand_level: float = 1.0  # x the preset's mean demand
    volatility: float = 0.3  # coefficient of variation of daily demand
    weekly_seasonality: float = 0.0  # 0 = flat week, 1 = a typical retail week, 2 = twice as peaked
    yearly_seasonality: float = 0.0  # amplitude, fraction of the mean
    promotion_day: int = 60
    promotion_length: int = 0  # days; 0 = no promotion
    promotion_lift: float = 0.8
    disruption_day: int = 120
    disruption_length: int = 0  # days; 0 = no disruption
    disruption_severity: float = 0.8  # fraction of capacity lost
    store_lead_time: int = 2
    supplier_lead_time: int = 3
    production_lead_time: int = 2
    num_stores: int = 3


def controls_of(scenario: Scenario) -> Controls:
    """Slider positions that reproduce a preset (as far as the sliders can express it)."""
    first = scenario.stores[0]
    promo = first.promotions[0] if first.promotions else None
    disruption = scenario.disruptions[0] if scenario.disruptions else None
    weekly = np.asarray(first.weekly_pattern) - 1.0
    retail = np.asarray(WEEKLY_RETAIL) - 1.0
    lead = scenario.lead_times
    return Controls(
        volatility=first.dispersion, weekly_seasonality=float(weekly @ retail / (retail @ retail)),
        yearly_seasonality=first.seasonality_amplitude,
        promotion_day=promo.start_day if promo else 60, promotion_length=promo.length if promo else 0,
        promotion_lift=promo.lift if promo else 0.8,
        disruption_day=disruption.start_day if disruption else 120,
        disruption_length=disruption.length if disruption else 0,
        disruption_severity=disruption.capacity_loss if disruption else 0.8,
        store_lead_time=lead.warehouse_to_store, supplier_lead_time=lead.supplier_to_warehouse,
        production_lead_time=lead.production, num_stores=scenario.num_stores,
    )


def apply_controls(preset: str, controls: Controls) -> Scenario:
    """The preset with the sliders' values; invalid combinations raise ``ScenarioError``."""
    base = get_preset(preset)
    c = controls
    weekly = tuple(float(x) for x in 1.0 + c.weekly_seasonality * (np.asarray(WEEKLY_RETAIL) - 1.0))
    promotions = (Promotion(start_day=c.promotion_day, length=c.promotion_length, lift=c.promotion_lift),) \
        if c.promotion_length > 0 else ()
    stores = tuple(dataclasses.replace(m, mean=m.mean * c.demand_level, dispersion=c.volatility,
                                       weekly_pattern=weekly, seasonality_amplitude=c.yearly_seasonality,
                                       promotions=promotions)
                   for m in base.with_num_stores(c.num_stores).stores)
    disruptions = (Disruption(start_day=c.disruption_day, length=c.disruption_length,
                              capacity_loss=c.disruption_severity),) if c.disruption_length > 0 else ()
    capacity = base.capacities.production * c.demand_level * c.num_stores / base.num_stores
    return dataclasses.replace(
        base, stores=stores, disruptions=disruptions, horizon=365,
        lead_times=LeadTimes(production=c.production_lead_time, supplier_to_warehouse=c.supplier_lead_time,
                             warehouse_to_store=c.store_lead_time),
        capacities=dataclasses.replace(base.capacities, production=capacity),
    )


def run_year(scenario: Scenario, mix: PolicyMix, seed: int) -> Rollout:
    """One chain for the scenario's horizon, on the demand of ``seed``."""
    return rollout(scenario, mix, sample_demand(scenario, 1, np.random.default_rng(seed)))


def inspect_store_policy(chooser, rule: RolePolicy, demand_level: float, lead_time: int,
                         grid: int = 21, max_cover_days: float = 10.0) -> dict[str, np.ndarray]:
    """A store's decisions over on-hand x in-transit stock (in days of demand) for one store
    selling ``demand_level`` units a day: the learned policy's menu choice, its probabilities and
    order, and the rule-based policy's order."""
    scenario = apply_controls("steady", Controls(demand_level=demand_level / STORE_MEANS[0], store_lead_time=lead_time,
                                                 num_stores=1))
    days = np.linspace(0.0, max_cover_days, grid)
    on_hand, in_transit = np.meshgrid(days, days, indexing="ij")
    state = reset(scenario, grid * grid)
    mean = scenario.stores[0].mean
    pipeline = np.zeros_like(state.store_pipeline)
    pipeline[:, 0, :] = (in_transit.reshape(-1, 1) * mean) / lead_time
    state = dataclasses.replace(state, store_on_hand=on_hand.reshape(-1, 1) * mean, store_pipeline=pipeline)
    forecast = Forecast.of(scenario)
    obs = observe("store", state, scenario, forecast).reshape(grid * grid, -1)
    action, probabilities = chooser.run(obs)
    learned_order = menu_quantities(state, scenario, forecast, "store", action.reshape(-1, 1))
    return {
        "on_hand_days": days, "in_transit_days": days,
        "safety_factor": np.asarray(SAFETY_FACTORS)[action].reshape(grid, grid),
        "probabilities": probabilities.reshape(grid, grid, -1),
        "learned_order": learned_order.reshape(grid, grid), "rule_order": rule.act(state, scenario).reshape(grid, grid),
    }
