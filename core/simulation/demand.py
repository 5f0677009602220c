"""Customer demand: vectorised generators for a scenario's demand models, and real sales
history read from a CSV file.

A demand path is a (B, T, N) array of units: chain, day, store. Policies compared on the same
path see the same customers (common random numbers).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import functools
import math
from pathlib import Path

import numpy as np

from core.simulation.scenario import DemandModel, Scenario


class DemandFileError(ValueError):
    """A demand history file cannot be read; the message names the line and the problem."""


def expected_demand(model: DemandModel, days: np.ndarray) -> np.ndarray:
    """Mean demand (units) on each of ``days`` (0-based episode days), before shocks."""
    t = days.astype(float)
    weekly = np.asarray(model.weekly_pattern)[days % 7]
    season = 1.0 + model.seasonality_amplitude * np.cos(2 * np.pi * (t - model.seasonality_peak_day) / 365.0)
    trend = 1.0 + model.trend * t / 365.0
    lift = np.ones_like(t)
    for promo in model.promotions:
        active = (days >= promo.start_day) & (days < promo.start_day + promo.length)
        lift = np.where(active, lift + promo.lift, lift)
    return model.mean * weekly * season * np.maximum(trend, 0.0) * lift


def expected_demand_matrix(scenario: Scenario, days: np.ndarray) -> np.ndarray:
    """(len(days), N) mean demand of every store, random shocks' expected lift included."""
    return np.stack([expected_demand(m, days) * shock_lift(m) for m in scenario.stores], axis=1)


def shock_lift(model: DemandModel) -> float:
    """Expected demand multiplier of random shocks: 1 + probability x size."""
    return 1.0 + model.shock_probability * model.shock_size


@functools.lru_cache(maxsize=4096)  # models are frozen; policies and observers ask every day
def demand_cv(model: DemandModel) -> float:
    """Coefficient of variation of a day's demand around its expectation, random shocks included:
    demand is mean x S x noise, with S = 1 + size on a shock day and noise of CV ``dispersion``."""
    p, size = model.shock_probability, model.shock_size
    lift = shock_lift(model)
    second_moment = 1.0 + p * ((1.0 + size) ** 2 - 1.0)
    return math.sqrt(second_moment * (1.0 + model.dispersion**2) / lift**2 - 1.0)


def _draw(model: DemandModel, mean: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Demand around ``mean`` (any shape) with coefficient of variation ``model.dispersion``."""
    sd = model.dispersion * mean
    if model.distribution == "normal":
        return np.maximum(mean + sd * rng.standard_normal(mean.shape), 0.0)
    # Negative binomial as a gamma-Poisson mixture: variance = mean + mean^2 / k = sd^2.
    extra = sd**2 - mean
    overdispersed = extra > 1e-12
    shape = np.where(overdispersed, mean**2 / np.where(overdispersed, extra, 1.0), 1.0)
    rate = np.where(overdispersed, rng.gamma(shape, 1.0) * mean / shape, mean)
    return rng.poisson(rate).astype(float)


def sample_demand(scenario: Scenario, batch_size: int, rng: np.random.Generator,
                  periods: int | None = None) -> np.ndarray:
    """(B, T, N) random demand for the scenario; T defaults to the horizon."""
    days = np.arange(scenario.horizon if periods is None else periods)
    path = np.empty((batch_size, days.size, scenario.num_stores))
    for i, model in enumerate(scenario.stores):
        mean = np.broadcast_to(expected_demand(model, days), (batch_size, days.size))
        if model.shock_probability > 0:
            shock = rng.random(mean.shape) < model.shock_probability
            mean = mean * np.where(shock, 1.0 + model.shock_size, 1.0)
        path[:, :, i] = _draw(model, np.ascontiguousarray(mean), rng)
    return path


def load_demand_csv(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read sales history with columns ``date`` (YYYY-MM-DD), ``store`` and ``quantity``.

    Returns a (T, N) array (days in date order, stores in name order) and the store names.
    Every store needs a row for every date between the first and the last.
    """
    path = Path(path)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        raise DemandFileError(f"{path}: cannot read ({exc.strerror})") from None
    if not rows or set(rows[0]) != {"date", "store", "quantity"}:
        raise DemandFileError(f"{path}: need exactly the columns date, store, quantity")
    table: dict[tuple[dt.date, str], float] = {}
    for line, row in enumerate(rows, start=2):
        try:
            date = dt.date.fromisoformat(row["date"])
        except (TypeError, ValueError):
            raise DemandFileError(f"{path}:{line}: date {row['date']!r} is not YYYY-MM-DD") from None
        try:
            quantity = float(row["quantity"])
        except (TypeError, ValueError):
            quantity = float("nan")
        if not np.isfinite(quantity) or quantity < 0:
            raise DemandFileError(f"{path}:{line}: quantity {row['quantity']!r}; allowed: a number >= 0")
        if (date, row["store"]) in table:
            raise DemandFileError(f"{path}:{line}: a second row for store {row['store']!r} on {date}")
        table[(date, row["store"])] = quantity
    stores = sorted({s for _, s in table})
    first = min(d for d, _ in table)
    days = (max(d for d, _ in table) - first).days + 1
    history = np.empty((days, len(stores)))
    for j, store in enumerate(stores):
        for i in range(days):
            date = first + dt.timedelta(days=i)
            if (date, store) not in table:
                raise DemandFileError(f"{path}: no row for store {store!r} on {date}")
            history[i, j] = table[(date, store)]
    return history, stores


def scenario_for_history(scenario: Scenario, history: np.ndarray) -> Scenario:
    """The scenario with one store per history column, each with the column's mean and
    coefficient of variation, and the history's length as horizon."""
    means = np.maximum(history.mean(axis=0), 1e-6)
    stores = tuple(
        dataclasses.replace(scenario.stores[i % scenario.num_stores], mean=float(m),
                            dispersion=float(min(history[:, i].std() / m, 5.0)),
                            weekly_pattern=(1.0,) * 7, seasonality_amplitude=0.0, trend=0.0, promotions=(),
                            shock_probability=0.0)
        for i, m in enumerate(means)
    )
    return dataclasses.replace(scenario, stores=stores, horizon=history.shape[0])
