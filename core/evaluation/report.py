"""The evaluation report (``python -m core evaluate``): every policy on every preset, on common
random numbers, as JSON, CSV, a markdown table and plotly comparison figures."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from core.agents.rules import PolicyMix
from core.evaluation.plots import comparison_figure
from core.evaluation.statistics import EVAL_SEED, REPORTED, mean_ci, paired
from core.serving.files import write_bytes_atomic
from core.serving.models import EXPORTED_MODELS
from core.serving.registry import Sources, mix_of, uniform
from core.simulation.presets import PRESETS
from core.simulation.rollout import run_mixes
from core.simulation.scenario import Scenario

BASELINES = ("reorder_point", "tuned_base_stock")


EVALUATED = {  # report row -> each role's policy (keys of ``core.serving.registry.POLICIES``)
    "reorder_point": uniform("reorder_point"),
    "tuned_base_stock": uniform("tuned_base_stock"),
    "forecast_base_stock": uniform("forecast_base_stock"),
    "phase1_stores": {**uniform("forecast_base_stock"), "store": "learned"},
    "phase2_warehouse": {**uniform("forecast_base_stock"), "store": "learned", "warehouse": "learned"},
    "learned_hierarchy": uniform("learned"),
}


def policy_mixes(scenario: Scenario, models: Path) -> dict[str, PolicyMix]:
    """Baselines, the reference menu entries, each phase's mix and the learned hierarchy."""
    sources = Sources(models=models)
    return {name: mix_of(choices, scenario, sources) for name, choices in EVALUATED.items()}


def evaluate(scenarios: list[str], seeds: int, models: Path = EXPORTED_MODELS, seed: int = EVAL_SEED) -> dict:
    report: dict = {"seeds": seeds, "first_seed": seed, "models": str(models), "presets": {}}
    for name in scenarios:
        scenario = PRESETS[name]
        per_seed = run_mixes(scenario, policy_mixes(scenario, models), seeds, seed)
        entry = {"policies": {}, "differences": {}}
        for policy, values in per_seed.items():
            entry["policies"][policy] = {k: mean_ci(values[k]) for k in REPORTED}
            entry["differences"][policy] = {
                f"vs_{base}": {k: paired(values[k], per_seed[base][k]) for k in ("cost_per_day", "fill_rate")}
                for base in BASELINES if base != policy
            }
        report["presets"][name] = entry
    return report


def rows(report: dict) -> list[dict]:
    out = []
    for preset, entry in report["presets"].items():
        for policy, kpis in entry["policies"].items():
            row = {"preset": preset, "policy": policy}
            for k, v in kpis.items():
                row.update({k: v["mean"], f"{k}_low": v["low"], f"{k}_high": v["high"]})
            for base, diffs in entry["differences"][policy].items():
                d = diffs["cost_per_day"]
                row.update({f"cost_{base}": d["mean"], f"cost_{base}_low": d["low"], f"cost_{base}_high": d["high"],
                            f"cost_{base}_relative": d["relative"]})
            out.append(row)
    return out


def markdown(report: dict) -> str:
    """The README table: cost per day and fill rate with 95 % intervals, change against the baselines."""
    lines = ["| preset | policy | cost/day (95% CI) | fill rate | vs reorder point | vs tuned base-stock |",
             "|---|---|---|---|---|---|"]
    for preset, entry in report["presets"].items():
        for policy, kpis in entry["policies"].items():
            c, f = kpis["cost_per_day"], kpis["fill_rate"]
            diffs = entry["differences"][policy]

            def change(base: str, diffs=diffs) -> str:
                d = diffs.get(f"vs_{base}", {}).get("cost_per_day")
                if d is None:
                    return "-"
                sig = "" if d["low"] <= 0 <= d["high"] else "*"
                return f"{100 * d['relative']:+.1f}%{sig}"

            lines.append(f"| {preset} | {policy} | {c['mean']:.2f} ({c['low']:.2f}-{c['high']:.2f}) | "
                         f"{100 * f['mean']:.1f}% | {change('reorder_point')} | {change('tuned_base_stock')} |")
    lines.append("")
    lines.append("`*`: the paired 95% interval of the cost difference excludes zero.")
    return "\n".join(lines)


def write(report: dict, out: Path) -> None:
    """evaluation.json, evaluation.csv, evaluation.md and comparison.html, each written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    table = rows(report)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=sorted({k for r in table for k in r}, key=lambda k: (k not in
                                                                                              ("preset", "policy"), k)))
    writer.writeheader()
    writer.writerows(table)
    files = {"evaluation.json": json.dumps(report, indent=2), "evaluation.csv": buffer.getvalue(),
             "evaluation.md": markdown(report) + "\n",
             "comparison.html": comparison_figure(report).to_html(include_plotlyjs=True)}
    for name, text in files.items():
        write_bytes_atomic(out / name, text.encode())
