"""What the app's pages compute, without any Streamlit: scenarios from slider values, one-year runs of a single
chain and the year's outcome against a comparison (the Live page), and a policy's decisions over a grid of stock
levels (the policy inspector). Policy mixes come from the registry (``core.serving.registry``)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from core.agents.menus import SAFETY_FACTORS, menu_quantities
from core.agents.observations import observe
from core.agents.rules import PolicyMix, RolePolicy
from core.app.compare import PathResults, evaluation_demand
from core.evaluation.bound import clairvoyant_bound
from core.evaluation.glossary import CURRENCY
from core.evaluation.optimum import MAX_TRANSITIONS, optimum_or_reason
from core.evaluation.statistics import REPORTED
from core.serving.registry import POLICIES, TUNERS, tuned_menu
from core.simulation.demand import sample_demand
from core.simulation.forecast import Forecast
from core.simulation.presets import STORE_MEANS, WEEKLY_RETAIL, get_preset
from core.simulation.randomization import RANGES
from core.simulation.rollout import Rollout, kpis, rollout
from core.simulation.scenario import Disruption, LeadTimes, Promotion, Scenario
from core.simulation.twin import reset

YEAR = 365  # days the Live page plays
TICK_SECONDS = 0.1  # the Live page's animation, played in the browser: the next day this often while playing
FIRST_PRESET = "thin_margin"  # the page opens where the shipped hierarchy beats the preset's best rule
VERDICT_COLOURS = {"cheaper": "green", "dearer": "orange", "same": "gray"}  # the headline's colour by verdict
HEADLINE_PATHS = 16  # evaluation demand paths of the headline's spread (each mix in one batched rollout)


@dataclass(frozen=True)
class Controls:
    """The Live page's settings, named as in the scenario (``core.simulation.scenario``); the demand scale
    multiplies the preset's mean demand."""

    demand_scale: float = 1.0  # x the preset's mean demand
    dispersion: float = 0.3  # coefficient of variation of daily demand
    weekly_seasonality: float = 0.0  # 0 = flat week, 1 = a typical retail week, 2 = twice as peaked
    seasonality_amplitude: float = 0.0  # yearly, fraction of the mean
    promotion_start_day: int = 60
    promotion_length: int = 0  # days; 0 = no promotion
    promotion_lift: float = 0.8
    disruption_start_day: int = 120
    disruption_length: int = 0  # days; 0 = no disruption
    disruption_capacity_loss: float = 0.8  # fraction of production capacity lost
    warehouse_to_store: int = 2  # lead times, days
    supplier_to_warehouse: int = 3
    production: int = 2
    num_stores: int = 3


@dataclass(frozen=True)
class Slider:
    """One of the Live page's sliders: the ``Controls`` field it sets, its bounds and help."""

    field: str
    label: str
    group: str
    low: float
    high: float
    step: float
    help: str
    off: float | None = None  # a value meaning "none" (no promotion, no disruption), outside the training range

    def bounds(self, value: float) -> tuple[float, float]:
        """The slider's range, widened to hold ``value`` (a preset may lie outside the training range)."""
        return min(self.low, value), max(self.high, value)


def _trained(field: str, label: str, group: str, step: float, help: str, range_key: str | None = None,
             off: float | None = None) -> Slider:
    """A slider over the training range of ``range_key`` (``RANGES``), extended down to ``off`` if given."""
    low, high = RANGES[range_key or field]
    return Slider(field, label, group, low if off is None else off, high, step, help, off)


SLIDERS = (
    _trained("demand_scale", "Demand level (x preset)", "Demand", 0.05, "multiplies every store's mean daily demand"),
    _trained("dispersion", "Demand dispersion (coefficient of variation)", "Demand", 0.05,
             "standard deviation of daily demand over its mean"),
    Slider("weekly_seasonality", "Weekly seasonality", "Demand", 0.0, 2.0, 0.1,
           "0: every weekday alike; 1: a typical retail week (busy weekends); 2: twice as peaked"),
    _trained("seasonality_amplitude", "Yearly seasonality (amplitude)", "Demand", 0.05,
             "peak-season demand above the mean, as a fraction of it"),
    _trained("num_stores", "Number of stores", "Demand", 1, "stores served by the warehouse"),
    Slider("promotion_start_day", "Promotion start day", "Promotion", 0, 364, 1, "day of the year (0 = 1 January)"),
    _trained("promotion_length", "Promotion length (days, 0 = none)", "Promotion", 1, "days the promotion lasts",
             off=0),
    _trained("promotion_lift", "Promotion lift", "Promotion", 0.05, "extra demand during the promotion, fraction"),
    Slider("disruption_start_day", "Disruption start day", "Supplier disruption", 0, 364, 1,
           "day of the year the supplier's capacity drops"),
    _trained("disruption_length", "Disruption length (days, 0 = none)", "Supplier disruption", 1,
             "days the disruption lasts", off=0),
    _trained("disruption_capacity_loss", "Capacity lost", "Supplier disruption", 0.05,
             "fraction of the supplier's production capacity lost"),
    _trained("warehouse_to_store", "Warehouse -> store", "Lead times (days)", 1,
             "days from a store's order to its shelf"),
    _trained("supplier_to_warehouse", "Supplier -> warehouse", "Lead times (days)", 1,
             "days from the warehouse's order to its stock"),
    _trained("production", "Production", "Lead times (days)", 1, "days from a production start to finished goods"),
)


