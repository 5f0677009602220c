"""``python -m core sweep``: where does learning pay? Every registered policy on a grid of scenarios.

The grid spans the ranges of the app's sliders (``core.simulation.randomization.RANGES``): demand volatility
(the stores' coefficient of variation), the warehouse-to-store lead time, the number of stores, the production
capacity (a multiple of mean demand) and the stockout-to-holding cost ratio, around a base preset. Every grid
point runs every registered policy that applies (each role on the same key) on the same ``seeds`` demand paths
(common random numbers), as (point, policy, block of seeds) tasks of ``core.evaluation.distributed``, so a
Ray run gives the same table. The table is tidy: one row per point and policy.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import math
from pathlib import Path

import numpy as np

from core.evaluation.distributed import Executor, SerialExecutor, bound_job, per_seed, policy_job
from core.evaluation.statistics import EVAL_SEED, mean_ci, paired
from core.serving.files import write_bytes_atomic
from core.serving.models import EXPORTED_MODELS
from core.serving.registry import POLICIES, applicable, uniform
from core.simulation.presets import PRESETS
from core.simulation.randomization import RANGES
from core.simulation.scenario import Scenario, ScenarioError

PARAMETERS = {  # grid parameter -> (range, integer)
    "dispersion": (RANGES["dispersion"], False),
    "warehouse_to_store": (RANGES["warehouse_to_store"], True),
    "num_stores": (RANGES["num_stores"], True),
    "capacity_factor": (RANGES["capacity_factor"], False),
    "cost_ratio": ((1.0, 100.0), False),  # stockout cost per unit over the store's holding cost per unit-day
}
DEFAULT_GRID = {"dispersion": (0.2, 0.8), "warehouse_to_store": (1, 3), "num_stores": (3,),
                "capacity_factor": (1.5,), "cost_ratio": (4.0, 40.0)}
DEFAULT_BASE = "steady"
DEFAULT_SEEDS = 8
EXCLUDED = ("random",)  # its draws depend on how many chains share its generator, not on the seeds alone
LEARNED = "learned"
MAX_POINTS = 256


def parse_values(name: str, text: str) -> tuple[float, ...]:
    """A grid axis from ``--NAME v1,v2,...``, each value in its range (integers where they must be)."""
    (low, high), integer = PARAMETERS[name]
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or not low <= value <= high or (integer and value != int(value)):
            kind = "integers" if integer else "numbers"
            raise ScenarioError(f"--{name.replace('_', '-')}: got {item.strip()[:30]!r}; allowed: {kind} from "
                                f"{low:g} to {high:g}, separated by commas")
        values.append(int(value) if integer else value)
    return tuple(dict.fromkeys(values))


def grid_points(grid: dict[str, tuple[float, ...]]) -> list[dict[str, float]]:
    """Every combination of the grid's values (at most ``MAX_POINTS``)."""
    count = math.prod(len(values) for values in grid.values())
    if count > MAX_POINTS:
        raise ScenarioError(f"grid: got {count} points; allowed: at most {MAX_POINTS}")
    return [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]


def point_scenario(base: Scenario, point: dict[str, float], periods: int | None = None) -> Scenario:
    """``base`` with the point's volatility, store lead time, stores, capacity and cost ratio (and ``periods``
    days, default the base's horizon)."""
    scenario = base.with_num_stores(int(point["num_stores"]))
    stores = tuple(dataclasses.replace(m, dispersion=point["dispersion"]) for m in scenario.stores)
    mean_total = sum(m.mean for m in stores)
    name = "sweep_" + "_".join(f"{k}={v:g}" for k, v in point.items())
    return dataclasses.replace(
        scenario, name=name[:64], stores=stores, horizon=periods or base.horizon,
        lead_times=dataclasses.replace(base.lead_times, warehouse_to_store=int(point["warehouse_to_store"])),
        capacities=dataclasses.replace(base.capacities, production=point["capacity_factor"] * mean_total),
        costs=dataclasses.replace(base.costs, stockout=point["cost_ratio"] * base.costs.store_holding))


def swept_policies(scenario: Scenario) -> dict[str, dict[str, str]]:
    """Every registered policy that applies to ``scenario`` (but ``EXCLUDED``), every role on it."""
    return {key: uniform(key) for key in applicable(scenario) if key not in EXCLUDED}


