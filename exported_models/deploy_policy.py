"""Standalone deployment: numpy, onnx and onnxruntime only (pyarrow for the batch files; no torch, no project code),
with ``onnx_checks.py`` beside this script (a copy of the project's model checks).

Batch mode, from raw business data (one row per store and product):

    python deploy_policy.py --input states.csv|states.parquet --output orders.csv [--ray] [--models DIR]

computes every row's store features in numpy (vectorised, ``store_features``), decides the safety factor with
the store policy (onnxruntime, one thread, ``RUN_ROWS`` rows a run) and turns it into an order quantity:

    order = max(0, forecast_over_lead_time + z * demand_sd_per_day * sqrt(lead_time_days) - inventory position)
    inventory position = on_hand + sum of pipeline_day_* - backorders

The features are the training's (``core.agents.observations.store_observation``), computed in float64 with the same
operations, so the policy sees the same float32 observation as in the twin. The last one, tuned_safety_factor, is
the input's column of that name, passed through: the store's tuned constant menu entry for its product's scenario
(the safety factor forecast base-stock does best with there, tuned by simulation; ``python -m core tune --scenario
FILE --menu`` prints it as "store Z"), the same for every row of a scenario. The policy aims at that factor plus a
learned correction. Stock is in days of forecast demand (forecast_over_lead_time / lead_time_days), among them the
stock expected on hand when tonight's order arrives: on hand less backorders, plus each earlier morning's pipeline,
less a day's forecast a day; where sales are lost (backorders_allowed 0) what is left each evening cannot go below
zero, and its expectation under normal demand (variance demand_sd_per_day^2 a day, summed) is carried on, so sales
lost before the order arrives are counted (``expected_stock_at_arrival``; the normal distribution function by
Abramowitz and Stegun 7.1.26, as in training). ``expected_lost_before_arrival_spreads`` is the sales expected to be
lost before then: how much more stock that leaves than the same without lost sales, in standard deviations of
lead-time demand.

The input's columns (``STATE_COLUMNS``; units in brackets) are listed below; ``example_states.csv`` beside this
script is a small example. Extra columns are ignored (not even read), except ``store`` and ``product`` (numbers or
text), which are copied to the output. The output has one row per input row: store and product (if given),
safety_factor (the chosen z, in standard deviations of lead-time demand) and order_quantity_units, the order as
placed (``rounded_orders``): whole units where whole_units is 1, else ``DECIMALS`` decimals.

Memory is bounded by a block, whatever the number of rows: the file is read, checked, decided and written a block at
a time, ``BLOCK_ROWS`` rows of Parquet (its columns read ``READ_BUFFER`` bytes at a time) or ``BLOCK_BYTES`` bytes
of CSV, each block's orders appended to the output's temporary file. The header is checked before any row is
decided: each column once, none missing, numbers of an integer or floating-point type (not text, lists, structs or
maps), role text, pipeline_day_1 to pipeline_day_K with none missing in between and K at most ``MAX_LEAD_DAYS``.
Every row then has a finite number in every number column (no empty cell, no NaN); quantities, forecasts, demands,
costs and the day from 0 to ``MAX_VALUE`` (1e12: far beyond any store, exact in float64 for whole numbers, and no
order can overflow), average_demand_per_day above 0, a whole lead time of 1 to ``MAX_LEAD_DAYS`` days, flags 0 or 1,
tuned_safety_factor within ``TUNED_RANGE`` (-4 to 10, the menu's lowest and highest entries) and a known role. The
first bad row stops the run with one line naming the row (1 = the first data row, counted across blocks), the
column, the value and what is allowed there (exit 2); text from the file is shown with control characters escaped.
Nothing is written then: the orders go to a new file of random name in the output's folder (created exclusively,
never through a symlink), removed on any error and on Ctrl-C or SIGTERM (one line, "interrupted", exit 130 or 143),
and renamed onto --output only once complete. --output must be a .csv file in an existing folder and not the input
(nor a link to it); a symlink at --output is replaced, not followed. A closed stdout ends the run quietly (exit
141).

With ``--ray`` every row is checked first (the same streaming pass), then the decisions run as a Ray Data
``map_batches`` over the file (read with the same column types), in order, on a local Ray or on the cluster in
RAY_ADDRESS, whose port must answer within ``RAY_PROBE_SECONDS`` and which must connect within
``RAY_INIT_SECONDS``; a file without rows gives a header-only output without starting Ray.

Single-observation mode (engineered features, any role):

    python deploy_policy.py --role store --observation observation.json [--models DIR]

observation.json holds the role's features by name (the names and their order are in
manifest.json; a list in that order works too) and, optionally, what is needed to turn the
decision into units. Every role's last feature is tuned_safety_factor, the role's tuned constant menu entry for the
scenario (``python -m core tune --scenario FILE --menu`` prints it per role), from -4 to 10:

    {"features": {"on_hand_days": 3.2, "in_transit_days": 2.0, ..., "tuned_safety_factor": 1.3},
     "order": {"forecast_per_day": 40, "protection_days": 2, "demand_sd_per_day": 12,
               "inventory_position": 150, "prebuild": 0, "whole_units": true}}

It prints the chosen menu entry, its probability and, with "order", the order quantity in units:
max(0, target - inventory_position), target = forecast_per_day * protection_days
    + z * demand_sd_per_day * sqrt(protection_days) + prebuild,
with prebuild (optional, the supplier's stock for planned capacity shortfalls) 0 if absent, and the target and the
order rounded to whole units if whole_units (optional, false if absent: true where demand comes in whole units),
else the order to ``DECIMALS`` decimals. ``example_observation.json`` beside this script is an example (a store
of the ``steady`` preset on day 60, as the twin saw it).
Every field of "order" is a finite number from 0 to ``MAX_VALUE`` (inventory_position from -MAX_VALUE).
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
from collections.abc import Callable, Iterator
from pathlib import Path
from statistics import NormalDist
from types import ModuleType
from typing import NoReturn


def _stopped_while_loading(number: int, frame: object) -> None:
    """Ctrl-C or SIGTERM while the libraries below load (nothing is written yet): the line and exit code ``main``
    gives later, not a traceback from inside an import."""
    os.write(2, b"interrupted\n" if number == 2 else b"terminated\n")
    os._exit(128 + number)


if __name__ == "__main__":
    import signal

    for _number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(_number, _stopped_while_loading)

import numpy as np  # noqa: E402  (after the handlers above)
import onnxruntime as ort  # noqa: E402

MAX_JSON_BYTES = 2**20
FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}(/[A-Za-z0-9_.-]{1,128}){0,3}")
MAX_SAFETY_FACTOR = 10.0  # a menu entry beyond +-this many standard deviations is refused (the menu: -4 to 10)
MAX_FEATURE_NAME = 80  # characters
RUN_FLOOR_SECONDS = 0.5  # a run may take this long besides its rows' allowance (onnx_checks.MAX_SECONDS_PER_ROW)
RUN_ROWS = 16_384  # rows per onnxruntime run: its buffers stay small (the checked session has no memory arena)
DECIMALS = 3  # an order's decimals where demand does not come in whole units


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
            raise InputError(f"observation has {len(features)} features; allowed: {len(names)}, in the manifest's "
                             f"order ({', '.join(names[:3])}, ..., {names[-1]}){_tuned_hint(names)}")
        values = dict(zip(names, features, strict=True))
    elif isinstance(features, dict):
        missing = [n for n in names if n not in features]
        if missing:
            raise InputError(f"observation lacks features: {', '.join(missing)} (the names are in manifest.json)"
                             f"{_tuned_hint(missing)}")
        unknown = [checks.printable(str(n)[:40]) for n in features if n not in names]
        if unknown:
            raise InputError(f"observation has unknown features: {', '.join(unknown[:5])}")
        values = features
    else:
        raise InputError("observation: 'features' must be an object by feature name or a list")
    row = np.array([[number(values[n], f"feature {n}") for n in names]], dtype=np.float64)
    if TUNED in names and not TUNED_RANGE[0] <= row[0, names.index(TUNED)] <= TUNED_RANGE[1]:
        raise InputError(f"feature {TUNED}: {row[0, names.index(TUNED)]:g}; allowed: {TUNED_RANGE[0]:g} to "
                         f"{TUNED_RANGE[1]:g} (a safety factor of the menu)")
    if np.abs(row).max() > np.finfo(np.float32).max:
        raise InputError("observation: a feature beyond the float32 range")
    return row.astype(np.float32)


def _tuned_hint(names: list[str]) -> str:
    """Where the tuned safety factor comes from, for a message about ``names`` if it is among them."""
    return f"; {TUNED} is the role's tuned constant menu entry for the scenario, from " \
        "`python -m core tune --scenario FILE --menu`" if TUNED in names else ""


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
        whole = data["order"].get("whole_units", False)
        print(f"order quantity: {quantity:.{0 if whole else DECIMALS}f} units")


def order_quantity(order: object, z: float) -> float | None:
    """The order for safety factor ``z`` as placed (``rounded_orders``), or None without an "order" object. Every
    field is a finite number within its bounds (``bounded``), so with a menu's z the quantity is finite."""
    if not order:
        return None
    if not isinstance(order, dict):
        raise InputError("order: not an object")
    fields = ("forecast_per_day", "protection_days", "demand_sd_per_day", "inventory_position")
    missing = [f for f in fields if f not in order]
    if missing:
        raise InputError(f"order lacks: {', '.join(missing)}")
    days = bounded(order["protection_days"], "order protection_days", 0.0)
    target = bounded(order["forecast_per_day"], "order forecast_per_day", 0.0) * days \
        + z * bounded(order["demand_sd_per_day"], "order demand_sd_per_day", 0.0) * math.sqrt(days) \
        + bounded(order.get("prebuild", 0.0), "order prebuild", 0.0)
    whole = order.get("whole_units", False)
    if not isinstance(whole, bool):
        raise InputError(f"order whole_units: got {shown(whole)}; allowed: true or false")
    if whole:
        target = float(round(target))
    quantity = max(0.0, target - bounded(order["inventory_position"], "order inventory_position", -MAX_VALUE))
    return float(rounded_orders(np.array(quantity), np.array(whole)))


