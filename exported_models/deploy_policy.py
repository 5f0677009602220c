"""Standalone deployment example: numpy and onnxruntime only (no torch, no project code).

    python deploy_policy.py --role store --observation observation.json [--models DIR]

observation.json holds the role's features by name (the names and their order are in
manifest.json) and, optionally, what is needed to turn the decision into units:

    {"features": {"on_hand_days": 3.2, "in_transit_days": 2.0, ...},
     "order": {"forecast_per_day": 40, "protection_days": 2, "demand_sd_per_day": 12,
               "inventory_position": 150, "prebuild": 0}}

It prints the chosen menu entry, its probability and, with "order", the order quantity:
max(0, forecast_per_day * protection_days + z * demand_sd_per_day * sqrt(protection_days) + prebuild
    - inventory_position),
with prebuild (optional, the supplier's stock for planned capacity shortfalls) 0 if absent.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--role", required=True, choices=["store", "warehouse", "supplier"])
    parser.add_argument("--observation", required=True, help="JSON file (see above)")
    parser.add_argument("--models", default=str(Path(__file__).resolve().parent), help="folder with manifest.json")
    args = parser.parse_args()

    models = Path(args.models)
    card = json.loads((models / "manifest.json").read_text())["roles"][args.role]
    data = json.loads(Path(args.observation).read_text())
    features = data.get("features", {})
    missing = [name for name in card["features"] if name not in features]
    if missing:
        print(f"error: observation lacks features: {', '.join(missing)}", file=sys.stderr)
        return 2
    obs = np.array([[float(features[name]) for name in card["features"]]], dtype=np.float32)

    if card.get("kind") == "rule":
        index = card["safety_factor_menu"].index(card["safety_factor"])
        probability = 1.0
    else:
        model = models / card["file"]
        if hashlib.sha256(model.read_bytes()).hexdigest() != card["sha256"]:
            print(f"error: {model} does not match the manifest's sha256", file=sys.stderr)
            return 2
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        action, probabilities = session.run(None, {"observation": obs})
        index, probability = int(action[0]), float(probabilities[0, int(action[0])])
    z = card["safety_factor_menu"][index]
    print(f"{args.role}: {card['actions'][index]} (menu entry {index}, probability {probability:.3f})")
    order = data.get("order")
    if order:
        days = float(order["protection_days"])
        target = order["forecast_per_day"] * days + z * order["demand_sd_per_day"] * math.sqrt(days) \
            + order.get("prebuild", 0.0)
        print(f"order quantity: {max(0.0, target - order['inventory_position']):.2f} units")
    return 0


if __name__ == "__main__":
    sys.exit(main())
