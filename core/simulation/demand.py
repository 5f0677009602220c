"""Customer demand: vectorised generators for a scenario's demand models, and real sales
history read from a CSV file.

A demand path is a (B, T, N) array of units: chain, day, store. Policies compared on the same
path see the same customers (common random numbers).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from core.simulation.limits import (
    MAX_DAYS,
    MAX_DEMAND_CSV_BYTES,
    MAX_DEMAND_MEAN,
    MAX_NAME_LENGTH,
    MAX_STORES,
    MIN_QUANTITY,
)
from core.simulation.scenario import DemandModel, Scenario
from core.simulation.untrusted import InputFileError, name_problem, read_text, shown, shown_path

COLUMNS = ("date", "store", "quantity")
DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
QUANTITY = re.compile(r"[0-9]{1,15}(\.[0-9]{0,15})?|\.[0-9]{1,15}")  # plain decimal: no sign, exponent, "_", NaN


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
    """Read sales history with exactly the columns ``date`` (YYYY-MM-DD), ``store`` (a name, see
    ``core.simulation.untrusted.name_problem``) and ``quantity`` (a plain decimal number of units from 0
    to ``MAX_DEMAND_MEAN``), from a UTF-8 file (a leading byte-order mark is fine) of at most
    ``MAX_DEMAND_CSV_BYTES``.

    Returns a (T, N) array (days in date order, stores in name order) and the store names.
    Every store needs a row for every date between the first and the last. At most ``MAX_STORES``
    stores and ``MAX_DAYS`` days, checked row by row before the array is allocated.
    """
    where = shown_path(path)
    try:
        text = read_text(Path(path), MAX_DEMAND_CSV_BYTES)
    except InputFileError as exc:
        raise DemandFileError(f"{where}: {exc}") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        table = _read_rows(reader, where)
    except csv.Error as exc:
        raise DemandFileError(f"{where}:{reader.line_num}: not valid CSV ({exc})") from None
    if not table:
        raise DemandFileError(f"{where}: no rows of sales history")
    stores = sorted({s for _, s in table})
    first = min(d for d, _ in table)
    days = (max(d for d, _ in table) - first).days + 1
    history = np.empty((days, len(stores)))
    for j, store in enumerate(stores):
        for i in range(days):
            date = first + dt.timedelta(days=i)
            if (date, store) not in table:
                raise DemandFileError(f"{where}: no row for store {shown(store)} on {date}")
            history[i, j] = table[(date, store)]
    return history, stores


def _read_rows(reader: Iterator[list[str]], where: str) -> dict[tuple[dt.date, str], float]:
    """{(date, store): quantity} of every row, each checked; the store count and the date span are
    checked as rows arrive, so a file cannot make the table (or the history array) large."""
    header = next(reader, None)
    if header is None or len(header) != len(COLUMNS) or set(header) != set(COLUMNS):
        raise DemandFileError(f"{where}: need exactly the columns {', '.join(COLUMNS)}; got {shown(header)}")
    index = [header.index(name) for name in COLUMNS]
    table: dict[tuple[dt.date, str], float] = {}
    stores: set[str] = set()
    first = last = None
    for row in reader:
        line = reader.line_num
        if not row:
            continue  # a blank line
        if len(row) != len(COLUMNS):
            raise DemandFileError(f"{where}:{line}: {len(row)} fields; allowed: exactly {len(COLUMNS)} "
                                  f"({', '.join(COLUMNS)})")
        date_text, store, quantity_text = (row[i] for i in index)
        date = _date(date_text)
        if date is None:
            raise DemandFileError(f"{where}:{line}: date {shown(date_text)} is not a date written YYYY-MM-DD")
        problem = name_problem(store)
        if problem:
            raise DemandFileError(f"{where}:{line}: store {shown(store)}: {problem}; allowed: 1 to "
                                  f"{MAX_NAME_LENGTH} printable characters without leading or trailing whitespace")
        if not (QUANTITY.fullmatch(quantity_text) and float(quantity_text) <= MAX_DEMAND_MEAN):
            raise DemandFileError(f"{where}:{line}: quantity {shown(quantity_text)}; allowed: a plain decimal "
                                  f"number from 0 to {MAX_DEMAND_MEAN:g}, like 12 or 3.5")
        if store not in stores and len(stores) == MAX_STORES:
            raise DemandFileError(f"{where}:{line}: store {shown(store)} would be store {MAX_STORES + 1}; "
                                  f"allowed: at most {MAX_STORES} stores")
        stores.add(store)
        first, last = min(first or date, date), max(last or date, date)
        if (last - first).days >= MAX_DAYS:
            raise DemandFileError(f"{where}:{line}: date {date} makes the history span {first}..{last}, "
                                  f"{(last - first).days + 1:,} days; allowed: at most {MAX_DAYS:,} days")
        if (date, store) in table:
            raise DemandFileError(f"{where}:{line}: a second row for store {shown(store)} on {date}")
        table[(date, store)] = float(quantity_text)
    return table


def _date(text: str) -> dt.date | None:
    if not DATE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def scenario_for_history(scenario: Scenario, history: np.ndarray) -> Scenario:
    """The scenario with one store per history column, each with the column's mean and
    coefficient of variation, and the history's length as horizon."""
    means = np.maximum(history.mean(axis=0), MIN_QUANTITY)
    stores = tuple(
        dataclasses.replace(scenario.stores[i % scenario.num_stores], mean=float(m),
                            dispersion=float(min(history[:, i].std() / m, 5.0)),
                            weekly_pattern=(1.0,) * 7, seasonality_amplitude=0.0, trend=0.0, promotions=(),
                            shock_probability=0.0)
        for i, m in enumerate(means)
    )
    return dataclasses.replace(scenario, stores=stores, horizon=history.shape[0])
