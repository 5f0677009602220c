"""The exact optimum of one store supplied by an ample source: an average-cost dynamic programme.

Scope: one store, ``upstream == "ample"`` (every order is shipped in full, the goods in transit are
the source's and cost nothing), stationary integer demand (``negative_binomial``; a negative
binomial whose variance is at most its mean is drawn as Poisson, as ``core.simulation.demand``
does), no shelf limit. Anything else, or a programme of more than ``MAX_TRANSITIONS`` transitions,
raises ``NoOptimum`` (a ``ScenarioError``); ``optimum_or_reason`` returns None and that reason instead.

The cost is the twin's, per day: holding ``store_holding`` on the stock on hand overnight (the
stock left after the day's sales), ``stockout`` per lost sale or per unit backordered at the end
of the day, ``order`` per order placed. Textbooks (Zipkin 2008; Snyder and Shen) charge holding on
the stock left at the end of a period: the same stock, charged a few hours earlier, so the
long-run cost per day is the same. Their lead time L (an order placed at the start of period t
serves demand from period t + L on) is lead time L + 1 in the twin's convention (ordered in the
evening, on the shelf on the (L + 1)-th morning): Zipkin's lead time 4 is the twin's 5, the
zero-lead-time newsvendor the twin's 1.

Lost sales, twin lead time L. The review on the evening of day t - 1 sees on hand x and the
pipeline p_1..p_{L-1} (p_k arrives on the k-th morning). The order q cannot change day t, so the
state is the vector that still matters, (x + p_1, p_2, ..., p_{L-1}): stock available for day t,
then the later arrivals (for L = 1 just x, and q joins it). The decision appends q (L = 1: adds q
to x); day t then costs h E[(a - D)+] + p E[(D - a)+], a = the first component, and the next
state is ((a - D)+ + second component, the rest). Demand beyond a lumps into "nothing left", so
the transitions are exact; the one truncation is the inventory position: every state and every
order keep the sum of the vector (the inventory position after ordering) at most ``bound``.
Morton (1969) bounds the optimal lost-sales order by the base-stock order of the same system
with backorders, so the solver starts one standard deviation above that base-stock level and
checks the policy it finds: if an order ever fills the position up to the bound, the bound is
raised by half and the problem solved again.

Backorders, twin lead time L. The standard reduction is exact: the position y after the order on
the evening of day t - 1 fixes the net inventory at the end of day t - 1 + L, y minus L days of
demand, so the state is the inventory position alone and the decision costs
h E[(y - D_L)+] + p E[(D_L - y)+]. Positions below ``lower`` are lumped with it (checked: the
policy orders there), positions above ``bound`` are never reached (checked as above).

Relative value iteration solves both, vectorised over all states with a sparse transition matrix
(post-decision state x demand); it stops when the bounds on the average cost (the spread of one
iteration's change) are closer than ``TOLERANCE`` relative to the cost. The same programme
evaluates a given (capped) base-stock policy: the order in each state is fixed instead of chosen.
"""

from __future__ import annotations

import functools
import io
import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse, stats

from core.simulation.scenario import Scenario, ScenarioError
from core.simulation.twin import State
from core.simulation.untrusted import shown

MAX_TRANSITIONS = 10_000_000  # (state, order, demand) triples the solver may build: memory and time
TOLERANCE = 1e-7  # relative width of the bounds on the average cost when iteration stops
MAX_ITERATIONS = 100_000
BOUND_GROWTH = 1.5  # factor applied to a binding bound


class NoOptimum(ScenarioError):
    """The exact optimum does not apply to the scenario, or its programme is too large to solve."""


@dataclass(frozen=True)
class Optimum:
    """The optimal (or an evaluated) stationary policy and its long-run cost per day."""

    cost_per_day: float  # midpoint of the bounds below
    cost_bounds: tuple[float, float]  # the average cost lies in between (relative value iteration)
    columns: tuple[str, ...]  # names of the state's components
    states: np.ndarray  # (N, len(columns)) integer states
    orders: np.ndarray  # (N,) units ordered in each state
    bound: int  # largest inventory position after an order
    lower: int  # smallest inventory position kept apart (backorders; 0 under lost sales)
    transitions: int  # nonzero entries of the transition matrix
    iterations: int

    def table_csv(self) -> str:
        """The policy as CSV: state components, inventory position, order."""
        table = [self.states, self.orders[:, None]]
        header = [*self.columns, "order"]
        if "inventory_position" not in self.columns:
            table.insert(1, self.states.sum(axis=1, keepdims=True))
            header.insert(-1, "inventory_position")
        out = io.StringIO()
        np.savetxt(out, np.hstack(table), fmt="%d", delimiter=",", header=",".join(header), comments="")
        return out.getvalue()