def sweep(grid: dict[str, tuple[float, ...]] | None = None, base: str = DEFAULT_BASE, seeds: int = DEFAULT_SEEDS,
          seed: int = EVAL_SEED, periods: int | None = None, models: Path = EXPORTED_MODELS, bound: bool = False,
          run: Executor | None = None) -> list[dict[str, object]]:
    """The tidy table: per grid point and policy, the mean cost per day and fill rate with 95 % intervals, the
    paired cost difference against the point's best rule, and (``bound``) the clairvoyant bound."""
    points = grid_points(DEFAULT_GRID if grid is None else grid)
    scenarios = [point_scenario(PRESETS[base], point, periods) for point in points]
    jobs = {(i, name): policy_job(scenario, choices, seeds, seed, models)
            for i, scenario in enumerate(scenarios) for name, choices in swept_policies(scenario).items()}
    if bound:
        jobs.update({(i, "bound"): bound_job(scenario, seeds, seed) for i, scenario in enumerate(scenarios)})
    results = per_seed(run or SerialExecutor(), jobs)
    rows = []
    for i, point in enumerate(points):
        costs = {name: value["cost_per_day"] for (j, name), value in results.items() if j == i and name != "bound"}
        rules = [name for name in costs if POLICIES[name].rule]
        best = min(rules, key=lambda name: float(costs[name].mean()))
        for name, cost in costs.items():
            fill = results[(i, name)]["fill_rate"]
            row = {**point, "base": base, "seeds": seeds, "policy": name, "label": POLICIES[name].label,
                   "rule": POLICIES[name].rule, "best_rule": best}
            row.update({f"cost_per_day{suffix}": v for suffix, v in zip(("", "_low", "_high"),
                                                                     mean_ci(cost).values(), strict=True)})
            row["fill_rate"] = float(np.mean(fill))
            versus = paired(cost, costs[best])
            row.update({"vs_best_rule": versus["mean"], "vs_best_rule_low": versus["low"],
                        "vs_best_rule_high": versus["high"], "vs_best_rule_relative": versus["relative"]})
            row["bound"] = float(results[(i, "bound")].mean()) if bound else math.nan
            rows.append(row)
    return rows


def table_bytes(rows: list[dict[str, object]], suffix: str) -> bytes:
    """The table as CSV, or Parquet when ``suffix`` is ``.parquet``."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    buffer = io.BytesIO()
    if suffix == ".parquet":
        frame.to_parquet(buffer, index=False)
    else:
        frame.to_csv(buffer, index=False)
    return buffer.getvalue()


def write_table(rows: list[dict[str, object]], out: Path) -> None:
    """The table (``table_bytes``, by ``out``'s suffix) written atomically: a reader sees the old file or the new."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out, table_bytes(rows, out.suffix))


def read_table(path: Path) -> list[dict[str, object]]:
    """A table ``write_table`` wrote (CSV or Parquet)."""
    import pandas as pd

    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    return frame.to_dict("records")


def point_label(row: dict[str, object]) -> str:
    """A grid point in a few characters: volatility, lead time, stores, capacity, cost ratio."""
    return (f"cv {row['dispersion']:g}, L {row['warehouse_to_store']:g}, {row['num_stores']:g} st, "
            f"cap {row['capacity_factor']:g}, p/h {row['cost_ratio']:g}")


def learned_versus_best_rule(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    """Per grid point: the learned policy's cost relative to the best rule (paired 95 % interval), and the
    bound's, from the sweep table (points without a learned row are left out)."""
    out = []
    for row in rows:
        if row["policy"] != LEARNED:
            continue
        best = next(r for r in rows if r["policy"] == row["best_rule"] and point_label(r) == point_label(row))
        reference = float(best["cost_per_day"])
        out.append({"point": point_label(row), "best_rule": row["best_rule"],
                    "relative": float(row["vs_best_rule_relative"]),
                    "low": float(row["vs_best_rule_low"]) / reference,
                    "high": float(row["vs_best_rule_high"]) / reference,
                    "bound_relative": float(row["bound"]) / reference - 1.0})
    return out

