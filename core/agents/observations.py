"""What each role observes: local, scale-free features, one function per role that names each
feature beside its value (``FEATURES``, read by the ONNX manifest and the app's policy inspector,
comes from those names, so a column always matches its name).

Stock is measured in days of forecast demand, rates as ratios, so one policy serves any demand
level and any number of stores. A store sees only its own shelf, pipeline, customers and orders;
the warehouse its own stock, its stores' orders and stock, and its supplier's service; the
supplier its own stock, production and capacity, and the warehouse's orders. All three see the
calendar and the demand forecast (``core.simulation.forecast``).
"""

from __future__ import annotations

from collections.abc import Mapping
from statistics import NormalDist

import numpy as np

from core.agents.roles import EPS, ROLE, STORE, SUPPLIER, WAREHOUSE
from core.agents.rules import demand_sd
from core.simulation.forecast import Forecast
from core.simulation.presets import get_preset
from core.simulation.scenario import Scenario
from core.simulation.twin import State, reset

CLIP = 60.0
TUNED = "tuned_safety_factor"  # every role's last feature: its tuned constant menu entry for the scenario
NORMAL = NormalDist()
NEWSVENDOR_LIMIT = 3.0  # the newsvendor safety factor feature stays within +-this
PROFILE_DAYS = 7  # a store sees what arrives on each of the next this many mornings (longer lead times: the rest
# in transit is counted in ``in_transit_days``)

Columns = dict[str, np.ndarray]  # feature name -> values, each broadcastable to the role's agents' shape


def _calendar(day: int) -> Columns:
    """Day of the year on the unit circle."""
    angle = 2 * np.pi * (day % 365) / 365.0
    return {"season_sin": float(np.sin(angle)), "season_cos": float(np.cos(angle))}


def _market(scenario: Scenario, demand_cv: np.ndarray | float) -> Columns:
    """Demand volatility, the stores' critical ratio p / (p + h), its newsvendor safety factor (the standard
    normal quantile of that ratio: the menu's unit) and the backorders flag."""
    costs = scenario.costs
    ratio = costs.stockout / (costs.stockout + costs.store_holding + EPS)
    return {"demand_cv": demand_cv, "critical_ratio": ratio,
            "newsvendor_safety_factor": newsvendor_safety_factor(ratio),
            "backorders_mode": float(scenario.unmet_demand == "backorders")}


def newsvendor_safety_factor(critical_ratio: float) -> float:
    """The standard normal quantile of ``critical_ratio``, within +-``NEWSVENDOR_LIMIT``."""
    ratio = min(max(critical_ratio, NORMAL.cdf(-NEWSVENDOR_LIMIT)), NORMAL.cdf(NEWSVENDOR_LIMIT))
    return NORMAL.inv_cdf(ratio)


def _mean_cv(scenario: Scenario) -> float:
    return float(np.mean(scenario.store_cvs))


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.clip(numerator / np.maximum(denominator, EPS), 0.0, 1.0)


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal distribution function (Abramowitz and Stegun 7.1.26, error below 1e-7; NumPy
    only, as the deployment script computes it)."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x) / np.sqrt(2.0))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-0.5 * x * x)
    return 0.5 * (1.0 + np.sign(x) * erf)


