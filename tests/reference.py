"""A slow, obvious reference for one period of the twin, and random inputs for property tests.

The reference is written from the order of events in the module docstring of ``core.simulation.twin``
(and the field comments of ``core.simulation.scenario``), not from ``core.simulation.twin.step``. It works on one
chain at a time with plain Python floats, lists and dicts, and keeps every shipment as
``{arrival day: units}`` instead of the twin's shifted pipeline arrays, so a mistake in the
twin's array bookkeeping cannot be copied here.

Reading of the docstring used below (day ``d`` is the day being simulated, i.e. ``State.day``):

1. Review (evening of day d - 1). Negative requests count as zero. A store order is cut to the
   free shelf room ``store_shelf - on hand - in transit``. Production is cut to the capacity of
   the review before day d: ``production * (1 - capacity_loss)`` of an active disruption.
   The warehouse order is cut to the free storage room ``warehouse_storage - on hand - in
   transit``, where on hand is what is left after tonight's shipments to the stores (they leave
   in the same review, before the warehouse's own order is placed); this is the reading that
   keeps ``on hand + inbound <= warehouse_storage`` true every evening.
2. Shipping. The warehouse fills store orders in full if it can; otherwise by the allocation
   rule: ``proportional`` (everyone gets the same fraction) or ``lowest_cover_first`` (stores
   in order of cover = (on hand + in transit - backorders) / mean demand, ties by store index,
   each in full while stock lasts). The supplier ships min(warehouse order, finished stock).
3. Overnight holding bases: store = on hand; warehouse = on hand after shipping + everything in
   transit to the stores (tonight's shipments included); supplier = finished stock after
   shipping + everything in transit to the warehouse (tonight's shipment included).
4. Morning of day d: a shipment placed in the review with lead time L arrives on the morning
   of day d + L - 1 (L = 1: this morning). The supplier -> warehouse lead time of a shipment
   is the normal one plus the extra lead time of a disruption active on day d.
5. Day d: backorders first (backorder scenarios), then the day's demand; the rest is lost or
   added to the backorders.
With an ample upstream source the source ships every store order in full in step 2; the warehouse
orders nothing, the supplier produces nothing, their stock does not move, and their holding bases
are zero (goods in transit belong to the source).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from core.simulation.scenario import (
    ALLOCATION_RULES,
    UNMET_DEMAND,
    Capacities,
    Costs,
    DemandModel,
    Disruption,
    LeadTimes,
    Scenario,
)
from core.simulation.twin import Actions, Flows, State


@dataclass
class RefChain:
    """One chain, evening of day ``day - 1``. Transit dicts map arrival day -> units."""

    day: int
    store_on_hand: list[float]
    store_backorders: list[float]
    store_transit: list[dict[int, float]]
    warehouse_on_hand: float
    warehouse_transit: dict[int, float]
    supplier_on_hand: float
    in_production: dict[int, float] = field(default_factory=dict)


FLOW_FIELDS = [f.name for f in dataclasses.fields(Flows)]


def _in_order(transit: dict[int, float]) -> list[float]:
    return [transit[k] for k in sorted(transit)]


def _total(values: list[float]) -> float:
    total = 0.0
    for v in values:
        total += v
    return total


def capacity_on(scenario: Scenario, day: int) -> float:
    """Production capacity of the review before ``day`` (disruptions do not overlap here)."""
    capacity = scenario.capacities.production
    active = [d for d in scenario.disruptions if d.start_day <= day < d.start_day + d.length]
    assert len(active) <= 1, "the reference assumes non-overlapping disruptions"
    for d in active:
        capacity = 0.0 if d.capacity_loss >= 1.0 else capacity * (1.0 - d.capacity_loss)
    return capacity


def supplier_lead_time_on(scenario: Scenario, day: int) -> int:
    lead = scenario.lead_times.supplier_to_warehouse
    for d in scenario.disruptions:
        if d.start_day <= day < d.start_day + d.length:
            lead = scenario.lead_times.supplier_to_warehouse + d.extra_lead_time
    return lead


def reference_step(chain: RefChain, store_requests: list[float], warehouse_request: float,
                   production_request: float, demand: list[float], scenario: Scenario
                   ) -> tuple[RefChain, dict[str, object]]:
    """One period for one chain; returns the next chain and the flows (lists for stores)."""
    n = scenario.num_stores
    day = chain.day
    caps = scenario.capacities
    lead = scenario.lead_times
    means = [m.mean for m in scenario.stores]

    store_on_hand = list(chain.store_on_hand)
    backorders = list(chain.store_backorders)
    store_transit = [dict(t) for t in chain.store_transit]
    warehouse_transit = dict(chain.warehouse_transit)
    in_production = dict(chain.in_production)
    store_inbound = [_total(_in_order(t)) for t in store_transit]

    # 1. Review: store orders and production.
    orders = []
    for i in range(n):
        q = max(store_requests[i], 0.0)
        if caps.store_shelf != math.inf:
            room = caps.store_shelf - store_on_hand[i] - store_inbound[i]
            q = min(q, max(room, 0.0))
        orders.append(q)
    ample = scenario.upstream == "ample"
    production = 0.0 if ample else min(max(production_request, 0.0), capacity_on(scenario, day))

    # 2. Shipping warehouse (or the ample source) -> stores.
    available = chain.warehouse_on_hand
    if ample or _total(orders) <= available:  # the ample source ships everything
        shipped = list(orders)
    elif scenario.allocation == "proportional":
        fraction = available / _total(orders)
        shipped = [q * fraction for q in orders]
    else:
        cover = [(chain.store_on_hand[i] + store_inbound[i] - chain.store_backorders[i]) / means[i]
                 for i in range(n)]
        shipped = [0.0] * n
        left = available
        for i in sorted(range(n), key=lambda j: (cover[j], j)):
            shipped[i] = min(orders[i], max(left, 0.0))
            left -= shipped[i]
    warehouse_on_hand = chain.warehouse_on_hand - (0.0 if ample else _total(shipped))

    # 1. (cont.) Warehouse order, cut to the storage room left after tonight's shipments.
    warehouse_inbound = _total(_in_order(warehouse_transit))
    warehouse_order = 0.0 if ample else max(warehouse_request, 0.0)
    if caps.warehouse_storage != math.inf:
        room = caps.warehouse_storage - warehouse_on_hand - warehouse_inbound
        warehouse_order = min(warehouse_order, max(room, 0.0))
    # 2. (cont.) Supplier -> warehouse.
    supplier_shipped = min(warehouse_order, chain.supplier_on_hand)
    supplier_on_hand = chain.supplier_on_hand - supplier_shipped

    # 3. Overnight holding bases.
    store_held = list(chain.store_on_hand)
    warehouse_held = warehouse_on_hand + _total([store_inbound[i] + shipped[i] for i in range(n)])
    supplier_held = supplier_on_hand + warehouse_inbound + supplier_shipped
    if ample:
        warehouse_held = supplier_held = 0.0

    # Shipments and production of this review join the transit records.
    for i in range(n):
        arrive = day + lead.warehouse_to_store - 1
        store_transit[i][arrive] = store_transit[i].get(arrive, 0.0) + shipped[i]
    arrive = day + supplier_lead_time_on(scenario, day) - 1
    warehouse_transit[arrive] = warehouse_transit.get(arrive, 0.0) + supplier_shipped
    arrive = day + lead.production - 1
    in_production[arrive] = in_production.get(arrive, 0.0) + production

    # 4. Morning of day d.
    store_received = [store_transit[i].pop(day, 0.0) for i in range(n)]
    warehouse_received = warehouse_transit.pop(day, 0.0)
    production_finished = in_production.pop(day, 0.0)
    for i in range(n):
        store_on_hand[i] += store_received[i]
    warehouse_on_hand += warehouse_received
    supplier_on_hand += production_finished

    # 5. Customers.
    filled, unmet, backorders_filled = [], [], []
    for i in range(n):
        if scenario.unmet_demand == "backorders":
            served_old = min(store_on_hand[i], backorders[i])
            store_on_hand[i] -= served_old
        else:
            served_old = 0.0
        served = min(store_on_hand[i], demand[i])
        store_on_hand[i] -= served
        short = demand[i] - served
        if scenario.unmet_demand == "backorders":
            backorders[i] = backorders[i] - served_old + short
        filled.append(served)
        unmet.append(short)
        backorders_filled.append(served_old)

    nxt = RefChain(day=day + 1, store_on_hand=store_on_hand, store_backorders=backorders,
                   store_transit=store_transit, warehouse_on_hand=warehouse_on_hand,
                   warehouse_transit=warehouse_transit, supplier_on_hand=supplier_on_hand,
                   in_production=in_production)
    flows = {
        "demand": list(demand), "filled": filled, "unmet": unmet, "backorders_filled": backorders_filled,
        "store_orders": orders, "warehouse_shipped": shipped, "warehouse_order": warehouse_order,
        "supplier_shipped": supplier_shipped, "production_started": production,
        "store_received": store_received, "warehouse_received": warehouse_received,
        "production_finished": production_finished, "store_held": store_held,
        "warehouse_held": warehouse_held, "supplier_held": supplier_held,
    }
    return nxt, flows


# --- conversions between the twin's batched arrays and the reference's per-chain records ---

def chain_from_state(state: State, b: int) -> RefChain:
    """Chain ``b`` of ``state``; pipeline slot k arrives on the morning of day ``state.day + k``."""
    d = state.day

    def transit(row: np.ndarray) -> dict[int, float]:
        return {d + k: float(v) for k, v in enumerate(row)}

    return RefChain(
        day=d,
        store_on_hand=[float(x) for x in state.store_on_hand[b]],
        store_backorders=[float(x) for x in state.store_backorders[b]],
        store_transit=[transit(row) for row in state.store_pipeline[b]],
        warehouse_on_hand=float(state.warehouse_on_hand[b]),
        warehouse_transit=transit(state.warehouse_pipeline[b]),
        supplier_on_hand=float(state.supplier_on_hand[b]),
        in_production=transit(state.production_pipeline[b]),
    )


def _slots(transit: dict[int, float], day: int, length: int) -> list[float]:
    out = [0.0] * length
    for arrive, units in transit.items():
        k = arrive - day
        assert 0 <= k < length or units == 0.0, f"shipment arriving on day {arrive} outside the pipeline"
        if 0 <= k < length:
            out[k] += units
    return out


def state_arrays(chains: list[RefChain], like: State) -> dict[str, np.ndarray]:
    """The reference chains as the twin's State arrays (pipeline lengths taken from ``like``)."""
    ls, lw, lp = like.store_pipeline.shape[2], like.warehouse_pipeline.shape[1], like.production_pipeline.shape[1]
    return {
        "store_on_hand": np.array([c.store_on_hand for c in chains]),
        "store_backorders": np.array([c.store_backorders for c in chains]),
        "store_pipeline": np.array([[_slots(t, c.day, ls) for t in c.store_transit] for c in chains]),
        "warehouse_on_hand": np.array([c.warehouse_on_hand for c in chains]),
        "warehouse_pipeline": np.array([_slots(c.warehouse_transit, c.day, lw) for c in chains]),
        "supplier_on_hand": np.array([c.supplier_on_hand for c in chains]),
        "production_pipeline": np.array([_slots(c.in_production, c.day, lp) for c in chains]),
    }


