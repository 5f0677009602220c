"""The digital twin: one pure, batched NumPy step for B independent supply chains.

Network: supplier (production) -> warehouse -> ``num_stores`` stores -> customers.
Every array has a leading batch axis B; a single chain is B = 1. Quantities are units of
product (floats), money is in currency units, time is in days.

Order of events in one period (one call of ``step``, "day t"):

1. Review (evening of day t - 1). Each agent sees the state after the previous day's sales and
   acts, all at once: every store orders from the warehouse, the warehouse orders from the
   supplier, the supplier starts production. An upstream agent therefore learns of tonight's
   downstream orders at the next review (a one-day information lag; echelon policies, which
   watch the whole downstream stock, are unaffected). Store orders are cut to the free shelf
   room and production to the day's capacity (less any disruption). Order rule: every requested
   quantity is first cut to [0, ``MAX_QUANTITY``] units (1e12: a negative request orders nothing, a
   larger one can never be filled anyway, and the cut keeps every sum finite, so the proportional
   allocation cannot overflow); NaN or infinite requests raise ``ActionError`` naming the field.
2. Shipping. The warehouse ships store orders from its on-hand stock; when it cannot fill them
   all it shares stock by the scenario's allocation rule. Its own order is then cut to the
   storage room left after those shipments. The supplier ships the warehouse order from its
   finished stock. Unfilled internal orders are cancelled: the next review sees the
   shortfall and orders again (for base-stock policies this is the same as backlogging them).
3. Overnight. Holding costs are charged on stock on hand at each node and on goods in transit,
   which belong to the node that shipped them (Snyder and Shen's convention for serial systems;
   work in production carries no holding cost).
4. Morning of day t. Shipments and production whose lead time has elapsed arrive. A lead time
   of L days means: ordered in the evening review, available for sale on the L-th morning after.
5. Day t. Customer demand arrives at each store. Backorders (if the scenario uses them) are
   served first, then the day's demand; what cannot be served is lost (charged once per unit)
   or backordered (charged per unit per day while it waits).

With ``upstream == "ample"`` an unlimited, cost-free source ships every store order in full in
step 2 (the goods in transit are the source's, so nobody pays holding on them); the warehouse and
supplier start empty, order and produce nothing, and hold and cost nothing.

The state returned by ``step`` is the evening of day t: what the next review sees. It also carries
``Memory``, exponentially weighted averages of recent flows that the agents' observations read and the
physics never does (kept here so that one ``step`` updates everything a day changes). Beyond that this
module knows nothing of agents, rewards, gymnasium, torch or streamlit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.simulation.limits import MAX_QUANTITY
from core.simulation.scenario import Scenario

MEMORY_WEIGHT = 0.25  # weight of the newest day in the exponentially weighted averages


@dataclass(frozen=True)
class Memory:
    """What agents remember of recent days: exponentially weighted averages (units per day)
    and yesterday's demand. Observations read it; the physics never does."""

    stores: np.ndarray  # (4, B, N) averages of demand, filled on the day, orders placed, shipped to the store
    upstream: np.ndarray  # (2, B) averages of the warehouse's order and the supplier's shipments
    last_demand: np.ndarray  # (B, N) yesterday's demand

    @property
    def demand(self) -> np.ndarray:
        return self.stores[0]

    @property
    def filled(self) -> np.ndarray:
        return self.stores[1]

    @property
    def store_orders(self) -> np.ndarray:
        return self.stores[2]

    @property
    def store_shipped(self) -> np.ndarray:
        return self.stores[3]

    @property
    def warehouse_order(self) -> np.ndarray:
        return self.upstream[0]

    @property
    def supplier_shipped(self) -> np.ndarray:
        return self.upstream[1]

    @staticmethod
    def start(means: np.ndarray, batch_size: int) -> Memory:
        """As if every past day had mean demand, fully served."""
        stores = np.tile(means, (4, batch_size, 1)).astype(float)
        return Memory(stores, np.full((2, batch_size), means.sum()), stores[0].copy())

    def update(self, flows: Flows) -> Memory:
        w = MEMORY_WEIGHT
        today = np.stack([flows.demand, flows.filled, flows.store_orders, flows.warehouse_shipped])
        upstream = np.stack([flows.warehouse_order, flows.supplier_shipped])
        return Memory((1 - w) * self.stores + w * today, (1 - w) * self.upstream + w * upstream, flows.demand)


