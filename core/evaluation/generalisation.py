"""The held-out generalisation benchmark (``python -m core generalise``): the learned hierarchy against each
scenario's best rule on scenarios that neither training nor ``evaluate`` sees.

A held-out scenario is what a person can build on the Live page, and a business can be: a draw of
``core.simulation.randomization.draw_scenario``, the family the policies are trained on, from seeds training never
uses.

Every scenario is evaluated as ``evaluate`` evaluates a preset (``core.evaluation.report.evaluate_preset``, without
the clairvoyant bound and the exact optimum): every applicable rule of the registry, each tuned for the scenario on
its own tuning seeds, and the learned hierarchy, all on the same demand paths; the best rule is the cheapest on
them (which can only flatter it), and the learned policy's cost per day is compared with it seed by seed.

Seeds: the benchmark's generators are seeded with integers from ``GENERALISATION_SEED`` (2**128) up, ``SEED_STREAMS``
of them per ``--seed`` (``held_out_seed``): stream 0 draws the scenarios, stream k the demand of scenario k. Training
scenarios and phase acceptance's (``core.learning.pool``, from 2**96), training's demand (100 x its seed plus a phase
offset), phase acceptance's demand (``ACCEPTANCE_SEED``), ``evaluate`` (``EVAL_SEED``) and the tuners seed theirs
with integers far below (``tests/test_generalisation.py`` checks it), so no benchmark scenario or customer is one a
policy was trained, accepted or tuned on. Scenario k and its demand do not depend on how many are drawn.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.evaluation.distributed import Executor, SerialExecutor
from core.evaluation.report import LEARNED, PresetResult, evaluate_preset, rule_policies
from core.serving.files import write_bytes_atomic
from core.serving.models import EXPORTED_MODELS
from core.simulation.randomization import draw_scenario
from core.simulation.scenario import UNMET_DEMAND, Scenario

MAX_SCENARIOS = 256  # ``--scenarios``
MIN_SEEDS = 2  # ``--seeds``: a paired interval needs two demand paths
DEFAULT_SEEDS = 16  # common demand paths per scenario
GENERALISATION_SEED = 2**128  # the benchmark's first seed
SEED_STREAMS = MAX_SCENARIOS + 1  # seeds per ``--seed``: the scenario draws, then each scenario's demand
CANDIDATE = "learned_hierarchy"  # the compared policy's row, as in ``evaluate``
LOSS, WIN = 0.01, 0.03  # a significant loss: over 1 % above the best rule; a significant win: 3 % or more below
STOCKOUT_BANDS = {"p/h <= 10": (0.0, 10.0), "10 < p/h <= 30": (10.0, 30.0), "p/h > 30": (30.0, math.inf)}


def held_out_seed(seed: int, stream: int) -> int:
    """The benchmark's seed of ``stream`` (0: the scenario draws; k: scenario k's demand) for ``--seed`` ``seed``."""
    return GENERALISATION_SEED + seed * SEED_STREAMS + stream


def held_out_scenarios(n: int, seed: int) -> list[Scenario]:
    """The benchmark's first ``n`` scenarios for ``seed`` (``held_out_1_<preset>`` ...)."""
    rng = np.random.default_rng(held_out_seed(seed, 0))
    return [draw_scenario(rng, f"held_out_{index}") for index in range(1, n + 1)]


def key_parameters(scenario: Scenario) -> dict[str, Any]:
    """What the benchmark's table shows of a scenario."""
    first, lead, costs = scenario.stores[0], scenario.lead_times, scenario.costs
    return {"stores": scenario.num_stores, "demand": "normal" if first.distribution == "normal" else "integer",
            "dispersion": first.dispersion, "mean_demand": float(np.mean([m.mean for m in scenario.stores])),
            "stockout_ratio": costs.stockout / costs.store_holding, "unmet_demand": scenario.unmet_demand,
            "upstream": scenario.upstream,
            "lead_times": [lead.production, lead.supplier_to_warehouse, lead.warehouse_to_store]}


