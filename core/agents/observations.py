"""What each role observes: local, scale-free features, one function per role with the feature
names beside it (the ONNX manifest and the app's policy inspector read these lists).

Stock is measured in days of forecast demand, rates as ratios, so one policy serves any demand
level and any number of stores. A store sees only its own shelf, pipeline, customers and orders;
the warehouse its own stock, its stores' orders and stock, and its supplier's service; the
supplier its own stock, production and capacity, and the warehouse's orders. All three see the
calendar and the demand forecast (``core.simulation.forecast``).
"""

from __future__ import annotations

import numpy as np

from core.simulation.demand import demand_cv
from core.simulation.forecast import Forecast
from core.simulation.scenario import Scenario
from core.simulation.twin import State

CLIP = 60.0
EPS = 1e-6

STORE_FEATURES = (
    "on_hand_days", "in_transit_days", "backorder_days", "cover_beyond_lead_time_days",
    "yesterday_demand_ratio", "recent_demand_ratio", "recent_service_level", "recent_supply_fill",
    "forecast_next_week_ratio", "season_level", "season_sin", "season_cos", "lead_time_weeks",
    "demand_cv", "critical_ratio", "backorders_mode",
)
WAREHOUSE_FEATURES = (
    "on_hand_days", "in_transit_days", "echelon_cover_beyond_lead_time_days", "store_stock_days",
    "lowest_store_cover_days", "recent_store_orders_ratio", "recent_fill_to_stores", "recent_supply_fill",
    "recent_customer_service", "forecast_next_2_weeks_ratio", "season_level", "season_sin", "season_cos",
    "supplier_lead_time_weeks", "store_lead_time_weeks", "demand_cv", "critical_ratio", "backorders_mode",
)
SUPPLIER_FEATURES = (
    "on_hand_days", "in_production_days", "echelon_cover_beyond_lead_time_days",
    "recent_warehouse_orders_ratio", "recent_fill_to_warehouse", "capacity_ratio", "capacity_next_30_ratio",
    "forecast_next_30_ratio", "forecast_next_90_ratio", "prebuild_next_90_days", "season_level",
    "season_sin", "season_cos", "production_lead_time_weeks", "total_lead_time_weeks",
    "extra_supplier_lead_time_weeks", "demand_cv", "critical_ratio", "backorders_mode",
)
FEATURES = {"store": STORE_FEATURES, "warehouse": WAREHOUSE_FEATURES, "supplier": SUPPLIER_FEATURES}


def protection_days(scenario: Scenario, forecast: Forecast, role: str, day: int) -> int:
    """Days of demand an order placed before ``day`` must cover (the echelon lead time)."""
    lead = scenario.lead_times
    stores = lead.warehouse_to_store
    if role == "store":
        return stores
    warehouse = stores + int(forecast.supplier_lead_time[min(day, forecast.supplier_lead_time.size - 1)])
    return warehouse if role == "warehouse" else warehouse + lead.production


def daily_forecast(scenario: Scenario, forecast: Forecast, role: str, day: int) -> np.ndarray:
    """Expected demand per day over the role's protection window: (N,) for stores, () upstream."""
    days = protection_days(scenario, forecast, role, day)
    per_store = np.maximum(forecast.store_demand(day, days) / days, EPS)
    return per_store if role == "store" else per_store.sum()


def _calendar(day: int) -> tuple[float, float]:
    angle = 2 * np.pi * (day % 365) / 365.0
    return float(np.sin(angle)), float(np.cos(angle))


def _common(scenario: Scenario) -> tuple[float, float, float]:
    """Mean demand CV, the stores' critical ratio p / (p + h) and the backorders flag."""
    costs = scenario.costs
    cv = float(np.mean([demand_cv(m) for m in scenario.stores]))
    critical = costs.stockout / (costs.stockout + costs.store_holding + EPS)
    return cv, critical, float(scenario.unmet_demand == "backorders")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.clip(numerator / np.maximum(denominator, EPS), 0.0, 1.0)