def reference_batch_step(state: State, actions: Actions, demand: np.ndarray, scenario: Scenario
                         ) -> tuple[list[RefChain], dict[str, np.ndarray]]:
    """Apply the reference to every chain of a batch; flows stacked like the twin's."""
    chains, flows = [], []
    for b in range(state.batch_size):
        nxt, f = reference_step(chain_from_state(state, b),
                                [float(x) for x in actions.store_orders[b]], float(actions.warehouse_order[b]),
                                float(actions.production[b]), [float(x) for x in demand[b]], scenario)
        chains.append(nxt)
        flows.append(f)
    return chains, {name: np.array([f[name] for f in flows]) for name in FLOW_FIELDS}


# --- random inputs ---

def random_scenario(rng: np.random.Generator, *, horizon: int = 60) -> Scenario:
    """A random valid scenario: 1-6 stores, lead times 1-4, finite or infinite capacities,
    either unmet-demand mode and allocation rule, up to two non-overlapping disruptions."""
    n = int(rng.integers(1, 7))
    stores = tuple(
        DemandModel(mean=float(rng.uniform(1.0, 60.0)), dispersion=float(rng.uniform(0.0, 1.0)),
                    distribution=str(rng.choice(["normal", "negative_binomial"])))
        for _ in range(n)
    )
    total = sum(m.mean for m in stores)

    def cap(scale: float) -> float:
        return math.inf if rng.random() < 0.4 else float(rng.uniform(0.3, 3.0) * scale)

    disruptions = []
    start = int(rng.integers(0, 12))
    for _ in range(int(rng.integers(0, 3))):
        length = int(rng.integers(1, 9))
        disruptions.append(Disruption(start_day=start, length=length,
                                      capacity_loss=float(rng.choice([0.0, 0.3, 0.8, 1.0])),
                                      extra_lead_time=int(rng.integers(0, 4))))
        start += length + int(rng.integers(0, 6))
    return Scenario(
        name="random",
        stores=stores,
        lead_times=LeadTimes(production=int(rng.integers(1, 5)), supplier_to_warehouse=int(rng.integers(1, 5)),
                             warehouse_to_store=int(rng.integers(1, 5))),
        capacities=Capacities(production=cap(total), warehouse_storage=cap(10 * total),
                              store_shelf=cap(5 * max(m.mean for m in stores))),
        costs=Costs(store_holding=float(rng.uniform(0, 2)), warehouse_holding=float(rng.uniform(0, 1)),
                    supplier_holding=float(rng.uniform(0, 0.5)), stockout=float(rng.uniform(1, 20)),
                    order=float(rng.choice([0.0, rng.uniform(0, 50)])),
                    transport=float(rng.choice([0.0, rng.uniform(0, 2)])),
                    production=float(rng.choice([0.0, rng.uniform(0, 3)]))),
        unmet_demand=str(rng.choice(UNMET_DEMAND)),
        allocation=str(rng.choice(ALLOCATION_RULES)),
        disruptions=tuple(disruptions),
        horizon=horizon,
        initial_cover_days=float(rng.choice([0.0, rng.uniform(0, 6)])),
    )