def outside_training(controls: Controls) -> list[str]:
    """Labels of the settings that lie outside the ranges the learned policies were trained on."""
    return [f"{s.label}: {getattr(controls, s.field):g} (trained on {RANGES[s.field][0]:g} to {RANGES[s.field][1]:g})"
            for s in SLIDERS if s.field in RANGES and getattr(controls, s.field) != s.off
            and not RANGES[s.field][0] <= getattr(controls, s.field) <= RANGES[s.field][1]]


def controls_of(scenario: Scenario) -> Controls:
    """Slider positions that reproduce a preset (as far as the sliders can express it)."""
    first = scenario.stores[0]
    promotion = first.promotions[0] if first.promotions else None
    disruption = scenario.disruptions[0] if scenario.disruptions else None
    weekly = np.asarray(first.weekly_pattern) - 1.0
    retail = np.asarray(WEEKLY_RETAIL) - 1.0
    lead = scenario.lead_times
    default = Controls()
    return Controls(
        dispersion=first.dispersion, weekly_seasonality=float(weekly @ retail / (retail @ retail)),
        seasonality_amplitude=first.seasonality_amplitude,
        promotion_start_day=promotion.start_day if promotion else default.promotion_start_day,
        promotion_length=promotion.length if promotion else 0,
        promotion_lift=promotion.lift if promotion else default.promotion_lift,
        disruption_start_day=disruption.start_day if disruption else default.disruption_start_day,
        disruption_length=disruption.length if disruption else 0,
        disruption_capacity_loss=disruption.capacity_loss if disruption else default.disruption_capacity_loss,
        warehouse_to_store=lead.warehouse_to_store, supplier_to_warehouse=lead.supplier_to_warehouse,
        production=lead.production, num_stores=scenario.num_stores,
    )


def apply_controls(preset: str, controls: Controls) -> Scenario:
    """The preset over the Live page's year (``YEAR`` days), reshaped by the sliders: a setting a person moved from
    the preset's own position (``controls_of``) replaces the preset's; the others keep it exactly (each store's
    dispersion, every promotion, a disruption's extra lead time), so the untouched preset is the one evaluated.
    Invalid combinations raise ``ScenarioError``."""
    base = get_preset(preset)
    own, c = controls_of(base), controls

    def moved(*fields: str) -> bool:
        return any(getattr(c, name) != getattr(own, name) for name in fields)

    store_changes: dict = {}
    if moved("dispersion"):
        store_changes["dispersion"] = c.dispersion
    if moved("weekly_seasonality"):
        store_changes["weekly_pattern"] = tuple(float(x) for x in
                                                1.0 + c.weekly_seasonality * (np.asarray(WEEKLY_RETAIL) - 1.0))
    if moved("seasonality_amplitude"):
        store_changes["seasonality_amplitude"] = c.seasonality_amplitude
    if moved("promotion_start_day", "promotion_length", "promotion_lift"):
        store_changes["promotions"] = (Promotion(start_day=c.promotion_start_day, length=c.promotion_length,
                                                 lift=c.promotion_lift),) if c.promotion_length > 0 else ()
    stores = tuple(dataclasses.replace(m, mean=m.mean * c.demand_scale, **store_changes)
                   for m in base.with_num_stores(c.num_stores).stores)
    disruptions = base.disruptions
    if moved("disruption_start_day", "disruption_length", "disruption_capacity_loss"):
        extra = base.disruptions[0].extra_lead_time if base.disruptions else 0
        disruptions = (Disruption(start_day=c.disruption_start_day, length=c.disruption_length,
                                  capacity_loss=c.disruption_capacity_loss, extra_lead_time=extra),) \
            if c.disruption_length > 0 else ()
    capacity = base.capacities.production
    if capacity is not None:  # unlimited stays unlimited; a limit scales with the demand
        capacity = capacity * (c.demand_scale * c.num_stores / base.num_stores)
    return dataclasses.replace(
        base, stores=stores, disruptions=disruptions, horizon=YEAR,
        lead_times=LeadTimes(production=c.production, supplier_to_warehouse=c.supplier_to_warehouse,
                             warehouse_to_store=c.warehouse_to_store),
        capacities=dataclasses.replace(base.capacities, production=capacity),
    )


