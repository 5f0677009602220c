"""The evaluation report (``python -m core evaluate``): every policy on every preset, on common random
numbers, against three references, as JSON, CSV, a markdown table and plotly comparison figures.

The references: ``best_rule``, the cheapest rule-based policy on the preset (the registry's rules, each tuned
for the preset where it has parameters; picked on the evaluation seeds themselves, which can only flatter
it); the clairvoyant bound (``core.evaluation.bound``), the cost of the best plan that knows every day's
demand in advance, path by path, which no policy can beat; and, where it can be computed (one store, an
ample source), the exact optimum (``core.evaluation.optimum``), the best any policy can do on average.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.evaluation.distributed import Executor, SerialExecutor, bound_job, per_seed, policy_job
from core.evaluation.optimum import optimum_or_reason
from core.evaluation.plots import comparison_figure
from core.evaluation.statistics import EVAL_SEED, REPORTED, mean_ci, paired
from core.serving import model_sets
from core.serving.files import write_bytes_atomic
from core.serving.models import EXPORTED_MODELS
from core.serving.registry import POLICIES, applicable, uniform
from core.simulation.presets import PRESETS
from core.simulation.scenario import Scenario

LEARNED = {  # report row -> each role's policy, besides one row per applicable rule of the registry
    "phase1_stores": {**uniform("tuned_forecast_base_stock"), "store": "learned"},
    "phase2_warehouse": {**uniform("tuned_forecast_base_stock"), "store": "learned", "warehouse": "learned"},
    "learned_hierarchy": uniform("learned"),
}
COMPARED = ("cost_per_day", "fill_rate")  # KPIs with paired differences
REFERENCES = ("reorder_point", "best_rule")  # each policy's paired differences are against these
BOUND = "clairvoyant bound"  # the bound's job among the policies' (no policy has this name: it has a space)


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and its 95 % t-interval."""

    mean: float
    low: float
    high: float


@dataclass(frozen=True)
class Difference:
    """A paired difference (candidate minus reference, seed by seed): mean, 95 % interval, and the mean
    relative to the reference's mean."""

    mean: float
    low: float
    high: float
    relative: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero."""
        return not self.low <= 0.0 <= self.high


@dataclass(frozen=True)
class PresetResult:
    """Every policy on one preset."""

    policies: dict[str, dict[str, Interval]]  # policy -> KPI -> mean and interval
    differences: dict[str, dict[str, dict[str, Difference]]]  # policy -> "vs_<reference>" -> KPI -> difference
    best_rule: str  # the cheapest rule-based policy here
    bound: Interval | None  # clairvoyant bound, cost per day (None: not computed)
    gap_to_bound: dict[str, Difference]  # policy -> its cost minus the bound, path by path (empty without the bound)
    optimum: float | None  # exact optimal cost per day, where it can be computed


@dataclass(frozen=True)
class EvaluationReport:
    """``python -m core evaluate``'s result; ``to_dict``/``from_dict`` are its JSON form."""

    seeds: int
    first_seed: int
    models: str
    presets: dict[str, PresetResult]
    model_set: dict | None = None  # which set of ``models`` it loaded (``model_sets.served_set``); None: none

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> EvaluationReport:
        def preset(entry: dict[str, Any]) -> PresetResult:
            return PresetResult(
                policies={p: {k: Interval(**v) for k, v in kpis.items()} for p, kpis in entry["policies"].items()},
                differences={p: {ref: {k: Difference(**v) for k, v in diffs.items()} for ref, diffs in refs.items()}
                             for p, refs in entry["differences"].items()},
                best_rule=entry["best_rule"], bound=Interval(**entry["bound"]) if entry["bound"] else None,
                gap_to_bound={p: Difference(**v) for p, v in entry["gap_to_bound"].items()},
                optimum=entry["optimum"])

        return EvaluationReport(seeds=data["seeds"], first_seed=data["first_seed"], models=data["models"],
                                presets={name: preset(entry) for name, entry in data["presets"].items()},
                                model_set=data.get("model_set"))


def rule_policies(scenario: Scenario) -> dict[str, dict[str, str]]:
    """Every applicable rule of the registry on ``scenario``, every role on it."""
    return {key: uniform(key) for key in applicable(scenario) if POLICIES[key].rule}


def evaluated_policies(scenario: Scenario) -> dict[str, dict[str, str]]:
    """Report rows on ``scenario``: every applicable rule of the registry, then each phase's mix."""
    return {**rule_policies(scenario), **LEARNED}