def random_state(rng: np.random.Generator, state: State, scenario: Scenario) -> State:
    """A random (non-negative) state with the shapes of ``state``."""
    scale = sum(m.mean for m in scenario.stores)

    def r(a: np.ndarray) -> np.ndarray:
        return rng.uniform(0, 4 * scale, a.shape) * (rng.random(a.shape) < 0.8)

    backorders = r(state.store_backorders) if scenario.unmet_demand == "backorders" else state.store_backorders
    return dataclasses.replace(
        state, day=int(rng.integers(0, 10)), store_on_hand=r(state.store_on_hand), store_backorders=backorders,
        store_pipeline=r(state.store_pipeline), warehouse_on_hand=r(state.warehouse_on_hand),
        warehouse_pipeline=r(state.warehouse_pipeline), supplier_on_hand=r(state.supplier_on_hand),
        production_pipeline=r(state.production_pipeline))


def _requests(rng: np.random.Generator, mean: np.ndarray) -> np.ndarray:
    """Mostly ordinary quantities, some zero, negative or absurdly large."""
    kind = rng.integers(0, 10, mean.shape)
    q = rng.uniform(0.0, 3.0, mean.shape) * mean
    q = np.where(kind == 0, 0.0, q)
    q = np.where(kind == 1, -rng.uniform(0.0, 2.0, mean.shape) * mean, q)
    q = np.where(kind == 2, 1e9, q)
    return q


def random_actions(rng: np.random.Generator, scenario: Scenario, batch_size: int) -> Actions:
    means = np.array([m.mean for m in scenario.stores])
    total = np.full(batch_size, means.sum())
    return Actions(store_orders=_requests(rng, np.tile(means, (batch_size, 1))),
                   warehouse_order=_requests(rng, total), production=_requests(rng, total))


def random_demand(rng: np.random.Generator, scenario: Scenario, batch_size: int) -> np.ndarray:
    means = np.array([m.mean for m in scenario.stores])
    d = rng.gamma(1.5, 1.0, (batch_size, means.size)) * means / 1.5
    return np.where(rng.random(d.shape) < 0.1, 0.0, d)
