"""The clairvoyant bound: the cheapest plan that knows a whole demand path in advance.

For one demand path (T days x N stores) a linear programme chooses every day's production,
supplier -> warehouse shipment, warehouse -> store shipments and sales, from the twin's opening
stock (``core.simulation.twin.reset``), with the scenario's lead times (disrupted supplier lead
times included), production capacity (disruptions included), warehouse storage and store shelf
limits, and charges exactly what the ledger (``core.simulation.reconcile``) charges for the same
flows. Every plan the twin can execute is feasible in the programme at the same cost, so no
policy, which must decide without seeing tomorrow's demand, realises less on that path: the
optimum is a lower bound, path by path.

The programme follows the twin's order of events (review, shipping, overnight holding, morning
arrivals, sales) with these variables per day t:
- store_shipments[t, i] warehouse -> store i, warehouse_shipments[t] supplier -> warehouse and
  production[t] started, in the review before day t;
- sales[t, i] units handed to customers (at most the day's demand under lost sales);
- store[t, i] store stock in the evening, after the day's sales;
- warehouse[t], supplier[t] stock left after that review's shipping, before the morning's arrivals;
- backlog[t, i] backorders in the evening (backorder scenarios).
Holding is charged overnight: a store on yesterday evening's stock, the warehouse on its stock
plus everything in transit to the stores, the supplier on its stock plus everything in transit to
the warehouse (in each case tonight's shipments included), so a unit shipped with lead time L is
charged L nights at the shipper's rate; work in production is free. It is a relaxation of the twin
in three ways, each of which can only lower the cost: the fixed cost per order is dropped (it
would need integer variables), sales, shipments and production are not forced to be as large as
the twin's rules make them (greedy sales, the allocation rule), and a shelf or storage limit below
the opening stock is raised to it (the twin then ships nothing until stock has fallen below the
limit; the programme keeps only the limit those plans satisfy: position <= max(limit, opening)).

With an ample upstream source (``Scenario.upstream == "ample"``) the programme follows the twin:
store_shipments come from the source, unlimited by the warehouse's stock (they leave the
warehouse balance) and free (no holding in transit, no transport, the opening store pipeline
included), and the warehouse and supplier hold, ship and produce nothing (those variables are
fixed at zero; their opening stock is zero). The shelf limits still apply. A clairvoyant store
then needs no stock once its first order can arrive (unless a day's demand exceeds its shelf), so
the bound is only the cost of the opening days (about 0.03 a day on ``lost_sales_textbook``, whose optimal policy costs
4.73): it prices knowing demand in advance; ``core.evaluation.optimum`` gives the optimum there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import highspy
import numpy as np
from scipy import sparse

from core.evaluation.statistics import mean_ci
from core.simulation.scenario import Scenario
from core.simulation.twin import production_capacity, reset, supplier_lead_time


class BoundError(RuntimeError):
    """The solver did not return an optimum (a defect: the programme is always feasible and bounded)."""


@dataclass(frozen=True)
class ClairvoyantPlan:
    """The optimal plan for one demand path: flows per day (units) and its cost per day."""

    cost_per_day: float
    store_shipments: np.ndarray  # (T, N) warehouse -> stores, shipped in the review before day t
    warehouse_shipments: np.ndarray  # (T,) supplier -> warehouse
    production: np.ndarray  # (T,) production started
    sales: np.ndarray  # (T, N) units handed to customers on day t


class _Blocks:
    """Column offsets of the variable blocks for T days and N stores."""

    def __init__(self, periods: int, stores: int, backorders: bool) -> None:
        sizes = {"store_shipments": periods * stores, "warehouse_shipments": periods, "production": periods,
                 "sales": periods * stores,
                 "store": periods * stores, "warehouse": periods, "supplier": periods,
                 "backlog": periods * stores if backorders else 0}
        self.offset: dict[str, int] = {}
        total = 0
        for name, size in sizes.items():
            self.offset[name] = total
            total += size
        self.size = total
        self.periods, self.stores = periods, stores

    def store_index(self, name: str, t: np.ndarray, i: np.ndarray) -> np.ndarray:
        return self.offset[name] + t * self.stores + i

    def day_index(self, name: str, t: np.ndarray) -> np.ndarray:
        return self.offset[name] + t


class _Rows:
    """Triplets of a sparse constraint matrix, appended block by block."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.cols: list[np.ndarray] = []
        self.vals: list[np.ndarray] = []

    def add(self, rows: np.ndarray, cols: np.ndarray, value: float) -> None:
        rows, cols = np.broadcast_arrays(np.asarray(rows), np.asarray(cols))
        self.rows.append(rows.ravel())
        self.cols.append(cols.ravel())
        self.vals.append(np.full(rows.size, value))

    def matrix(self, shape: tuple[int, int]) -> sparse.csr_array:
        if not self.rows:
            return sparse.csr_array(shape)
        return sparse.coo_array((np.concatenate(self.vals), (np.concatenate(self.rows), np.concatenate(self.cols))),
                                shape=shape).tocsr()


