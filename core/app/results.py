"""The shipped evaluation summary (the manifest's ``evaluation`` section, ``core.learning.export.record_evaluation``)
as the About page shows it: per preset the best rule, the learned hierarchy against it, the clairvoyant bound and
the exact optimum, and what learning adds.

Two shapes are read: the current one (per preset ``best_rule``, ``bound``, ``optimum`` and ``policies``) and the
older one (per preset only ``{policy: {cost_per_day, fill_rate}}``), where the best rule is picked here among the
rules listed and the bound and optimum were not recorded. Anything malformed is skipped, never raised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from core.app.compare import cost_decimals
from core.evaluation.glossary import CURRENCY
from core.evaluation.plots import verdict
from core.serving.registry import POLICIES
from core.simulation.presets import PRESETS

LEARNED = "learned_hierarchy"
BASELINE = "reorder_point"
NO_LEARNING = "forecast_base_stock"  # every role on one fixed menu entry: the menu and forecast without learning
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class ResultsSummary:
    """Table rows (column -> text), a headline on what learning adds, and notes on what the summary lacks."""

    seeds: int | None
    rows: list[dict[str, str]] = field(default_factory=list)
    headline: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _money(value: float | None, decimals: int) -> str:
    return "-" if value is None else f"{CURRENCY}{value:,.{decimals}f}"


def _costs(policies: object) -> dict[str, float]:
    """Policy -> cost per day, for the entries that have a number."""
    if not isinstance(policies, dict):
        return {}
    costs = {str(k): _number(v.get("cost_per_day")) for k, v in policies.items() if isinstance(v, dict)}
    return {k: v for k, v in costs.items() if v is not None}


def _change(cost: float | None, reference: float | None) -> float | None:
    """Relative change of ``cost`` against ``reference``, in percent."""
    if cost is None or reference is None or reference <= 0:
        return None
    return 100.0 * (cost / reference - 1.0)


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{round(value, 1) + 0.0:+.1f} %"


def _label(key: str) -> str:
    return POLICIES[key].label if key in POLICIES else key


def _is_rule(key: str) -> bool:
    return key in POLICIES and POLICIES[key].rule


def _span(values: list[float]) -> str:
    low, high = min(values), max(values)
    return _percent(low) if f"{low:.1f}" == f"{high:.1f}" else f"{_percent(low)} to {_percent(high)}"


def results_summary(evaluation: object) -> ResultsSummary:
    """The About page's results from a manifest's ``evaluation`` section (either shape)."""
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("presets"), dict):
        return ResultsSummary(None, notes=["The manifest holds no evaluation summary."])
    seeds = evaluation.get("seeds")
    summary = ResultsSummary(seeds if isinstance(seeds, int) and not isinstance(seeds, bool) else None)
    versus_best, versus_baseline, no_learning, older, missing_rules = [], [], [], [], {}
    for preset, entry in evaluation["presets"].items():
        if not isinstance(entry, dict):
            continue
        current = isinstance(entry.get("policies"), dict)
        costs = _costs(entry["policies"] if current else entry)
        rules = {k: v for k, v in costs.items() if _is_rule(k)}
        best = entry.get("best_rule") if current else None
        if best not in costs:
            best = min(rules, key=rules.get) if rules else None
            older.append(str(preset))
            if preset in PRESETS:
                absent = [k for k, kind in POLICIES.items() if kind.rule and kind.applies(PRESETS[preset])
                          and k not in costs]
                missing_rules.update({k: missing_rules.get(k, []) + [str(preset)] for k in absent})
        learned = costs.get(LEARNED)
        best_cost = costs.get(best) if best else None
        row_vs_best = _change(learned, best_cost)
        if row_vs_best is not None:
            versus_best.append(row_vs_best)
        if (change := _change(learned, costs.get(BASELINE))) is not None:
            versus_baseline.append(change)
        if (change := _change(costs.get(NO_LEARNING), costs.get(BASELINE))) is not None:
            no_learning.append(change)
        bound = _number(entry.get("bound")) if current else None
        optimum = _number(entry.get("optimum")) if current else None
        ends = [c for c in (best_cost, learned) if c is not None]
        decimals = cost_decimals(min(ends), max(ends)) if ends else 1  # two different costs look different
        summary.rows.append({
            "Preset": str(preset),
            "Best rule": _label(best) if best else "-",
            "Best rule, cost per day": _money(best_cost, decimals),
            "Learned, cost per day": _money(learned, decimals),
            "Learned vs best rule": _percent(row_vs_best),
            "Learned vs reorder point": _percent(_change(learned, costs.get(BASELINE))),
            "Clairvoyant bound": _money(bound, decimals) if bound is not None or current else NOT_RECORDED,
            "Exact optimum": _money(optimum, max(decimals, 3)) if optimum is not None or current else NOT_RECORDED,
        })
    if versus_best:
        best_rule = "the best rule listed" if older else "the best rule"
        summary.headline.append(f"**The learned hierarchy against {best_rule}: {_span(versus_best)}** in cost "
                                f"per day over {len(versus_best)} presets (negative: cheaper).")
    if versus_baseline:
        summary.headline.append(f"Against the reorder point, the original baseline: {_span(versus_baseline)}.")
    if no_learning:
        summary.headline.append(f"{_label(NO_LEARNING).capitalize()}, every role on one fixed menu entry and no "
                                f"learning at all, already gets {_span(no_learning)} against the reorder point: "
                                "what learning adds is the gap between these two lines.")
    if older:
        summary.notes.append("This summary was written by an older evaluation: it records neither the best rule, "
                             "the clairvoyant bound nor the exact optimum. The best rule shown is the cheapest "
                             "rule it lists.")
    if missing_rules:
        summary.notes.append("Rules it does not list, so the best rule may be cheaper than shown: " + "; ".join(
            f"{_label(k)} ({', '.join(p)})" for k, p in missing_rules.items()) + ".")
    absent_presets = [p for p in PRESETS if p not in evaluation["presets"]]
    if absent_presets:
        summary.notes.append(f"Presets not in this summary: {', '.join(absent_presets)} (the README's Evaluation "
                             "section has the full table).")
    return summary


def learned_versus_best_rule(evaluation: object) -> list[dict[str, object]]:
    """Per preset of a manifest's ``evaluation`` (current shape), the learned hierarchy's cost per day against the
    preset's best rule, relative to the rule's: ``relative`` and, where the evaluation recorded the paired 95 %
    interval (``cost_vs_best_rule``), ``low`` and ``high`` (else None); ``preset``, ``best_rule`` (its label),
    ``seeds``. Presets without both costs are left out, never raised on."""
    if not isinstance(evaluation, dict) or not isinstance(evaluation.get("presets"), dict):
        return []
    seeds = evaluation.get("seeds")
    points = []
    for preset, entry in evaluation["presets"].items():
        policies = entry.get("policies") if isinstance(entry, dict) else None
        if not isinstance(policies, dict) or not isinstance(policies.get(LEARNED), dict):
            continue
        best = entry.get("best_rule")
        learned, rule = _costs(policies).get(LEARNED), _costs(policies).get(str(best))
        if learned is None or rule is None or rule <= 0:
            continue
        versus = policies[LEARNED].get("cost_vs_best_rule")
        ends = [_number(versus.get(k)) for k in ("low", "high")] if isinstance(versus, dict) else [None, None]
        low, high = (None, None) if None in ends else (ends[0] / rule, ends[1] / rule)
        points.append({"preset": str(preset), "best_rule": _label(str(best)), "relative": learned / rule - 1.0,
                       "low": low, "high": high, "seeds": seeds if isinstance(seeds, int) else None})
    return points


def learning_pays_text(points: list[dict[str, object]]) -> str:
    """What ``learned_versus_best_rule``'s points say, wins and losses alike, by ``plots.verdict``."""
    groups: dict[str, list[str]] = {}
    for point in sorted(points, key=lambda p: p["relative"]):
        groups.setdefault(verdict(point)[0], []).append(f"{point['preset']} ({_percent(100 * point['relative'])})")
    seeds = next((p["seeds"] for p in points if p["seeds"]), None)
    paths = f"the evaluation's {seeds} demand paths" if seeds else "the evaluation's demand paths"
    return (f"Each preset's learned hierarchy against that preset's best rule: the cheapest of the registry's rules "
            f"there, each tuned for the preset where it has parameters, picked on {paths} themselves (which can only "
            "flatter the rule); bar: the paired 95 % interval of the difference. " + " ".join(
                f"{words.capitalize()}: {', '.join(presets)}." for words, presets in groups.items()))