# --- the scenario ---------------------------------------------------------------------------------

def check_scenario(scenario: Scenario) -> None:
    """Raise ``NoOptimum`` unless the exact optimum applies to ``scenario``."""
    why = " for the exact optimum (one store, ample source, stationary integer demand)"
    if scenario.num_stores != 1:
        raise NoOptimum(f"stores: got {scenario.num_stores} stores; allowed: 1{why}")
    if scenario.upstream != "ample":
        raise NoOptimum(f"upstream: got {scenario.upstream!r}; allowed: 'ample'{why}")
    model = scenario.stores[0]
    if model.distribution != "negative_binomial":
        raise NoOptimum(f"stores[0].distribution: got {model.distribution!r}; allowed: "
                        f"'negative_binomial' (integer demand){why}")
    varying = {"weekly_pattern": model.weekly_pattern != (1.0,) * 7,
               "seasonality_amplitude": model.seasonality_amplitude != 0.0, "trend": model.trend != 0.0,
               "promotions": bool(model.promotions),
               "shock_probability": model.shock_probability > 0.0 and model.shock_size > 0.0}
    for name, bad in varying.items():
        if bad:
            raise NoOptimum(f"stores[0].{name}: got {getattr(model, name)!r}; allowed: stationary demand "
                            f"(no weekly pattern, season, trend, promotion or shock){why}")
    if scenario.capacities.store_shelf != math.inf:
        raise NoOptimum(f"capacities.store_shelf: got {scenario.capacities.store_shelf!r}; "
                        f"allowed: null (unlimited){why}")
    if scenario.costs.store_holding <= 0.0:
        raise NoOptimum(f"costs.store_holding: got {scenario.costs.store_holding!r}; allowed: > 0{why}")


def demand_distribution(scenario: Scenario, days: int = 1) -> stats.rv_discrete:
    """Demand of ``days`` days at the store, drawn as ``core.simulation.demand`` draws it: Poisson
    when the variance (dispersion x mean)^2 is at most the mean, else a gamma-Poisson mixture,
    i.e. a negative binomial with shape mean^2 / (variance - mean)."""
    model = scenario.stores[0]
    mean = model.mean
    extra = (model.dispersion * mean) ** 2 - mean
    if extra <= 1e-12:
        return stats.poisson(days * mean)
    shape = mean**2 / extra
    return stats.nbinom(days * shape, shape / (shape + mean))


# --- state spaces -----------------------------------------------------------------------------------

def simplex(length: int, bound: int) -> np.ndarray:
    """All vectors of ``length`` non-negative integers summing to at most ``bound``, in
    lexicographic order, as rows."""
    rows = np.zeros((1, 0), dtype=np.int64)
    for _ in range(length):
        rows = _append(rows, bound)
    return rows


def _append(rows: np.ndarray, bound: int) -> np.ndarray:
    """Every row followed by each last component v = 0..bound - sum(row), rows kept in order."""
    counts = bound - rows.sum(axis=1) + 1
    index = np.repeat(np.arange(len(rows)), counts)
    last = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return np.column_stack([rows[index], last])


def simplex_size(length: int, bound: int) -> int:
    return math.comb(bound + length, length)


def simplex_ranks(columns: list[np.ndarray], bound: int) -> np.ndarray:
    """Row numbers in ``simplex(len(columns), bound)`` of the vectors whose components are
    ``columns`` (one array per component). Counting the vectors before a given one component by
    component: sum over v < t of C(s - v + r, r) = C(s + r + 1, r + 1) - C(s - t + r + 1, r + 1),
    with s the room left and r the components after this one."""
    length = len(columns)
    table = np.array([[math.comb(s + b, b) for b in range(length + 1)] for s in range(bound + 1)], dtype=np.int64)
    rank = np.zeros(len(columns[0]), dtype=np.int64)
    left = np.full(len(columns[0]), bound, dtype=np.int64)
    for i, component in enumerate(columns):
        counts = table[:, length - i]
        rank += counts[left] - counts[left - component]
        left = left - component
    return rank


# --- the two models -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Model:
    """A truncated problem: states; decisions (state, order) leading to post-decision states;
    the expected cost of the day each post-decision state decides; its transitions."""

    columns: tuple[str, ...]
    states: np.ndarray  # (N, n)
    position: np.ndarray  # (N,) inventory position of each state
    pair_state: np.ndarray  # (E,) sorted
    pair_order: np.ndarray  # (E,)
    pair_post: np.ndarray  # (E,)
    post_cost: np.ndarray  # (P,)
    transitions: sparse.csr_matrix  # (P, N)
    bound: int
    lower: int