def _arrivals(pipeline: np.ndarray, periods: int) -> np.ndarray:
    """Opening pipeline (..., K) -> units arriving on the morning of each day (periods, ...)."""
    out = np.zeros((periods, *pipeline.shape[:-1]))
    k = min(periods, pipeline.shape[-1])
    out[:k] = np.moveaxis(pipeline[..., :k], -1, 0)
    return out


def _in_transit(pipeline: np.ndarray, periods: int) -> np.ndarray:
    """Opening pipeline (..., K) -> units still in transit at the review before each day (periods, ...)."""
    padded = np.zeros((*pipeline.shape[:-1], max(periods, pipeline.shape[-1])))
    padded[..., : pipeline.shape[-1]] = pipeline
    return np.moveaxis(np.cumsum(padded[..., ::-1], axis=-1)[..., ::-1][..., :periods], -1, 0)


def _nights_charged(pipeline: np.ndarray, periods: int) -> np.ndarray:
    """Units x nights of the opening pipeline in transit within the horizon: a unit arriving on
    day k is charged on days 0..k (the night before its arrival included)."""
    nights = np.minimum(np.arange(pipeline.shape[-1]) + 1, periods)
    return (pipeline * nights).sum(axis=-1)


class _Programme:
    """The constraint matrices of one scenario and horizon; demand enters only the bounds, the
    right-hand side and a constant, so one programme serves every path."""

    def __init__(self, scenario: Scenario, periods: int) -> None:
        n = scenario.num_stores
        backorders = scenario.unmet_demand == "backorders"
        ample = scenario.upstream == "ample"
        blocks = _Blocks(periods, n, backorders)
        self.scenario, self.blocks, self.backorders = scenario, blocks, backorders
        opening = reset(scenario, 1)
        lead = scenario.lead_times
        costs, caps = scenario.costs, scenario.capacities
        days = np.arange(periods)
        day_of = np.repeat(days, n)  # day of every (day, store) pair, day-major
        store_of = np.tile(np.arange(n), periods)
        supplier_lead = np.array([supplier_lead_time(scenario, t) for t in range(periods)])
        capacity = np.array([production_capacity(scenario, t) for t in range(periods)])

        opening_store = opening.store_on_hand[0]
        opening_store_arrivals = _arrivals(opening.store_pipeline[0], periods)  # (periods, N)
        opening_warehouse_arrivals = _arrivals(opening.warehouse_pipeline[0], periods)  # (periods,)
        opening_production_arrivals = _arrivals(opening.production_pipeline[0], periods)  # (periods,)

        # Equalities: stock balances (store, warehouse, supplier) and, with backorders, the backlog.
        eq = _Rows()
        balance = day_of * n + store_of  # store (t, i): store[t] - store[t-1] - arrivals + sales = opening arrivals
        eq.add(balance, blocks.store_index("store", day_of, store_of), 1.0)
        later = day_of >= 1
        eq.add(balance[later], blocks.store_index("store", day_of[later] - 1, store_of[later]), -1.0)
        eq.add(balance, blocks.store_index("sales", day_of, store_of), 1.0)
        arrival = day_of + lead.warehouse_to_store - 1  # shipped before day t: on the shelf on this morning
        lands = arrival < periods
        shipped = blocks.store_index("store_shipments", day_of[lands], store_of[lands])
        eq.add(arrival[lands] * n + store_of[lands], shipped, -1.0)
        store_rhs = opening_store_arrivals.copy()
        store_rhs[0] += opening_store

        # warehouse (t): warehouse[t] - warehouse[t-1] - arrivals on day t-1 + shipments to stores on day t
        #                = opening stock (t = 0) or opening arrivals on day t - 1
        w_row = periods * n + days
        eq.add(w_row, blocks.day_index("warehouse", days), 1.0)
        eq.add(w_row[1:], blocks.day_index("warehouse", days[1:] - 1), -1.0)
        if not ample:  # an ample source, not the warehouse, ships to the stores
            eq.add(periods * n + day_of, blocks.store_index("store_shipments", day_of, store_of), 1.0)
        next_review = days + supplier_lead  # arrives on day t + L - 1, usable from the next review
        usable = next_review < periods
        eq.add(periods * n + next_review[usable], blocks.day_index("warehouse_shipments", days[usable]), -1.0)
        warehouse_rhs = np.concatenate([opening.warehouse_on_hand, opening_warehouse_arrivals[:-1]])

        # supplier (t): the same with production (free of holding cost while in progress)
        u_row = periods * n + periods + days
        eq.add(u_row, blocks.day_index("supplier", days), 1.0)
        eq.add(u_row[1:], blocks.day_index("supplier", days[1:] - 1), -1.0)
        eq.add(u_row, blocks.day_index("warehouse_shipments", days), 1.0)
        next_review = days + lead.production
        usable = next_review < periods
        eq.add(periods * n + periods + next_review[usable], blocks.day_index("production", days[usable]), -1.0)
        supplier_rhs = np.concatenate([opening.supplier_on_hand, opening_production_arrivals[:-1]])

        self.rhs_parts = [store_rhs.ravel(), warehouse_rhs, supplier_rhs]
        rows = periods * n + 2 * periods
        if backorders:  # backlog[t] - backlog[t-1] + sales[t] = demand[t] (+ opening backorders on day 0)
            b_row = rows + balance
            eq.add(b_row, blocks.store_index("backlog", day_of, store_of), 1.0)
            eq.add(b_row[later], blocks.store_index("backlog", day_of[later] - 1, store_of[later]), -1.0)
            eq.add(b_row, blocks.store_index("sales", day_of, store_of), 1.0)
            rows += periods * n
        self.opening_backorders = opening.store_backorders[0]
        self.a_eq = eq.matrix((rows, blocks.size))

        # Inequalities: shelf and storage room as the twin counts them (on hand + inbound + tonight's).
        ub, ub_rhs, ub_rows = _Rows(), [], 0
        if caps.store_shelf != math.inf:
            opening_pipeline = opening.store_pipeline[0]
            limit = np.maximum(caps.store_shelf, opening_store + opening_pipeline.sum(axis=1))
            remaining = _in_transit(opening_pipeline, periods)  # (periods, N)
            row = day_of * n + store_of
            ub.add(row[later], blocks.store_index("store", day_of[later] - 1, store_of[later]), 1.0)
            for k in range(lead.warehouse_to_store):  # shipped k days ago and in transit, or tonight
                ok = day_of >= k
                ub.add(row[ok], blocks.store_index("store_shipments", day_of[ok] - k, store_of[ok]), 1.0)
            rhs = limit[None, :] - remaining
            rhs[0] -= opening_store
            ub_rhs.append(rhs.ravel())
            ub_rows += periods * n
        if caps.warehouse_storage != math.inf:
            opening_pipeline = opening.warehouse_pipeline[0]
            limit = max(caps.warehouse_storage, float(opening.warehouse_on_hand[0] + opening_pipeline.sum()))
            remaining = _in_transit(opening_pipeline, periods)
            row = ub_rows + days
            ub.add(row, blocks.day_index("warehouse", days), 1.0)
            for k in range(int(supplier_lead.max())):  # shipped k days ago, arriving >= t, or tonight
                s = days - k
                ok = (s >= 0) & (k <= supplier_lead[np.maximum(s, 0)] - 1)
                ub.add(row[ok], blocks.day_index("warehouse_shipments", s[ok]), 1.0)
            ub_rhs.append(limit - remaining)
            ub_rows += periods
        self.a_ub = ub.matrix((ub_rows, blocks.size)) if ub_rows else None
        self.b_ub = np.concatenate(ub_rhs) if ub_rows else None

        # Objective: the ledger's daily costs summed over the horizon.
        c = np.zeros(blocks.size)
        # a shipment is charged to its shipper every night from leaving to arriving, within the horizon
        store_nights = np.repeat(np.minimum(lead.warehouse_to_store, periods - days), n)
        warehouse_nights = np.minimum(supplier_lead, periods - days)
        shipped = blocks.store_index("store_shipments", day_of, store_of)
        c[shipped] = 0.0 if ample else costs.warehouse_holding * store_nights + costs.transport
        c[blocks.day_index("warehouse_shipments", days)] = costs.supplier_holding * warehouse_nights + costs.transport
        c[blocks.day_index("production", days)] = costs.production
        # a store's evening stock is charged the next night; the last evening's is not
        c[blocks.store_index("store", day_of, store_of)] = np.where(day_of < periods - 1, costs.store_holding, 0.0)
        c[blocks.day_index("warehouse", days)] = costs.warehouse_holding
        c[blocks.day_index("supplier", days)] = costs.supplier_holding
        if backorders:
            c[blocks.store_index("backlog", day_of, store_of)] = costs.stockout
        else:
            c[blocks.store_index("sales", day_of, store_of)] = -costs.stockout  # lost sales = demand - sales
        self.c = c
        self.constant = costs.store_holding * opening_store.sum()
        if not ample:  # the pipelines' goods belong to their shippers (to the source's, free, if ample)
            self.constant += (costs.warehouse_holding * _nights_charged(opening.store_pipeline[0], periods).sum()
                              + costs.supplier_holding * _nights_charged(opening.warehouse_pipeline[0], periods))

        upper = np.full(blocks.size, np.inf)
        upper[blocks.day_index("production", days)] = capacity
        if ample:  # the warehouse and supplier stay empty and idle
            for name in ("warehouse_shipments", "production", "warehouse", "supplier"):
                upper[blocks.day_index(name, days)] = 0.0
        self.upper = upper
        self.highs: highspy.Highs | None = None  # built on first use (``_solver``)

    def _solver(self) -> highspy.Highs:
        """One HiGHS model of the programme, kept: each path changes only bounds, so HiGHS starts from the
        previous path's optimal basis (about ten times faster than a fresh solve per path)."""
        if self.highs is None:
            matrix = sparse.vstack([m for m in (self.a_eq, self.a_ub) if m is not None]).tocsc()
            equal = np.zeros(self.a_eq.shape[0])  # the right-hand sides are set per path (``solve``)
            inequality = self.a_ub.shape[0] if self.a_ub is not None else 0
            lp = highspy.HighsLp()
            lp.num_col_, lp.num_row_ = matrix.shape[1], matrix.shape[0]
            lp.col_cost_, lp.col_lower_, lp.col_upper_ = self.c, np.zeros(matrix.shape[1]), self.upper
            lp.row_lower_ = np.concatenate([equal, np.full(inequality, -np.inf)])
            lp.row_upper_ = np.concatenate([equal, self.b_ub]) if inequality else equal
            lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
            lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = matrix.indptr, matrix.indices, matrix.data
            self.highs = highspy.Highs()
            self.highs.setOptionValue("output_flag", False)
            self.highs.setOptionValue("threads", 1)
            self.highs.passModel(lp)
        return self.highs

    def solve(self, demand: np.ndarray) -> ClairvoyantPlan:
        """The optimal plan for one path ``demand`` (periods, N)."""
        blocks, costs = self.blocks, self.scenario.costs
        constant = self.constant
        b_eq = self.rhs_parts
        sales = np.arange(blocks.offset["sales"], blocks.offset["sales"] + demand.size)
        highs = self._solver()
        if self.backorders:
            backlog_rhs = demand.astype(float)
            backlog_rhs[0] += self.opening_backorders
            b_eq = [*b_eq, backlog_rhs.ravel()]
        else:
            highs.changeColsBounds(sales.size, sales, np.zeros(sales.size), demand.ravel().astype(float))
            constant = constant + costs.stockout * demand.sum()
        rhs = np.concatenate(b_eq)
        highs.changeRowsBounds(rhs.size, np.arange(rhs.size), rhs, rhs)
        highs.run()
        if highs.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            raise BoundError(f"clairvoyant programme of {self.scenario.name!r}: "
                             f"{highs.modelStatusToString(highs.getModelStatus())}")
        solution = np.asarray(highs.getSolution().col_value)
        periods, n = blocks.periods, blocks.stores

        def block(name: str, shape: tuple[int, ...]) -> np.ndarray:
            size = int(np.prod(shape))
            return solution[blocks.offset[name]: blocks.offset[name] + size].reshape(shape)

        return ClairvoyantPlan(
            cost_per_day=float((highs.getInfo().objective_function_value + constant) / periods),
            store_shipments=block("store_shipments", (periods, n)),
            warehouse_shipments=block("warehouse_shipments", (periods,)),
            production=block("production", (periods,)),
            sales=block("sales", (periods, n)),
        )


