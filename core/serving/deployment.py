"""The twin's store states as the raw business rows ``exported_models/deploy_policy.py`` decides from.

A deployer knows stock, the pipeline by arrival day, a forecast and its error, lead times, recent sales and
costs per store and product, not this project's engineered features; ``store_rows`` writes a twin state in
those terms (the columns of ``deploy_policy.STATE_COLUMNS``), one row per chain (a product) and store, so the batch
deployment can be checked against the served policies and timed on states the twin produces.
"""

from __future__ import annotations

import numpy as np

from core.agents.roles import STORE
from core.agents.rules import demand_sd
from core.simulation.demand import demand_cv
from core.simulation.forecast import Forecast
from core.simulation.scenario import Scenario
from core.simulation.twin import State


def store_rows(state: State, scenario: Scenario, forecast: Forecast) -> dict[str, np.ndarray]:
    """Every store of every chain of ``state`` as a raw row (B * N rows, chain-major), by column."""
    b, n = state.store_on_hand.shape
    day, memory = state.day, state.memory
    lead = scenario.lead_times.warehouse_to_store
    forecast_per_day = STORE.daily_forecast(scenario, forecast, day)

    def per_store(values: np.ndarray | float) -> np.ndarray:
        return np.broadcast_to(np.asarray(values, dtype=float), (b, n)).reshape(-1).copy()

    rows = {"role": np.full(b * n, "store"), "store": np.tile(np.arange(n), b), "product": np.repeat(np.arange(b), n),
            "day": per_store(day), "on_hand": per_store(state.store_on_hand),
            "backorders": per_store(state.store_backorders)}
    for k in range(state.store_pipeline.shape[2]):
        rows[f"pipeline_day_{k + 1}"] = per_store(state.store_pipeline[:, :, k])
    rows.update({
        "lead_time_days": per_store(lead),
        "forecast_over_lead_time": per_store(forecast.store_demand(day, lead)),
        "forecast_week_after_lead_time": per_store(forecast.store_demand(day + lead, 7)),
        "average_demand_per_day": per_store(forecast.base_mean),
        "demand_sd_per_day": per_store(demand_sd(scenario, forecast_per_day)),
        "demand_cv": per_store(np.array([demand_cv(m) for m in scenario.stores])),
        "yesterday_demand": per_store(memory.last_demand),
        "recent_demand_per_day": per_store(memory.demand),
        "recent_sales_per_day": per_store(memory.filled),
        "recent_orders_per_day": per_store(memory.store_orders),
        "recent_received_per_day": per_store(memory.store_shipped),
        "holding_cost_per_unit_day": per_store(scenario.costs.store_holding),
        "stockout_cost_per_unit": per_store(scenario.costs.stockout),
        "backorders_allowed": per_store(float(scenario.unmet_demand == "backorders")),
        "whole_units": per_store(float(scenario.whole_units)),
    })
    return rows