def _transition_size_lost_sales(lead_time: int, bound: int) -> int:
    """Nonzeros of the lost-sales transition matrix: each post-decision vector with first component a
    has a + 1 successors."""
    rest = max(lead_time, 1) - 1  # components after the first
    return sum((a + 1) * simplex_size(rest, bound - a) for a in range(bound + 1))


def _lost_sales_model(scenario: Scenario, bound: int) -> _Model:
    lead = scenario.lead_times.warehouse_to_store
    costs = scenario.costs
    demand = demand_distribution(scenario)
    states = simplex(max(lead - 1, 1), bound)
    position = states.sum(axis=1)
    if lead == 1:  # the order joins tonight's stock: post-decision = state + order
        posts = states
        counts = bound - position + 1
        pair_state = np.repeat(np.arange(len(states)), counts)
        pair_order = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        pair_post = position[pair_state] + pair_order  # one component: its rank is its value
        columns = ("on_hand",)
    else:  # the order is appended
        posts = _append(states, bound)
        counts = bound - position + 1
        pair_state = np.repeat(np.arange(len(states)), counts)
        pair_order = posts[:, -1]
        pair_post = np.arange(len(posts))
        columns = ("on_hand_plus_arriving_in_1",) + tuple(f"arriving_in_{k}" for k in range(2, lead))
    first = posts[:, 0]
    support = np.arange(bound + 1)
    below = np.concatenate([[0.0], np.cumsum(demand.cdf(support))])  # E[(a - D)+] = sum_{j<a} P(D <= j)
    over = below[: bound + 1]
    short = demand.mean() - support + over  # E[(D - a)+]
    post_cost = costs.store_holding * over[first] + costs.stockout * short[first]

    # Successors: z = (a - D)+ units left, z = 1..a with P(D = a - z), z = 0 with P(D >= a).
    counts = first + 1
    rows = np.repeat(np.arange(len(posts), dtype=np.int64), counts)
    left = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pmf, tail = demand.pmf(support), demand.sf(support - 1)  # P(D = d), P(D >= d)
    a = first[rows]
    probability = np.where(left > 0, pmf[a - left], tail[a])
    next_first = left + (posts[rows, 1] if posts.shape[1] > 1 else 0)
    components = [next_first] + [posts[rows, k] for k in range(2, posts.shape[1])]
    cols = simplex_ranks(components, bound)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    matrix = sparse.csr_matrix((probability, cols, indptr), shape=(len(posts), len(states)))
    return _Model(columns, states, position, pair_state, pair_order, pair_post, post_cost, matrix, bound, 0)


def _backorder_model(scenario: Scenario, bound: int, lower: int) -> _Model:
    lead = scenario.lead_times.warehouse_to_store
    costs = scenario.costs
    daily, window = demand_distribution(scenario), demand_distribution(scenario, lead)
    grid = np.arange(lower, bound + 1)
    n = grid.size
    counts = bound - grid + 1
    pair_state = np.repeat(np.arange(n), counts)
    pair_order = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pair_post = pair_state + pair_order
    support = np.arange(max(bound, 0) + 1)
    below = np.concatenate([[0.0], np.cumsum(window.cdf(support))])
    over = np.where(grid > 0, below[np.clip(grid, 0, None)], 0.0)  # E[(y - D_L)+]
    short = window.mean() - grid + over
    post_cost = costs.store_holding * over + costs.stockout * short
    # From position y the next is y - D, lumped at ``lower``: index z = 0..y - lower.
    steps = grid - lower + 1
    rows = np.repeat(np.arange(n, dtype=np.int64), steps)
    cols = np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps)
    drop = grid[rows] - lower - cols  # demand that leads from y to index cols
    demand = np.arange(n)
    pmf, tail = daily.pmf(demand), daily.sf(demand - 1)
    probability = np.where(cols > 0, pmf[drop], tail[drop])
    indptr = np.concatenate([[0], np.cumsum(steps)])
    matrix = sparse.csr_matrix((probability, cols, indptr), shape=(n, n))
    return _Model(("inventory_position",), grid[:, None], grid, pair_state, pair_order, pair_post, post_cost,
                  matrix, bound, lower)


# --- relative value iteration ------------------------------------------------------------------------

