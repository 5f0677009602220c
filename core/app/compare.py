"""Head-to-head: two policy mixes on the same customers (common random numbers), named after their policies.

Each mix runs once on the same ``PATHS`` evaluation demand paths of a preset (the twin is batched: all paths are
one rollout, which costs about as much as one path). The page's seed count only chooses how many of those paths
the summary averages, and its path number which one the chart shows, so neither needs a new simulation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from core.agents.roles import ROLES
from core.agents.rules import PolicyMix
from core.evaluation.bound import clairvoyant_bound
from core.evaluation.glossary import CURRENCY, KPIS, Term
from core.evaluation.report import optimum_cost
from core.evaluation.statistics import EVAL_SEED, REPORTED, mean_ci, paired
from core.serving.registry import POLICIES, applicable
from core.simulation.demand import sample_demand
from core.simulation.rollout import kpis, rollout
from core.simulation.scenario import Scenario

PATHS = 50  # evaluation demand paths simulated per mix: the most the page can average
FALLBACK_BASELINE = "forecast_base_stock"  # the comparison rule when the shipped evaluation does not name one
ROLE_NAMES = {"store": "stores", "warehouse": "warehouse", "supplier": "supplier"}
SAME = 1e-9  # a difference within this share of the compared values is float rounding: "same"
NAME_CHARACTERS = 28  # a mix name longer than this is "A" or "B" in the tables and the chart, named in a legend
SMALL_COST = 10.0  # a cost per day below this is shown with at least two decimals


@dataclass(frozen=True)
class PathResults:
    """One mix on the evaluation paths: every reported KPI per path, and the system cost of every day."""

    kpis: dict[str, np.ndarray]  # KPI -> (paths,)
    daily_cost: np.ndarray  # (paths, days)


def evaluation_demand(scenario: Scenario, paths: int = PATHS) -> np.ndarray:
    """The (paths, days, stores) demand both mixes face: the evaluation seeds of ``core.evaluation.statistics``."""
    return sample_demand(scenario, paths, np.random.default_rng(EVAL_SEED))


def simulate(scenario: Scenario, mix: PolicyMix, paths: int = PATHS) -> PathResults:
    """``mix`` on the evaluation paths, in one batched rollout."""
    run = rollout(scenario, mix, evaluation_demand(scenario, paths))
    per_path = kpis(run)
    return PathResults(kpis={k: per_path[k] for k in REPORTED}, daily_cost=run.ledger["total_cost"].sum(axis=2).T)


def default_baseline(scenario: Scenario, manifest: Mapping) -> str:
    """The preset's cheapest rule in the evaluation recorded in the shipped ``manifest`` (cheap to read), among
    the rules that apply to ``scenario``; the forecast base-stock where the manifest does not say."""
    rules = [key for key in applicable(scenario) if POLICIES[key].rule]
    presets = manifest.get("evaluation", {}).get("presets", {}) if isinstance(manifest.get("evaluation"), dict) else {}
    entry = presets.get(scenario.name) if isinstance(presets, dict) else None
    if not isinstance(entry, dict):
        return FALLBACK_BASELINE
    if entry.get("best_rule") in rules:
        return entry["best_rule"]
    policies = entry.get("policies", entry)  # older manifests list the policies in the preset's entry itself
    costs = {key: value["cost_per_day"] for key, value in policies.items() if key in rules
             and isinstance(value, dict) and isinstance(value.get("cost_per_day"), float | int)}
    return min(costs, key=costs.__getitem__) if costs else FALLBACK_BASELINE


# ------------------------------------------------------------------------------------------------ roles

def active_roles(scenario: Scenario) -> tuple[str, ...]:
    """The roles whose policy changes anything on ``scenario``: with an ample source upstream the warehouse and
    the supplier neither hold nor ship anything (the source ships every store order), so only the stores."""
    return ("store",) if scenario.upstream == "ample" else ROLES


def idle_roles_note(scenario: Scenario) -> str | None:
    """Why some roles have no policy to pick on ``scenario``, or None where every role acts."""
    idle = [ROLE_NAMES[role] for role in ROLES if role not in active_roles(scenario)]
    if not idle:
        return None
    return (f"{scenario.name}: an ample source ships every store order in full, so the {' and the '.join(idle)} "
            "have nothing to do; only the stores' policy is chosen.")


def with_idle_roles(choices: Mapping[str, str], scenario: Scenario) -> dict[str, str]:
    """``choices`` (of the active roles) for every role: a role with nothing to do on ``scenario`` runs the
    stores' policy (so the mix stays one policy, and one that applies)."""
    return {role: choices[role] if role in active_roles(scenario) else choices["store"] for role in ROLES}


# ------------------------------------------------------------------------------------------------ names

def policy_label(key: str, role: str, uploaded: frozenset[str] = frozenset()) -> str:
    """The registry's label of ``key``, marking a learned role served from this session's upload."""
    return "uploaded (ONNX)" if key == "learned" and role in uploaded else POLICIES[key].label


