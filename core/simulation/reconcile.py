"""The reconciliation engine: one period's flows -> business metrics and rewards per node.

Nodes are ordered ``store_0 .. store_{N-1}, warehouse, supplier`` on the last axis of every
ledger array. For a store, "demand" is customer demand; for the warehouse it is the stores'
orders; for the supplier it is the warehouse's order. All costs are currency per day.

Cost attribution (the agents' costs add up to the system cost):
- holding: a store pays for its shelf stock; the warehouse for its stock and for goods in transit
  to the stores; the supplier for its finished goods and goods in transit to the warehouse;
- stockout: stores only, per lost sale or per backordered unit per day;
- ordering: the fixed cost of each order a store or the warehouse places;
- transport: per unit shipped, paid by the shipper; production: per unit started, by the supplier.
With an ample upstream source (``Scenario.upstream``) the source ships to the stores and costs nothing.

Rewards use ``RewardWeights``. The hackathon prototype's store reward was
+10 x service level - 0.1 x holding - 5 x stockouts - 0.05 x excess. Its service bonus pays for
service the business values less than it costs (and pays twice for what the stockout penalty
already counts), and its excess penalty charges stock a second time; so a policy could raise that
reward while raising the total cost. The default weights here are 0 service, 1 holding,
1 stockout, 0 excess, 1 ordering: each agent's reward is minus its own cost, so a higher total
reward is exactly a lower total cost.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from core.simulation.scenario import Scenario
from core.simulation.twin import Flows, State


class Ledger:
    """One period, per chain and node: every metric is a (B, N + 2) array (stores, warehouse,
    supplier), computed when first read, so a caller pays only for what it uses."""

    def __init__(self, flows: Flows, state: State, scenario: Scenario) -> None:
        self.flows, self.state, self.scenario = flows, state, scenario

    FIELDS = ("demand", "filled", "unmet", "fill_rate", "on_hand", "in_transit", "backorders",
              "holding_cost", "stockout_cost", "excess_inventory", "ordering_cost", "transport_cost",
              "production_cost", "total_cost", "reward")

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.FIELDS}

    @cached_property
    def demand(self) -> np.ndarray:
        """Units requested from the node (stores: customers; warehouse: stores; supplier: warehouse)."""
        f = self.flows
        return _nodes(f.demand, f.store_orders.sum(axis=1), f.warehouse_order)

    @cached_property
    def filled(self) -> np.ndarray:
        """Units served (stores: of the day's demand, on the day; upstream: shipped)."""
        f = self.flows
        return _nodes(f.filled, f.warehouse_shipped.sum(axis=1), f.supplier_shipped)

    @cached_property
    def unmet(self) -> np.ndarray:
        """Units not served: lost or backordered at stores, cut upstream."""
        return self.demand - self.filled

    @cached_property
    def fill_rate(self) -> np.ndarray:
        """filled / demand, 1 when nothing was asked."""
        return np.divide(self.filled, self.demand, out=np.ones_like(self.demand), where=self.demand > 0)

    @cached_property
    def on_hand(self) -> np.ndarray:
        """End-of-day stock."""
        s = self.state
        return _nodes(s.store_on_hand, s.warehouse_on_hand, s.supplier_on_hand)

    @cached_property
    def in_transit(self) -> np.ndarray:
        """Inbound pipeline at the end of the day (supplier: work in production)."""
        s = self.state
        return _nodes(s.store_pipeline.sum(axis=2), s.warehouse_pipeline.sum(axis=1),
                      s.production_pipeline.sum(axis=1))

    @cached_property
    def backorders(self) -> np.ndarray:
        """Units owed to customers at the end of the day (stores)."""
        zero = np.zeros(self.state.batch_size)
        return _nodes(self.state.store_backorders, zero, zero)

    @cached_property
    def holding_cost(self) -> np.ndarray:
        f, c = self.flows, self.scenario.costs
        return _nodes(f.store_held * c.store_holding, f.warehouse_held * c.warehouse_holding,
                      f.supplier_held * c.supplier_holding)

    @cached_property
    def stockout_cost(self) -> np.ndarray:
        """Per lost sale, or per unit backordered at the end of the day."""
        backorders = self.scenario.unmet_demand == "backorders"
        short = self.state.store_backorders if backorders else self.flows.unmet
        zero = np.zeros(self.state.batch_size)
        return _nodes(short * self.scenario.costs.stockout, zero, zero)

    @cached_property
    def excess_inventory(self) -> np.ndarray:
        """Units on hand above ``excess_cover_days`` of the node's mean demand."""
        mean = np.array([m.mean for m in self.scenario.stores])
        target = self.scenario.excess_cover_days * np.concatenate([mean, [mean.sum(), mean.sum()]])
        return np.maximum(self.on_hand - target, 0.0)

    @cached_property
    def ordering_cost(self) -> np.ndarray:
        f = self.flows
        zero = np.zeros(self.state.batch_size)
        return self.scenario.costs.order * _nodes(f.store_orders > 0, f.warehouse_order > 0, zero)

    @cached_property
    def transport_cost(self) -> np.ndarray:
        f = self.flows
        warehouse = np.zeros(self.state.batch_size) if self.scenario.upstream == "ample" \
            else f.warehouse_shipped.sum(axis=1)
        return self.scenario.costs.transport * _nodes(np.zeros_like(f.demand), warehouse, f.supplier_shipped)

    @cached_property
    def production_cost(self) -> np.ndarray:
        f = self.flows
        zero = np.zeros(self.state.batch_size)
        return _nodes(np.zeros_like(f.demand), zero, f.production_started * self.scenario.costs.production)

    @cached_property
    def _other_cost(self) -> np.ndarray:
        """Ordering + transport + production, skipping terms whose price is zero."""
        c = self.scenario.costs
        parts = [getattr(self, name) for name, price in
                 (("ordering_cost", c.order), ("transport_cost", c.transport), ("production_cost", c.production))
                 if price]
        return sum(parts) if parts else np.zeros_like(self.holding_cost)

    @cached_property
    def total_cost(self) -> np.ndarray:
        return self.holding_cost + self.stockout_cost + self._other_cost

    @cached_property
    def reward(self) -> np.ndarray:
        """See ``RewardWeights``; terms whose weight is zero are not computed."""
        w = self.scenario.reward_weights
        reward = -(w.holding * self.holding_cost + w.stockout * self.stockout_cost + w.ordering * self._other_cost)
        if w.excess:
            reward = reward - w.excess * self.excess_inventory
        if w.service:
            reward = reward + w.service * self.fill_rate
        return reward


def node_names(num_stores: int) -> list[str]:
    """Agent ids in ledger order."""
    return [f"store_{i}" for i in range(num_stores)] + ["warehouse", "supplier"]


def _nodes(stores: np.ndarray, warehouse: np.ndarray, supplier: np.ndarray) -> np.ndarray:
    """(B, N) + (B,) + (B,) -> (B, N + 2)."""
    return np.concatenate([stores, warehouse[:, None], supplier[:, None]], axis=1).astype(float, copy=False)


def reconcile(flows: Flows, state: State, scenario: Scenario) -> Ledger:
    """The ledger of the period that produced ``flows`` and ended in ``state``."""
    return Ledger(flows, state, scenario)