@dataclass(frozen=True)
class HeldOutRow:
    """One scenario's line: its best rule and the learned policy's cost per day against it, seed by seed (learned
    minus best rule, over the best rule's mean cost: the mean and its 95 % interval; above 0 the learned costs more)."""

    scenario: str
    parameters: dict[str, Any]  # ``key_parameters``
    best_rule: str
    best_rule_cost: float  # mean cost per day
    learned_cost: float
    relative: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return not self.low <= 0.0 <= self.high


@dataclass(frozen=True)
class HeldOutTask:
    """One scenario to evaluate: its demand paths (``seeds`` from ``demand_seed``), the exported models, and the
    compared policy (role -> registry key; the learned hierarchy in the benchmark)."""

    scenario: Scenario
    demand_seed: int
    seeds: int
    models: str
    candidate: tuple[tuple[str, str], ...]


def evaluate_held_out(task: HeldOutTask) -> tuple[HeldOutRow, PresetResult]:
    """Every applicable rule and the candidate on the task's scenario, as ``evaluate`` evaluates a preset (without
    the bound and the optimum), and the scenario's line of the table."""
    policies = {**rule_policies(task.scenario), CANDIDATE: dict(task.candidate)}
    result = evaluate_preset(task.scenario, task.seeds, Path(task.models), task.demand_seed, policies,
                             references=False)
    best = result.best_rule
    cost = result.policies[best]["cost_per_day"].mean
    versus = result.differences[CANDIDATE]["vs_best_rule"]["cost_per_day"]
    row = HeldOutRow(scenario=task.scenario.name, parameters=key_parameters(task.scenario), best_rule=best,
                     best_rule_cost=cost, learned_cost=result.policies[CANDIDATE]["cost_per_day"].mean,
                     relative=versus.relative, low=versus.low / cost, high=versus.high / cost)
    return row, result


def _statistics(rows: list[HeldOutRow]) -> dict[str, Any]:
    """Median, 75th percentile (numpy's linear interpolation) and worst (largest) relative difference, and the counts
    of significant losses over ``LOSS`` and significant wins of ``WIN`` or more; None where there is no row."""
    relative = np.array([r.relative for r in rows])
    empty = relative.size == 0
    return {"scenarios": len(rows),
            "median": None if empty else float(np.median(relative)),
            "percentile_75": None if empty else float(np.percentile(relative, 75)),
            "worst": None if empty else float(relative.max()),
            "significant_losses_over_1pct": sum(r.significant and r.relative > LOSS for r in rows),
            "significant_wins_3pct_or_more": sum(r.significant and r.relative <= -WIN for r in rows)}


def summarise_generalisation(rows: list[HeldOutRow]) -> dict[str, Any]:
    """``_statistics`` of every row, of each stockout-to-holding band (``STOCKOUT_BANDS``, upper edges included) and
    of each unmet-demand rule."""
    return {"all": _statistics(rows),
            "by_stockout_ratio": {band: _statistics([r for r in rows if low < r.parameters["stockout_ratio"] <= high])
                                  for band, (low, high) in STOCKOUT_BANDS.items()},
            "by_unmet_demand": {rule: _statistics([r for r in rows if r.parameters["unmet_demand"] == rule])
                                for rule in UNMET_DEMAND}}