def _describe(choices: Mapping[str, str], uploaded: frozenset[str], roles: tuple[str, ...]) -> tuple[str, bool]:
    """The mix of ``roles`` in words and whether every one of them runs the same policy."""
    groups: dict[str, list[str]] = {}
    for role in roles:
        groups.setdefault(policy_label(choices[role], role, uploaded), []).append(ROLE_NAMES[role])
    if len(groups) == 1:
        return next(iter(groups)), True
    return ", ".join(f"{' and '.join(names)} {label}" for label, names in groups.items()), False


def mix_names(choices_a: Mapping[str, str], choices_b: Mapping[str, str],
              uploaded: frozenset[str] = frozenset(), roles: tuple[str, ...] = ROLES) -> tuple[str, str]:
    """What the page calls the two mixes of ``roles`` (the roles that act: ``active_roles``): the policy's label
    when every role runs it ("learned (PPO, ONNX)"), the roles' policies otherwise ("A: stores learned (PPO,
    ONNX), warehouse and supplier reorder point (s, S)"); "A: " and "B: " tell two equal descriptions apart."""
    (a, uniform_a), (b, uniform_b) = (_describe(c, uploaded, roles) for c in (choices_a, choices_b))
    same = a == b
    return (a if uniform_a and not same else f"A: {a}"), (b if uniform_b and not same else f"B: {b}")


def short_names(names: tuple[str, str]) -> tuple[str, str]:
    """The mixes' names in the tables and the chart: as they are when both are at most ``NAME_CHARACTERS`` long,
    else "A" and "B" (``legend`` names them), so that the KPI columns stay in view."""
    return names if max(len(name) for name in names) <= NAME_CHARACTERS else ("A", "B")


def legend(names: tuple[str, str]) -> str | None:
    """What "A" and "B" stand for where ``short_names`` uses them, or None."""
    if short_names(names) == names:
        return None
    return "; ".join(f"**{short}**: {name.removeprefix(f'{short}: ')}"
                     for short, name in zip(("A", "B"), names, strict=True))


# ------------------------------------------------------------------------------------------------ numbers

def _is_same(low: float, high: float, scale: float) -> bool:
    """An interval that is zero up to float rounding of values of size ``scale``."""
    return max(abs(low), abs(high)) <= SAME * max(1.0, abs(scale))


def _decimals(spread: float, at_least: int, at_most: int = 4) -> int:
    """Enough decimals to show ``spread`` (an interval's half-width, or a difference) to one significant digit."""
    if not math.isfinite(spread) or spread <= 0:
        return at_least
    return max(at_least, min(at_most, -math.floor(math.log10(spread))))