def _iterate(model: _Model, order_cost: float, fixed: np.ndarray | None = None
             ) -> tuple[np.ndarray, tuple[float, float], int]:
    """Relative value iteration; ``fixed`` (N,) pair index per state evaluates that policy instead.
    Returns the order per state, the bounds on the average cost and the number of iterations."""
    if fixed is None:
        pair_state, pair_post, pair_order = model.pair_state, model.pair_post, model.pair_order
        matrix, post_cost = model.transitions, model.post_cost
    else:  # only the chosen post-decision states: a chain on the states
        pair_state, pair_order = model.pair_state[fixed], model.pair_order[fixed]
        matrix, post_cost = model.transitions[model.pair_post[fixed]], model.post_cost[model.pair_post[fixed]]
        pair_post = np.arange(len(fixed))
    pair_cost = np.where(pair_order > 0, order_cost, 0.0)
    starts = np.flatnonzero(np.r_[True, pair_state[1:] != pair_state[:-1]])
    values = np.zeros(len(model.states))
    iterations = 0
    while True:
        candidate = pair_cost + (post_cost + matrix @ values)[pair_post]
        new = np.minimum.reduceat(candidate, starts)
        change = new - values
        low, high = float(change.min()), float(change.max())
        values = new - new[0]
        iterations += 1
        if high - low <= TOLERANCE * max(abs(high), 1e-9):
            break
        if iterations == MAX_ITERATIONS:
            raise ScenarioError(f"scenario: relative value iteration did not converge in {MAX_ITERATIONS} "
                                f"iterations (bounds {low:.6g}..{high:.6g})")
    best = candidate == np.repeat(new, np.diff(np.r_[starts, len(candidate)]))
    chosen = np.flatnonzero(best)
    first = chosen[np.r_[True, pair_state[chosen[1:]] != pair_state[chosen[:-1]]]]
    return pair_order[first], (low, high), iterations


# --- public entry points -------------------------------------------------------------------------------

def _bounds(scenario: Scenario) -> tuple[int, int]:
    """Starting truncation: the base-stock level with backorders (critical ratio p / (p + h) of L
    days of demand) plus one standard deviation, plus the economic order quantity when orders cost;
    backorders also keep positions down to minus (mean + 6 sd of L days of demand) apart."""
    costs = scenario.costs
    lead = scenario.lead_times.warehouse_to_store
    window = demand_distribution(scenario, lead)
    ratio = costs.stockout / (costs.stockout + costs.store_holding)
    mean = scenario.stores[0].mean
    batch = math.ceil(math.sqrt(2.0 * costs.order * mean / costs.store_holding))
    level = int(window.ppf(ratio)) if ratio > 0 else 0
    upper = level + math.ceil(window.std()) + batch + 1
    lower = -(math.ceil(window.mean() + 6.0 * window.std()) + batch + 1)
    return upper, lower


def _size(scenario: Scenario, bound: int, lower: int) -> int:
    if scenario.unmet_demand == "lost_sales":
        return _transition_size_lost_sales(scenario.lead_times.warehouse_to_store, bound)
    n = bound - lower + 1
    return n * (n + 1) // 2


@functools.lru_cache(maxsize=2)  # evaluating several policies on one scenario builds it once
def _model(scenario: Scenario, bound: int, lower: int) -> _Model:
    size = _size(scenario, bound, lower)
    if size > MAX_TRANSITIONS:
        lead = scenario.lead_times.warehouse_to_store
        raise NoOptimum(
            f"scenario {scenario.name}: the exact optimum needs {size:,} transitions (lead time {lead} days, "
            f"inventory position up to {bound}); allowed: at most {MAX_TRANSITIONS:,}")
    if scenario.unmet_demand == "lost_sales":
        return _lost_sales_model(scenario, bound)
    return _backorder_model(scenario, bound, lower)


def _result(model: _Model, orders: np.ndarray, bounds: tuple[float, float], iterations: int) -> Optimum:
    return Optimum(cost_per_day=(bounds[0] + bounds[1]) / 2.0, cost_bounds=bounds, columns=model.columns,
                   states=model.states, orders=orders, bound=model.bound, lower=model.lower,
                   transitions=model.transitions.nnz, iterations=iterations)


def solve(scenario: Scenario) -> Optimum:
    """The optimal stationary policy and its cost per day (see the module docstring)."""
    check_scenario(scenario)
    bound, lower = _bounds(scenario)
    while True:
        model = _model(scenario, bound, lower)
        orders, bounds, iterations = _iterate(model, scenario.costs.order)
        after = model.position + orders
        too_high = bool(((orders > 0) & (after >= bound)).any())
        too_low = scenario.unmet_demand == "backorders" and orders[0] == 0
        if not (too_high or too_low):
            return _result(model, orders, bounds, iterations)
        if too_high:
            bound = math.ceil(bound * BOUND_GROWTH) + 1
        if too_low:
            lower = math.floor(lower * BOUND_GROWTH) - 1


