"""Roll policies through the twin and turn ledgers into system KPIs.

``rollout`` runs one policy mix over a demand path (B chains at once) and keeps the ledger of
every day; ``kpis`` summarises a rollout per chain; ``summarise`` gives the mean and standard
error across chains (seeds). Every policy compared on the same demand path sees the same
customers (common random numbers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from core.simulation.demand import sample_demand
from core.simulation.reconcile import Ledger, reconcile
from core.simulation.scenario import Scenario
from core.simulation.twin import Actions, State, reset, step


class PolicyMix(Protocol):
    """Anything that decides every agent's quantities for a batch of chains (``core.agents.rules.PolicyMix``)."""

    def actions(self, state: State, scenario: Scenario) -> Actions: ...


@dataclass(frozen=True)
class Rollout:
    """Per-day records of one mix over B chains: ledger fields are (T, B, N + 2)."""

    ledger: dict[str, np.ndarray]
    store_orders: np.ndarray  # (T, B, N)
    warehouse_order: np.ndarray  # (T, B)
    production: np.ndarray  # (T, B)
    sold: np.ndarray  # (T, B, N)
    num_stores: int


def rollout(scenario: Scenario, mix: PolicyMix, demand: np.ndarray) -> Rollout:
    """Run ``mix`` on ``demand`` (B, T, N) from the scenario's opening stock."""
    b, periods, n = demand.shape
    state = reset(scenario, b)
    ledgers: list[Ledger] = []
    store_orders, warehouse_order, production, sold = [], [], [], []
    for t in range(periods):
        state, flows = step(state, mix.actions(state, scenario), demand[:, t], scenario)
        ledgers.append(reconcile(flows, state, scenario))
        store_orders.append(flows.store_orders)
        warehouse_order.append(flows.warehouse_order)
        production.append(flows.production_started)
        sold.append(flows.sold)
    fields = ledgers[0].as_dict()
    return Rollout(
        ledger={k: np.stack([getattr(led, k) for led in ledgers]) for k in fields},
        store_orders=np.stack(store_orders), warehouse_order=np.stack(warehouse_order),
        production=np.stack(production), sold=np.stack(sold), num_stores=n,
    )


def _days_last(values: np.ndarray) -> np.ndarray:
    """``values`` (T, ...) with the day axis last, contiguous: reductions over days then run chain by chain in
    the same order however many chains there are, so a chain's KPIs do not depend on its batch."""
    return np.ascontiguousarray(np.moveaxis(values, 0, -1))


def _variance_ratio(orders: np.ndarray, received: np.ndarray) -> np.ndarray:
    """Var(orders placed) / Var(demand received) over time (axis 0); NaN if demand is constant."""
    denominator = _days_last(received).var(axis=-1)
    return np.where(denominator > 1e-12, _days_last(orders).var(axis=-1) / np.where(denominator > 1e-12, denominator,
                                                                                   1.0), np.nan)


