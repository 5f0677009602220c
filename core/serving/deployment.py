"""The twin's store states as the raw business rows ``exported_models/deploy_policy.py`` decides from, and the
single mode's example observation.

A deployer knows stock, the pipeline by arrival day, a forecast and its error, lead times, recent sales and
costs per store and product, not this project's engineered features; ``store_rows`` writes a twin state in
those terms (the columns of ``deploy_policy.STATE_COLUMNS``), one row per chain (a product) and store, so the batch
deployment can be checked against the served policies and timed on states the twin produces. Its column
``tuned_safety_factor`` is the store's tuned constant menu entry for the scenario, the one the served store policy
observes (``core.serving.registry.scenario_tuning``: shipped in the models' manifest or tuned here, the entries
``python -m core tune --scenario FILE --menu`` prints).

The single mode reads a role's engineered features and the terms of its order instead: ``example_observation`` is
one store's, from the twin, and ``write_example_observation`` writes it beside the script
(``exported_models/example_observation.json``):

    python -c "from core.serving.deployment import write_example_observation; write_example_observation()"
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from core.agents.menus import reference_policy
from core.agents.observations import FEATURES, TUNED, observe
from core.agents.roles import ROLES, STORE
from core.agents.rules import PolicyMix, demand_sd
from core.agents.tuning import tuned_safety_factors
from core.serving.files import write_bytes_atomic
from core.serving.models import EXPORTED_MODELS
from core.serving.registry import scenario_tuning
from core.simulation.demand import demand_cv, sample_demand
from core.simulation.forecast import Forecast
from core.simulation.presets import PRESETS
from core.simulation.scenario import Scenario
from core.simulation.twin import State, reset, step

EXAMPLE_OBSERVATION = EXPORTED_MODELS / "example_observation.json"
EXAMPLE_PRESET, EXAMPLE_DAY, EXAMPLE_SEED = "steady", 60, 0


def store_rows(state: State, scenario: Scenario, forecast: Forecast,
               tuned: Mapping[str, float] | None = None) -> dict[str, np.ndarray]:
    """Every store of every chain of ``state`` as a raw row (B * N rows, chain-major), by column; ``tuned`` holds
    each role's tuned safety factor for ``scenario`` (its store entry is the column ``tuned_safety_factor``), by
    default what serving observes (``registry.scenario_tuning``: shipped for the scenario or tuned here once)."""
    if tuned is None:
        tuned = scenario_tuning()(scenario)
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
        TUNED: per_store(float(tuned["store"])),
    })
    return rows


def example_state(preset: str = EXAMPLE_PRESET, day: int = EXAMPLE_DAY, seed: int = EXAMPLE_SEED
                  ) -> tuple[Scenario, Forecast, State]:
    """One chain of ``preset`` after ``day`` days, at the evening review, every role on its reference entry until
    then (forecast base-stock, which no model changes), on the demand of ``seed``."""
    scenario = PRESETS[preset]
    mix = PolicyMix(*(reference_policy(role) for role in ROLES))
    demand = sample_demand(scenario, 1, np.random.default_rng(seed), day)
    state = reset(scenario, 1)
    for t in range(day):
        state, _ = step(state, mix.actions(state, scenario), demand[:, t], scenario)
    return scenario, Forecast.of(scenario), state


def example_observation(preset: str = EXAMPLE_PRESET, day: int = EXAMPLE_DAY, seed: int = EXAMPLE_SEED) -> dict:
    """The single mode's input for store 0 of ``example_state``: its features by name (the twin's observation, each
    the shortest decimal of its float32) and its order's terms (the twin's protection window, daily forecast and
    demand spread over it, and inventory position, to 6 decimals), as the script reads them."""
    scenario, forecast, state = example_state(preset, day, seed)
    observation = observe("store", state, scenario, forecast, tuned_safety_factors(scenario))[0, 0]
    days = STORE.protection_days(scenario, forecast, state.day)
    daily = STORE.daily_forecast(scenario, forecast, state.day)
    return {
        "about": f"store 0 of the {preset} preset at the review after {day} days, its chain run by forecast "
                 f"base-stock on demand seed {seed}; written by core.serving.deployment.write_example_observation",
        "features": {name: float(str(value)) for name, value in zip(FEATURES["store"], observation, strict=True)},
        "order": {"forecast_per_day": round(float(daily[0]), 6), "protection_days": int(days),
                  "demand_sd_per_day": round(float(demand_sd(scenario, daily)[0]), 6),
                  "inventory_position": round(float(STORE.echelon_position(state)[0, 0]), 6),
                  "whole_units": scenario.whole_units},
    }


def write_example_observation(path: Path = EXAMPLE_OBSERVATION) -> None:
    """``example_observation()`` as JSON at ``path`` (atomically)."""
    write_bytes_atomic(path, (json.dumps(example_observation(), indent=2) + "\n").encode())