@dataclass(frozen=True)
class GeneralisationReport:
    """``python -m core generalise``'s result; ``to_dict`` is its JSON form."""

    seed: int
    seeds: int
    models: str
    rows: list[HeldOutRow]
    scenarios: list[Scenario]
    evaluations: list[PresetResult]  # every policy on each scenario's demand paths

    def to_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, "seeds": self.seeds, "models": self.models,
                "rows": [dataclasses.asdict(r) for r in self.rows], "summary": summarise_generalisation(self.rows),
                "scenarios": [s.to_dict() for s in self.scenarios],
                "evaluations": [dataclasses.asdict(e) for e in self.evaluations]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def generalise(n: int, seed: int, seeds: int = DEFAULT_SEEDS, models: Path = EXPORTED_MODELS,
               run: Executor | None = None, horizon: int | None = None,
               candidate: dict[str, str] | None = None) -> GeneralisationReport:
    """The benchmark's first ``n`` scenarios for ``seed``, each a task of ``run`` (default: here, one after another);
    ``horizon`` shortens every scenario (for tests) and ``candidate`` replaces the learned hierarchy."""
    scenarios = held_out_scenarios(n, seed)
    if horizon is not None:
        scenarios = [dataclasses.replace(s, horizon=horizon) for s in scenarios]
    choices = tuple(sorted((candidate or LEARNED[CANDIDATE]).items()))
    tasks = [HeldOutTask(s, held_out_seed(seed, k), seeds, str(models), choices)
             for k, s in enumerate(scenarios, start=1)]
    results = (run or SerialExecutor()).map(evaluate_held_out, tasks)
    return GeneralisationReport(seed=seed, seeds=seeds, models=str(models), rows=[row for row, _ in results],
                                scenarios=scenarios, evaluations=[result for _, result in results])


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def _row_line(row: HeldOutRow) -> str:
    p = row.parameters
    lead = "/".join(map(str, p["lead_times"])) if p["upstream"] == "network" else f"ample/{p['lead_times'][2]}"
    versus = (f"{_percent(row.relative)} ({_percent(row.low)} to {_percent(row.high)})"
              f"{'*' if row.significant else ''}")
    return (f"| {row.scenario} | {p['stores']} | {p['demand']} | {p['dispersion']:.2f} | {p['mean_demand']:.1f} | "
            f"{p['stockout_ratio']:.1f} | {p['unmet_demand'].replace('_', ' ')} | {lead} | {row.best_rule} | "
            f"{row.best_rule_cost:.2f} | {row.learned_cost:.2f} | {versus} |")


def _summary_line(group: str, stats: dict[str, Any]) -> str:
    return (f"| {group} | {stats['scenarios']} | {_percent(stats['median'])} | {_percent(stats['percentile_75'])} | "
            f"{_percent(stats['worst'])} | {stats['significant_losses_over_1pct']} | "
            f"{stats['significant_wins_3pct_or_more']} |")


def markdown(report: GeneralisationReport) -> str:
    """The table (a row per scenario) and the summary (every scenario, by stockout band, by unmet-demand rule)."""
    lines = [f"Held-out scenarios of --seed {report.seed}, {report.seeds} common demand paths each: the learned "
             "hierarchy's cost per day against the scenario's best rule (paired; + costs more).", "",
             "| scenario | stores | demand | cv | mean/store-day | p/h | unmet | lead p/sw/ws | best rule | "
             "best rule cost/day | learned cost/day | learned vs best rule (95% CI) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|",
             *map(_row_line, report.rows), "",
             "`*`: the paired 95% interval excludes zero. p/h: a stockout's cost in days of store holding.", "",
             "| scenarios | count | median | 75th percentile | worst | significant losses > 1% | "
             "significant wins >= 3% |", "|---|---|---|---|---|---|---|"]
    summary = summarise_generalisation(report.rows)
    groups = {"all": summary["all"], **summary["by_stockout_ratio"],
              **{rule.replace("_", " "): stats for rule, stats in summary["by_unmet_demand"].items()}}
    lines += [_summary_line(group, stats) for group, stats in groups.items()]
    return "\n".join(lines)


def write(report: GeneralisationReport, out: Path) -> None:
    """generalisation.md (table and summary) and generalisation.json in ``out``, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "generalisation.md", (markdown(report) + "\n").encode())
    write_bytes_atomic(out / "generalisation.json", report.to_json().encode())