def _number(value: float, decimals: int, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "-"
    value = round(value, decimals) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{value:{'+' if signed and value else ''},.{decimals}f}"


def kpi_column(key: str) -> str:
    """A KPI's column title: its label with its unit ("Cost per day ($)", "Fill rate (%)"); plain counts of units
    go without, to keep the table narrow ("Stockouts per day")."""
    term = KPIS[key]
    unit = "%" if term.percent else term.unit
    return f"{term.label} ({unit})" if unit and unit != "units" else term.label


def kpi_help() -> dict[str, str]:
    """Each KPI column's tooltip, by column title."""
    return {kpi_column(key): KPIS[key].help for key in REPORTED}


def _scale(term: Term) -> float:
    return 100.0 if term.percent else 1.0


def interval_cell(term: Term, values: Mapping[str, float], difference_of: float | None = None) -> str:
    """A mean with its 95 % interval as "mean ± half-width", rounded to the interval. With ``difference_of`` (the
    size of the compared values) a signed paired difference, which reads "same" when its interval is zero up to
    float rounding."""
    scale = _scale(term)
    mean, low, high = (scale * values[k] for k in ("mean", "low", "high"))
    if difference_of is not None and _is_same(min(low, mean), max(high, mean), scale * difference_of):
        return "same"
    half = (high - low) / 2
    decimals = _decimals(half, term.decimals)
    signed = difference_of is not None
    if not math.isfinite(half):
        return _number(mean, decimals, signed)
    return f"{_number(mean, decimals, signed)} ± {_number(half, decimals)}"


def value_cell(term: Term, value: float, difference_of: float | None = None) -> str:
    """One value, rounded for its KPI. With ``difference_of`` (the size of the compared values) a signed
    difference, to two significant digits, which reads "same" when it is zero up to float rounding."""
    value *= _scale(term)
    if difference_of is None:
        return _number(value, term.decimals)
    if _is_same(value, value, _scale(term) * difference_of):
        return "same"
    return _number(value, _decimals(abs(value) / 10, term.decimals), signed=True)


def summary_rows(names: tuple[str, str], a: PathResults, b: PathResults, seeds: int) -> list[dict[str, str]]:
    """The first ``seeds`` paths: each mix's mean ± 95 % interval per KPI, and their paired difference."""
    rows: list[dict[str, str]] = [{"Policy": name} for name in names]
    rows.append({"Policy": "difference"})
    for key in REPORTED:
        term, column = KPIS[key], kpi_column(key)
        first, second = a.kpis[key][:seeds], b.kpis[key][:seeds]
        rows[0][column] = interval_cell(term, mean_ci(first))
        rows[1][column] = interval_cell(term, mean_ci(second))
        size = float(np.nanmean(np.abs(second))) if np.isfinite(second).any() else 1.0
        rows[2][column] = interval_cell(term, paired(first, second), difference_of=size)
    return rows


def path_rows(names: tuple[str, str], a: PathResults, b: PathResults, path: int) -> list[dict[str, str]]:
    """One path: each mix's KPIs and their difference."""
    rows: list[dict[str, str]] = [{"Policy": name} for name in names]
    rows.append({"Policy": "difference"})
    for key in REPORTED:
        term, column = KPIS[key], kpi_column(key)
        first, second = float(a.kpis[key][path]), float(b.kpis[key][path])
        rows[0][column] = value_cell(term, first)
        rows[1][column] = value_cell(term, second)
        rows[2][column] = value_cell(term, first - second, difference_of=abs(second))
    return rows


# ------------------------------------------------------------------------------------------------ headline

@dataclass(frozen=True)
class Headline:
    """The comparison in one sentence, and its verdict: "same", "significant" or "not significant"."""

    text: str
    verdict: str


def cost_decimals(first: float, second: float) -> int:
    """Decimals that show two costs per day apart when they differ (their difference to one significant digit),
    at least one, and two below ``SMALL_COST``; at most three."""
    at_least = 2 if min(abs(first), abs(second)) < SMALL_COST else 1
    return _decimals(abs(first - second), at_least, 3)


def headline(names: tuple[str, str], a: PathResults, b: PathResults, seeds: int) -> Headline:
    """The first mix's cost per day against the second's over the first ``seeds`` paths, in percent of the
    second's, with the paired 95 % interval and whether it excludes zero:
    "learned (PPO, ONNX) costs 31 % less than reorder point (s, S) per day (...; 95 % interval 29-33 %),
    significant"."""
    first, second = a.kpis["cost_per_day"][:seeds], b.kpis["cost_per_day"][:seeds]
    difference = paired(first, second)
    base, mine = float(np.mean(second)), float(np.mean(first))
    where = f"on the same {seeds} demand paths"
    if _is_same(min(difference["low"], difference["mean"]), max(difference["high"], difference["mean"]), base):
        return Headline(f"{names[0]} and {names[1]} cost the same per day {where} "
                        f"({CURRENCY}{_number(base, cost_decimals(base, base))}).", "same")
    mean, low, high = (100 * difference[k] / base for k in ("mean", "low", "high"))
    decimals = _decimals((high - low) / 2, 0, 3)
    if low < 0 < high:
        interval = f"{_number(-low, decimals)} % less to {_number(high, decimals)} % more"
    else:
        ends = sorted((abs(low), abs(high)))
        interval = f"{_number(ends[0], decimals)}-{_number(ends[1], decimals)} %"
    verdict = "not significant" if low <= 0 <= high else "significant"
    shown = _number(abs(mean), decimals)
    direction = "less" if mean < 0 else "more"
    change = f"costs {shown} % {direction} than" if round(abs(mean), decimals) else "costs about the same as"
    money = cost_decimals(mine, base)
    return Headline(f"{names[0]} {change} {names[1]} per day ({CURRENCY}{_number(mine, money)} against "
                    f"{CURRENCY}{_number(base, money)}; 95 % interval {interval}), {verdict} {where}.", verdict)


# ------------------------------------------------------------------------------------------------ references

@dataclass(frozen=True)
class References:
    """What no policy can beat on the evaluation paths: the clairvoyant bound of every path, and the exact
    optimum (cost per day) where the dynamic programme applies."""

    bound: np.ndarray  # (paths,)
    optimum: float | None


def references(scenario: Scenario, paths: int = PATHS) -> References:
    """One linear programme per evaluation path (about 35 ms each), and the dynamic programme where it applies."""
    return References(clairvoyant_bound(scenario, evaluation_demand(scenario, paths)), optimum_cost(scenario))


def references_text(refs: References, names: tuple[str, str], a: PathResults, b: PathResults, seeds: int) -> str:
    """The bound over the first ``seeds`` paths, how far above it each mix is, and the optimum, as sentences."""
    bound = mean_ci(refs.bound[:seeds])
    gaps = [float(np.mean(run.kpis["cost_per_day"][:seeds] - refs.bound[:seeds])) for run in (a, b)]
    text = (f"Clairvoyant bound (the cheapest plan that knows every day's demand in advance): "
            f"{CURRENCY}{bound['mean']:,.2f} per day ({bound['low']:,.2f} to {bound['high']:,.2f}); "
            f"{names[0]} costs {CURRENCY}{gaps[0]:,.2f} a day above it, {names[1]} {CURRENCY}{gaps[1]:,.2f}.")
    if refs.optimum is not None:
        text += f" Exact optimum of any policy (dynamic programme): {CURRENCY}{refs.optimum:,.3f} per day."
    return text