def _finish(columns: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    return np.clip(np.stack([np.broadcast_to(c, shape) for c in columns], axis=-1), -CLIP, CLIP).astype(np.float32)


def store_observation(state: State, scenario: Scenario, forecast: Forecast) -> np.ndarray:
    """(B, N, len(STORE_FEATURES))."""
    day, mem = state.day, state.memory
    lead = scenario.lead_times.warehouse_to_store
    f = daily_forecast(scenario, forecast, "store", day)
    inbound = state.store_pipeline.sum(axis=2)
    position = state.store_on_hand + inbound - state.store_backorders
    next_week = forecast.store_demand(day + lead, 7) / 7.0
    sin, cos = _calendar(day)
    cv, critical, backorders = _common(scenario)
    return _finish([
        state.store_on_hand / f, inbound / f, state.store_backorders / f, position / f - lead,
        mem.last_demand / f, mem.demand / f, _ratio(mem.filled, mem.demand),
        _ratio(mem.store_shipped, mem.store_orders),
        next_week / f, f / forecast.base_mean, sin, cos, lead / 7.0,
        np.array([demand_cv(m) for m in scenario.stores]), critical, backorders,
    ], state.store_on_hand.shape)


def warehouse_observation(state: State, scenario: Scenario, forecast: Forecast) -> np.ndarray:
    """(B, len(WAREHOUSE_FEATURES))."""
    day, mem = state.day, state.memory
    window = protection_days(scenario, forecast, "warehouse", day)
    f = daily_forecast(scenario, forecast, "warehouse", day)
    store_f = daily_forecast(scenario, forecast, "store", day)
    stores = state.store_inventory_position
    inbound = state.warehouse_pipeline.sum(axis=1)
    echelon = state.warehouse_on_hand + inbound + stores.sum(axis=1)
    supplier_lead = window - scenario.lead_times.warehouse_to_store
    sin, cos = _calendar(day)
    cv, critical, backorders = _common(scenario)
    return _finish([
        state.warehouse_on_hand / f, inbound / f, echelon / f - window, stores.sum(axis=1) / f,
        (stores / store_f).min(axis=1), mem.store_orders.sum(axis=1) / f,
        _ratio(mem.store_shipped.sum(axis=1), mem.store_orders.sum(axis=1)),
        _ratio(mem.supplier_shipped, mem.warehouse_order),
        _ratio(mem.filled.sum(axis=1), mem.demand.sum(axis=1)),
        forecast.store_demand(day + window, 14).sum() / 14.0 / f, f / forecast.base_mean.sum(), sin, cos,
        supplier_lead / 7.0, scenario.lead_times.warehouse_to_store / 7.0, cv, critical, backorders,
    ], state.warehouse_on_hand.shape)


def supplier_observation(state: State, scenario: Scenario, forecast: Forecast) -> np.ndarray:
    """(B, len(SUPPLIER_FEATURES))."""
    day, mem = state.day, state.memory
    window = protection_days(scenario, forecast, "supplier", day)
    f = daily_forecast(scenario, forecast, "supplier", day)
    in_production = state.production_pipeline.sum(axis=1)
    echelon = state.supplier_on_hand + in_production + state.warehouse_inventory_position \
        + state.store_inventory_position.sum(axis=1)
    shortfall = forecast.prebuild(day, window, 90)
    base_lead = scenario.lead_times.supplier_to_warehouse
    supplier_lead = window - scenario.lead_times.warehouse_to_store - scenario.lead_times.production
    sin, cos = _calendar(day)
    cv, critical, backorders = _common(scenario)
    capacity_now = min(float(forecast.capacity[min(day, forecast.capacity.size - 1)]) / f, 5.0)
    capacity_30 = min(forecast.capacity_over(day, 30) / (30.0 * f), 5.0)
    return _finish([
        state.supplier_on_hand / f, in_production / f, echelon / f - window,
        mem.warehouse_order / f, _ratio(mem.supplier_shipped, mem.warehouse_order), capacity_now, capacity_30,
        forecast.store_demand(day + window, 30).sum() / 30.0 / f,
        forecast.store_demand(day + window, 90).sum() / 90.0 / f, shortfall / f,
        f / forecast.base_mean.sum(), sin, cos, scenario.lead_times.production / 7.0, window / 7.0,
        (supplier_lead - base_lead) / 7.0, cv, critical, backorders,
    ], state.supplier_on_hand.shape)


OBSERVERS = {"store": store_observation, "warehouse": warehouse_observation, "supplier": supplier_observation}