def optimum_cost(scenario: Scenario) -> float | None:
    """The exact optimal cost per day, or None where the dynamic programme does not apply or is too large."""
    optimum, _ = optimum_or_reason(scenario)
    return None if optimum is None else optimum.cost_per_day


def evaluate_preset(scenario: Scenario, seeds: int, models: Path, seed: int = EVAL_SEED,
                    policies: dict[str, dict[str, str]] | None = None, run: Executor | None = None,
                    periods: int | None = None, per_block: int | None = None, references: bool = True
                    ) -> PresetResult:
    """Every policy on ``seeds`` demand paths of ``scenario`` (common random numbers), with the references (without
    ``references``, neither the clairvoyant bound nor the exact optimum: the result has None for both); ``run`` runs
    the (policy, block of ``per_block`` seeds) tasks (default: here, one after another)."""
    policies = evaluated_policies(scenario) if policies is None else policies
    jobs = {name: policy_job(scenario, choices, seeds, seed, models, periods) for name, choices in policies.items()}
    if references:
        jobs[BOUND] = bound_job(scenario, seeds, seed, periods)
    results = per_seed(run or SerialExecutor(), jobs, per_block)
    bound = results.pop(BOUND, None)
    return summarised(scenario, policies, results, bound)


def summarised(scenario: Scenario, policies: dict[str, dict[str, str]], per_seed_kpis: dict[str, dict[str, np.ndarray]],
               bound: np.ndarray | None) -> PresetResult:
    """The preset's result from every policy's per-seed KPIs and the per-seed clairvoyant bound (None: the result
    has neither the bound nor the exact optimum)."""
    rules = [name for name, choices in policies.items() if all(POLICIES[k].rule for k in choices.values())]
    best = min(rules, key=lambda name: float(per_seed_kpis[name]["cost_per_day"].mean()))
    references = {"reorder_point": per_seed_kpis.get("reorder_point"), "best_rule": per_seed_kpis[best]}
    return PresetResult(
        policies={name: {k: Interval(**mean_ci(values[k])) for k in REPORTED}
                  for name, values in per_seed_kpis.items()},
        differences={name: {f"vs_{ref}": {k: Difference(**paired(values[k], base[k])) for k in COMPARED}
                            for ref, base in references.items() if base is not None and base is not values}
                     for name, values in per_seed_kpis.items()},
        best_rule=best, bound=None if bound is None else Interval(**mean_ci(bound)),
        gap_to_bound={} if bound is None else {name: Difference(**paired(values["cost_per_day"], bound))
                                               for name, values in per_seed_kpis.items()},
        optimum=None if bound is None else optimum_cost(scenario),
    )


def evaluate(scenarios: list[str], seeds: int, models: Path = EXPORTED_MODELS, seed: int = EVAL_SEED,
             policies: dict[str, dict[str, str]] | None = None, run: Executor | None = None) -> EvaluationReport:
    """Every policy (default: ``evaluated_policies``) on every named preset, with the model set that ``models``
    serves as it starts (loaded from its version folder: one set throughout, even if an export switches sets
    meanwhile); the report names that set (``model_set``)."""
    served, model_set = model_sets.served_set(models)
    return EvaluationReport(seeds=seeds, first_seed=seed, models=str(models), model_set=model_set,
                            presets={name: evaluate_preset(PRESETS[name], seeds, served, seed, policies, run)
                                     for name in scenarios})


def rows(report: EvaluationReport) -> list[dict]:
    """One CSV row per preset and policy: every KPI with its interval, the differences and the gap."""
    out = []
    for preset, entry in report.presets.items():
        for policy, values in entry.policies.items():
            row: dict[str, object] = {"preset": preset, "policy": policy, "best_rule": entry.best_rule,
                                      "bound": entry.bound.mean, "optimum": entry.optimum}
            for k, v in values.items():
                row.update({k: v.mean, f"{k}_low": v.low, f"{k}_high": v.high})
            for reference, diffs in entry.differences[policy].items():
                d = diffs["cost_per_day"]
                row.update({f"cost_{reference}": d.mean, f"cost_{reference}_low": d.low,
                            f"cost_{reference}_high": d.high, f"cost_{reference}_relative": d.relative})
            gap = entry.gap_to_bound[policy]
            row.update({"gap_to_bound": gap.mean, "gap_to_bound_relative": gap.relative})
            out.append(row)
    return out