def positive_part_mean(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[max(X, 0)] for X normal with ``mean`` and standard deviation ``sd`` (> 0)."""
    ratio = mean / sd
    return mean * normal_cdf(ratio) + sd * np.exp(-0.5 * ratio * ratio) / np.sqrt(2.0 * np.pi)


def expected_stock_at_arrival(stock: np.ndarray, arrivals: list[np.ndarray], daily_forecast: np.ndarray,
                              daily_sd: np.ndarray, lost_sales: bool) -> np.ndarray:
    """Stock expected on hand the morning an order placed tonight arrives: ``stock`` (on hand less
    backorders) plus each earlier morning's ``arrivals`` less that day's demand. Where sales are lost
    what is left each evening cannot go below zero: its expectation under normal demand (the
    uncertainty growing by a day's variance a day) is what the pipeline is worth, and with a long
    lead time it is well below the inventory position's promise."""
    variance = np.zeros_like(stock)
    for arriving in arrivals:
        stock = stock + arriving - daily_forecast
        if lost_sales:
            variance = variance + daily_sd**2
            stock = positive_part_mean(stock, np.sqrt(np.maximum(variance, EPS)))
    return stock


def _arrival_profile(state: State, daily_forecast: np.ndarray) -> Columns:
    """Units arriving on each of the next ``PROFILE_DAYS`` mornings, in days of forecast demand."""
    pipeline = state.store_pipeline
    return {f"arriving_in_{k + 1}_days": (pipeline[..., k] if k < pipeline.shape[-1] else 0.0) / daily_forecast
            for k in range(PROFILE_DAYS)}


def store_observation(state: State, scenario: Scenario, forecast: Forecast) -> Columns:
    """Each store's features, (B, N) each."""
    day, mem = state.day, state.memory
    lead = scenario.lead_times.warehouse_to_store
    f = STORE.daily_forecast(scenario, forecast, day)
    inbound = state.store_pipeline.sum(axis=2)
    position = state.store_on_hand + inbound - state.store_backorders
    sd = demand_sd(scenario, f)
    spread = np.maximum(sd * np.sqrt(lead), EPS)  # the menu's unit: a standard deviation of lead-time demand
    arrivals = [state.store_pipeline[..., k] for k in range(lead - 1)]
    stock = state.store_on_hand - state.store_backorders
    expected = expected_stock_at_arrival(stock, arrivals, f, sd, scenario.unmet_demand == "lost_sales")
    promised = stock + sum(arrivals) - (lead - 1) * f  # the same without lost sales
    return {
        "on_hand_days": state.store_on_hand / f,
        "in_transit_days": inbound / f,
        **_arrival_profile(state, f),
        "expected_stock_at_arrival_days": expected / f,
        "position_safety_factor": (position - f * lead) / spread,
        "expected_lost_before_arrival_spreads": (expected - promised) / spread,
        "day_of_demand_spreads": f / spread,
        "backorder_days": state.store_backorders / f,
        "cover_beyond_lead_time_days": position / f - lead,
        "yesterday_demand_ratio": mem.last_demand / f,
        "recent_demand_ratio": mem.demand / f,
        "recent_service_level": _ratio(mem.filled, mem.demand),
        "recent_supply_fill": _ratio(mem.store_shipped, mem.store_orders),
        "forecast_next_week_ratio": forecast.store_demand(day + lead, 7) / 7.0 / f,
        "season_level": f / forecast.base_mean,
        **_calendar(day),
        "lead_time_weeks": lead / 7.0,
        **_market(scenario, scenario.store_cvs),
    }


def warehouse_observation(state: State, scenario: Scenario, forecast: Forecast) -> Columns:
    """The warehouse's features, (B,) each."""
    day, mem = state.day, state.memory
    window = WAREHOUSE.protection_days(scenario, forecast, day)
    f = WAREHOUSE.daily_forecast(scenario, forecast, day)
    stores = state.store_inventory_position
    inbound = state.warehouse_pipeline.sum(axis=1)
    store_lead = scenario.lead_times.warehouse_to_store
    return {
        "on_hand_days": state.warehouse_on_hand / f,
        "in_transit_days": inbound / f,
        "echelon_cover_beyond_lead_time_days": (state.warehouse_on_hand + inbound + stores.sum(axis=1)) / f - window,
        "store_stock_days": stores.sum(axis=1) / f,
        "lowest_store_cover_days": (stores / STORE.daily_forecast(scenario, forecast, day)).min(axis=1),
        "recent_store_orders_ratio": mem.store_orders.sum(axis=1) / f,
        "recent_fill_to_stores": _ratio(mem.store_shipped.sum(axis=1), mem.store_orders.sum(axis=1)),
        "recent_supply_fill": _ratio(mem.supplier_shipped, mem.warehouse_order),
        "recent_customer_service": _ratio(mem.filled.sum(axis=1), mem.demand.sum(axis=1)),
        "forecast_next_2_weeks_ratio": forecast.store_demand(day + window, 14).sum() / 14.0 / f,
        "season_level": f / forecast.base_mean.sum(),
        **_calendar(day),
        "supplier_lead_time_weeks": (window - store_lead) / 7.0,
        "store_lead_time_weeks": store_lead / 7.0,
        **_market(scenario, _mean_cv(scenario)),
    }


def supplier_observation(state: State, scenario: Scenario, forecast: Forecast) -> Columns:
    """The supplier's features, (B,) each."""
    day, mem = state.day, state.memory
    window = SUPPLIER.protection_days(scenario, forecast, day)
    f = SUPPLIER.daily_forecast(scenario, forecast, day)
    in_production = state.production_pipeline.sum(axis=1)
    echelon = state.supplier_on_hand + in_production + state.warehouse_inventory_position \
        + state.store_inventory_position.sum(axis=1)
    lead = scenario.lead_times
    supplier_lead = window - lead.warehouse_to_store - lead.production
    return {
        "on_hand_days": state.supplier_on_hand / f,
        "in_production_days": in_production / f,
        "echelon_cover_beyond_lead_time_days": echelon / f - window,
        "recent_warehouse_orders_ratio": mem.warehouse_order / f,
        "recent_fill_to_warehouse": _ratio(mem.supplier_shipped, mem.warehouse_order),
        "capacity_ratio": min(float(forecast.capacity[min(day, forecast.capacity.size - 1)]) / f, 5.0),
        "capacity_next_30_ratio": min(forecast.capacity_over(day, 30) / (30.0 * f), 5.0),
        "forecast_next_30_ratio": forecast.store_demand(day + window, 30).sum() / 30.0 / f,
        "forecast_next_90_ratio": forecast.store_demand(day + window, 90).sum() / 90.0 / f,
        "prebuild_next_90_days": forecast.prebuild(day, window, 90) / f,
        "season_level": f / forecast.base_mean.sum(),
        **_calendar(day),
        "production_lead_time_weeks": lead.production / 7.0,
        "total_lead_time_weeks": window / 7.0,
        "extra_supplier_lead_time_weeks": (supplier_lead - lead.supplier_to_warehouse) / 7.0,
        **_market(scenario, _mean_cv(scenario)),
    }


OBSERVERS = {"store": store_observation, "warehouse": warehouse_observation, "supplier": supplier_observation}


def observe(role: str, state: State, scenario: Scenario, forecast: Forecast, tuned: Mapping[str, float]) -> np.ndarray:
    """The role's observations, float32 of shape (agents shape, features) in ``FEATURES[role]`` order,
    each feature clipped to +-``CLIP``; ``tuned`` holds each role's tuned safety factor for the scenario."""
    columns = {**OBSERVERS[role](state, scenario, forecast), TUNED: tuned[role]}
    names = FEATURES[role]
    stacked = np.empty((*ROLE[role].agents_shape(state), len(names)), np.float32)
    for i, name in enumerate(names):
        stacked[..., i] = columns[name]  # broadcast into place
    return np.clip(stacked, -CLIP, CLIP, out=stacked)


def _feature_names() -> dict[str, tuple[str, ...]]:
    """Every observer's feature names, in the order it lists them (read off one observation of a preset)."""
    scenario = get_preset("steady")
    state, forecast = reset(scenario, 1), Forecast.of(scenario, 1)
    return {role: (*observer(state, scenario, forecast), TUNED) for role, observer in OBSERVERS.items()}


FEATURES = _feature_names()  # role -> its feature names: the columns of its observations, in order
