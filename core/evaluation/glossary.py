"""Words and units the app shows: one label, unit, number format and tooltip per KPI and ledger field, and
every observation feature in plain words.

Money is in an abstract currency (the presets' costs are per unit and day, not any real one); the app writes
it as ``CURRENCY``. Every page reads its labels, units and tooltips here, so a KPI reads the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.agents.observations import PROFILE_DAYS

CURRENCY = "$"


@dataclass(frozen=True)
class Term:
    """How the app shows one quantity."""

    label: str
    unit: str  # "" for ratios and fractions
    help: str
    percent: bool = False  # a fraction shown as a percentage
    decimals: int = 1

    def format(self, value: float) -> str:
        """The value rounded for people: a percentage, money or a plain number with its unit."""
        if value != value:  # NaN
            return "-"
        if self.percent:
            return f"{100 * value:.{self.decimals}f}%"
        if self.unit == CURRENCY:
            return f"{CURRENCY}{value:,.{self.decimals}f}"
        text = f"{value:,.{self.decimals}f}"
        return f"{text} {self.unit}" if self.unit else text


KPIS = {
    "cost_per_day": Term("Cost per day", CURRENCY, "holding, stockout, ordering, transport and production cost of "
                         "the whole chain, per day"),
    "fill_rate": Term("Fill rate", "", "share of customer demand served from the shelf on the day it arrived",
                      percent=True),
    "lost_sales_per_day": Term("Stockouts per day", "units", "customer demand not served on its day (lost, or "
                               "backordered where the scenario backorders)"),
    "holding_cost_per_day": Term("Holding cost per day", CURRENCY, "cost of stock on hand and in transit, per day"),
    "stockout_cost_per_day": Term("Stockout cost per day", CURRENCY, "penalty for demand not served, per day"),
    "other_cost_per_day": Term("Ordering, transport and production per day", CURRENCY,
                               "fixed order costs plus per-unit transport and production costs, per day"),
    "reward_per_day": Term("Reward per day", "", "sum of the agents' rewards per day (minus the system cost with "
                           "the default weights)"),
    "inventory_turns": Term("Inventory turns", "per year", "units sold per year over the average stock in the "
                            "chain (on hand and in transit)"),
    "bullwhip_store": Term("Bullwhip, stores", "", "variance of the stores' orders over the variance of their "
                           "customers' demand: above 1, orders swing more than demand", decimals=2),
    "bullwhip_warehouse": Term("Bullwhip, warehouse", "", "variance of the warehouse's orders over the variance "
                               "of the stores' orders", decimals=2),
    "bullwhip_supplier": Term("Bullwhip, supplier", "", "variance of production starts over the variance of the "
                              "warehouse's orders", decimals=2),
}

LEDGER = {
    "demand": Term("Demand", "units", "customers' demand at a store (internal orders upstream)"),
    "filled": Term("Filled", "units", "demand served on the day"),
    "unmet": Term("Short", "units", "demand not served on the day"),
    "fill_rate": Term("Fill rate", "", "filled over demand", percent=True, decimals=0),
    "on_hand": Term("On hand", "units", "stock on the shelf or in the warehouse in the evening"),
    "in_transit": Term("In transit", "units", "shipped by this node and not yet arrived"),
    "holding_cost": Term("Holding", CURRENCY, "cost of the stock held overnight", decimals=2),
    "stockout_cost": Term("Stockout", CURRENCY, "penalty for demand not served", decimals=2),
    "excess_inventory": Term("Excess", "units", "stock above the scenario's excess cover"),
    "ordering_cost": Term("Ordering", CURRENCY, "fixed cost of the orders placed", decimals=2),
    "total_cost": Term("Total cost", CURRENCY, "everything this node paid today", decimals=2),
    "reward": Term("Reward", "", "the agent's reward (minus its cost with the default weights)", decimals=2),
}

FEATURE_WORDS = {  # every observation feature (``core.agents.observations.FEATURES``) in plain words, with its unit
    "on_hand_days": "stock on hand (days of demand)",
    "in_transit_days": "stock on its way in (days of demand)",
    "in_production_days": "stock in production (days of demand)",
    "backorder_days": "customers waiting for backorders (days of demand)",
    **{f"arriving_in_{k}_days": f"stock arriving in {k} day{'s' * (k > 1)} (days of demand)"
       for k in range(1, PROFILE_DAYS + 1)},
    "expected_stock_at_arrival_days": "stock expected on hand when tonight's order arrives, sales lost before "
                                      "then counted (days of demand)",
    "position_safety_factor": "stock on hand and on its way, beyond the lead time's demand (standard deviations "
                              "of that demand: the menu's unit)",
    "expected_lost_before_arrival_spreads": "sales expected to be lost before tonight's order arrives (standard "
                                            "deviations of lead-time demand)",
    "day_of_demand_spreads": "a day of forecast demand (standard deviations of lead-time demand)",
    "cover_beyond_lead_time_days": "stock on hand and on its way, beyond the lead time's demand (days)",
    "echelon_cover_beyond_lead_time_days": "stock here and everywhere downstream, beyond the lead time's demand "
                                           "(days)",
    "store_stock_days": "the stores' stock on hand and on its way (days of demand)",
    "lowest_store_cover_days": "the emptiest store's stock (days of its demand)",
    "yesterday_demand_ratio": "yesterday's demand (x forecast)",
    "recent_demand_ratio": "recent demand (x forecast)",
    "recent_store_orders_ratio": "the stores' recent orders (x forecast)",
    "recent_warehouse_orders_ratio": "the warehouse's recent orders (x forecast)",
    "recent_service_level": "share of recent customer demand served from the shelf",
    "recent_customer_service": "share of the stores' recent customer demand served",
    "recent_supply_fill": "share of its own recent orders that were shipped to it",
    "recent_fill_to_stores": "share of the stores' recent orders it shipped",
    "recent_fill_to_warehouse": "share of the warehouse's recent orders it shipped",
    "forecast_next_week_ratio": "forecast demand over the next week (x today's)",
    "forecast_next_2_weeks_ratio": "forecast demand over the next 2 weeks (x today's)",
    "forecast_next_30_ratio": "forecast demand over the next 30 days (x today's)",
    "forecast_next_90_ratio": "forecast demand over the next 90 days (x today's)",
    "capacity_ratio": "today's production capacity (x forecast demand)",
    "capacity_next_30_ratio": "production capacity over the next 30 days (x forecast demand)",
    "prebuild_next_90_days": "stock to build ahead of capacity shortfalls in the next 90 days (days of demand)",
    "season_level": "the season's demand level (x the yearly average)",
    "season_sin": "time of year (first of two coordinates on the year's circle)",
    "season_cos": "time of year (second of two coordinates on the year's circle)",
    "lead_time_weeks": "its lead time (weeks)",
    "store_lead_time_weeks": "warehouse -> store lead time (weeks)",
    "supplier_lead_time_weeks": "supplier -> warehouse lead time, as planned (weeks)",
    "production_lead_time_weeks": "production lead time (weeks)",
    "total_lead_time_weeks": "lead time from a production start to a store's shelf (weeks)",
    "extra_supplier_lead_time_weeks": "extra supplier -> warehouse delay planned for a disruption (weeks)",
    "demand_cv": "demand volatility (standard deviation over mean)",
    "critical_ratio": "stockout penalty over stockout penalty plus holding cost",
    "newsvendor_safety_factor": "the newsvendor's safety factor for that ratio (standard deviations)",
    "backorders_mode": "whether unserved customers wait (1) or are lost (0)",
    "tuned_safety_factor": "its tuned rule's safety factor for the scenario, which it corrects (standard deviations)",
}