def _change(difference: Difference | None) -> str:
    if difference is None:
        return "-"
    return f"{100 * difference.relative:+.1f}%{'*' if difference.significant else ''}"


def _above_reference(entry: PresetResult, policy: str) -> str:
    """Mean cost above the exact optimum where there is one, else above the clairvoyant bound."""
    cost = entry.policies[policy]["cost_per_day"].mean
    if entry.optimum is not None:
        return f"{100 * (cost / entry.optimum - 1):+.1f}% (optimum)"
    return f"{100 * entry.gap_to_bound[policy].relative:+.0f}% (bound)"


def markdown(report: EvaluationReport) -> str:
    """The README table: cost per day and fill rate with 95 % intervals, the change against the reorder point
    and the best rule, and the cost above the exact optimum (or the clairvoyant bound); a line per preset
    names its references."""
    lines = ["| preset | policy | cost/day (95% CI) | fill rate | vs reorder point | vs best rule | above optimum "
             "or bound |", "|---|---|---|---|---|---|---|"]
    for preset, entry in report.presets.items():
        for policy, values in entry.policies.items():
            c, f = values["cost_per_day"], values["fill_rate"]
            diffs = entry.differences[policy]
            name = f"**{policy}**" if policy == entry.best_rule else policy
            lines.append(f"| {preset} | {name} | {c.mean:.2f} ({c.low:.2f}-{c.high:.2f}) | {100 * f.mean:.1f}% | "
                         f"{_change(diffs.get('vs_reorder_point', {}).get('cost_per_day'))} | "
                         f"{_change(diffs.get('vs_best_rule', {}).get('cost_per_day'))} | "
                         f"{_above_reference(entry, policy)} |")
        optimum = "" if entry.optimum is None else f"; exact optimum {entry.optimum:.3f}"
        lines.append(f"| {preset} | *references* | bound {entry.bound.mean:.2f} ({entry.bound.low:.2f}-"
                     f"{entry.bound.high:.2f}){optimum} | | | best rule: {entry.best_rule} | |")
    lines.append("")
    lines.append("`*`: the paired 95% interval of the cost difference excludes zero. Bold: the preset's best rule. "
                 "Bound: the clairvoyant bound (cost per day of the best plan that knows the demand in advance).")
    return "\n".join(lines)


def write(report: EvaluationReport, out: Path) -> None:
    """evaluation.json, evaluation.csv, evaluation.md and comparison.html, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    table = rows(report)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in table for k in r)))
    writer.writeheader()
    writer.writerows(table)
    files = {"evaluation.json": report.to_json(), "evaluation.csv": buffer.getvalue(),
             "evaluation.md": markdown(report) + "\n",
             "comparison.html": comparison_figure(report.to_dict()).to_html(include_plotlyjs=True)}
    for name, text in files.items():
        write_bytes_atomic(out / name, text.encode())


def _summary(entry: PresetResult, policy: str) -> dict[str, Any]:
    """A policy's cost per day and fill rate, and (for every policy but the best rule) its paired cost difference
    against the best rule per day, with its 95 % interval."""
    values = entry.policies[policy]
    summary: dict[str, Any] = {k: values[k].mean for k in ("cost_per_day", "fill_rate")}
    versus = entry.differences[policy].get("vs_best_rule", {}).get("cost_per_day")
    if versus is not None:
        summary["cost_vs_best_rule"] = {"mean": versus.mean, "low": versus.low, "high": versus.high}
    return summary


def record_evaluation(out: Path, report: EvaluationReport, command: str = "") -> None:
    """Put the evaluation summary in the manifest: per preset, its best rule, clairvoyant bound and exact
    optimum, and every policy's cost per day, fill rate and paired difference against the best rule (``_summary``).
    Only into the set the evaluation loaded: refused (``model_sets.ModelSetChanged``, nothing written) if ``out``
    serves another set by now, and while another writer changes ``out`` (``FolderBusy``)."""
    evaluation = {
        "command": command,
        "seeds": report.seeds,
        "presets": {preset: {"best_rule": entry.best_rule, "bound": entry.bound.mean, "optimum": entry.optimum,
                             "policies": {policy: _summary(entry, policy) for policy in entry.policies}}
                    for preset, entry in report.presets.items()},
    }
    model_sets.update_manifest(out, lambda manifest: manifest.update(evaluation=evaluation), report.model_set,
                               command)
