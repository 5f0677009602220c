"""Standalone deployment: numpy, onnx and onnxruntime only (pyarrow for the batch files; no torch, no project code),
with ``onnx_checks.py`` beside this script (a copy of the project's model checks).

Batch mode, from raw business data (one row per store and product):

    python deploy_policy.py --input states.csv|states.parquet --output orders.csv [--ray] [--models DIR]

computes every row's store features in numpy (vectorised, ``store_features``), decides the safety factor with
the store policy (onnxruntime, one thread, in chunks of ``CHUNK_ROWS``) and turns it into an order quantity:

    order = max(0, forecast_over_lead_time + z * demand_sd_per_day * sqrt(lead_time_days) - inventory position)
    inventory position = on_hand + sum of pipeline_day_* - backorders

The features are the training's (``core.agents.observations.store_observation``), computed in float64 with the
same operations, so the policy sees the same float32 observation as in the twin. Stock is in days of forecast
demand (forecast_over_lead_time / lead_time_days), among them the stock expected on hand when tonight's order
arrives: on hand less backorders, plus each earlier morning's pipeline, less a day's forecast a day; where sales
are lost (backorders_allowed 0) what is left each evening cannot go below zero, and its expectation under normal
demand (variance demand_sd_per_day^2 a day, summed) is carried on, so sales lost before the order arrives are
counted (``expected_stock_at_arrival``; the normal distribution function by Abramowitz and Stegun 7.1.26, as in
training). ``expected_lost_before_arrival_spreads`` is the sales expected to be lost before then: how much more
stock that leaves than the same without lost sales, in standard deviations of lead-time demand.

The input's columns (``STATE_COLUMNS``; units in brackets) are listed below; ``example_states.csv`` beside this
script is a small example. Extra columns are ignored, except ``store`` and ``product``, which are copied to the
output. A bad row (a missing column, an empty or non-numeric value, NaN, negative stock, an unknown role, a lead
time that is fractional or beyond 365 days, ``MAX_LEAD_DAYS``) stops the run with one line naming the row (1 = the
first data row) and the column, and nothing is written (exit 2).
The output has one row per input row: store and product (if given), menu_index, safety_factor, order_quantity
[units]. With ``--ray`` the same decisions run as a Ray Data ``map_batches`` over the (Parquet) dataset, on a
local Ray or on the cluster in RAY_ADDRESS; the rows are checked before any batch runs.

Single-observation mode (engineered features, any role):

    python deploy_policy.py --role store --observation observation.json [--models DIR]

observation.json holds the role's features by name (the names and their order are in
manifest.json; a list in that order works too) and, optionally, what is needed to turn the
decision into units:

    {"features": {"on_hand_days": 3.2, "in_transit_days": 2.0, ...},
     "order": {"forecast_per_day": 40, "protection_days": 2, "demand_sd_per_day": 12,
               "inventory_position": 150, "prebuild": 0, "whole_units": true}}

It prints the chosen menu entry, its probability and, with "order", the order quantity:
max(0, target - inventory_position), target = forecast_per_day * protection_days
    + z * demand_sd_per_day * sqrt(protection_days) + prebuild,
with prebuild (optional, the supplier's stock for planned capacity shortfalls) 0 if absent, and the target
rounded to a whole unit if whole_units (optional, false if absent: true where demand comes in whole units).
--models defaults to this script's folder, from whatever folder it is run. Every input is checked:
a bad one ends in a one-line "error: ..." and exit code 2.

Both modes load a role's policy the same way (``RolePolicy``). Its manifest card has a list of distinct feature
names, a safety_factor_menu of finite numbers within +-``MAX_SAFETY_FACTOR`` and one action text per menu entry.
A rule card (kind "rule") picks its safety_factor's entry. A learned card's model file must be a plain name inside
the models folder (no absolute path, no "..", no symlink out of it) with the manifest's sha256, and passes the
checks of ``onnx_checks`` before it decides anything: at most 5 MB, allowed operators only (no loops, no outputs
sized from data), bounded nodes, weights, values and operations per row, one float input of the card's width,
int64 actions and probabilities over the card's menu, then timed probes on edge rows and rows uniform over
+-``CLIP``. Every run after that (of at most ``RUN_ROWS`` rows) is stopped past four times
``onnx_checks.MAX_SECONDS_PER_ROW`` a row plus ``RUN_FLOOR_SECONDS``, and its decisions are checked: int64 menu
indices, probabilities finite in [0, 1] summing to 1, each action a most probable entry.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import re
import stat
import sys
from pathlib import Path
from statistics import NormalDist
from types import ModuleType

import numpy as np
import onnxruntime as ort

MAX_JSON_BYTES = 2**20
FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}(/[A-Za-z0-9_.-]{1,128}){0,3}")
MAX_SAFETY_FACTOR = 10.0  # a menu entry beyond +-this many standard deviations is refused (training's: -2 to 4.3)
MAX_FEATURE_NAME = 80  # characters
RUN_FLOOR_SECONDS = 0.5  # a run may take this long besides its rows' allowance (onnx_checks.MAX_SECONDS_PER_ROW)
RUN_ROWS = 16_384  # rows per onnxruntime run: its buffers stay small (the checked session has no memory arena)


def sibling_module(name: str) -> ModuleType:
    """``name``.py from this script's folder, loaded by path: the same file whether this script runs as a script
    or is itself loaded by path (as the project's tests and ``core.bench`` do)."""
    path = Path(__file__).resolve().with_name(f"{name}.py")
    if not path.is_file():
        print(f"error: {path} is missing; keep {name}.py beside {Path(__file__).name}", file=sys.stderr)
        raise SystemExit(2)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = sibling_module("onnx_checks")  # the model checks of the project's serving (a byte-identical copy)


class InputError(ValueError):
    """A bad input; the message says which and why."""


def read_file(path: Path, limit: int) -> bytes:
    """A regular file of at most ``limit`` bytes (never blocks on a pipe or device)."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    with os.fdopen(handle, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise InputError(f"{path}: not a regular file")
        data = file.read(limit + 1)
    if len(data) > limit:
        raise InputError(f"{path}: more than {limit:,} bytes")
    return data


def read_json(path: Path) -> object:
    data = read_file(path, MAX_JSON_BYTES)
    try:
        return json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except RecursionError:
        raise InputError(f"{path}: nested too deeply") from None
    except ValueError as exc:
        raise InputError(f"{path}: not valid JSON ({str(exc)[:120]})") from None


def number(value: object, name: str) -> float:
    """A finite number (JSON's NaN and Infinity, strings and booleans are refused)."""
    try:
        result = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:  # an integer beyond the float range
        result = math.nan
    if not math.isfinite(result):
        raise InputError(f"{name}: {str(value)[:40]!r}; allowed: a finite number")
    return result


def model_path(models: Path, name: object) -> Path:
    """The manifest's file name inside ``models``."""
    if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or any(p in (".", "..") for p in name.split("/")):
        raise InputError(f"manifest file {str(name)[:60]!r}; allowed: a relative name inside {models}")
    root = models.resolve()
    if not (root / name).resolve().is_relative_to(root):
        raise InputError(f"manifest file {name!r} resolves outside {models}")
    return root / name


def observation_row(features: object, names: list[str]) -> np.ndarray:
    """The features in the manifest's order, as one float32 row."""
    if isinstance(features, list):
        if len(features) != len(names):
            raise InputError(f"observation has {len(features)} features; allowed: {len(names)} "
                             f"({', '.join(names[:3])}, ...)")
        values = dict(zip(names, features, strict=True))
    elif isinstance(features, dict):
        missing = [n for n in names if n not in features]
        if missing:
            raise InputError(f"observation lacks features: {', '.join(missing)}")
        unknown = [checks.printable(str(n)[:40]) for n in features if n not in names]
        if unknown:
            raise InputError(f"observation has unknown features: {', '.join(unknown[:5])}")
        values = features
    else:
        raise InputError("observation: 'features' must be an object by feature name or a list")
    row = np.array([[number(values[n], f"feature {n}") for n in names]], dtype=np.float64)
    if np.abs(row).max() > np.finfo(np.float32).max:
        raise InputError("observation: a feature beyond the float32 range")
    return row.astype(np.float32)


def shown(value: object) -> str:
    """A value from a file for a message: its repr (control characters escaped), cut to 60 characters."""
    return checks.printable(repr(value)[:60])


def card_fields(card: dict, role: str) -> tuple[list[str], np.ndarray, list[str]]:
    """The role card's feature names, safety factor menu and the menu entries' descriptions, checked."""
    where = f"manifest {role}"
    names, menu, actions = card.get("features"), card.get("safety_factor_menu"), card.get("actions")
    if not isinstance(names, list) or not names \
            or not all(isinstance(n, str) and n.isprintable() and 0 < len(n) <= MAX_FEATURE_NAME for n in names) \
            or len(set(names)) != len(names):
        raise InputError(f"{where}: features {shown(names)}; allowed: a list of distinct names of 1 to "
                         f"{MAX_FEATURE_NAME} printable characters")
    if not isinstance(menu, list) or not menu:
        raise InputError(f"{where}: safety_factor_menu {shown(menu)}; allowed: a list of numbers")
    values = np.array([number(z, f"{where} safety_factor_menu entry {i}") for i, z in enumerate(menu)])
    beyond = np.flatnonzero(np.abs(values) > MAX_SAFETY_FACTOR)
    if beyond.size:
        raise InputError(f"{where} safety_factor_menu entry {beyond[0]}: {values[beyond[0]]:g}; allowed: "
                         f"{-MAX_SAFETY_FACTOR:g} to {MAX_SAFETY_FACTOR:g}")
    if not isinstance(actions, list) or len(actions) != len(menu) or not all(isinstance(a, str) for a in actions):
        raise InputError(f"{where}: actions {shown(actions)}; allowed: a list of {len(menu)} texts, one per "
                         f"safety_factor_menu entry")
    return names, values, actions


class RolePolicy:
    """A role's policy from an export folder, read and checked once, the same way in both modes: its manifest card
    (``card_fields``) and, for a learned role, an onnxruntime session that passed every check of ``onnx_checks``
    (static checks, then timed probes on edge rows and rows uniform over +-CLIP) for the card's features and
    menu. Every later run is timed and its decisions checked (``choose``); a rule card needs no model."""

    def __init__(self, models: Path, role: str) -> None:
        manifest = read_json(models / "manifest.json")
        roles = manifest.get("roles") if isinstance(manifest, dict) else None
        card = roles.get(role) if isinstance(roles, dict) else None
        if not isinstance(card, dict):
            raise InputError(f"{models / 'manifest.json'}: no entry for role {role!r}")
        self.names, self.menu, self.actions = card_fields(card, role)
        self.constant: int | None = None
        self.session: ort.InferenceSession | None = None
        kind = card.get("kind")
        if kind == "rule":
            factor = number(card.get("safety_factor"), f"manifest {role} safety_factor")
            if factor not in self.menu:
                raise InputError(f"manifest {role}: safety_factor {factor:g} is not on the menu")
            self.constant = int(np.flatnonzero(self.menu == factor)[0])
            return
        if kind != "learned":
            raise InputError(f"manifest {role}: kind {shown(kind)}; allowed: 'learned' or 'rule'")
        path = model_path(models, card.get("file"))
        data = read_file(path, checks.MAX_MODEL_BYTES)
        if hashlib.sha256(data).hexdigest() != card.get("sha256"):
            raise InputError(f"{path} does not match the manifest's sha256")
        self.label = f"{role} policy {path}"
        probes = checks.range_rows(len(self.names), CLIP).astype(np.float32)
        try:
            self.session, inputs = checks.checked_session(data, {role: self.names}, self.menu.size,
                                                          lambda _role: probes, self.label,
                                                          max_seconds_per_row=checks.MAX_SECONDS_PER_ROW)
        except checks.PolicyLoadError as exc:
            raise InputError(checks.printable(str(exc))) from None
        self.input = inputs[role]

    def choose(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Menu indices (int64) of float32 observation rows and their probabilities, ``RUN_ROWS`` rows a run."""
        if self.session is None:
            return np.full(obs.shape[0], self.constant, np.int64), np.ones(obs.shape[0])
        indices, chosen = [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
        for start in range(0, obs.shape[0], RUN_ROWS):
            action, probabilities = self._run(obs[start:start + RUN_ROWS])
            indices.append(action)
            chosen.append(probabilities[np.arange(action.size), action])
        return np.concatenate(indices), np.concatenate(chosen)

    def _run(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One timed run (stopped after ``len(rows)`` times four times the per-row allowance plus
        ``RUN_FLOOR_SECONDS``), its actions and probabilities checked as the probes' are."""
        deadline = rows.shape[0] * checks.MAX_SECONDS_PER_ROW * 4 + RUN_FLOOR_SECONDS
        try:
            outputs, _ = checks.timed_run(self.session, {self.input: rows}, deadline, self.label)
            if outputs is None:
                raise InputError(f"{self.label}: a run of {rows.shape[0]:,} rows was stopped after {deadline:.2f} s; "
                                 f"allowed: {1e3 * checks.MAX_SECONDS_PER_ROW:g} ms a row (four times that, plus "
                                 f"{RUN_FLOOR_SECONDS:g} s, before it is stopped)")
            action, probabilities = outputs
            checks.check_decisions(action, probabilities, rows.shape[0], self.label, self.menu.size,
                                   where="on an input row")
        except checks.PolicyLoadError as exc:
            raise InputError(checks.printable(str(exc))) from None
        return action, probabilities


def run(args: argparse.Namespace) -> None:
    policy = RolePolicy(Path(args.models), args.role)
    data = read_json(Path(args.observation))
    if not isinstance(data, dict):
        raise InputError(f"{args.observation}: not a JSON object")
    indices, probabilities = policy.choose(observation_row(data.get("features"), policy.names))
    index, probability = int(indices[0]), float(probabilities[0])
    quantity = order_quantity(data.get("order"), float(policy.menu[index]))
    print(f"{args.role}: {checks.printable(policy.actions[index][:200])} (menu entry {index}, "
          f"probability {probability:.3f})")
    if quantity is not None:
        print(f"order quantity: {quantity:.2f} units")


def order_quantity(order: object, z: float) -> float | None:
    """The order for safety factor ``z`` (None without an "order" object)."""
    if not order:
        return None
    if not isinstance(order, dict):
        raise InputError("order: not an object")
    fields = ("forecast_per_day", "protection_days", "demand_sd_per_day", "inventory_position")
    missing = [f for f in fields if f not in order]
    if missing:
        raise InputError(f"order lacks: {', '.join(missing)}")
    days = number(order["protection_days"], "order protection_days")
    if days < 0:
        raise InputError(f"order protection_days: {days:g}; allowed: 0 or more")
    target = number(order["forecast_per_day"], "order forecast_per_day") * days \
        + z * number(order["demand_sd_per_day"], "order demand_sd_per_day") * math.sqrt(days) \
        + number(order.get("prebuild", 0.0), "order prebuild")
    whole = order.get("whole_units", False)
    if not isinstance(whole, bool):
        raise InputError(f"order whole_units: got {str(whole)[:30]!r}; allowed: true or false")
    if whole and math.isfinite(target):
        target = float(round(target))
    quantity = max(0.0, target - number(order["inventory_position"], "order inventory_position"))
    if not math.isfinite(quantity):
        raise InputError("order: the quantity overflows")
    return quantity


# --- batch mode: raw store states -> order quantities ---------------------------------------------------------

EPS = 1e-6  # units per day: the smallest forecast a ratio divides by (as in training)
CLIP = 60.0  # every feature is clipped to +-CLIP (as in training)
PROFILE_DAYS = 7  # arrivals of the next this many mornings are features of their own (as in training)
NORMAL = NormalDist()
NEWSVENDOR_LIMIT = 3.0  # the newsvendor safety factor feature stays within +-this (as in training)
CHUNK_ROWS = 65_536  # rows per onnxruntime call
MAX_LEAD_DAYS = 365  # the expected stock at arrival steps through the lead time a day at a time
MAX_INPUT_BYTES = 2**32
ROLES = ("store",)  # the roles the batch mode decides
STATE_COLUMNS = {  # column -> (unit, meaning); every one is required, a number unless said otherwise
    "role": ("text", "the row's role: store"),
    "day": ("days", "today, counted from the first day of the demand year (the season is day mod 365)"),
    "on_hand": ("units", "stock on the shelf at the evening review"),
    "backorders": ("units", "demand waiting to be served (0 where unmet demand is lost)"),
    "pipeline_day_1": ("units", "ordered stock arriving in 1 day; pipeline_day_2, ... arriving later (any number "
                                "of consecutive columns, summed; a day past the last column brings nothing)"),
    "lead_time_days": ("days", f"days from an order to its arrival at the store (a whole number, 1 to "
                               f"{MAX_LEAD_DAYS})"),
    "forecast_over_lead_time": ("units", "expected demand over the next lead_time_days days"),
    "forecast_week_after_lead_time": ("units", "expected demand over the 7 days that start lead_time_days from "
                                               "today"),
    "average_demand_per_day": ("units/day", "the product's mean demand per day over a year (the season level's "
                                            "reference)"),
    "demand_sd_per_day": ("units/day", "standard deviation of a day's demand around the forecast (the forecast "
                                       "error) at today's forecast level; it also spreads the sales lost before "
                                       "an order arrives"),
    "demand_cv": ("ratio", "coefficient of variation of a day's demand around its forecast"),
    "yesterday_demand": ("units", "customer demand yesterday"),
    "recent_demand_per_day": ("units/day", "recent customer demand: exponentially weighted average, weight 0.25 "
                                           "on the newest day (so are the three below)"),
    "recent_sales_per_day": ("units/day", "recent demand served from the shelf on its day"),
    "recent_orders_per_day": ("units/day", "recent orders placed by the store"),
    "recent_received_per_day": ("units/day", "recent units shipped to the store"),
    "holding_cost_per_unit_day": ("money/unit/day", "cost of a unit on the shelf for a day"),
    "stockout_cost_per_unit": ("money/unit", "penalty per unit of demand not served on its day"),
    "backorders_allowed": ("0 or 1", "1 where unmet demand waits (backorders), 0 where it is lost (the stock "
                                     "expected at an order's arrival then counts the sales lost before it)"),
    "whole_units": ("0 or 1", "1 where demand comes in whole units: the order-up-to target is rounded to a whole "
                              "unit (as in training)"),
}
NON_NEGATIVE = ("day", "on_hand", "backorders", "forecast_over_lead_time", "forecast_week_after_lead_time",
                "demand_sd_per_day", "demand_cv", "yesterday_demand", "recent_demand_per_day", "recent_sales_per_day",
                "recent_orders_per_day", "recent_received_per_day", "holding_cost_per_unit_day",
                "stockout_cost_per_unit")
PASSED_THROUGH = ("store", "product")
NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"


def pipeline_columns(names: list[str]) -> list[str]:
    """pipeline_day_1, pipeline_day_2, ... as far as they are consecutive."""
    found = []
    while f"pipeline_day_{len(found) + 1}" in names:
        found.append(f"pipeline_day_{len(found) + 1}")
    return found


def _bad_row(mask: np.ndarray, column: str, values: np.ndarray, allowed: str, offset: int) -> None:
    if mask.any():
        row = int(np.argmax(mask))
        value = values[row].item() if isinstance(values[row], np.generic) else values[row]  # plain, for the message
        raise InputError(f"row {offset + row + 1}, column {column}: got {value!r}; allowed: {allowed}")


def checked_states(table: object, offset: int = 0) -> dict[str, np.ndarray]:
    """The columns the decision needs, as float64 arrays (``pipeline`` (rows, days) summed later), from a
    pyarrow table; the first bad row (``offset`` rows before the table) raises ``InputError``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    names = list(table.column_names)
    pipeline = pipeline_columns(names)
    missing = [c for c in STATE_COLUMNS if c not in names and c != "pipeline_day_1"] + ([] if pipeline else
                                                                                       ["pipeline_day_1"])
    if missing:
        raise InputError(f"header: missing column {missing[0]}{' (and more)' if len(missing) > 1 else ''}; "
                         f"required: {', '.join(STATE_COLUMNS)}")
    role = table.column("role")
    roles = np.asarray(pc.fill_null(role.cast(pa.string()), "").to_numpy(zero_copy_only=False))
    _bad_row(~np.isin(roles, ROLES), "role", roles, ", ".join(ROLES), offset)
    columns = {}
    for name in [c for c in STATE_COLUMNS if c not in ("role", "pipeline_day_1")] + pipeline:
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type)):
            text = column.cast(pa.string())
            numeric = pc.match_substring_regex(pc.utf8_trim_whitespace(text), NUMBER)
            first = int(np.argmax(~np.asarray(pc.fill_null(numeric, True).to_numpy(zero_copy_only=False))))
            raise InputError(f"row {offset + first + 1}, column {name}: got {str(text[first])[:30]!r}; "
                             "allowed: a number")
        values = np.asarray(pc.fill_null(column.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False),
                            dtype=np.float64)
        _bad_row(~np.isfinite(values), name, values, "a finite number (no empty cell, no NaN)", offset)
        columns[name] = values
    for name in [*NON_NEGATIVE, *pipeline]:
        _bad_row(columns[name] < 0, name, columns[name], "0 or more", offset)
    lead = columns["lead_time_days"]
    _bad_row((lead < 1) | (lead > MAX_LEAD_DAYS) | (lead != np.round(lead)), "lead_time_days", lead,
             f"a whole number of days, 1 to {MAX_LEAD_DAYS}", offset)
    mean = columns["average_demand_per_day"]
    _bad_row(mean <= 0, "average_demand_per_day", mean, "more than 0", offset)
    for name in ("backorders_allowed", "whole_units"):
        flag = columns[name]
        _bad_row((flag != 0) & (flag != 1), name, flag, "0 or 1", offset)
    columns["pipeline"] = np.stack([columns.pop(c) for c in pipeline], axis=1)
    return columns


def store_features(states: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Store observations by feature name (as ``core.agents.observations`` computes them from the twin), and what
    the order quantity needs."""
    lead = states["lead_time_days"]
    f = np.maximum(states["forecast_over_lead_time"] / lead, EPS)
    sd = states["demand_sd_per_day"]
    pipeline = states["pipeline"]
    inbound = pipeline.sum(axis=1)
    position = states["on_hand"] + inbound - states["backorders"]
    expected, promised = expected_stock_at_arrival(states, f, sd, states["backorders_allowed"] == 0)
    spread = np.maximum(sd * np.sqrt(lead), EPS)
    angle = 2 * np.pi * (states["day"] % 365) / 365.0
    costs = states["stockout_cost_per_unit"], states["holding_cost_per_unit_day"]
    ratio = costs[0] / (costs[0] + costs[1] + EPS)
    features = {
        "on_hand_days": states["on_hand"] / f,
        "in_transit_days": inbound / f,
        **{f"arriving_in_{k + 1}_days": (pipeline[:, k] if k < pipeline.shape[1] else 0.0) / f
           for k in range(PROFILE_DAYS)},
        "expected_stock_at_arrival_days": expected / f,
        "position_safety_factor": (position - f * lead) / spread,
        "expected_lost_before_arrival_spreads": (expected - promised) / spread,
        "day_of_demand_spreads": f / spread,
        "backorder_days": states["backorders"] / f,
        "cover_beyond_lead_time_days": position / f - lead,
        "yesterday_demand_ratio": states["yesterday_demand"] / f,
        "recent_demand_ratio": states["recent_demand_per_day"] / f,
        "recent_service_level": _share(states["recent_sales_per_day"], states["recent_demand_per_day"]),
        "recent_supply_fill": _share(states["recent_received_per_day"], states["recent_orders_per_day"]),
        "forecast_next_week_ratio": states["forecast_week_after_lead_time"] / 7.0 / f,
        "season_level": f / states["average_demand_per_day"],
        "season_sin": np.sin(angle),
        "season_cos": np.cos(angle),
        "lead_time_weeks": lead / 7.0,
        "demand_cv": states["demand_cv"],
        "critical_ratio": ratio,
        "newsvendor_safety_factor": newsvendor_safety_factor(ratio),
        "backorders_mode": states["backorders_allowed"],
    }
    return features, {"forecast_per_day": f, "lead_time_days": lead, "position": position,
                      "whole_units": states["whole_units"] == 1}


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal distribution function (Abramowitz and Stegun 7.1.26, error below 1e-7; as in training)."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x) / np.sqrt(2.0))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-0.5 * x * x)
    return 0.5 * (1.0 + np.sign(x) * erf)


def positive_part_mean(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[max(X, 0)] for X normal with ``mean`` and standard deviation ``sd`` (> 0)."""
    ratio = mean / sd
    return mean * normal_cdf(ratio) + sd * np.exp(-0.5 * ratio * ratio) / np.sqrt(2.0 * np.pi)


def _where(mask: np.ndarray) -> slice | np.ndarray:
    """The rows of ``mask``: every row as a slice (no copy) when all are in it."""
    return slice(None) if mask.all() else np.flatnonzero(mask)


def expected_stock_at_arrival(states: dict[str, np.ndarray], f: np.ndarray, sd: np.ndarray,
                              lost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stock expected on hand the morning an order placed tonight arrives, and the same without lost sales (the
    stock the inventory position promises then). From on hand less backorders, each of the lead_time_days - 1
    mornings before the arrival adds that morning's pipeline (days past the pipeline's columns bring nothing) and
    takes a day's forecast ``f``; where sales are ``lost`` the stock left each evening cannot go below zero, and
    its expectation under normal demand, the variance growing by ``sd`` squared a day, is carried on (as in
    training). A row takes its own number of days."""
    pipeline = states["pipeline"]
    days = states["lead_time_days"] - 1
    stock = states["on_hand"] - states["backorders"]
    promised, arrived = stock.copy(), np.zeros_like(stock)
    variance = np.zeros_like(stock)
    for k in range(int(days.max(initial=0))):
        active = days > k
        rows = _where(active)
        arriving = pipeline[rows, k] if k < pipeline.shape[1] else 0.0
        arrived[rows] = arrived[rows] + arriving
        stock[rows] = stock[rows] + arriving - f[rows]
        short = active & lost
        if short.any():
            rows = _where(short)
            variance[rows] = variance[rows] + sd[rows] ** 2
            stock[rows] = positive_part_mean(stock[rows], np.sqrt(np.maximum(variance[rows], EPS)))
    return stock, promised + arrived - days * f


def newsvendor_safety_factor(ratio: np.ndarray) -> np.ndarray:
    """The standard normal quantile of each critical ratio, within +-NEWSVENDOR_LIMIT."""
    low, high = NORMAL.cdf(-NEWSVENDOR_LIMIT), NORMAL.cdf(NEWSVENDOR_LIMIT)
    distinct, where = np.unique(np.clip(ratio, low, high), return_inverse=True)  # costs repeat across rows
    return np.array([NORMAL.inv_cdf(float(r)) for r in distinct])[where.reshape(ratio.shape)]


def _share(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    return np.clip(numerator / np.maximum(denominator, EPS), 0.0, 1.0)


def observation_matrix(features: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    """The features in the manifest's order, clipped to +-CLIP, float32."""
    unknown = [n for n in names if n not in features]
    if unknown:
        raise InputError(f"manifest store features: {', '.join(unknown[:3])} cannot be computed from the states")
    return np.clip(np.stack([features[n] for n in names], axis=-1), -CLIP, CLIP).astype(np.float32)


def order_quantities(order: dict[str, np.ndarray], z: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """Units to order: up to the forecast over the lead time plus z standard deviations of it (a whole number of
    units where demand comes in whole units)."""
    target = order["forecast_per_day"] * order["lead_time_days"] + z * sd * np.sqrt(order["lead_time_days"])
    target = np.where(order["whole_units"], np.round(target), target)
    return np.maximum(target - order["position"], 0.0)


class StoreDecider(RolePolicy):
    """The store policy of an export folder (``RolePolicy``): menu indices, safety factors and orders."""

    def __init__(self, models: Path) -> None:
        super().__init__(models, "store")

    def indices(self, obs: np.ndarray) -> np.ndarray:
        return self.choose(obs)[0]

    def decide(self, states: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Menu index, safety factor and order quantity (units) of every row of checked ``states``."""
        features, order = store_features(states)
        index = self.indices(observation_matrix(features, self.names))
        z = self.menu[index]
        return {"menu_index": index, "safety_factor": z,
                "order_quantity": order_quantities(order, z, states["demand_sd_per_day"])}


def read_states(path: Path) -> object:
    """The input file as a pyarrow table (CSV or Parquet, at most ``MAX_INPUT_BYTES``)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if path.suffix not in (".csv", ".parquet"):
        raise InputError(f"--input {path}: allowed: a .csv or .parquet file")
    try:
        if not path.is_file():
            raise InputError(f"--input {path}: not a file")
        if path.stat().st_size > MAX_INPUT_BYTES:
            raise InputError(f"--input {path}: more than {MAX_INPUT_BYTES:,} bytes")
        if path.suffix == ".parquet":
            return pq.read_table(path)
        return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(strings_can_be_null=True,
                                                                        column_types={"role": pa.string()}))
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"--input {path}: cannot read ({str(exc).splitlines()[0][:120]})") from None


def orders_table(table: object, decided: dict[str, np.ndarray]) -> object:
    import pyarrow as pa

    kept = {name: table.column(name) for name in PASSED_THROUGH if name in table.column_names}
    return pa.table({**kept, **{k: pa.array(v) for k, v in decided.items()}})


def write_orders(orders: object, out: Path) -> None:
    """``orders`` as CSV, written to a temporary file and renamed (nothing half-written)."""
    import pyarrow.csv as pcsv

    if out.suffix != ".csv":
        raise InputError(f"--output {out}: allowed: a .csv file")
    temporary = out.with_name(f".{out.name}.partial")
    try:
        pcsv.write_csv(orders, temporary)
        os.replace(temporary, out)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise InputError(f"--output {out}: cannot write ({exc.strerror or exc})") from None


def decide_table(table: object, models: Path) -> object:
    """Every row's order (the batch mode without Ray)."""
    return orders_table(table, StoreDecider(models).decide(checked_states(table)))


def _decide_batch(batch: object, models: str) -> object:
    """Ray Data's per-batch function: the rows' orders (the decider is loaded and checked per batch)."""
    return orders_table(batch, StoreDecider(Path(models)).decide(checked_states(batch)))


def decide_with_ray(path: Path, models: Path, table: object) -> object:
    """Every row's order as a Ray Data ``map_batches`` over the dataset at ``path`` (rows checked first)."""
    import pyarrow as pa
    import ray

    checked_states(table)  # every row, before any batch runs
    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS"), num_cpus=None if os.environ.get("RAY_ADDRESS") else 2,
                 log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    dataset = ray.data.read_parquet(str(path)) if path.suffix == ".parquet" else ray.data.read_csv(str(path))
    decided = dataset.map_batches(_decide_batch, fn_kwargs={"models": str(models.resolve())}, batch_format="pyarrow",
                                  batch_size=CHUNK_ROWS, num_cpus=1)
    return pa.concat_tables(ray.get(decided.to_arrow_refs()))


def run_batch(args: argparse.Namespace) -> int:
    path, out, models = Path(args.input), Path(args.output), Path(args.models)
    table = read_states(path)
    orders = decide_with_ray(path, models, table) if args.ray else decide_table(table, models)
    write_orders(orders, out)
    print(f"{orders.num_rows:,} orders written to {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["store", "warehouse", "supplier"], help="single-observation mode")
    parser.add_argument("--observation", help="JSON file (single-observation mode, see above)")
    parser.add_argument("--input", help="batch mode: raw store states, .csv or .parquet (see above)")
    parser.add_argument("--output", help="batch mode: the orders, .csv")
    parser.add_argument("--ray", action="store_true", help="batch mode: decide as a Ray Data map_batches")
    parser.add_argument("--models", default=str(Path(__file__).resolve().parent), help="folder with manifest.json")
    args = parser.parse_args()
    try:
        if args.input or args.output:
            if not (args.input and args.output):
                raise InputError("batch mode needs both --input and --output")
            return run_batch(args)
        if not (args.role and args.observation):
            raise InputError("give --input and --output (batch mode), or --role and --observation")
        run(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