@dataclass(frozen=True)
class State:
    """The evening of day ``day - 1`` for B chains: everything the next review can see."""

    day: int  # index of the next day to be simulated
    store_on_hand: np.ndarray  # (B, N) units
    store_backorders: np.ndarray  # (B, N) units owed to customers (backorder scenarios)
    store_pipeline: np.ndarray  # (B, N, L_ws) units in transit; [..., k] arrives in k + 1 mornings
    warehouse_on_hand: np.ndarray  # (B,)
    warehouse_pipeline: np.ndarray  # (B, L_sw_max) units in transit from the supplier
    supplier_on_hand: np.ndarray  # (B,) finished goods
    production_pipeline: np.ndarray  # (B, L_p) units in production
    memory: Memory  # recent averages for observations

    @property
    def batch_size(self) -> int:
        return self.store_on_hand.shape[0]

    @property
    def store_inventory_position(self) -> np.ndarray:
        """(B, N) on hand + in transit - backorders."""
        return self.store_on_hand + self.store_pipeline.sum(axis=2) - self.store_backorders

    @property
    def warehouse_inventory_position(self) -> np.ndarray:
        """(B,) on hand + in transit from the supplier."""
        return self.warehouse_on_hand + self.warehouse_pipeline.sum(axis=1)

    @property
    def supplier_inventory_position(self) -> np.ndarray:
        """(B,) finished goods + work in production."""
        return self.supplier_on_hand + self.production_pipeline.sum(axis=1)

    @property
    def units_in_network(self) -> np.ndarray:
        """(B,) every physical unit: on hand, in transit and in production."""
        return (self.store_on_hand.sum(axis=1) + self.store_pipeline.sum(axis=(1, 2))
                + self.warehouse_inventory_position + self.supplier_inventory_position)


@dataclass(frozen=True)
class Actions:
    """What the agents decide in one review (units)."""

    store_orders: np.ndarray  # (B, N) ordered from the warehouse
    warehouse_order: np.ndarray  # (B,) ordered from the supplier
    production: np.ndarray  # (B,) production started by the supplier


@dataclass(frozen=True)
class Flows:
    """Everything that moved in one period, for reconciliation and conservation checks."""

    demand: np.ndarray  # (B, N) customer demand on day t
    filled: np.ndarray  # (B, N) of that demand, served on day t
    unmet: np.ndarray  # (B, N) of that demand, lost or newly backordered
    backorders_filled: np.ndarray  # (B, N) older backorders served on day t
    store_orders: np.ndarray  # (B, N) orders after the shelf limit
    warehouse_shipped: np.ndarray  # (B, N) shipped to each store
    warehouse_order: np.ndarray  # (B,) after the storage limit
    supplier_shipped: np.ndarray  # (B,)
    production_started: np.ndarray  # (B,) after the capacity limit
    store_received: np.ndarray  # (B, N) arrived in the morning
    warehouse_received: np.ndarray  # (B,)
    production_finished: np.ndarray  # (B,)
    store_held: np.ndarray  # (B, N) on hand overnight (holding-cost base)
    warehouse_held: np.ndarray  # (B,) on hand + in transit to stores overnight
    supplier_held: np.ndarray  # (B,) on hand + in transit to the warehouse overnight

    @property
    def sold(self) -> np.ndarray:
        """(B, N) units handed to customers on day t."""
        return self.filled + self.backorders_filled


def units_entered(flows: Flows, scenario: Scenario) -> np.ndarray:
    """(B,) units that entered the network in the period: production started, or with an ample
    source everything it shipped to the stores."""
    if scenario.upstream == "ample":
        return flows.warehouse_shipped.sum(axis=1)
    return flows.production_started


def reset(scenario: Scenario, batch_size: int = 1) -> State:
    """Opening stock: ``initial_cover_days`` of mean demand on hand at every node, pipelines
    carrying one day of mean demand per day of lead time."""
    means = np.array([m.mean for m in scenario.stores])
    total = means.sum()
    lead = scenario.lead_times
    cover = scenario.initial_cover_days
    b, n = batch_size, scenario.num_stores
    upstream = 0.0 if scenario.upstream == "ample" else 1.0  # an ample source leaves them empty
    warehouse_pipeline = np.zeros((b, scenario.max_supplier_lead_time))
    warehouse_pipeline[:, : lead.supplier_to_warehouse] = total * upstream
    return State(
        day=0,
        store_on_hand=np.tile(means * cover, (b, 1)),
        store_backorders=np.zeros((b, n)),
        store_pipeline=np.tile(means[None, :, None], (b, 1, lead.warehouse_to_store)).astype(float),
        warehouse_on_hand=np.full(b, total * cover * upstream),
        warehouse_pipeline=warehouse_pipeline,
        supplier_on_hand=np.full(b, total * cover * upstream),
        production_pipeline=np.full((b, lead.production), total * upstream),
        memory=Memory.start(means, b),
    )