def preset_year(preset: str) -> Scenario:
    """The Live page's scenario of the untouched preset: the preset itself over ``YEAR`` days."""
    return apply_controls(preset, controls_of(get_preset(preset)))


@dataclass(frozen=True)
class Headline:
    """The year's outcome in words: ``title`` (the verdict), ``detail`` (this year's numbers) and ``verdict``
    ("cheaper", "dearer" or "same")."""

    title: str
    detail: str
    verdict: str


def year_kpis(run: Rollout) -> dict[str, float]:
    """Chain 0's year: cost per day, fill rate, units short per day, and the cost of the whole year."""
    k = {name: float(values[0]) for name, values in kpis(run).items()}
    days = run.store_orders.shape[0]
    return {"cost_per_day": k["cost_per_day"], "fill_rate": k["fill_rate"],
            "lost_sales_per_day": k["lost_sales_per_day"], "cost": k["cost_per_day"] * days}


def _relative(mine: float, theirs: float) -> float:
    return mine / theirs - 1.0 if theirs > 1e-9 else math.nan


def headline(run: Rollout, baseline: Rollout, labels: tuple[str, str]) -> Headline:
    """``run`` against ``baseline`` (the same customers; ``labels`` name them) over the year: the change of cost per
    day with its sign in words; the costs, the money saved or lost and both fill rates."""
    mine, theirs = year_kpis(run), year_kpis(baseline)
    change = _relative(mine["cost_per_day"], theirs["cost_per_day"])
    shown = abs(round(100 * change, 1))
    verdict = "same" if shown == 0.0 or change != change else "cheaper" if change < 0 else "dearer"
    words = {"same": "cost the same as", "cheaper": f"cost {shown:.1f} % less than",
             "dearer": f"cost {shown:.1f} % more than"}[verdict]
    money = theirs["cost"] - mine["cost"]
    detail = (f"This year: {CURRENCY}{mine['cost_per_day']:,.2f} against {CURRENCY}{theirs['cost_per_day']:,.2f} a "
              f"day, {CURRENCY}{abs(money):,.0f} {'saved' if money >= 0 else 'more'} in the year; fill rate "
              f"{100 * mine['fill_rate']:.1f} % against {100 * theirs['fill_rate']:.1f} %.")
    return Headline(f"Over the year, {labels[0]} {words} {labels[1]}", detail, verdict)


