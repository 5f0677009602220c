"""Command line: ``python -m core COMMAND ...`` (``--help`` on any command for its options).

Bad input (a scenario file, a policy SPEC, a demand CSV) prints one line naming the field,
the value and what is allowed, and exits with code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import numpy as np

from core.demand import DemandFileError, load_demand_csv, sample_demand, scenario_for_history
from core.policy_spec import PolicySpecError, parse_policy
from core.presets import PRESETS, load_scenario
from core.scenario import ScenarioError
from core.simulate import kpis, rollout, summarise


def _cmd_validate(args: argparse.Namespace) -> int:
    from core.validation import validate

    names = [args.scenario] if args.scenario else list(PRESETS)
    failures = 0
    for name in names:
        scenario = load_scenario(name)
        for check in validate(scenario, periods=args.periods):
            failures += not check.passed
            print(f"{'PASS' if check.passed else 'FAIL'} {scenario.name}: {check.name}: {check.detail}")
    print(f"{'all checks passed' if not failures else f'{failures} checks failed'}")
    return 1 if failures else 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    rng = np.random.default_rng(args.seed)
    if args.demand_csv:
        history, _ = load_demand_csv(args.demand_csv)
        scenario = scenario_for_history(scenario, history)
        periods = history.shape[0] if args.periods is None else min(args.periods, history.shape[0])
        demand = np.repeat(history[None, :periods], args.seeds, axis=0)
    else:
        demand = sample_demand(scenario, args.seeds, rng, args.periods)
    mix = parse_policy(args.policy, scenario, rng)
    result = summarise(kpis(rollout(scenario, mix, demand), args.warmup))
    if args.json:
        print(json.dumps({"scenario": scenario.name, "policy": mix.label, "seeds": args.seeds,
                          "periods": demand.shape[1], "warmup": args.warmup, "kpis": result}, indent=2))
        return 0
    print(f"scenario {scenario.name}, policy {mix.label}")
    print(f"{args.seeds} seeds x {demand.shape[1]} days (first {args.warmup} not counted); mean +- standard error")
    for name, value in result.items():
        print(f"  {name:24s} {value['mean']:12.4f} +- {value['se']:.4f}")
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from core.tuning import tune_base_stock

    scenario = load_scenario(args.scenario)
    tuned = tune_base_stock(scenario, seeds=args.seeds, periods=args.periods)
    if args.json:
        print(json.dumps(tuned.__dict__, indent=2))
        return 0
    stores = "/".join(f"{x:.2f}" for x in tuned.store_levels)
    print(f"scenario {scenario.name}: {tuned.candidates_evaluated} candidates on {args.seeds} seeds")
    print(f"  safety factors (store, warehouse, supplier): {', '.join(f'{k:.2f}' for k in tuned.safety_factors)}")
    print(f"  cost per day on the tuning seeds: {tuned.cost_per_day:.3f}")
    print(f"  policy: store=base_stock:level={stores},warehouse=echelon_base_stock:level={tuned.warehouse_level:.2f},"
          f"supplier=echelon_base_stock:level={tuned.supplier_level:.2f}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from core.bench import run_bench

    result = run_bench(args.scenario)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"scenario {result['scenario']} ({result['agents_per_chain']} agents per chain); medians of repeats")
    for key in ("single_chain", "batched"):
        r = result[key]
        print(f"  B = {r['batch_size']:5d}: {r['agent_steps_per_s']:14,.0f} agent-steps/s "
              f"({r['chain_steps_per_s']:12,.0f} chain-steps/s, {r['microseconds_per_step']:.1f} us per step)")
    print(f"  tuner: {result['tuner_seconds']:.2f} s for one scenario")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core", description="HMARL retail inventory lab")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="random actions on every agent; one line per check")
    p.add_argument("--scenario", help="preset name or JSON file (default: every preset)")
    p.add_argument("--periods", type=int, default=None, help="days per run (default: horizon, at most 365)")
    p.set_defaults(run=_cmd_validate)

    p = sub.add_parser("simulate", help="KPIs of a policy mix: mean and standard error across seeds")
    p.add_argument("--scenario", default="steady", help="preset name or JSON file")
    p.add_argument("--policy", default="reorder_point", help="policy SPEC (see core/policy_spec.py)")
    p.add_argument("--periods", type=int, default=None, help="days (default: the scenario's horizon)")
    p.add_argument("--seeds", type=int, default=30, help="independent chains")
    p.add_argument("--seed", type=int, default=0, help="random seed of the demand")
    p.add_argument("--warmup", type=int, default=0, help="first days left out of the KPIs")
    p.add_argument("--demand-csv", help="drive the stores with sales history (date,store,quantity)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_simulate)

    p = sub.add_parser("tune", help="tune base-stock levels by simulation")
    p.add_argument("--scenario", default="steady")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--periods", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_tune)

    p = sub.add_parser("bench", help="throughput of the twin and the tuner")
    p.add_argument("--scenario", default="steady")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_bench)
    return parser


def _positive(args: argparse.Namespace) -> None:
    for name in ("periods", "seeds", "warmup"):
        value = getattr(args, name, None)
        minimum = 0 if name == "warmup" else 1
        if value is not None and value < minimum:
            raise ScenarioError(f"--{name}: got {value}; allowed: an integer >= {minimum}")
    periods = getattr(args, "periods", None)
    if periods is not None and getattr(args, "warmup", 0) >= periods:
        raise ScenarioError(f"--warmup: got {args.warmup}; allowed: fewer than --periods ({periods})")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        _positive(args)
        return run(args)
    except (ScenarioError, PolicySpecError, DemandFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