class ActionError(ValueError):
    """An action holds NaN or an infinite quantity: a defect of the policy that produced it."""


def check_actions(actions: Actions) -> None:
    """Raise ``ActionError`` naming the first field that holds NaN or an infinity. Hot path: one sum
    per field (a sum is finite only if every term is; a few elements are summed in Python, quicker
    than a NumPy call); only a non-finite sum, which finite orders can also give by overflowing, pays
    for the element-wise test."""
    for name in ("store_orders", "warehouse_order", "production"):
        quantity = getattr(actions, name)
        total = sum(quantity.ravel().tolist()) if quantity.size <= 64 else quantity.sum()
        if not math.isfinite(total) and not np.isfinite(quantity).all():
            bad = quantity[~np.isfinite(quantity)].flat[0]
            raise ActionError(f"actions.{name}: got {bad}; allowed: finite units (below 0 ordered as 0, "
                              f"above {MAX_QUANTITY:g} as {MAX_QUANTITY:g})")


def _ordered(quantity: np.ndarray, limit: np.ndarray | float) -> np.ndarray:
    """A checked request cut to [0, limit]; ``limit`` (free room or capacity) is at most MAX_QUANTITY,
    which finite capacities never exceed."""
    return np.minimum(np.maximum(quantity, 0.0), limit)


def production_capacity(scenario: Scenario, day: int) -> float:
    """Units the supplier can start on the review before ``day``."""
    capacity = scenario.capacities.production
    for d in scenario.disruptions:
        if d.start_day <= day < d.start_day + d.length:
            capacity = 0.0 if d.capacity_loss == 1.0 else capacity * (1.0 - d.capacity_loss)
    return capacity


def supplier_lead_time(scenario: Scenario, day: int) -> int:
    """Supplier -> warehouse lead time of a shipment sent on the review before ``day``."""
    extra = [d.extra_lead_time for d in scenario.disruptions if d.start_day <= day < d.start_day + d.length]
    return scenario.lead_times.supplier_to_warehouse + max(extra, default=0)


def allocate(available: np.ndarray, orders: np.ndarray, cover: np.ndarray, rule: str) -> np.ndarray:
    """Share ``available`` (B,) among store ``orders`` (B, N) when it cannot fill them all.

    proportional: every store gets the same fraction of its order.
    lowest_cover_first: stores are served in order of ``cover`` (days of stock), lowest first,
    each in full while stock lasts.
    """
    total = orders.sum(axis=1)
    if rule == "proportional":
        fraction = np.minimum(1.0, available / np.maximum(total, 1e-12))
        return orders * fraction[:, None]
    rank = np.argsort(cover, axis=1, kind="stable")
    # Orders are capped at the stock first, so a huge order cannot swamp the running sum.
    ranked = np.minimum(np.take_along_axis(orders, rank, axis=1), available[:, None])
    before = np.cumsum(ranked, axis=1) - ranked
    shipped_ranked = np.clip(available[:, None] - before, 0.0, ranked)
    shipped = np.empty_like(orders)
    np.put_along_axis(shipped, rank, shipped_ranked, axis=1)
    return shipped


def _ship(pipeline: np.ndarray, quantity: np.ndarray, lead_time: int) -> tuple[np.ndarray, np.ndarray]:
    """Add ``quantity`` with ``lead_time``, then move one day on: (arrivals, new pipeline)."""
    arrivals = pipeline[..., 0] + quantity if lead_time == 1 else pipeline[..., 0]
    moved = np.empty_like(pipeline)
    moved[..., :-1] = pipeline[..., 1:]
    moved[..., -1] = 0.0
    if lead_time > 1:
        moved[..., lead_time - 2] += quantity
    return arrivals, moved