def comparison_note(compare: str, best: str, preset: str, scenario: Scenario, manifest: dict) -> str:
    """What the comparison is, when it is the preset's best rule (``best``): on the preset itself, with what the
    shipped evaluation in ``manifest`` found of the learned hierarchy against it; on settings that reshape the preset
    (a tuned rule tuned again for them), where another rule may do better."""
    if compare != best:
        return ""
    note = f"Compared with {POLICIES[compare].label}: {preset}'s best rule in the shipped evaluation"
    if scenario != preset_year(preset):
        again = ", tuned again for these settings" if compare in TUNERS else ""
        return note + f"{again}; another rule may do better with these settings. "
    evaluation = manifest.get("evaluation") if isinstance(manifest.get("evaluation"), dict) else {}
    try:
        costs = evaluation["presets"][preset]["policies"]
        change = costs["learned_hierarchy"]["cost_per_day"] / costs[best]["cost_per_day"] - 1.0
        seeds = int(evaluation["seeds"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return note + ". "
    return note + (f", where the learned hierarchy costs {100 * abs(change):.1f} % {'less' if change < 0 else 'more'} "
                   f"than it over {seeds} demand paths. ")


def tile_delta(key: str, mine: float, theirs: float) -> tuple[str, str]:
    """A KPI tile's difference against the comparison, short enough for a narrow tile, and its colour rule:
    cost and stockouts in percent (lower is better), fill rate in points; "same" in grey when it rounds to zero."""
    if key == "fill_rate":
        text, rule = f"{100 * (mine - theirs):+.1f} pts", "normal"
    else:
        change = _relative(mine, theirs)
        text, rule = (f"{100 * change:+.1f} %" if change == change else "-"), "inverse"
    if text == "-" or float(text.split()[0]) == 0.0:
        return "same", "off"
    return text, rule


def year_references(scenario: Scenario, seed: int) -> dict[str, float | str | None]:
    """What no policy can beat on the year's customers of ``seed``: the clairvoyant bound on this demand path,
    and the exact optimum (long-run cost per day) where it can be computed, else None and ``no_optimum``, why not."""
    demand = sample_demand(scenario, 1, np.random.default_rng(seed))
    optimum, why_not = optimum_or_reason(scenario)
    return {"bound": float(clairvoyant_bound(scenario, demand)[0]),
            "optimum": None if optimum is None else optimum.cost_per_day, "no_optimum": why_not}


def no_optimum_note(references: dict[str, float | str | None] | None) -> str | None:
    """Why the Live page shows no exact optimum with the references it asked for (None: it shows one, or none
    was asked for)."""
    if references is None or references["optimum"] is not None:
        return None
    return (f"No exact optimum for these settings: {references['no_optimum']}. The dynamic programme covers one "
            f"store with an ample source and stationary demand, in at most {MAX_TRANSITIONS:,} transitions.")


def references_text(run: Rollout, references: dict[str, float | str | None]) -> str:
    """The year's cost per day of ``run`` next to the clairvoyant bound on the same customers and the exact optimum
    where there is one (``year_references``)."""
    text = (f"Your policies {CURRENCY}{year_kpis(run)['cost_per_day']:,.2f} per day; clairvoyant bound (knowing every "
            f"day's demand in advance) {CURRENCY}{references['bound']:,.2f}")
    if references["optimum"] is not None:
        text += f"; exact optimum of any policy {CURRENCY}{references['optimum']:,.2f} (long run)"
    return text + "."


def run_year(scenario: Scenario, mix: PolicyMix, seed: int) -> Rollout:
    """One chain for the scenario's horizon, on the demand of ``seed``."""
    return rollout(scenario, mix, sample_demand(scenario, 1, np.random.default_rng(seed)))


@dataclass(frozen=True)
class YearRun:
    """One mix on the Live page: the year played (one chain, on the customers of a seed) and the same mix on the
    evaluation demand paths (the headline's spread)."""

    year: Rollout
    paths: PathResults


def run_year_and_paths(scenario: Scenario, mix: PolicyMix, seed: int, paths: int) -> YearRun:
    """``run_year`` and ``compare.simulate`` on ``paths`` paths in one batched rollout (it costs about one)."""
    demand = np.concatenate([sample_demand(scenario, 1, np.random.default_rng(seed)),
                             evaluation_demand(scenario, paths)])
    run = rollout(scenario, mix, demand)
    year = Rollout(ledger={k: v[:, :1] for k, v in run.ledger.items()}, store_orders=run.store_orders[:, :1],
                   warehouse_order=run.warehouse_order[:, :1], production=run.production[:, :1],
                   sold=run.sold[:, :1], num_stores=run.num_stores)
    per_path = kpis(run)
    return YearRun(year, PathResults(kpis={k: per_path[k][1:] for k in REPORTED},
                                     daily_cost=run.ledger["total_cost"].sum(axis=2).T[1:]))


def inspect_store_policy(chooser, rule: RolePolicy, demand_level: float, lead_time: int,
                         grid: int = 21, max_cover_days: float = 10.0) -> dict[str, np.ndarray]:
    """A store's decisions over on-hand x in-transit stock (in days of demand) for one store
    selling ``demand_level`` units a day: the learned policy's menu choice, its probabilities and
    order, and the rule-based policy's order."""
    scenario = apply_controls("steady", Controls(demand_scale=demand_level / STORE_MEANS[0],
                                                 warehouse_to_store=lead_time, num_stores=1))
    days = np.linspace(0.0, max_cover_days, grid)
    on_hand, in_transit = np.meshgrid(days, days, indexing="ij")
    state = reset(scenario, grid * grid)
    mean = scenario.stores[0].mean
    pipeline = np.zeros_like(state.store_pipeline)
    pipeline[:, 0, :] = (in_transit.reshape(-1, 1) * mean) / lead_time
    state = dataclasses.replace(state, store_on_hand=on_hand.reshape(-1, 1) * mean, store_pipeline=pipeline)
    forecast = Forecast.of(scenario)
    obs = observe("store", state, scenario, forecast, tuned_menu(scenario)).reshape(grid * grid, -1)
    action, probabilities = chooser.run(obs)
    learned_order = menu_quantities(state, scenario, forecast, "store", action.reshape(-1, 1))
    return {
        "on_hand_days": days, "in_transit_days": days,
        "safety_factor": np.asarray(SAFETY_FACTORS)[action].reshape(grid, grid),
        "probabilities": probabilities.reshape(grid, grid, -1),
        "learned_order": learned_order.reshape(grid, grid), "rule_order": rule.act(state, scenario).reshape(grid, grid),
    }
