"""Scenarios: frozen, validated descriptions of one supply chain and its demand.

A scenario is plain data. Every number has a unit (see each field's comment), every field is
checked when the object is built, and a bad value raises ``ScenarioError`` (a ``ValueError``)
naming the field, the value and what is allowed. ``to_dict``/``from_dict`` and
``to_json``/``from_json`` round-trip exactly; unknown, missing or repeated keys are errors, and so is
JSON text that is too large, too deeply nested or holds a number no float can represent (sizes and
counts are bounded by ``core.simulation.limits``).

Conventions used throughout the project:
- one period is one day; quantities are units of one product (floats, so continuous demand
  such as the textbook's normal distribution is represented exactly);
- a lead time of L days means: ordered (or started) in the evening of day t, available in
  the morning of day t + L. L = 1 is "ordered tonight, on the shelf tomorrow", which is the
  textbook's zero-lead-time newsvendor; Snyder and Shen's serial-system lead times are used as
  they are (see ``core.simulation.twin`` for the order of events).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.simulation.limits import (
    MAX_DAYS,
    MAX_DEMAND_MEAN,
    MAX_DISRUPTIONS,
    MAX_NAME_LENGTH,
    MAX_PROMOTIONS,
    MAX_QUANTITY,
    MAX_SCENARIO_BYTES,
    MAX_STORES,
    MIN_MAGNITUDE,
    MIN_QUANTITY,
)
from core.simulation.untrusted import name_problem, shown

ALLOCATION_RULES = ("proportional", "lowest_cover_first")
UNMET_DEMAND = ("lost_sales", "backorders")
DISTRIBUTIONS = ("normal", "negative_binomial")
UPSTREAM = ("network", "ample")


class ScenarioError(ValueError):
    """A scenario value is missing, of the wrong type or out of range."""


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ScenarioError(f"{name}: got {shown(value)}; allowed: {allowed}")


def _number(name: str, value: Any, lo: float, hi: float, *, integer: bool = False, unlimited: bool = False) -> None:
    """Check a finite number (an int if ``integer``) in [lo, hi] whose magnitude is 0 or at least
    ``MIN_MAGNITUDE``. Ints are compared exactly, so a huge one cannot overflow."""
    rng = f"{'an integer' if integer else 'a finite number'} in [{lo}, {hi}]"
    if unlimited:
        rng += ", or null for unlimited"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not lo <= value <= hi:  # NaN fails the range test
        _fail(name, value, rng)
    if value != 0 and abs(value) < MIN_MAGNITUDE:
        _fail(name, value, f"{rng}, 0 or at least {MIN_MAGNITUDE:g} in magnitude")


def _count(name: str, items: Any, limit: int, what: str) -> None:
    if not isinstance(items, tuple):
        _fail(name, items, f"a list of {what}")
    if len(items) > limit:
        raise ScenarioError(f"{name}: got {len(items)} {what}; allowed: at most {limit}")


def _as_floats(obj: Any) -> None:
    """Keep ints given for float fields (JSON may write 40.0 as 40) as floats, after their checks, so
    every array built from a scenario is a float array."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.type == "float" and type(value) is int:
            object.__setattr__(obj, f.name, float(value))
        elif f.type == "tuple[float, ...]":
            object.__setattr__(obj, f.name, tuple(float(x) for x in value))


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        _fail(name, value, "one of " + ", ".join(allowed))


@dataclass(frozen=True, kw_only=True)
class Promotion:
    """A promotion: demand multiplied by (1 + lift) on days [start_day, start_day + length)."""

    start_day: int  # day of the episode, 0-based
    length: int  # days
    lift: float  # fraction, 0.5 = +50 % demand

    def __post_init__(self) -> None:
        _number("promotion.start_day", self.start_day, 0, MAX_DAYS, integer=True)
        _number("promotion.length", self.length, 1, 365, integer=True)
        _number("promotion.lift", self.lift, 0, 10)
        _as_floats(self)