def _nanmean(ratios: np.ndarray) -> np.ndarray:
    """Mean over stores (axis 1) of the finite ratios; NaN (without a warning) where none is finite."""
    finite = np.isfinite(ratios)
    count = finite.sum(axis=1)
    return np.where(count > 0, np.where(finite, ratios, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)


def flow_rates(sums: dict[str, np.ndarray], days: int) -> dict[str, np.ndarray]:
    """The KPIs that are flows over a period, from ``sums`` of the ledger over its ``days`` days (per chain):
    ``cost``, ``holding_cost``, ``stockout_cost``, ``other_cost`` (all nodes), ``demand``, ``filled`` and
    ``unmet`` (stores)."""
    return {
        "cost_per_day": sums["cost"] / days,
        "holding_cost_per_day": sums["holding_cost"] / days,
        "stockout_cost_per_day": sums["stockout_cost"] / days,
        "other_cost_per_day": sums["other_cost"] / days,
        "fill_rate": sums["filled"] / np.maximum(sums["demand"], 1e-12),
        "lost_sales_per_day": sums["unmet"] / days,
    }


def day_sums(ledger: Ledger, num_stores: int) -> dict[str, np.ndarray]:
    """One day's contribution to ``flow_rates``'s sums, per chain (B,)."""
    stores = slice(0, num_stores)
    return {"cost": ledger.total_cost.sum(axis=1), "holding_cost": ledger.holding_cost.sum(axis=1),
            "stockout_cost": ledger.stockout_cost.sum(axis=1),
            "other_cost": (ledger.ordering_cost + ledger.transport_cost + ledger.production_cost).sum(axis=1),
            "demand": ledger.demand[:, stores].sum(axis=1), "filled": ledger.filled[:, stores].sum(axis=1),
            "unmet": ledger.unmet[:, stores].sum(axis=1)}


def kpis(run: Rollout, warmup: int = 0, days: int | None = None) -> dict[str, np.ndarray]:
    """System KPIs per chain, (B,) each, over days ``warmup`` to ``days`` (default: the whole run)."""
    n = run.num_stores
    window = slice(warmup, days)
    led = {k: v[window] for k, v in run.ledger.items()}
    stores = slice(0, n)
    demand = led["demand"][:, :, stores]
    inventory = _days_last((led["on_hand"] + led["in_transit"]).sum(axis=2)).mean(axis=-1)
    sold_per_day = _days_last(run.sold[window].sum(axis=2)).mean(axis=-1)
    store_orders = run.store_orders[window]
    other = led["ordering_cost"] + led["transport_cost"] + led["production_cost"]

    def total(values: np.ndarray) -> np.ndarray:
        """Per chain: the sum over nodes (or stores) and days of (T, B, nodes) ``values``."""
        return _days_last(values.sum(axis=2)).sum(axis=-1)

    sums = {"cost": total(led["total_cost"]), "holding_cost": total(led["holding_cost"]),
            "stockout_cost": total(led["stockout_cost"]), "other_cost": total(other), "demand": total(demand),
            "filled": total(led["filled"][:, :, stores]), "unmet": total(led["unmet"][:, :, stores])}
    return {
        **flow_rates(sums, demand.shape[0]),
        "reward_per_day": _days_last(led["reward"].sum(axis=2)).mean(axis=-1),
        "inventory_turns": 365.0 * sold_per_day / np.maximum(inventory, 1e-12),
        "bullwhip_store": _nanmean(_variance_ratio(store_orders, demand)),
        "bullwhip_warehouse": _variance_ratio(run.warehouse_order[window], store_orders.sum(axis=2)),
        "bullwhip_supplier": _variance_ratio(run.production[window], run.warehouse_order[window]),
    }


def summarise(per_chain: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean and standard error across chains of every KPI."""
    out = {}
    for name, values in per_chain.items():
        finite = values[np.isfinite(values)]
        se = float(finite.std(ddof=1) / math.sqrt(finite.size)) if finite.size > 1 else float("nan")
        out[name] = {"mean": float(finite.mean()) if finite.size else float("nan"), "se": se}
    return out


def simulate(scenario: Scenario, mix: PolicyMix, seeds: int, periods: int | None = None,
             seed: int = 0, warmup: int = 0) -> dict[str, dict[str, float]]:
    """KPIs (mean and standard error across ``seeds`` chains) of one mix."""
    demand = sample_demand(scenario, seeds, np.random.default_rng(seed), periods)
    return summarise(kpis(rollout(scenario, mix, demand), warmup))


def run_mixes(scenario: Scenario, mixes: dict[str, PolicyMix], seeds: int, seed: int,
              periods: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-seed KPIs of every mix, all on the same ``seeds`` demand paths (common random numbers)."""
    demand = sample_demand(scenario, seeds, np.random.default_rng(seed), periods)
    return {name: kpis(rollout(scenario, mix, demand)) for name, mix in mixes.items()}