def rounded_orders(quantity: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """Orders as placed: whole units where ``whole`` (demand comes in whole units: the target is whole, and so is
    the order, even where the stock held is not), else ``DECIMALS`` decimals; no float noise either way."""
    return np.where(whole, np.round(quantity), np.round(quantity, DECIMALS)) + 0.0  # + 0.0: no -0.0


def bounded(value: object, name: str, low: float) -> float:
    """A finite number from ``low`` to ``MAX_VALUE``."""
    result = number(value, name)
    if not low <= result <= MAX_VALUE:
        allowed = f"{low:g} or more" if result < low else f"at most {MAX_VALUE:.0e} (MAX_VALUE)"
        raise InputError(f"{name}: {result:g}; allowed: {allowed}")
    return result


# --- batch mode: raw store states -> order quantities ---------------------------------------------------------

EPS = 1e-6  # units per day: the smallest forecast a ratio divides by (as in training)
CLIP = 60.0  # every feature is clipped to +-CLIP (as in training)
PROFILE_DAYS = 7  # arrivals of the next this many mornings are features of their own (as in training)
NORMAL = NormalDist()
NEWSVENDOR_LIMIT = 3.0  # the newsvendor safety factor feature stays within +-this (as in training)
MAX_LEAD_DAYS = 365  # the expected stock at arrival steps through the lead time a day at a time
MAX_VALUE = 1e12  # every number of a row is at most this: units, units a day, money, the day (then no order overflows)
BLOCK_ROWS = 65_536  # Parquet rows read, checked, decided and written at a time
BLOCK_BYTES = 2**22  # CSV bytes read at a time, about 23,000 rows (the reader holds about 15 times this)
READ_BUFFER = 2**20  # bytes of a Parquet column read from the file at a time
RAY_PROBE_SECONDS = 5.0  # the port in RAY_ADDRESS must answer within this
RAY_INIT_SECONDS = 20.0  # ray.init must connect to the cluster in RAY_ADDRESS within this
ROLES = ("store",)  # the roles the batch mode decides
STATE_COLUMNS = {  # column -> (unit, meaning); every one is required, a number unless said otherwise
    "role": ("text", "the row's role: store"),
    "day": ("days", "today, counted from the first day of the demand year (the season is day mod 365)"),
    "on_hand": ("units", "stock on the shelf at the evening review"),
    "backorders": ("units", "demand waiting to be served (0 where unmet demand is lost)"),
    "pipeline_day_1": ("units", "ordered stock arriving in 1 day; pipeline_day_2, ... arriving later (consecutive "
                                f"columns up to pipeline_day_{MAX_LEAD_DAYS}, summed; a day past the last column "
                                "brings nothing)"),
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
    "tuned_safety_factor": ("safety factor", "the store's tuned constant menu entry for its product's scenario, from "
                                             "`python -m core tune --scenario FILE --menu` (its store entry), the "
                                             "same for every row of a scenario; -4 to 10 (TUNED_RANGE)"),
}
TUNED = "tuned_safety_factor"  # every role's last feature (a column of its own in batch mode)
TUNED_RANGE = (-4.0, 10.0)  # the menu's lowest and highest safety factors: what a tuned entry can be
FLAGS = ("backorders_allowed", "whole_units")
PASSED_THROUGH = ("store", "product")


def pipeline_columns(names: list[str]) -> list[str]:
    """The pipeline columns in day order: pipeline_day_1 to pipeline_day_K, K at most ``MAX_LEAD_DAYS``, none
    missing in between. Any other name that starts with pipeline_day_ is refused."""
    days = {}
    for name in names:
        if name.startswith("pipeline_day_"):
            match = re.fullmatch(r"pipeline_day_([1-9][0-9]{0,2})", name)
            if not match or int(match[1]) > MAX_LEAD_DAYS:
                raise InputError(f"header: column {shown(name)}; allowed: pipeline_day_1 to "
                                 f"pipeline_day_{MAX_LEAD_DAYS}")
            days[int(match[1])] = name
    after_gap = sorted(day for day in days if day > 1 and day - 1 not in days)
    if after_gap:
        raise InputError(f"header: column pipeline_day_{after_gap[0]} without pipeline_day_{after_gap[0] - 1}; "
                         "allowed: consecutive columns from pipeline_day_1")
    return [days[day] for day in sorted(days)]


def number_columns(pipeline: list[str]) -> list[str]:
    """The columns read as numbers, in the order their rows are checked."""
    return [c for c in STATE_COLUMNS if c not in ("role", "pipeline_day_1")] + pipeline


def checked_names(names: list[str]) -> list[str]:
    """The header's column names checked (each once, every required column there); the pipeline columns."""
    seen = set()
    for name in names:
        if name in seen:
            raise InputError(f"header: column {shown(name)} appears more than once; allowed: each column once")
        seen.add(name)
    pipeline = pipeline_columns(names)
    missing = [c for c in STATE_COLUMNS if c not in seen and c != "pipeline_day_1"] + ([] if pipeline else
                                                                                      ["pipeline_day_1"])
    if missing:
        raise InputError(f"header: missing column {missing[0]}{' (and more)' if len(missing) > 1 else ''}; "
                         f"required: {', '.join(STATE_COLUMNS)}")
    return pipeline


def needed_columns(names: list[str]) -> list[str]:
    """The columns a file's rows are read for: role, the numbers and store and product where given."""
    return ["role", *number_columns(pipeline_columns(names)), *[c for c in PASSED_THROUGH if c in names]]


def checked_schema(schema: object) -> list[str]:
    """A pyarrow schema checked before any row (``checked_names``, then the type of every column read: numbers
    integer or floating-point, role text or bytes, store and product numbers or text, each plain or a dictionary;
    no lists, structs or maps); the pipeline columns."""
    pipeline = checked_names(schema.names)
    kinds = {"role": (("text", "bytes"), "text"), **dict.fromkeys(PASSED_THROUGH, (("number", "text"),
                                                                                   "numbers or text"))}
    for name in needed_columns(schema.names):
        allowed, words = kinds.get(name, (("number",), "integer or floating-point numbers"))
        data_type = schema.field(name).type
        if not _holds(data_type, allowed):
            raise InputError(f"header: column {name} has type {checks.printable(str(data_type)[:80])}; allowed: "
                             f"{words}")
    return pipeline


def _holds(data_type: object, kinds: tuple[str, ...]) -> bool:
    """Whether a column of ``data_type`` holds one of ``kinds`` ("number", "text", "bytes"), plain or as a
    dictionary's values; a column of nothing but empty cells (null type) holds any."""
    import pyarrow as pa

    values = data_type.value_type if pa.types.is_dictionary(data_type) else data_type
    found = {"number": pa.types.is_integer(values) or pa.types.is_floating(values),
             "text": pa.types.is_string(values) or pa.types.is_large_string(values),
             "bytes": pa.types.is_binary(values) or pa.types.is_large_binary(values)}
    return pa.types.is_null(values) or any(found[kind] for kind in kinds)


def checked_states(table: object, offset: int = 0) -> dict[str, np.ndarray]:
    """The columns the decision needs, as float64 arrays (``pipeline``: rows by days), from a pyarrow table or
    record batch whose schema passes ``checked_schema``; the first bad row, column by column (``offset`` rows
    before the block), raises ``InputError``."""
    pipeline = checked_schema(table.schema)
    _check_roles(table.column("role"), offset)
    for name in PASSED_THROUGH:
        if name in table.schema.names:
            _check_utf8(table.column(name), name, offset)
    columns = {name: _numbers(table.column(name), name, offset) for name in number_columns(pipeline)}
    columns["pipeline"] = np.stack([columns.pop(c) for c in pipeline], axis=1)
    return columns


def _check_roles(column: object, offset: int) -> None:
    """Every row's role is one of ``ROLES`` (compared as bytes, so text that is not UTF-8 is refused)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    known = pc.is_in(column.cast(pa.large_binary()), value_set=pa.array([r.encode() for r in ROLES], pa.large_binary()))
    _refuse(known.to_numpy(zero_copy_only=False), column, "role", offset, lambda _: ", ".join(ROLES))


def _check_utf8(column: object, name: str, offset: int) -> None:
    """A text column's every row is UTF-8 (Parquet does not check it)."""
    import pyarrow as pa

    text = _decoded(column)
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        row = _first_failing(text, lambda part: part.validate(full=True))
        raise InputError(f"row {offset + row + 1}, column {name}: got {_cell(text, row)}; allowed: UTF-8 text") \
            from None


def _numbers(column: object, name: str, offset: int) -> np.ndarray:
    """A number column as float64 (an empty cell NaN), every row an allowed value of its column (``_valid``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    values = column.cast(pa.float64(), safe=False)  # an integer beyond 2**53 rounds, and is then beyond MAX_VALUE
    if values.null_count:
        values = pc.fill_null(values, math.nan)
    values = values.to_numpy(zero_copy_only=False)
    _refuse(_valid(name, values), column, name, offset, lambda row: _allowed(name, values[row]))
    return values


def _valid(name: str, values: np.ndarray) -> np.ndarray:
    """Which rows of number column ``name`` hold an allowed value (NaN never does)."""
    if name == TUNED:
        return (values >= TUNED_RANGE[0]) & (values <= TUNED_RANGE[1])
    if name == "lead_time_days":
        return (values >= 1) & (values <= MAX_LEAD_DAYS) & (values == np.round(values))
    if name in FLAGS:
        return (values == 0) | (values == 1)
    above = values > 0 if name == "average_demand_per_day" else values >= 0
    return above & (values <= MAX_VALUE)


def _allowed(name: str, value: float) -> str:
    """The values number column ``name`` allows, for a message about ``value``."""
    if not math.isfinite(value):
        return "a finite number (no empty cell, no NaN)"
    if name == TUNED:
        return f"{TUNED_RANGE[0]:g} to {TUNED_RANGE[1]:g} (a safety factor of the menu)"
    if name == "lead_time_days":
        return f"a whole number of days, 1 to {MAX_LEAD_DAYS}"
    if name in FLAGS:
        return "0 or 1"
    if value > MAX_VALUE:
        return f"at most {MAX_VALUE:.0e} (MAX_VALUE)"
    return "more than 0" if name == "average_demand_per_day" else "0 or more"


def _refuse(valid: np.ndarray, column: object, name: str, offset: int, allowed: Callable[[int], str]) -> None:
    """Raises ``InputError`` naming the first row that is not ``valid``: its number (``offset`` rows before the
    block), column, value and what is ``allowed`` there."""
    if not valid.all():
        row = int(np.argmax(~valid))
        raise InputError(f"row {offset + row + 1}, column {name}: got {_cell(column, row)}; allowed: {allowed(row)}")


def _cell(column: object, row: int) -> str:
    """A cell of a pyarrow column for a message: "an empty cell", or its value's repr (bytes that are not UTF-8
    as bytes), escaped and cut (``shown``)."""
    import pyarrow as pa

    cell = _decoded(column.slice(row, 1))
    if pa.types.is_string(cell.type) or pa.types.is_large_string(cell.type):
        cell = cell.cast(pa.large_binary())  # no UTF-8 check: the message shows what is there
    value = cell[0].as_py()
    if isinstance(value, bytes):
        try:
            return shown(value.decode())
        except UnicodeDecodeError:
            return shown(value)
    return "an empty cell" if value is None else shown(value)


def _decoded(column: object) -> object:
    """A pyarrow column with a dictionary's values in place of its indices (any other column as it is)."""
    import pyarrow as pa

    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def _first_failing(array: object, check: Callable[[object], object]) -> int:
    """The first row of ``array`` that makes ``check`` raise ``ArrowInvalid`` (it raised on the whole array), by
    bisecting on prefixes."""
    import pyarrow as pa

    good, bad = 0, len(array)  # check passes on the first ``good`` rows and raises on the first ``bad``
    while bad - good > 1:
        middle = (good + bad) // 2
        try:
            check(array.slice(0, middle))
            good = middle
        except pa.ArrowInvalid:
            bad = middle
    return bad - 1


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
        TUNED: states[TUNED],
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
    """Units to order: up to the forecast over the lead time plus z standard deviations of it (the target a whole
    number of units where demand comes in whole units), as placed (``rounded_orders``)."""
    target = order["forecast_per_day"] * order["lead_time_days"] + z * sd * np.sqrt(order["lead_time_days"])
    target = np.where(order["whole_units"], np.round(target), target)
    return rounded_orders(np.maximum(target - order["position"], 0.0), order["whole_units"])