@dataclass(frozen=True, kw_only=True)
class DemandModel:
    """Daily customer demand at one store.

    mean_t = mean * weekly_pattern[t % 7] * (1 + seasonality_amplitude * cos(2 pi (t - peak) / 365))
             * (1 + trend * t / 365) * (1 + lift of any active promotion)
    A shock day (probability ``shock_probability``) multiplies it by (1 + shock_size).
    Demand is drawn around mean_t with coefficient of variation ``dispersion``.
    """

    mean: float  # units per day
    dispersion: float = 0.3  # coefficient of variation of daily demand (sd / mean)
    distribution: str = "negative_binomial"  # "normal" (continuous, truncated at 0) or integer
    weekly_pattern: tuple[float, ...] = (1.0,) * 7  # multipliers, Monday first, mean 1
    seasonality_amplitude: float = 0.0  # fraction of the mean, yearly cosine
    seasonality_peak_day: int = 0  # day of the year of the seasonal peak
    trend: float = 0.0  # fractional growth per 365 days
    promotions: tuple[Promotion, ...] = ()
    shock_probability: float = 0.0  # per day
    shock_size: float = 0.0  # fraction added on a shock day

    def __post_init__(self) -> None:
        _number("demand.mean", self.mean, MIN_QUANTITY, MAX_DEMAND_MEAN)
        _number("demand.dispersion", self.dispersion, 0, 5)
        _choice("demand.distribution", self.distribution, DISTRIBUTIONS)
        if not isinstance(self.weekly_pattern, tuple) or len(self.weekly_pattern) != 7:
            _fail("demand.weekly_pattern", self.weekly_pattern, "7 multipliers")
        for w in self.weekly_pattern:
            _number("demand.weekly_pattern[]", w, 0, 10)
        if abs(sum(self.weekly_pattern) / 7 - 1) > 1e-6:
            _fail("demand.weekly_pattern", self.weekly_pattern, "multipliers whose mean is 1")
        _number("demand.seasonality_amplitude", self.seasonality_amplitude, 0, 0.95)
        _number("demand.seasonality_peak_day", self.seasonality_peak_day, 0, 364, integer=True)
        _number("demand.trend", self.trend, -0.9, 10)
        _count("demand.promotions", self.promotions, MAX_PROMOTIONS, "promotions")
        _number("demand.shock_probability", self.shock_probability, 0, 1)
        _number("demand.shock_size", self.shock_size, 0, 10)
        _as_floats(self)


@dataclass(frozen=True, kw_only=True)
class Disruption:
    """A supplier disruption on days [start_day, start_day + length)."""

    start_day: int  # day of the episode, 0-based
    length: int  # days
    capacity_loss: float = 0.0  # fraction of production capacity lost, 1 = no production
    extra_lead_time: int = 0  # days added to the supplier -> warehouse lead time

    def __post_init__(self) -> None:
        _number("disruption.start_day", self.start_day, 0, MAX_DAYS, integer=True)
        _number("disruption.length", self.length, 1, 365, integer=True)
        _number("disruption.capacity_loss", self.capacity_loss, 0, 1)
        _number("disruption.extra_lead_time", self.extra_lead_time, 0, 60, integer=True)
        _as_floats(self)


@dataclass(frozen=True, kw_only=True)
class LeadTimes:
    """Days from order (or start of production) to availability; see the module docstring."""

    production: int = 2  # supplier: production start -> finished stock
    supplier_to_warehouse: int = 3
    warehouse_to_store: int = 2

    def __post_init__(self) -> None:
        for name in ("production", "supplier_to_warehouse", "warehouse_to_store"):
            _number(f"lead_times.{name}", getattr(self, name), 1, 60, integer=True)


@dataclass(frozen=True, kw_only=True)
class Capacities:
    """Physical limits (units). ``math.inf`` (unlimited) is written as null in JSON, and only null reads
    back as unlimited: a number too large for a float (``1e400``) is an error."""

    production: float = math.inf  # units per day the supplier can start
    warehouse_storage: float = math.inf  # units: on hand + inbound at the warehouse
    store_shelf: float = math.inf  # units per store: on hand + inbound

    def __post_init__(self) -> None:
        for name in ("production", "warehouse_storage", "store_shelf"):
            value = getattr(self, name)
            if value != math.inf:
                _number(f"capacities.{name}", value, MIN_QUANTITY, MAX_QUANTITY, unlimited=True)
        _as_floats(self)


