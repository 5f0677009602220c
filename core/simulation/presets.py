"""Named scenarios. Every preset is an ordinary ``Scenario``; variants come from
``dataclasses.replace``.

The retail presets share one network: three stores selling 40, 25 and 15 units a day on
average, lead times of 2 days (production), 3 days (supplier -> warehouse) and 2 days
(warehouse -> store), lost sales charged at 20 per unit, holding costs of 0.5, 0.25 and 0.125
per unit per day at store, warehouse and supplier, and production capacity of 1.5 times
average demand.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from core.simulation.limits import MAX_SCENARIO_BYTES
from core.simulation.scenario import (
    Capacities,
    Costs,
    DemandModel,
    Disruption,
    LeadTimes,
    Promotion,
    Scenario,
    ScenarioError,
)
from core.simulation.untrusted import InputFileError, read_text, shown, shown_path

STORE_MEANS = (40.0, 25.0, 15.0)
WEEKLY_RETAIL = (0.85, 0.9, 0.95, 1.0, 1.1, 1.3, 0.9)


def _retail(name: str, *, capacity_factor: float = 1.5, **demand: object) -> Scenario:
    stores = tuple(DemandModel(mean=m, **demand) for m in STORE_MEANS)
    return Scenario(
        name=name,
        stores=stores,
        lead_times=LeadTimes(production=2, supplier_to_warehouse=3, warehouse_to_store=2),
        capacities=Capacities(production=capacity_factor * sum(STORE_MEANS)),
        costs=Costs(store_holding=0.5, warehouse_holding=0.25, supplier_holding=0.125, stockout=20.0),
    )


def _serial_textbook() -> Scenario:
    """Snyder and Shen, Fundamentals of Supply Chain Theory, Example 6.1 (Clark-Scarf).

    Echelon holding costs 3 (store), 2 (warehouse), 2 (supplier) are local holding costs
    7, 4 and 2; lead times 1, 1, 2; backorders at 37.12 per unit per period; demand N(5, 1).
    """
    return Scenario(
        name="serial_textbook",
        stores=(DemandModel(mean=5.0, dispersion=0.2, distribution="normal"),),
        lead_times=LeadTimes(production=2, supplier_to_warehouse=1, warehouse_to_store=1),
        costs=Costs(store_holding=7.0, warehouse_holding=4.0, supplier_holding=2.0, stockout=37.12),
        unmet_demand="backorders",
        horizon=1000,
        initial_cover_days=1.0,
    )


def _lost_sales_textbook() -> Scenario:
    """Zipkin (2008), "Old and new methods for lost-sales inventory systems", Table 3: one store,
    Poisson(5) demand (a negative binomial whose variance equals its mean is drawn as Poisson),
    lost sales at 4 per unit, holding 1 per unit per day on hand, and an ample upstream source.

    Zipkin's lead time 4 (an order placed at the start of period t arrives at the start of
    period t + 4 and first serves that period's demand) protects 5 days of demand: lead time 5
    here (ordered in the evening, on the shelf on the 5th morning after). Zipkin charges holding
    on the stock left at the end of a period; the twin charges it overnight on the same stock.
    """
    return Scenario(
        name="lost_sales_textbook",
        stores=(DemandModel(mean=5.0, dispersion=math.sqrt(5.0) / 5.0, distribution="negative_binomial"),),
        lead_times=LeadTimes(production=1, supplier_to_warehouse=1, warehouse_to_store=5),
        costs=Costs(store_holding=1.0, warehouse_holding=0.0, supplier_holding=0.0, stockout=4.0),
        unmet_demand="lost_sales",
        upstream="ample",
        horizon=1000,
        initial_cover_days=1.0,
    )


def _thin_margin() -> Scenario:
    """Where base-stock falls short: a low-margin line whose cost sits on the shelf. Four small stores
    (6, 5, 4 and 3 units a day, Poisson: whole units) a five-day truck away from their warehouse; a lost
    sale costs 4 days of shelf holding (critical ratio 4/5), while a unit in the warehouse or on a truck
    costs a fiftieth of that; production capacity is 1.5 times demand, cut by 90 % for 30 days from
    day 150, when the shared warehouse runs short and serves the stores with the least cover first. With
    lost sales and a long lead time the inventory position misleads an order-up-to rule (sales lost before
    tonight's order arrives never come back): each store faces Zipkin's (2008) hard case, where base-stock
    is about 10 % above the optimum (``lost_sales_textbook``). (Were the warehouse's stock shared in
    proportion to the orders, a tuned rule could keep the warehouse short on purpose and so cap every
    store's order, much as capped base-stock does; serving the neediest first, it cannot.)"""
    return Scenario(
        name="thin_margin",
        stores=tuple(DemandModel(mean=m, dispersion=1.0 / math.sqrt(m)) for m in (6.0, 5.0, 4.0, 3.0)),
        lead_times=LeadTimes(production=2, supplier_to_warehouse=3, warehouse_to_store=5),
        capacities=Capacities(production=1.5 * 18.0),
        costs=Costs(store_holding=1.0, warehouse_holding=0.02, supplier_holding=0.01, stockout=4.0),
        disruptions=(Disruption(start_day=150, length=30, capacity_loss=0.9, extra_lead_time=0),),
        allocation="lowest_cover_first",
    )


def _build() -> dict[str, Scenario]:
    steady = _retail("steady", dispersion=0.35)
    seasonal = _retail("seasonal", capacity_factor=1.25, dispersion=0.3, weekly_pattern=WEEKLY_RETAIL,
                       seasonality_amplitude=0.5, seasonality_peak_day=330)
    promo_shock = _retail(
        "promo_shock", dispersion=0.3, weekly_pattern=WEEKLY_RETAIL,
        promotions=(Promotion(start_day=60, length=7, lift=1.0), Promotion(start_day=160, length=10, lift=0.8),
                    Promotion(start_day=290, length=7, lift=1.5)),
        shock_probability=0.03, shock_size=1.0,
    )
    disruption = dataclasses.replace(
        _retail("supply_disruption", capacity_factor=1.3, dispersion=0.3),
        disruptions=(Disruption(start_day=120, length=30, capacity_loss=0.8, extra_lead_time=4),),
    )
    volatile = _retail("high_volatility", dispersion=0.9, shock_probability=0.05, shock_size=1.5)
    presets = [steady, seasonal, promo_shock, disruption, volatile, _thin_margin(), _serial_textbook(),
               _lost_sales_textbook()]
    return {p.name: p for p in presets}


PRESETS: dict[str, Scenario] = _build()


def get_preset(name: str) -> Scenario:
    """The preset called ``name``; an unknown name raises ``ScenarioError`` listing the known ones."""
    if name not in PRESETS:
        raise ScenarioError(f"scenario: got {shown(name)}; allowed: a preset ({', '.join(PRESETS)}) or a JSON file")
    return PRESETS[name]


def load_scenario(ref: str) -> Scenario:
    """A preset by name, or a scenario JSON file by path (a regular UTF-8 file of at most
    ``MAX_SCENARIO_BYTES``, checked before it is read)."""
    if ref in PRESETS:
        return PRESETS[ref]
    path = Path(ref)
    if path.suffix.lower() != ".json" and not _exists(path):
        return get_preset(ref)
    try:
        text = read_text(path, MAX_SCENARIO_BYTES)
    except InputFileError as exc:
        raise ScenarioError(f"scenario file {shown_path(ref)}: {exc}") from None
    return Scenario.from_json(text)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a NUL byte or an unencodable character in the path
        return False
