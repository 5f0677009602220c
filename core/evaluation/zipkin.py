"""Zipkin's lost-sales table (``python -m core zipkin``): the learned policy against the exact optimum and the tuned
rules on Zipkin's (2008) instances.

Every instance is ``lost_sales_textbook`` (one store, Poisson(5) demand, holding 1, an ample source) with Zipkin's
lead time ``LEADS`` (the twin's lead time is one more: ``core.simulation.presets``) and a lost sale costing
``PENALTIES``. Each is evaluated as ``evaluate`` evaluates a preset (every applicable rule tuned for it on its own
seeds, the learned hierarchy, all on the same demand paths of its 1,000-day horizon), beside its exact optimal cost
per day where the dynamic programme fits (``core.evaluation.optimum``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.evaluation.distributed import Executor, SerialExecutor
from core.evaluation.optimum import optimum_or_reason
from core.evaluation.report import EVAL_SEED, Difference, evaluate_preset, rule_policies
from core.serving.registry import uniform
from core.simulation.presets import PRESETS
from core.simulation.scenario import Scenario

LEADS = (1, 2, 3, 4)  # Zipkin's lead times
PENALTIES = (4, 9, 19, 39)  # a lost sale's cost, holding 1
CANDIDATE = "learned_hierarchy"
CAPPED = "tuned_capped_base_stock"


def instance(lead: int, penalty: int) -> Scenario:
    """Zipkin's instance of lead time ``lead`` and lost-sales cost ``penalty``."""
    base = PRESETS["lost_sales_textbook"]
    return dataclasses.replace(base, name=f"zipkin_lead{lead}_p{penalty}",
                               lead_times=dataclasses.replace(base.lead_times, warehouse_to_store=lead + 1),
                               costs=dataclasses.replace(base.costs, stockout=float(penalty)))


@dataclass(frozen=True)
class ZipkinTask:
    lead: int
    penalty: int
    seeds: int
    models: str


@dataclass(frozen=True)
class ZipkinRow:
    """One instance: costs per day and the learned policy's paired differences."""

    lead: int
    penalty: int
    optimum: float | None  # None where the programme does not fit (``optimum_reason`` says why)
    optimum_reason: str | None
    learned: float
    capped: float
    best_rule: str
    best_rule_cost: float
    vs_best_rule: Difference  # learned minus the best rule, seed by seed

    @property
    def vs_capped(self) -> float:
        """The learned policy's mean cost relative to tuned capped base-stock's."""
        return self.learned / self.capped - 1.0

    @property
    def vs_optimum(self) -> float | None:
        """The learned policy's cost relative to the optimum."""
        return None if self.optimum is None else self.learned / self.optimum - 1.0


def evaluate_instance(task: ZipkinTask) -> ZipkinRow:
    """Every applicable rule and the learned hierarchy on the task's instance, and its exact optimum."""
    scenario = instance(task.lead, task.penalty)
    optimum, reason = optimum_or_reason(scenario)
    policies = {**rule_policies(scenario), CANDIDATE: uniform("learned")}
    result = evaluate_preset(scenario, task.seeds, Path(task.models), EVAL_SEED, policies, references=False)
    cost = {name: kpis["cost_per_day"].mean for name, kpis in result.policies.items()}
    versus = result.differences[CANDIDATE]
    return ZipkinRow(lead=task.lead, penalty=task.penalty, optimum=None if optimum is None else optimum.cost_per_day,
                     optimum_reason=reason, learned=cost[CANDIDATE], capped=cost[CAPPED], best_rule=result.best_rule,
                     best_rule_cost=cost[result.best_rule], vs_best_rule=versus["vs_best_rule"]["cost_per_day"])


def zipkin_table(seeds: int, models: Path, run: Executor | None = None) -> list[ZipkinRow]:
    """Every instance of ``LEADS`` x ``PENALTIES``, each a task of ``run`` (default: here, one after another)."""
    tasks = [ZipkinTask(lead, penalty, seeds, str(models)) for penalty in PENALTIES for lead in LEADS]
    return list((run or SerialExecutor()).map(evaluate_instance, tasks))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f}%"


def markdown(rows: list[ZipkinRow]) -> str:
    """The table, one instance a line."""
    lines = ["| Zipkin lead | penalty | optimum | learned | vs optimum | tuned capped base-stock | learned vs capped | "
             "best rule |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        optimum = "-" if r.optimum is None else f"{r.optimum:.3f}"
        lines.append(f"| {r.lead} | {r.penalty} | {optimum} | {r.learned:.3f} | {_percent(r.vs_optimum)} | "
                     f"{r.capped:.3f} | {_percent(r.vs_capped)} | {r.best_rule} {r.best_rule_cost:.3f} |")
    return "\n".join(lines)


def to_json(rows: list[ZipkinRow]) -> str:
    return json.dumps([{**dataclasses.asdict(r), "vs_optimum": r.vs_optimum, "vs_capped": r.vs_capped} for r in rows],
                      indent=2)


def summary(rows: list[ZipkinRow]) -> dict[str, Any]:
    """The worst learned cost relative to the optimum and to tuned capped base-stock."""
    optimal = [r.vs_optimum for r in rows if r.vs_optimum is not None]
    return {"instances": len(rows), "with_optimum": len(optimal), "worst_vs_optimum": max(optimal, default=None),
            "worst_vs_capped": max(r.vs_capped for r in rows)}