def clairvoyant_plans(scenario: Scenario, demand: np.ndarray) -> list[ClairvoyantPlan]:
    """The optimal clairvoyant plan of every path of ``demand`` (B, periods, N), as drawn by
    ``core.simulation.demand.sample_demand`` (one linear programme per path, HiGHS, each started from the
    previous path's optimal basis)."""
    if demand.ndim != 3 or demand.shape[1] < 1 or demand.shape[2] != scenario.num_stores:
        raise ValueError(f"demand: got shape {demand.shape}; allowed: (paths, days >= 1, {scenario.num_stores})")
    programme = _Programme(scenario, demand.shape[1])
    return [programme.solve(path) for path in demand]


def clairvoyant_bound(scenario: Scenario, demand: np.ndarray) -> np.ndarray:
    """(B,) cost per day of the cheapest plan that knows each demand path in advance: a lower
    bound, path by path, on the cost per day (``rollout.kpis`` without warm-up: every day from the
    opening stock) of any policy run on ``demand``."""
    return np.array([plan.cost_per_day for plan in clairvoyant_plans(scenario, demand)])


def bound_summary(scenario: Scenario, demand: np.ndarray) -> dict[str, float]:
    """Mean clairvoyant bound over the paths of ``demand`` with its 95 % interval."""
    return mean_ci(clairvoyant_bound(scenario, demand))