def step(state: State, actions: Actions, demand: np.ndarray, scenario: Scenario) -> tuple[State, Flows]:
    """Simulate one period (see the module docstring); ``demand`` is day t's (B, N) demand."""
    day = state.day
    caps = scenario.capacities

    # 1. Review: requests cut to [0, MAX_QUANTITY], orders to free room, production to capacity.
    check_actions(actions)
    store_inbound = state.store_pipeline.sum(axis=2)
    shelf_room = MAX_QUANTITY
    if caps.store_shelf != np.inf:
        shelf_room = np.maximum(caps.store_shelf - state.store_on_hand - store_inbound, 0.0)
    store_orders = _ordered(actions.store_orders, shelf_room)
    production = _ordered(actions.production, min(production_capacity(scenario, day), MAX_QUANTITY))
    ample = scenario.upstream == "ample"
    if ample:
        production = np.zeros_like(production)

    # 2. Shipping: warehouse -> stores (shared by the allocation rule when short), supplier -> warehouse.
    if ample:  # the source ships every order in full; the warehouse's own stock does not move
        shipped = store_orders
    elif scenario.allocation == "proportional":
        shipped = allocate(state.warehouse_on_hand, store_orders, store_orders, "proportional")
    else:
        mean_demand = np.array([m.mean for m in scenario.stores])
        cover = (state.store_on_hand + store_inbound - state.store_backorders) / mean_demand
        shipped = allocate(state.warehouse_on_hand, store_orders, cover, scenario.allocation)
    # Proportional shares can add up to a hair over the stock in floating point: never below 0.
    warehouse_on_hand = state.warehouse_on_hand if ample else np.maximum(state.warehouse_on_hand
                                                                         - shipped.sum(axis=1), 0.0)
    warehouse_inbound = state.warehouse_pipeline.sum(axis=1)
    storage_room = MAX_QUANTITY
    if caps.warehouse_storage != np.inf:
        storage_room = np.maximum(caps.warehouse_storage - warehouse_on_hand - warehouse_inbound, 0.0)
    warehouse_order = np.zeros_like(state.warehouse_on_hand) if ample else _ordered(actions.warehouse_order,
                                                                                    storage_room)
    supplier_shipped = np.minimum(warehouse_order, state.supplier_on_hand)
    supplier_on_hand = state.supplier_on_hand - supplier_shipped

    # 3. Overnight: what holding costs are charged on (goods in transit belong to the shipper).
    store_held = state.store_on_hand
    if ample:
        warehouse_held = supplier_held = np.zeros_like(warehouse_on_hand)
    else:
        warehouse_held = warehouse_on_hand + (store_inbound + shipped).sum(axis=1)
        supplier_held = supplier_on_hand + warehouse_inbound + supplier_shipped

    # 4. Morning arrivals.
    lead = scenario.lead_times
    store_received, store_pipeline = _ship(state.store_pipeline, shipped, lead.warehouse_to_store)
    warehouse_received, warehouse_pipeline = _ship(state.warehouse_pipeline, supplier_shipped,
                                                   supplier_lead_time(scenario, day))
    production_finished, production_pipeline = _ship(state.production_pipeline, production, lead.production)
    store_on_hand = state.store_on_hand + store_received
    warehouse_on_hand = warehouse_on_hand + warehouse_received
    supplier_on_hand = supplier_on_hand + production_finished

    # 5. Customer demand: backorders first, then today's demand.
    if scenario.unmet_demand == "backorders":
        backorders_filled = np.minimum(store_on_hand, state.store_backorders)
        store_on_hand = store_on_hand - backorders_filled
    else:
        backorders_filled = state.store_backorders  # always zero under lost sales
    filled = np.minimum(store_on_hand, demand)
    store_on_hand = store_on_hand - filled
    unmet = demand - filled
    if scenario.unmet_demand == "backorders":
        store_backorders = state.store_backorders - backorders_filled + unmet
    else:
        store_backorders = state.store_backorders

    flows = Flows(
        demand=demand, filled=filled, unmet=unmet, backorders_filled=backorders_filled,
        store_orders=store_orders, warehouse_shipped=shipped, warehouse_order=warehouse_order,
        supplier_shipped=supplier_shipped, production_started=production,
        store_received=store_received, warehouse_received=warehouse_received,
        production_finished=production_finished, store_held=store_held,
        warehouse_held=warehouse_held, supplier_held=supplier_held,
    )
    new_state = State(
        day=day + 1,
        store_on_hand=store_on_hand,
        store_backorders=store_backorders,
        store_pipeline=store_pipeline,
        warehouse_on_hand=warehouse_on_hand,
        warehouse_pipeline=warehouse_pipeline,
        supplier_on_hand=supplier_on_hand,
        production_pipeline=production_pipeline,
        memory=state.memory.update(flows),
    )
    return new_state, flows