@dataclass(frozen=True, kw_only=True)
class Costs:
    """Money per unit (and per day where it says so)."""

    store_holding: float = 1.0  # per unit on hand per day
    warehouse_holding: float = 0.5  # per unit on hand or in transit to a store, per day
    supplier_holding: float = 0.25  # per unit on hand or in transit to the warehouse, per day
    stockout: float = 10.0  # per lost sale, or per backordered unit per day
    order: float = 0.0  # fixed, per order placed (store or warehouse)
    transport: float = 0.0  # per unit shipped on any link
    production: float = 0.0  # per unit started

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _number(f"costs.{f.name}", getattr(self, f.name), 0, 1e6)
        _as_floats(self)


@dataclass(frozen=True, kw_only=True)
class RewardWeights:
    """Weights that turn a node's daily ledger into its reward.

    reward = service * fill_rate - (holding * holding_cost + stockout * stockout_cost
             + excess * excess_inventory + ordering * (order + transport + production costs))
    The defaults make every agent's reward minus its own cost, so the agents' rewards sum to
    minus the system cost: a higher total reward is always a lower total cost.
    """

    service: float = 0.0  # per unit of fill rate (0..1)
    holding: float = 1.0
    stockout: float = 1.0
    excess: float = 0.0  # per unit above the target cover
    ordering: float = 1.0

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _number(f"reward_weights.{f.name}", getattr(self, f.name), 0, 1e6)
        _as_floats(self)


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """One supplier -> one warehouse -> ``num_stores`` stores, and their demand."""

    name: str = "custom"
    stores: tuple[DemandModel, ...]  # one demand model per store, 1 to 50
    lead_times: LeadTimes = field(default_factory=LeadTimes)
    capacities: Capacities = field(default_factory=Capacities)
    costs: Costs = field(default_factory=Costs)
    unmet_demand: str = "lost_sales"  # or "backorders"
    allocation: str = "proportional"  # warehouse rule when short: or "lowest_cover_first"
    # "network": stores are supplied by the warehouse and supplier; "ample": by an unlimited, cost-free
    # source that ships every store order in full (the warehouse and supplier hold and cost nothing)
    upstream: str = "network"
    disruptions: tuple[Disruption, ...] = ()
    horizon: int = 365  # days per episode
    initial_cover_days: float = 7.0  # starting stock at every node, in days of its demand
    excess_cover_days: float = 21.0  # on hand above this many days of demand is "excess"
    reward_weights: RewardWeights = field(default_factory=RewardWeights)

    def __post_init__(self) -> None:
        problem = name_problem(self.name)
        if problem:
            _fail("name", self.name, f"1 to {MAX_NAME_LENGTH} printable characters, no bidi controls, no "
                  f"leading or trailing whitespace (this one: {problem})")
        if not isinstance(self.stores, tuple) or not 1 <= len(self.stores) <= MAX_STORES:
            count = len(self.stores) if isinstance(self.stores, tuple) else self.stores
            _fail("stores", count, f"1 to {MAX_STORES} stores")
        _choice("unmet_demand", self.unmet_demand, UNMET_DEMAND)
        _choice("allocation", self.allocation, ALLOCATION_RULES)
        _choice("upstream", self.upstream, UPSTREAM)
        _count("disruptions", self.disruptions, MAX_DISRUPTIONS, "disruptions")
        _number("horizon", self.horizon, 1, MAX_DAYS, integer=True)
        _number("initial_cover_days", self.initial_cover_days, 0, 365)
        _number("excess_cover_days", self.excess_cover_days, 0, 365)
        _as_floats(self)

    @property
    def num_stores(self) -> int:
        return len(self.stores)

    @functools.cached_property
    def store_cvs(self) -> np.ndarray:
        """(N,) each store's ``core.simulation.demand.demand_cv``, worked out once (policies and observers
        ask every day; the scenario is frozen)."""
        from core.simulation.demand import demand_cv  # demand builds on this module

        return np.array([demand_cv(m) for m in self.stores])

    @property
    def whole_units(self) -> bool:
        """Every store's demand comes in whole units (no ``normal`` demand)."""
        return all(m.distribution != "normal" for m in self.stores)

    @property
    def max_supplier_lead_time(self) -> int:
        """Longest supplier -> warehouse lead time, disruptions included."""
        extra = max((d.extra_lead_time for d in self.disruptions), default=0)
        return self.lead_times.supplier_to_warehouse + extra

    def with_num_stores(self, n: int) -> Scenario:
        """The same scenario with ``n`` stores, repeating the store demand models in turn."""
        _number("num_stores", n, 1, MAX_STORES, integer=True)
        return dataclasses.replace(self, stores=tuple(self.stores[i % self.num_stores] for i in range(n)))

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Any) -> Scenario:
        return _from_plain(cls, data, "")

    @classmethod
    def from_json(cls, text: str | bytes) -> Scenario:
        """The scenario in JSON ``text`` (bytes must be UTF-8; a leading byte-order mark is ignored)."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise ScenarioError(f"scenario file: not UTF-8 text (byte at offset {exc.start})") from None
        if len(text) > MAX_SCENARIO_BYTES:
            raise ScenarioError(f"scenario file: got {len(text):,} characters; allowed: at most {MAX_SCENARIO_BYTES:,}")
        try:
            data = json.loads(text.removeprefix("\ufeff"), parse_constant=_Unrepresentable,
                              parse_float=_parse_float, parse_int=_parse_int, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as exc:
            raise ScenarioError(f"scenario file: not valid JSON ({exc.msg} at line {exc.lineno})") from None
        except RecursionError:
            raise ScenarioError("scenario file: JSON nested too deeply") from None
        return cls.from_dict(data)


class _Unrepresentable(str):
    """JSON number text with no finite float value (NaN, Infinity, 1e400, a 500-digit integer): kept as
    text so that the field it is given for reports it."""


def _parse_float(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else _Unrepresentable(text)


def _parse_int(text: str) -> int | str:
    return int(text) if len(text) <= 400 else _Unrepresentable(text)  # longer ones exceed any float


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ScenarioError(f"scenario file: key {shown(key)} appears twice in one object")
        data[key] = value
    return data


def _key(prefix: str, key: str) -> str:
    return prefix + (key if key.isidentifier() and len(key) <= 40 else shown(key))


_NESTED = {"lead_times": LeadTimes, "capacities": Capacities, "costs": Costs,
           "reward_weights": RewardWeights}
_NESTED_LISTS = {"stores": DemandModel, "promotions": Promotion, "disruptions": Disruption}


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, tuple):
        return [_to_plain(x) for x in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return None
    return obj


def _from_plain(cls: type, data: Any, prefix: str) -> Any:
    where = prefix.rstrip(".") or "scenario"
    if not isinstance(data, dict):
        _fail(where, data, "an object with the fields of " + cls.__name__)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        _fail(_key(prefix, unknown[0]), data[unknown[0]], "known fields: " + ", ".join(fields))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        if name not in data:
            no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if no_default:
                raise ScenarioError(f"{prefix}{name}: missing; this field is required")
            continue
        value = data[name]
        if isinstance(value, _Unrepresentable) and f.type == "str":
            _fail(prefix + name, str(value), "a string")  # elsewhere the field's own check rejects the text
        if name in _NESTED:
            value = _from_plain(_NESTED[name], value, f"{prefix}{name}.")
        elif name in _NESTED_LISTS:
            if not isinstance(value, list):
                _fail(prefix + name, value, "a list")
            value = tuple(_from_plain(_NESTED_LISTS[name], v, f"{prefix}{name}[{i}].") for i, v in enumerate(value))
        elif name == "weekly_pattern":
            if not isinstance(value, list):
                _fail(prefix + name, value, "a list of 7 numbers")
            value = tuple(value)
        elif cls is Capacities and value is None:
            value = math.inf
        elif cls is Capacities and isinstance(value, float) and math.isinf(value):
            _number(prefix + name, value, MIN_QUANTITY, MAX_QUANTITY, unlimited=True)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ScenarioError as exc:
        if prefix and not str(exc).startswith(prefix):
            raise ScenarioError(_prefixed(prefix, str(exc))) from None
        raise


def _prefixed(prefix: str, message: str) -> str:
    """'promotion.lift: ...' raised inside stores[0].promotions[1] -> 'stores[0].promotions[1].lift: ...'."""
    head, _, rest = message.partition(":")
    return prefix + head.split(".", 1)[-1] + ":" + rest
