"""Standalone deployment example: numpy and onnxruntime only (no torch, no project code).

    python deploy_policy.py --role store --observation observation.json [--models DIR]

observation.json holds the role's features by name (the names and their order are in
manifest.json; a list in that order works too) and, optionally, what is needed to turn the
decision into units:

    {"features": {"on_hand_days": 3.2, "in_transit_days": 2.0, ...},
     "order": {"forecast_per_day": 40, "protection_days": 2, "demand_sd_per_day": 12,
               "inventory_position": 150, "prebuild": 0}}

It prints the chosen menu entry, its probability and, with "order", the order quantity:
max(0, forecast_per_day * protection_days + z * demand_sd_per_day * sqrt(protection_days) + prebuild
    - inventory_position),
with prebuild (optional, the supplier's stock for planned capacity shortfalls) 0 if absent.
--models defaults to this script's folder, from whatever folder it is run. Every input is checked:
a bad one ends in a one-line "error: ..." and exit code 2. The model file must be a plain name inside
the models folder (no absolute path, no "..", no symlink out of it), at most 5 MB, with the manifest's
sha256; a decision is stopped after 1 s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import stat
import sys
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

MAX_JSON_BYTES = 2**20
MAX_MODEL_BYTES = 5 * 2**20
FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}(/[A-Za-z0-9_.-]{1,128}){0,3}")
DECISION_SECONDS = 1.0


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
        unknown = [str(n)[:40] for n in features if n not in names]
        if unknown:
            raise InputError(f"observation has unknown features: {', '.join(unknown[:5])}")
        values = features
    else:
        raise InputError("observation: 'features' must be an object by feature name or a list")
    row = np.array([[number(values[n], f"feature {n}") for n in names]], dtype=np.float64)
    if np.abs(row).max() > np.finfo(np.float32).max:
        raise InputError("observation: a feature beyond the float32 range")
    return row.astype(np.float32)


def decide(model: Path, card: dict, obs: np.ndarray) -> tuple[int, float]:
    """The menu index and its probability, from the role's ONNX model checked against the manifest."""
    data = read_file(model, MAX_MODEL_BYTES)
    if hashlib.sha256(data).hexdigest() != card.get("sha256"):
        raise InputError(f"{model} does not match the manifest's sha256")
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several types for graphs it cannot load
        raise InputError(f"{model}: not a loadable ONNX model ({type(exc).__name__})") from None
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].shape[-1] != obs.shape[1]:
        raise InputError(f"{model}: input shape {[i.shape for i in inputs]}; "
                         f"the manifest lists {obs.shape[1]} features")
    run_options = ort.RunOptions()
    timer = threading.Timer(DECISION_SECONDS, lambda: setattr(run_options, "terminate", True))
    timer.start()
    try:
        action, probabilities = session.run(None, {inputs[0].name: obs}, run_options)[:2]
    except Exception as exc:  # a stopped run, a broken graph
        raise InputError(f"{model}: cannot decide ({type(exc).__name__}: {str(exc).splitlines()[0][:100]})") from None
    finally:
        timer.cancel()
    action, probabilities = np.asarray(action).reshape(-1), np.asarray(probabilities).reshape(1, -1)
    index = int(action[0]) if action.size == 1 and np.issubdtype(action.dtype, np.integer) else -1
    if not 0 <= index < probabilities.shape[1] or not np.isfinite(probabilities).all():
        raise InputError(f"{model}: an unusable decision (action {action[:3].tolist()}, probabilities not "
                         f"finite or of the wrong size)")
    return index, float(probabilities[0, index])


def run(args: argparse.Namespace) -> None:
    models = Path(args.models)
    manifest = read_json(models / "manifest.json")
    roles = manifest.get("roles") if isinstance(manifest, dict) else None
    card = roles.get(args.role) if isinstance(roles, dict) else None
    if not isinstance(card, dict):
        raise InputError(f"{models / 'manifest.json'}: no entry for role {args.role!r}")
    names, menu, actions = card.get("features"), card.get("safety_factor_menu"), card.get("actions")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or not isinstance(menu, list) \
            or not isinstance(actions, list) or len(actions) != len(menu):
        raise InputError(f"manifest {args.role}: features, actions and safety_factor_menu must be lists")
    menu = [number(z, f"manifest {args.role} safety_factor_menu") for z in menu]
    data = read_json(Path(args.observation))
    if not isinstance(data, dict):
        raise InputError(f"{args.observation}: not a JSON object")
    obs = observation_row(data.get("features"), names)

    if card.get("kind") == "rule":
        factor = number(card.get("safety_factor"), f"manifest {args.role} safety_factor")
        if factor not in menu:
            raise InputError(f"manifest {args.role}: safety_factor {factor:g} is not on the menu")
        index, probability = menu.index(factor), 1.0
    else:
        index, probability = decide(model_path(models, card.get("file")), card, obs)
        if index >= len(menu):
            raise InputError(f"model chose menu entry {index}; the manifest's menu has {len(menu)}")
    quantity = order_quantity(data.get("order"), menu[index])
    meaning = actions[index] if isinstance(actions[index], str) and actions[index].isprintable() else "?"
    print(f"{args.role}: {meaning[:200]} (menu entry {index}, probability {probability:.3f})")
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
    quantity = max(0.0, target - number(order["inventory_position"], "order inventory_position"))
    if not math.isfinite(quantity):
        raise InputError("order: the quantity overflows")
    return quantity


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", required=True, choices=["store", "warehouse", "supplier"])
    parser.add_argument("--observation", required=True, help="JSON file (see above)")
    parser.add_argument("--models", default=str(Path(__file__).resolve().parent), help="folder with manifest.json")
    args = parser.parse_args()
    try:
        run(args)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