def optimum_or_reason(scenario: Scenario) -> tuple[Optimum | None, str | None]:
    """``solve(scenario)`` and None, or None and why there is no exact optimum (``NoOptimum``: the scenario is
    outside the programme's scope, or the programme is too large)."""
    try:
        return solve(scenario), None
    except NoOptimum as exc:
        return None, str(exc)


def largest_level(scenario: Scenario) -> int | None:
    """The largest base-stock level ``evaluate_policy`` can take on ``scenario`` within ``MAX_TRANSITIONS``
    (None: not even the starting truncation fits). A truncation at position b has at least (b + 1)(b + 2) / 2
    transitions, so no level reaches sqrt(2 MAX_TRANSITIONS): the search asks ``_size`` about no more."""
    bound, lower = _bounds(scenario)
    low, high = 0, math.isqrt(2 * MAX_TRANSITIONS)  # high never fits

    def fits(level: int) -> bool:
        return _size(scenario, max(bound, level), lower) <= MAX_TRANSITIONS

    if bound >= high or not fits(low):
        return None
    while high - low > 1:  # fits(low), not fits(high)
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def evaluate_policy(scenario: Scenario, level: int, cap: int | None = None) -> Optimum:
    """The exact cost per day of (capped) base-stock: every evening order
    min(cap, level - inventory position), nothing when the position is at or above ``level``."""
    check_scenario(scenario)
    if not (isinstance(level, (int, np.integer)) and level >= 0):
        raise ScenarioError(f"level: got {level!r}; allowed: an integer >= 0 (integer demand)")
    if cap is not None:
        if not (isinstance(cap, (int, np.integer)) and cap >= 1):
            raise ScenarioError(f"cap: got {cap!r}; allowed: an integer >= 1")
        if scenario.unmet_demand == "backorders":
            raise ScenarioError("cap: allowed only with lost sales (a capped backlog can grow without bound)")
    most = largest_level(scenario)  # checked before any loop over the units up to the level
    if most is None:
        raise NoOptimum(f"scenario {scenario.name}: the exact programme needs more than {MAX_TRANSITIONS:,} "
                        "transitions at any level")
    for name, value, least in (("level", level, 0), ("cap", cap, 1)):
        if value is not None and value > most:
            raise ScenarioError(f"{name}: got {shown(value)}; allowed: an integer from {least} to {most:,} (at most "
                                f"{MAX_TRANSITIONS:,} transitions on {scenario.name})")
    bound, lower = _bounds(scenario)
    bound = max(bound, int(level))
    model = _model(scenario, bound, lower)
    want = np.clip(level - model.position, 0, math.inf if cap is None else cap).astype(np.int64)
    starts = np.flatnonzero(np.r_[True, model.pair_state[1:] != model.pair_state[:-1]])
    orders, bounds, iterations = _iterate(model, scenario.costs.order, fixed=starts + want)
    return _result(model, orders, bounds, iterations)


@dataclass(frozen=True)
class TablePolicy:
    """A store policy that looks its order up in an ``Optimum`` table (for simulating it in the twin).
    Positions above the table's bound order nothing; backorder positions below it order up as its
    lowest state does."""

    optimum: Optimum
    role: str = "store"
    name: str = "optimal"

    def act(self, state: State, scenario: Scenario) -> np.ndarray:
        table = self.optimum
        if scenario.unmet_demand == "backorders":
            position = np.rint(state.store_inventory_position[:, 0]).astype(np.int64)
            index = np.clip(position - table.lower, 0, len(table.orders) - 1)
            target = table.states[index, 0] + table.orders[index]
            order = np.where(position > table.bound, 0, np.maximum(target - position, 0))
            return order[:, None].astype(float)
        pipeline = np.rint(state.store_pipeline[:, 0, :]).astype(np.int64)
        on_hand = np.rint(state.store_on_hand[:, 0]).astype(np.int64)
        lead = scenario.lead_times.warehouse_to_store
        if lead == 1:
            components = [on_hand]
        else:
            components = [on_hand + pipeline[:, 0]] + [pipeline[:, k] for k in range(1, lead - 1)]
        inside = sum(components) <= table.bound
        safe = [np.where(inside, c, 0) for c in components]
        order = np.where(inside, table.orders[simplex_ranks(safe, table.bound)], 0)
        return order[:, None].astype(float)