class StoreDecider(RolePolicy):
    """The store policy of an export folder (``RolePolicy``): menu indices, safety factors and orders."""

    def __init__(self, models: Path) -> None:
        super().__init__(models, "store")

    def indices(self, obs: np.ndarray) -> np.ndarray:
        return self.choose(obs)[0]

    def decide(self, states: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The output's decisions of every row of checked ``states``: the safety factor and the order in units."""
        features, order = store_features(states)
        z = self.menu[self.indices(observation_matrix(features, self.names))]
        return {"safety_factor": z, "order_quantity_units": order_quantities(order, z, states["demand_sd_per_day"])}


def read_states(path: Path) -> Iterator[object]:
    """The input file's rows in blocks (pyarrow), after its header passes ``checked_schema``; only the columns the
    decision needs are read. Parquet gives ``BLOCK_ROWS`` rows at a time, CSV ``BLOCK_BYTES`` bytes at a time; a
    file without rows gives one empty block."""
    import pyarrow as pa

    if path.suffix not in (".csv", ".parquet"):
        raise InputError(f"--input {_named(path)}: allowed: a .csv or .parquet file")
    with _input_file(path) as file:
        try:
            yield from _parquet_blocks(file) if path.suffix == ".parquet" else _csv_blocks(file)
        except (OSError, pa.ArrowException, UnicodeDecodeError) as exc:  # a broken file, a header not UTF-8
            raise InputError(f"--input {_named(path)}: cannot read ({checks.printable(str(exc)[:160])})") from None


def _named(path: Path) -> str:
    """A path for a message, control characters escaped."""
    return checks.printable(str(path))


def _input_file(path: Path) -> object:
    """``path`` opened for reading, a regular file (a pipe or a device is refused without blocking on it)."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except (OSError, ValueError) as exc:
        raise InputError(f"--input {_named(path)}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if not stat.S_ISREG(os.fstat(handle).st_mode):
        os.close(handle)
        raise InputError(f"--input {_named(path)}: not a regular file")
    return os.fdopen(handle, "rb")


def _parquet_blocks(file: object) -> Iterator[object]:
    """A Parquet file's blocks of the needed columns, its schema checked first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(file, buffer_size=READ_BUFFER)
    checked_schema(parquet.schema_arrow)
    columns = needed_columns(parquet.schema_arrow.names)
    schema = pa.schema([parquet.schema_arrow.field(c) for c in columns])
    # one reader per row group: a single reader over them all holds more memory with every group it passes
    batches = (batch for group in range(parquet.num_row_groups)
               for batch in parquet.iter_batches(BLOCK_ROWS, row_groups=[group], columns=columns))
    yield from _at_least_one(batches, schema)


def _csv_blocks(file: object) -> Iterator[object]:
    """A CSV file's blocks with its columns' types set (``csv_options``); a cell that cannot be read as its type
    is found by reading the file again as bytes (``_refuse_unreadable``)."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    read = pcsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False)
    names = pcsv.open_csv(file, read_options=read, **csv_options()).schema.names  # the types it guesses go unused
    checked_names(names)
    columns = needed_columns(names)
    file.seek(0)
    try:  # the reader converts its first block as it opens
        reader = pcsv.open_csv(file, read_options=pcsv.ReadOptions(block_size=BLOCK_BYTES), **csv_options(columns))
        yield from _at_least_one(reader, reader.schema)
    except pa.ArrowInvalid:
        file.seek(0)
        _refuse_unreadable(pcsv.open_csv(file, read_options=read, **csv_options(columns, as_bytes=True)), columns)
        raise


def csv_options(columns: list[str] | None = None, as_bytes: bool = False) -> dict[str, object]:
    """``pyarrow.csv.open_csv``'s parse and convert options: a quoted value may hold line feeds; only the needed
    ``columns`` are read, numbers as float64, role as bytes, store and product as text, and only an empty cell
    is empty (every column as bytes with ``as_bytes``). Without ``columns``, every column as its guessed type."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    parse = pcsv.ParseOptions(newlines_in_values=True)
    if columns is None:
        return {"parse_options": parse}
    numbers = set(number_columns(pipeline_columns(columns)))
    types = {c: pa.large_binary() if as_bytes or c == "role" else pa.float64() if c in numbers else pa.string()
             for c in columns}
    return {"parse_options": parse, "convert_options": pcsv.ConvertOptions(
        column_types=types, include_columns=columns, null_values=[""], strings_can_be_null=True)}


def _refuse_unreadable(blocks: Iterator[object], columns: list[str]) -> None:
    """Raises ``InputError`` naming the first cell, block by block and column by column, of CSV ``blocks`` read
    as bytes that is not a number (a number column) or not UTF-8 text (store, product); returns if none is."""
    import pyarrow as pa
    import pyarrow.compute as pc

    numbers = set(number_columns(pipeline_columns(columns)))

    def as_number(cells: object) -> object:
        return pc.utf8_trim(as_text(cells), " \t").cast(pa.float64())

    def as_text(cells: object) -> object:
        return cells.cast(pa.string())

    offset = 0
    for block in blocks:
        for name in columns[1:]:  # role is read as bytes either way
            check = as_number if name in numbers else as_text
            try:
                check(block.column(name))
            except pa.ArrowInvalid:
                row = _first_failing(block.column(name), check)
                raise InputError(f"row {offset + row + 1}, column {name}: got {_cell(block.column(name), row)}; "
                                 f"allowed: {'a number' if name in numbers else 'UTF-8 text'}") from None
        offset += block.num_rows


def _at_least_one(blocks: Iterator[object], schema: object) -> Iterator[object]:
    """``blocks``, or one empty block of ``schema`` if there are none."""
    empty = True
    for block in blocks:
        empty = False
        yield block
    if empty:
        yield schema.empty_table()


def orders_table(table: object, decided: dict[str, np.ndarray]) -> object:
    """The output's columns for a block: store and product where given, then the decisions."""
    import pyarrow as pa

    kept = {name: _decoded(table.column(name)) for name in PASSED_THROUGH if name in table.schema.names}
    return pa.table({**kept, **{k: pa.array(v) for k, v in decided.items()}})


def checked_output(out: Path, source: Path) -> None:
    """Refuses an output that is not a .csv file name, is a folder, is in a folder that does not exist, or is the
    input file (the same path, or the same file through a link)."""
    if out.suffix != ".csv":
        raise InputError(f"--output {_named(out)}: allowed: a .csv file")
    if out.is_dir():
        raise InputError(f"--output {_named(out)}: a folder; allowed: a .csv file")
    if not out.parent.is_dir():
        raise InputError(f"--output {_named(out)}: the folder {_named(out.parent)} does not exist")
    if _same_file(out, source):
        raise InputError(f"--output {_named(out)} is the input file; allowed: another file")


def _same_file(first: Path, second: Path) -> bool:
    """Whether two paths name one file: the same path resolved, or the same device and inode."""
    try:
        if first.resolve() == second.resolve():
            return True
        one, other = os.stat(first), os.stat(second)
    except (OSError, RuntimeError):  # a path that does not exist (yet), a symlink loop
        return False
    return (one.st_dev, one.st_ino) == (other.st_dev, other.st_ino)


def write_orders(blocks: Iterator[object], out: Path) -> int:
    """Every block of orders, in order, as one CSV file at ``out``; the number of rows. The first block is made
    before any file is; the blocks go to a new temporary file of random name in out's folder (created
    exclusively, so never through a symlink), which is flushed to disk and renamed onto ``out`` once every block
    is written, and removed on any error or interruption."""
    import tempfile

    first, name = next(blocks), None
    try:
        handle, name = tempfile.mkstemp(prefix=f".{out.name[:200]}.", suffix=".partial", dir=out.parent)
        with os.fdopen(handle, "wb") as file:
            rows = _write_csv(first, blocks, file, out)
            file.flush()
            os.fchmod(handle, _new_file_mode())
            os.fsync(handle)
        os.replace(name, out)
    except BaseException as exc:
        if name is not None:
            Path(name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InputError(f"--output {_named(out)}: cannot write ({exc.strerror or exc})") from None
        raise
    return rows


def _write_csv(first: object, blocks: Iterator[object], file: object, out: Path) -> int:
    """``first`` then the rest of ``blocks`` written to ``file`` as CSV (one header); the number of rows."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rows, block = 0, first
    with pcsv.CSVWriter(file, first.schema) as writer:
        while block is not None:
            try:
                writer.write(block)
            except pa.ArrowException as exc:
                raise InputError(f"--output {_named(out)}: cannot write ({checks.printable(str(exc)[:160])})") \
                    from None
            rows += block.num_rows
            block = next(blocks, None)
    return rows


def _new_file_mode() -> int:
    """The permissions a new file gets under the process's umask."""
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def decide_table(table: object, models: Path) -> object:
    """Every row's order from a table in memory (in one block; its rows checked before the policy is loaded)."""
    states = checked_states(table)
    return orders_table(table, StoreDecider(models).decide(states))


def decide_blocks(path: Path, models: Path) -> Iterator[object]:
    """Every block's orders, in order (the batch mode without Ray): a block is read, checked and decided before
    the next is read, so memory is bounded by a block whatever the file's size. The policy is loaded once the
    header and the first block pass their checks."""
    decider, offset = None, 0
    for block in read_states(path):
        states = checked_states(block, offset)
        if decider is None:
            decider = StoreDecider(models)
        yield orders_table(block, decider.decide(states))
        offset += block.num_rows


def _decide_batch(batch: object, models: str) -> object:
    """Ray Data's per-batch function: the rows' orders (the decider is loaded and checked per batch)."""
    return decide_table(batch, Path(models))


def decide_with_ray(path: Path, models: Path) -> Iterator[object]:
    """Every block's orders from a Ray Data ``map_batches`` over the file, in order, on a local Ray or the cluster
    in RAY_ADDRESS (``start_ray``). Every row is checked first, a block at a time, before Ray starts; a file
    without rows is decided here, without Ray."""
    rows, block = 0, None
    for block in read_states(path):
        checked_states(block, rows)
        rows += block.num_rows
    if rows == 0:
        yield decide_table(block, models)
        return
    import ray

    start_ray()
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    context.enable_progress_bars = False
    columns, source = block.schema.names, str(path.resolve())
    dataset = ray.data.read_parquet(source).select_columns(columns) if path.suffix == ".parquet" \
        else ray.data.read_csv(source, **csv_options(columns))
    decided = dataset.map_batches(_decide_batch, fn_kwargs={"models": str(models.resolve())}, batch_format="pyarrow",
                                  batch_size=BLOCK_ROWS, num_cpus=1)
    try:
        yield from decided.iter_batches(batch_size=None, batch_format="pyarrow")
    except ray.exceptions.RayError as exc:
        raise InputError(f"Ray: {checks.printable(str(exc).strip().splitlines()[-1][:200])}") from None


def start_ray() -> None:
    """A local Ray of 2 CPUs, or the cluster in RAY_ADDRESS: its port must answer within ``RAY_PROBE_SECONDS`` and
    ray.init connect within ``RAY_INIT_SECONDS`` (in a thread, quietly: a stuck connection cannot be interrupted,
    and Ray's client logs its retries)."""
    import threading

    import ray

    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS", "")
    if address in ("", "local"):
        ray.init(address=address or None, num_cpus=2, log_to_driver=False)  # a local start stays in this thread
        return
    if address != "auto":
        probe_port(address)
    failures = []

    def connect() -> None:
        try:
            ray.init(address=address, log_to_driver=False)
        except Exception as exc:  # Ray raises several types for a cluster it cannot use
            failures.append(exc)

    thread = threading.Thread(target=connect, daemon=True)
    _quietly_joined(thread, RAY_INIT_SECONDS)
    if thread.is_alive():
        raise InputError(f"RAY_ADDRESS {shown(address)}: Ray did not connect within {RAY_INIT_SECONDS:g} s")
    if failures:
        raise InputError(f"RAY_ADDRESS {shown(address)}: cannot connect ({type(failures[0]).__name__}: "
                         f"{checks.printable(str(failures[0])[:160])})")


def _quietly_joined(thread: object, seconds: float) -> None:
    """Starts ``thread`` and waits at most ``seconds`` for it with file descriptor 2 on /dev/null (Ray's client
    logs every retry there), then puts stderr back."""
    sys.stderr.flush()
    saved, quiet = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(quiet, 2)
        thread.start()
        thread.join(seconds)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(quiet)


def probe_port(address: str) -> None:
    """Refuses RAY_ADDRESS unless it is host:port or ray://host:port and something answers there within
    ``RAY_PROBE_SECONDS``."""
    import socket

    match = re.fullmatch(r"(?:ray://)?\[?([A-Za-z0-9.:_-]+?)\]?:([0-9]{1,5})", address)
    if not match or not 0 < int(match[2]) < 65536:
        raise InputError(f"RAY_ADDRESS {shown(address)}: allowed: host:port, ray://host:port, auto or local")
    try:
        socket.create_connection((match[1], int(match[2])), timeout=RAY_PROBE_SECONDS).close()
    except OSError as exc:
        raise InputError(f"RAY_ADDRESS {shown(address)}: nothing answers at {match[1]}:{match[2]} within "
                         f"{RAY_PROBE_SECONDS:g} s ({exc.strerror or exc})") from None


def run_batch(args: argparse.Namespace) -> None:
    path, out, models = Path(args.input), Path(args.output), Path(args.models)
    checked_output(out, path)
    rows = write_orders(decide_with_ray(path, models) if args.ray else decide_blocks(path, models), out)
    print(f"{rows:,} orders written to {_named(out)}")


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _interrupt(signum: int, frame: object) -> None:
    """Signal handler: later signals are ignored (the clean-up runs to its end), this one stops the run."""
    import signal

    for each in (signal.SIGINT, signal.SIGTERM):
        signal.signal(each, signal.SIG_IGN)
    raise Interrupted(signum)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message} (see --help)")


def main(argv: list[str] | None = None) -> int:
    """The command: 0 done, 2 a bad input (one line on stderr), 130 Ctrl-C and 143 SIGTERM (one line,
    "interrupted"), 141 a closed stdout (quietly)."""
    import signal

    parser = _Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", choices=["store", "warehouse", "supplier"], help="single-observation mode")
    parser.add_argument("--observation", help="JSON file (single-observation mode, see above)")
    parser.add_argument("--input", help="batch mode: raw store states, .csv or .parquet (see above)")
    parser.add_argument("--output", help="batch mode: the orders, .csv")
    parser.add_argument("--ray", action="store_true", help="batch mode: decide as a Ray Data map_batches")
    parser.add_argument("--models", default=str(Path(__file__).resolve().parent), help="folder with manifest.json")
    handlers = {each: signal.signal(each, _interrupt) for each in (signal.SIGINT, signal.SIGTERM)}
    try:
        _run(parser.parse_args(argv))
        sys.stdout.flush()
    except InputError as exc:
        print(f"error: {checks.printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("interrupted", file=sys.stderr)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more reaches the closed pipe
        return 141
    finally:
        for each, handler in handlers.items():
            signal.signal(each, signal.SIG_DFL if handler is None else handler)
    return 0


def _run(args: argparse.Namespace) -> None:
    """The mode the arguments ask for."""
    if args.input or args.output:
        if not (args.input and args.output):
            raise InputError("batch mode needs both --input and --output")
        run_batch(args)
    elif args.role and args.observation:
        run(args)
    else:
        raise InputError("give --input and --output (batch mode), or --role and --observation")


if __name__ == "__main__":
    sys.exit(main())
