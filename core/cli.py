"""Command line: ``python -m core COMMAND ...`` (``--help`` on any command for its options).

Bad input (an argument, a scenario file, a policy SPEC, a demand CSV, a path that cannot be read or
written, a ``--ray`` address that is malformed or does not answer) prints one line naming the field, the
value and what is allowed, and exits with code 2. Every count, size and run length is bounded by
``core.simulation.limits`` and checked before anything large is allocated; output paths are checked (their
folders made, a file created and removed in each) before the work starts, and every file the command line
writes is written atomically (``core.serving.files``).

Stopping: Ctrl-C (SIGINT) prints ``interrupted`` and exits with 130, SIGTERM ``terminated`` and 143 (128 +
the signal, as a shell reports them); files being written are left as they were or complete, never half
written. A closed standard output (``python -m core validate | head -1``) ends the command quietly with
141, what a shell reports for a program that SIGPIPE stopped, so ``set -o pipefail`` scripts see it as usual.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

import numpy as np

from core.serving.files import write_bytes_atomic
from core.serving.models import EXPORTED_MODELS, PolicyLoadError
from core.serving.policy_spec import PolicySpecError, parse_policy
from core.simulation.demand import DemandFileError, load_demand_csv, sample_demand, scenario_for_history
from core.simulation.limits import MAX_AGENT_DAYS, MAX_DAYS, MAX_SCENARIO_BYTES, MAX_SEED, MAX_SEEDS, MAX_TIMESTEPS
from core.simulation.presets import PRESETS, load_scenario
from core.simulation.rollout import kpis, rollout, summarise
from core.simulation.scenario import Scenario, ScenarioError
from core.simulation.untrusted import InputFileError, one_line, read_text, shown_path

VALIDATION_CHAINS = 16  # chains of ``validate``'s random-action runs
VALIDATION_DAYS = 365  # default days of a ``validate`` run (at most the horizon)
ARGUMENT_RANGES = {"periods": (1, MAX_DAYS), "seeds": (1, MAX_SEEDS), "warmup": (0, MAX_DAYS - 1),
                   "seed": (0, MAX_SEED), "timesteps": (1, MAX_TIMESTEPS), "repeats": (1, 20),
                   "runs": (1, 64), "rows": (1, 100_000_000)}  # rows: bench --deploy, about 4 GB of files
BAD_INPUT, CLOSED_PIPE, INTERRUPTED, TERMINATED = 2, 141, 130, 143  # exit codes (see the module docstring)
MAX_CONFIG_BYTES = 2 * MAX_SCENARIO_BYTES  # a training run's config.json: its settings and at most one scenario


class _ArgumentError(Exception):
    """argparse rejected the command line; ``main`` prints it as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _ArgumentError(f"{self.prog}: {message} (see --help)")


class _CommandError(Exception):
    """A path the command cannot read or write, or a Ray it cannot use; ``main`` prints it as one line."""


def _in_main_thread() -> bool:
    """Only the main thread may set signal handlers (``main`` may be called from another)."""
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _stop_signals() -> Iterator[list[int]]:
    """While a command runs, SIGINT and SIGTERM (unless ignored) raise ``KeyboardInterrupt``, so ``finally`` blocks
    clean up and Ray's ``ray.get`` stops, and are recorded in the list yielded: an exception that follows one is
    its doing (an extension module interrupted while it loads raises ``ImportError``)."""
    received: list[int] = []
    if not _in_main_thread():
        yield received
        return

    def interrupt(number: int, frame: object) -> NoReturn:
        received.append(number)
        raise KeyboardInterrupt

    previous = {number: signal.signal(number, interrupt) for number in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(number) != signal.SIG_IGN}
    try:
        yield received
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends, then act: files written together are all written or none."""
    if not _in_main_thread():
        yield
        return
    arrived: list[int] = []
    previous = {number: signal.signal(number, lambda number, frame: arrived.append(number))
                for number in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(number) != signal.SIG_IGN}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
    if arrived:
        signal.raise_signal(arrived[0])


def _cannot_write(option: str, path: Path, exc: OSError) -> _CommandError:
    reason = "not a folder" if isinstance(exc, FileExistsError) else exc.strerror or type(exc).__name__
    return _CommandError(f"{option}: {shown_path(path)}: cannot write ({reason})")


def _writable(path: Path, option: str, folder: bool = False) -> None:
    """Before any work: ``path`` (a folder if ``folder``, else a file) can be written. Its folder is made if
    missing, and a file is created in it and removed; ``_CommandError`` otherwise."""
    try:
        if not folder and path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        where = path if folder else path.parent
        where.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=where, prefix=".writable.", suffix=".tmp"):
            pass
    except OSError as exc:
        raise _cannot_write(option, path, exc) from None


@contextlib.contextmanager
def _writing(path: Path, option: str) -> Iterator[None]:
    """An ``OSError`` while writing ``path`` (the option's value) becomes a one-line ``_CommandError``."""
    try:
        yield
    except OSError as exc:
        raise _cannot_write(option, path, exc) from None


def _check_ray_address(args: argparse.Namespace) -> None:
    """A ``--ray ADDRESS`` must be well formed before any folder is made or anything starts."""
    address = getattr(args, "ray", None)
    if address not in (None, "local"):
        from core.evaluation.distributed import RayStartError, parse_address

        try:
            parse_address(address)
        except RayStartError as exc:
            raise _CommandError(str(exc)) from None


def _executor(ray: str | None):
    """``--ray [ADDRESS]``'s executor (``core.evaluation.distributed.executor``); a Ray that cannot be started
    or joined (a malformed address, nothing answering there) is a one-line ``_CommandError``."""
    from core.evaluation.distributed import RayStartError, executor

    try:
        return executor(ray)
    except RayStartError as exc:
        raise _CommandError(str(exc)) from None


def _check_run(scenario: Scenario, seeds: int, periods: int, warmup: int = 0) -> None:
    """A run of ``seeds`` chains x ``periods`` days must leave days after ``warmup`` and fit in
    ``MAX_AGENT_DAYS`` (about 350 bytes each); checked before any demand is drawn."""
    if warmup >= periods:
        raise ScenarioError(f"--warmup: got {warmup}; allowed: fewer than the {periods} days simulated")
    agent_days = seeds * periods * (scenario.num_stores + 2)
    if agent_days > MAX_AGENT_DAYS:
        raise ScenarioError(f"--seeds x --periods x agents: got {seeds} x {periods} x {scenario.num_stores + 2} = "
                            f"{agent_days:,} agent-days; allowed: at most {MAX_AGENT_DAYS:,}")


def _command() -> str:
    """The command line that is running, for the records it writes."""
    return "python -m core " + " ".join(sys.argv[1:])


def _cmd_validate(args: argparse.Namespace) -> int:
    from core.evaluation.validation import validate

    names = [args.scenario] if args.scenario else list(PRESETS)
    failures = 0
    for name in names:
        scenario = load_scenario(name)
        periods = min(scenario.horizon, VALIDATION_DAYS) if args.periods is None else args.periods
        _check_run(scenario, VALIDATION_CHAINS, periods)
        for check in validate(scenario, VALIDATION_CHAINS, periods):
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
        _check_run(scenario, args.seeds, periods, args.warmup)
        demand = np.repeat(history[None, :periods], args.seeds, axis=0)
    else:
        _check_run(scenario, args.seeds, scenario.horizon if args.periods is None else args.periods, args.warmup)
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
    from core.agents.tuning import tune_base_stock, tune_menu

    if args.all:
        return _tune_all(args)
    if args.record:
        raise ScenarioError("--record: allowed only with --all")
    scenario = load_scenario("steady" if args.scenario is None else args.scenario)
    _check_run(scenario, args.seeds, scenario.horizon if args.periods is None else args.periods)
    if args.ray is not None and (args.capped or args.menu):
        raise ScenarioError("--ray: allowed only for base-stock levels (without --menu or --capped)")
    if args.capped:
        from core.agents.tuning import tune_capped_base_stock

        capped = tune_capped_base_stock(scenario, seeds=args.seeds, periods=args.periods)
        if args.json:
            print(json.dumps(capped.__dict__, indent=2))
            return 0
        print(f"scenario {scenario.name}: {capped.candidates_evaluated} capped base-stock candidates "
              f"on {args.seeds} seeds")
        print(f"  cost per day on the tuning seeds: {capped.cost_per_day:.3f}")
        print(f"  policy: store=capped_base_stock:level={capped.level:g}:cap={capped.cap:g}")
        return 0
    if args.menu:
        menu = tune_menu(scenario, seeds=args.seeds, periods=args.periods)
        if args.json:
            print(json.dumps(menu, indent=2))
            return 0
        factors = ", ".join(f"{role} {z:g}" for role, z in menu["safety_factors"].items())
        print(f"scenario {scenario.name}: best constant menu entries on {args.seeds} seeds: {factors}")
        print(f"  cost per day on the tuning seeds: {menu['cost_per_day']:.3f}")
        return 0
    costs_of = None
    if args.ray is not None:
        from core.evaluation.distributed import candidate_costs_on

        costs_of = candidate_costs_on(_executor(args.ray))
    tuned = tune_base_stock(scenario, seeds=args.seeds, periods=args.periods, costs_of=costs_of)
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


def _tune_all(args: argparse.Namespace) -> int:
    """Every tuned rule of every preset, as the registry tunes it, for the preset and for the Live page's year of it;
    with ``--record`` written into the models folder's manifest, where the app and ``evaluate`` read them instead of
    tuning."""
    from core.app.live import preset_year
    from core.serving import model_sets, registry

    if args.scenario is not None or args.seeds != 8 or args.periods is not None or args.menu or args.capped \
            or args.ray is not None:
        raise ScenarioError("--all: tunes every preset with the registry's settings; allowed with --record, --models "
                            "and --json only")
    models = Path(args.models)
    if args.record:
        _writable(models, "--models", folder=True)
    serving = model_sets.served_set(models)[1]
    scenarios = list(dict.fromkeys(s for name in PRESETS for s in (PRESETS[name], preset_year(name))))
    rules = registry.tuned_rules(scenarios)
    if args.record:
        with _signals_held():
            registry.record_tuned(models, rules, serving, command=_command())
    if args.json:
        print(json.dumps(rules, indent=2))
        return 0
    for entry in rules.values():
        tuned = ", ".join(f"{key} {entry[key]['cost_per_day']:.3f}" for key in registry.TUNERS if key in entry)
        print(f"{entry['scenario']} ({entry['horizon']} days): cost per day on the tuning seeds: {tuned}")
    if args.record:
        print(f"recorded in {models / model_sets.MANIFEST} ({registry.TUNED_RULES}: {len(rules)} scenarios)")
    return 0


def _cmd_optimum(args: argparse.Namespace) -> int:
    from core.evaluation.optimum import evaluate_policy, solve

    scenario = load_scenario(args.scenario)
    if args.cap is not None and args.level is None:
        raise ScenarioError("--cap: allowed only with --level")
    out = Path(args.policy_out) if args.policy_out else None
    if out is not None:
        _writable(out, "--policy-out")
    start = time.perf_counter()
    result = solve(scenario) if args.level is None else evaluate_policy(scenario, args.level, args.cap)
    seconds = time.perf_counter() - start
    what = "optimal policy" if args.level is None else (
        f"base-stock {args.level}" + ("" if args.cap is None else f" capped at {args.cap}"))
    if out is not None:
        with _writing(out, "--policy-out"):
            write_bytes_atomic(out, result.table_csv().encode())
    low, high = result.cost_bounds
    if args.json:
        print(json.dumps({"scenario": scenario.name, "policy": what, "cost_per_day": result.cost_per_day,
                          "cost_bounds": [low, high], "states": len(result.states),
                          "transitions": result.transitions, "bound": result.bound, "iterations": result.iterations,
                          "seconds": seconds}, indent=2))
        return 0
    print(f"scenario {scenario.name}: {what}, exact cost per day {result.cost_per_day:.4f} (between {low:.6f} "
          f"and {high:.6f})")
    print(f"  {len(result.states):,} states, {result.transitions:,} transitions, inventory position up to "
          f"{result.bound}; {result.iterations} iterations, {seconds:.1f} s")
    if args.policy_out:
        print(f"  policy table: {args.policy_out}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from core.bench import head_to_head_seconds, run_bench, run_serving_bench

    if args.pages:  # every page's script runs, as the server runs them
        return _print_page_bench(args)
    if args.deploy:
        return _print_scale_bench(args)
    if args.head_to_head:  # the head-to-head page's server-side work only
        timings = head_to_head_seconds(args.scenario)
        print(json.dumps(timings, indent=2) if args.json else "\n".join(
            [f"head-to-head page on {args.scenario}, learned against reorder point; medians of repeats"]
            + [f"  {name:22s} {seconds:6.3f} s" for name, seconds in timings.items()]))
        return 0
    result = run_bench(args.scenario)
    try:
        result["serving"] = run_serving_bench()
    except PolicyLoadError as exc:
        result["serving"] = {"skipped": str(exc)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"scenario {result['scenario']} ({result['agents_per_chain']} agents per chain); medians of repeats")
    for key in ("single_chain", "batched"):
        r = result[key]
        print(f"  B = {r['batch_size']:5d}: {r['agent_steps_per_s']:14,.0f} agent-steps/s "
              f"({r['chain_steps_per_s']:12,.0f} chain-steps/s, {r['microseconds_per_step']:.1f} us per step)")
    print(f"  tuner: {result['tuner_seconds']:.2f} s for one scenario")
    serving = result["serving"]
    if "skipped" in serving:
        print(f"  serving: skipped ({serving['skipped']})")
        return 0
    latency = serving["decision_latency"]
    learned = ", ".join(latency["learned_roles"])
    print(f"  decision latency, {latency['agents']} agents of one chain ({learned} learned):")
    for engine in ("onnxruntime_one_call", "onnxruntime", "torch", "sb3_predict"):
        if engine in latency:
            median, p99 = latency[engine]["median_us"], latency[engine]["p99_us"]
            print(f"    {engine:20s} median {median:8.1f} us, p99 {p99:8.1f} us")
    if "torch" in latency:
        print("    (torch: the exported layers rebuilt from the ONNX weights; sb3_predict: a new SB3 policy "
              "of the same layer sizes)")
    elif "torch_skipped" in latency:
        print(f"    torch: skipped ({latency['torch_skipped']})")
    seconds = serving["one_year_recompute_seconds"]
    print(f"  Live page recompute (one chain, one year, shipped policies): {seconds:.3f} s")
    return 0


def _print_scale_bench(args: argparse.Namespace) -> int:
    from core.bench import deploy_rate, sweep_speedup

    deploy = deploy_rate(args.rows)
    speedup = None if args.no_sweep else sweep_speedup()
    if args.json:
        print(json.dumps({"deploy": deploy, "sweep": speedup}, indent=2))
        return 0
    print(f"batch deployment, {deploy['rows']:,} store rows (checks, features, onnxruntime on 1 thread, quantities):")
    print(f"  in memory:  {deploy['decisions_per_s']:12,.0f} store decisions/s (median of 3 runs on "
          f"{deploy['in_memory_rows']:,} rows)")
    print(f"  end to end: {deploy['end_to_end_decisions_per_s']:12,.0f} store decisions/s (the script as a process, "
          f"Parquet in, CSV out, {deploy['end_to_end_seconds']:.2f} s, peak memory "
          f"{deploy['end_to_end_peak_rss_mb']:,.0f} MB)")
    if speedup is not None:
        print(f"sweep (8 scenarios x 5 policies x 8 seeds x 120 days): serial {speedup['serial_seconds']:.1f} s, "
              f"local Ray with {speedup['workers']} workers {speedup['ray_seconds']:.1f} s "
              f"(+ {speedup['ray_startup_seconds']:.1f} s start-up): speed-up {speedup['speedup']:.2f}x; "
              f"same table: {bool(speedup['same_table'])}")
    return 0


PAGE_TARGETS = {"first load": 3.0, "interaction": 1.0}  # seconds, median (issue 13)


def _print_page_bench(args: argparse.Namespace) -> int:
    if args.browser:
        return _print_browser_bench(args)
    from core.bench import page_seconds

    timings = page_seconds(args.repeats)
    if args.json:
        print(json.dumps({"pages": timings}, indent=2))
        return 0
    print(f"server-side seconds per script run (streamlit AppTest), medians of {args.repeats} repeats, "
          "each from cold caches; target: first load < 3 s, interaction < 1 s")
    for page, steps in timings.items():
        print(f"  {page}")
        for name, seconds in steps.items():
            target = PAGE_TARGETS["first load" if name.startswith("first load") else "interaction"]
            print(f"    {name:48s} {seconds:6.3f} s  {'ok' if seconds < target else 'OVER ' + str(target) + ' s'}")
    return 0


def _print_browser_bench(args: argparse.Namespace) -> int:
    from core.tools.browser import BrowserError
    from core.tools.browser_bench import IDS, browser_timings, report_lines

    unknown = sorted(set(args.interaction or ()) - set(IDS))
    if unknown:
        raise ScenarioError(f"--interaction: got {', '.join(unknown)}; allowed: {', '.join(IDS)}")
    try:
        result = browser_timings(args.repeats, tuple(args.interaction or IDS))
    except BrowserError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else "\n".join(report_lines(result)))
    return 0


def _cmd_screenshots(args: argparse.Namespace) -> int:
    from core.tools.browser import BrowserError, take_screenshots

    out, log = Path(args.out), Path(args.log)
    _writable(out, "--out", folder=True)
    _writable(log, "--log")
    try:
        written = take_screenshots(out, log, *([args.preset] if args.preset else []))
    except BrowserError as exc:
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    return 0


def _train_config(args: argparse.Namespace, out: str, scenario: str | None = None):
    """The run's configuration; ``scenario`` (a preset or file) to train on alone."""
    from core.learning.training import TrainConfig

    overrides = {"out": out, "seed": args.seed, "progress_bar": not args.no_progress}
    if args.timesteps is not None:
        overrides["timesteps"] = overrides["store_timesteps"] = args.timesteps
    if scenario is not None:
        overrides["scenario"] = load_scenario(scenario).to_json()
    return TrainConfig(**overrides)


def _cmd_train(args: argparse.Namespace) -> int:
    from core.learning.training import PHASES, run_phases

    phases = list(PHASES) if args.phase == "all" else [int(args.phase)]
    config = _train_config(args, args.out, args.scenario)
    _writable(Path(args.out), "--out", folder=True)
    if args.runs == 1 and args.ray is None:
        run_phases(config, phases)
        return 0
    from core.learning.runs import train_runs

    summary = train_runs(config, args.runs, phases, _executor(args.ray))
    for folder, cost in summary["runs"].items():
        print(f"{folder}: held-out cost per day {cost:.3f}{'  <- best' if folder == summary['best'] else ''}")
    print(f"export the best with: python -m core export --from {summary['best']}")
    return 0


def _training_run(folder: Path) -> None:
    """``export --from``: ``folder`` holds a training run, a readable ``config.json`` holding a JSON object and, if
    present, a readable ``hierarchy.json``; ``_CommandError`` otherwise, before anything is exported."""
    from core.learning.hierarchy import FILE, Hierarchy

    config = folder / "config.json"
    try:
        settings = json.loads(read_text(config, MAX_CONFIG_BYTES))
    except InputFileError as exc:
        raise _CommandError(f"--from: {shown_path(config)}: {exc}") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
        raise _CommandError(f"--from: {shown_path(config)}: not JSON ({one_line(str(exc), 100)})") from None
    if not isinstance(settings, dict):
        raise _CommandError(f"--from: {shown_path(config)}: got a JSON {type(settings).__name__}; allowed: an "
                            "object (a training run's settings)")
    try:
        Hierarchy.load(folder)
    except (OSError, ValueError, RecursionError, KeyError, TypeError) as exc:
        raise _CommandError(f"--from: {shown_path(folder / FILE)}: not a training record ({type(exc).__name__}: "
                            f"{one_line(str(exc), 100)})") from None


def _cmd_export(args: argparse.Namespace) -> int:
    from core.learning.export import export_run

    source, out = Path(args.source), Path(args.out)
    _training_run(source)
    _writable(out, "--out", folder=True)
    manifest = export_run(source, out, command=_command())
    for role, card in manifest["roles"].items():
        rule = f"rule-based: forecast + {card.get('safety_factor', 0):g} standard deviations"
        print(f"{role}: {card.get('file', rule)}")
    print(f"manifest: {Path(args.out) / 'manifest.json'}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from core.evaluation.report import evaluate, markdown, record_evaluation, write

    names = [args.scenario] if args.scenario else list(PRESETS)
    for name in names:
        if name not in PRESETS:
            raise ScenarioError(f"--scenario: got {name!r}; allowed: {', '.join(PRESETS)}")
        _check_run(PRESETS[name], args.seeds, PRESETS[name].horizon)
    out = Path(args.out)
    _writable(out, "--out", folder=True)
    if args.record:
        _writable(Path(args.models), "--models", folder=True)
    run = None if args.ray is None else _executor(args.ray)
    report = evaluate(names, args.seeds, Path(args.models), run=run)
    with _signals_held():  # the report's files and the record: all written, or none
        with _writing(out, "--out"):
            write(report, out)
        if args.record:
            record_evaluation(Path(args.models), report, command=_command())
    print(report.to_json() if args.json else markdown(report))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from core.evaluation.plots import sweep_figure
    from core.evaluation.sweep import (
        DEFAULT_GRID,
        PARAMETERS,
        grid_points,
        learned_versus_best_rule,
        parse_values,
        sweep,
        table_bytes,
    )

    if args.base not in PRESETS:
        raise ScenarioError(f"--base: got {args.base!r}; allowed: {', '.join(PRESETS)}")
    out, figure = Path(args.out), Path(args.figure) if args.figure else Path(args.out).with_suffix(".html")
    if out.suffix not in (".csv", ".parquet"):
        raise ScenarioError(f"--out: got {args.out!r}; allowed: a file name ending in .csv or .parquet")
    grid = {name: DEFAULT_GRID[name] if getattr(args, name) is None else parse_values(name, getattr(args, name))
            for name in PARAMETERS}
    points = grid_points(grid)
    for point in points:
        _check_run(PRESETS[args.base].with_num_stores(int(point["num_stores"])), args.seeds,
                   args.periods or PRESETS[args.base].horizon)
    _writable(out, "--out")
    _writable(figure, "--figure")
    run = _executor(args.ray)
    start = time.perf_counter()
    rows = sweep(grid, args.base, args.seeds, args.seed, args.periods, Path(args.models), args.bound, run)
    seconds = time.perf_counter() - start
    page = sweep_figure(learned_versus_best_rule(rows)).to_html(include_plotlyjs="cdn")
    files = {"--out": (out, table_bytes(rows, out.suffix)), "--figure": (figure, page.encode())}  # both made first
    with _signals_held():  # the table and its figure: both written, or neither
        for option, (path, data) in files.items():
            with _writing(path, option):
                write_bytes_atomic(path, data)
    print(f"{len(points)} scenarios x {len({r['policy'] for r in rows})} policies x {args.seeds} seeds in "
          f"{seconds:.1f} s ({'serial' if args.ray is None else f'Ray, {run.workers} workers'})")
    for point in learned_versus_best_rule(rows):
        print(f"  {point['point']:48s} learned {100 * point['relative']:+6.1f}% vs {point['best_rule']}")
    print(f"table: {out}\nfigure: {figure}")
    return 0


def _cmd_pipeline(args: argparse.Namespace) -> int:
    from core.evaluation.report import evaluate, markdown, record_evaluation, write
    from core.learning.training import PHASES, run_phases
    for scenario in PRESETS.values():
        _check_run(scenario, args.seeds, scenario.horizon)
    _writable(Path(args.out), "--out", folder=True)
    _writable(Path(args.models), "--models", folder=True)
    print("== 1/5 validate every preset", flush=True)
    if _cmd_validate(argparse.Namespace(scenario=None, periods=None)):
        return 1
    print("== 2/5 train all phases", flush=True)
    run_phases(_train_config(args, args.out), list(PHASES))
    print("== 3/5 export", flush=True)
    _cmd_export(argparse.Namespace(source=args.out, out=args.models))
    print("== 4/5 tune every preset's rules and record them in the manifest (tune --all --record)", flush=True)
    _tune_all(argparse.Namespace(scenario=None, seeds=8, periods=None, menu=False, capped=False, ray=None,
                                 models=args.models, record=True, json=False))
    print("== 5/5 evaluate", flush=True)
    report = evaluate(list(PRESETS), args.seeds, Path(args.models))
    with _signals_held():
        with _writing(Path(args.out) / "evaluation", "--out"):
            write(report, Path(args.out) / "evaluation")
        record_evaluation(Path(args.models), report, command=_command())
    print(markdown(report))
    return 0


def _cmd_generalise(args: argparse.Namespace) -> int:
    from core.evaluation.generalisation import (
        DEFAULT_SEEDS,
        MAX_SCENARIOS,
        MIN_SEEDS,
        generalise,
        held_out_scenarios,
        markdown,
        write,
    )
    from core.serving.models import learned_mix

    seeds = DEFAULT_SEEDS if args.demand_paths is None else args.demand_paths
    for name, value, (low, high) in (("scenarios", args.scenarios, (1, MAX_SCENARIOS)),
                                     ("seeds", seeds, (MIN_SEEDS, MAX_SEEDS))):
        if not low <= value <= high:
            raise ScenarioError(f"--{name}: got {value}; allowed: an integer from {low} to {high:,}")
    for scenario in held_out_scenarios(args.scenarios, args.seed):
        _check_run(scenario, seeds, scenario.horizon)
    learned_mix(Path(args.models))  # a missing or damaged model set fails here, before any scenario is evaluated
    if args.out:
        _writable(Path(args.out), "--out", folder=True)
    run = None if args.ray is None else _executor(args.ray)
    report = generalise(args.scenarios, args.seed, seeds, Path(args.models), run)
    if args.out:
        with _signals_held(), _writing(Path(args.out), "--out"):
            write(report, Path(args.out))
    print(report.to_json() if args.json else markdown(report))
    return 0


def _cmd_zipkin(args: argparse.Namespace) -> int:
    from core.evaluation.zipkin import LEADS, PENALTIES, instance, markdown, summary, to_json, zipkin_table
    from core.serving.models import learned_mix

    for lead in LEADS:
        for penalty in PENALTIES:
            _check_run(instance(lead, penalty), args.seeds, instance(lead, penalty).horizon)
    learned_mix(Path(args.models))  # a missing or damaged model set fails here, before any instance is evaluated
    rows = zipkin_table(args.seeds, Path(args.models), None if args.ray is None else _executor(args.ray))
    if args.json:
        print(to_json(rows))
    else:
        worst = summary(rows)
        print(markdown(rows))
        print(f"\nworst: {100 * worst['worst_vs_optimum']:+.2f}% against the optimum ({worst['with_optimum']} of "
              f"{worst['instances']} instances have one), {100 * worst['worst_vs_capped']:+.2f}% against tuned capped "
              "base-stock")
    return 0


def ray_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the (scenario, policy, block of seeds) tasks on Ray: a local instance (2 CPUs) without "
                        "ADDRESS, else the cluster at ADDRESS (see `ray start --head`); same results as without")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="HMARL retail inventory lab")
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
    p.add_argument("--scenario", default=None, help="preset name or JSON file (default: steady)")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--periods", type=int, default=None)
    p.add_argument("--menu", action="store_true",
                   help="the best constant action-menu entries (forecast base-stock) instead of base-stock levels")
    p.add_argument("--capped", action="store_true", help="capped base-stock (level, cap) for a single store")
    p.add_argument("--all", action="store_true",
                   help="every tuned rule of the registry for every preset (and the Live page's year of it), as the "
                        "app tunes them")
    p.add_argument("--record", action="store_true",
                   help="with --all: write them into the models folder's manifest (tuned_rules), where the app and "
                        "evaluate read them instead of tuning")
    p.add_argument("--models", default=str(EXPORTED_MODELS), help="with --record: folder of exported policies")
    ray_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_tune)

    p = sub.add_parser("optimum", help="exact optimal cost of one store with an ample source (dynamic programme)")
    p.add_argument("--scenario", default="lost_sales_textbook", help="preset name or JSON file")
    p.add_argument("--level", type=int, help="evaluate base-stock at this level instead of optimising")
    p.add_argument("--cap", type=int, help="with --level: capped base-stock, at most this many units per order")
    p.add_argument("--policy-out", help="write the policy table (state, inventory position, order) as CSV")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_optimum)

    def training_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--timesteps", type=int, default=None,
                       help="agent transitions per phase (default: 7M for the stores, 3M for the others)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--no-progress", action="store_true", help="no progress bar")

    p = sub.add_parser("train", help="hierarchical PPO training, phase by phase")
    p.add_argument("--phase", choices=["0", "1", "2", "3", "4", "all"], default="all")
    p.add_argument("--out", default="runs/latest", help="output folder (resumes what it finds there)")
    p.add_argument("--runs", type=int, default=1,
                   help="independent runs with seeds SEED, SEED+1, ... in OUT/seed<N>/ (best by held-out cost: "
                        "OUT/best.json)")
    p.add_argument("--scenario", default=None,
                   help="a preset or scenario JSON file to train and accept on alone, instead of randomised "
                        "scenarios (a specialist: what the features and menu can learn on one setting)")
    training_options(p)
    ray_option(p)
    p.set_defaults(run=_cmd_train)

    p = sub.add_parser("export", help="export a training run's policies to ONNX")
    p.add_argument("--from", dest="source", default="runs/latest", help="training run folder")
    p.add_argument("--out", default=str(EXPORTED_MODELS))
    p.set_defaults(run=_cmd_export)

    p = sub.add_parser("evaluate", help="every policy on every preset, common random numbers, 95%% intervals")
    p.add_argument("--scenario", help="one preset (default: all)")
    p.add_argument("--seeds", type=int, default=30)
    p.add_argument("--models", default=str(EXPORTED_MODELS), help="folder of exported policies")
    p.add_argument("--out", default="runs/evaluation")
    ray_option(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--record", action="store_true",
                   help="also put the summary in the models folder's manifest.json (what the app's About page shows)")
    p.set_defaults(run=_cmd_evaluate)

    p = sub.add_parser("sweep", help="every registered policy on a grid of scenarios: where does learning pay?")
    p.add_argument("--base", default="steady", help="preset the grid varies")
    for name, help_text in (("dispersion", "demand coefficients of variation"),
                            ("warehouse_to_store", "store lead times, days"), ("num_stores", "numbers of stores"),
                            ("capacity_factor", "production capacities, multiples of mean demand"),
                            ("cost_ratio", "stockout cost per unit over store holding cost per unit-day")):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, help=f"{help_text}, comma-separated (default: "
                       "a small grid, see core/evaluation/sweep.py)")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--seed", type=int, default=1_000_000, help="first seed of the common demand")
    p.add_argument("--periods", type=int, default=None, help="days per run (default: the base's horizon)")
    p.add_argument("--models", default=str(EXPORTED_MODELS), help="folder of exported policies")
    p.add_argument("--bound", action="store_true", help="also the clairvoyant bound per scenario (slow)")
    p.add_argument("--out", default="runs/sweep.csv", help="the table (.csv or .parquet)")
    p.add_argument("--figure", default=None, help="the plotly figure (default: the table's name with .html)")
    ray_option(p)
    p.set_defaults(run=_cmd_sweep)

    p = sub.add_parser("generalise", help="the learned policies against each scenario's best rule on held-out "
                                          "scenarios of the app's slider ranges")
    p.add_argument("--scenarios", type=int, default=32, help="held-out scenarios, 1 to 256")
    p.add_argument("--seed", type=int, default=0, help="which held-out set (drawn from seeds training, phase "
                                                       "acceptance and evaluate never use)")
    # not ARGUMENT_RANGES' "seeds" (from 1): from 2, checked by _cmd_generalise
    p.add_argument("--seeds", type=int, dest="demand_paths", metavar="SEEDS", default=None,
                   help="common demand paths per scenario, 2 to 10,000 (default: 16)")
    p.add_argument("--models", default=str(EXPORTED_MODELS), help="folder of exported policies")
    p.add_argument("--out", default=None, help="also write generalisation.md and generalisation.json to this folder")
    ray_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_generalise)

    p = sub.add_parser("zipkin", help="the learned policies against the exact optimum and the tuned rules on Zipkin's "
                                      "lost-sales instances")
    p.add_argument("--seeds", type=int, default=30, help="common demand paths per instance")
    p.add_argument("--models", default=str(EXPORTED_MODELS), help="folder of exported policies")
    ray_option(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=_cmd_zipkin)

    p = sub.add_parser("pipeline", help="validate, train all phases, export, evaluate")
    p.add_argument("--out", default="runs/pipeline", help="training run folder")
    p.add_argument("--models", default=str(EXPORTED_MODELS))
    p.add_argument("--seeds", type=int, default=30, help="evaluation seeds per preset")
    training_options(p)
    p.set_defaults(run=_cmd_pipeline)

    p = sub.add_parser("bench", help="throughput of the twin and the tuner")
    p.add_argument("--scenario", default="steady")
    p.add_argument("--json", action="store_true")
    p.add_argument("--head-to-head", action="store_true", help="time the head-to-head page's server-side work")
    p.add_argument("--pages", action="store_true",
                   help="time every app page's first load and interactions as the server runs them (streamlit "
                        "AppTest script runs, no network or drawing); with --browser, in Chromium instead")
    p.add_argument("--repeats", type=int, default=3, help="with --pages: repeats per figure (the median is printed)")
    p.add_argument("--deploy", action="store_true",
                   help="store decisions per second of the batch deployment (in memory, and the script end to end "
                        "with its peak memory) and the speed-up of a 4-worker local Ray sweep over the serial one")
    p.add_argument("--rows", type=int, default=1_000_000,
                   help="with --deploy: rows of the end-to-end run (1 to 100,000,000; in memory at most "
                        "1,000,000)")
    p.add_argument("--no-sweep", action="store_true", help="with --deploy: leave the sweep speed-up out")
    p.add_argument("--browser", action="store_true",
                   help="with --pages: instead of the server-side runs, what a person waits for in Chromium: each "
                        "interaction done with clicks and keys, timed until the app is idle and its charts drawn, "
                        "and Pause as the days past the day on screen; a fresh server each repeat")
    p.add_argument("--interaction", action="append", metavar="ID",
                   help="with --pages --browser: only this interaction, an id from the table in "
                        "core/tools/browser_bench.py such as store-policy (repeatable; default: all)")
    p.set_defaults(run=_cmd_bench)

    p = sub.add_parser("screenshots", help="serve the app and write the README's pictures with Chromium")
    p.add_argument("--out", default="docs", help="folder for live_twin.png, live_20_stores.png, head_to_head.png")
    p.add_argument("--log", default="artifacts/screenshots_server.log", help="the app server's output")
    p.add_argument("--preset", choices=list(PRESETS), help="the scenario shown (default: thin_margin)")
    p.set_defaults(run=_cmd_screenshots)
    return parser


def _in_range(args: argparse.Namespace) -> None:
    for name, (low, high) in ARGUMENT_RANGES.items():
        value = getattr(args, name, None)
        if value is not None and not low <= value <= high:
            raise ScenarioError(f"--{name}: got {one_line(str(value), 60)}; allowed: an integer from {low} to {high:,}")


class _Printed(logging.Handler):
    """Prints each message to whatever standard output is when it is logged."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), flush=True)


def _show_progress() -> None:
    """The library's progress messages (``logging`` under ``core``) on standard output, once."""
    logger = logging.getLogger("core")
    if not any(isinstance(h, _Printed) for h in logger.handlers):
        logger.addHandler(_Printed())
        logger.setLevel(logging.INFO)


def _stderr(line: str, code: int) -> int:
    print(line, file=sys.stderr)
    return code


def _os_error(exc: OSError) -> str:
    """An ``OSError`` that no command turned into its own message, as one line: the path and the reason."""
    reason = exc.strerror or one_line(str(exc), 200) or type(exc).__name__
    return reason if exc.filename is None else f"{shown_path(exc.filename)}: {reason}"


def _stdout_closed() -> int:
    """Standard output's reader has gone (``| head``): what is still buffered, and the interpreter's last flush,
    go to /dev/null, and the command ends quietly with ``CLOSED_PIPE``."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor: a test's captured output
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    return CLOSED_PIPE


def _run(argv: list[str] | None) -> int:
    """Parse and run one command line; bad input, a closed standard output or an unreadable or unwritable path
    give their exit codes (see the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
        _show_progress()
        run: Callable[[argparse.Namespace], int] = args.run
        _in_range(args)
        _check_ray_address(args)
        code = run(args)
        sys.stdout.flush()  # a closed pipe fails here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        return _stdout_closed()
    except (_ArgumentError, _CommandError, ScenarioError, PolicySpecError, DemandFileError, PolicyLoadError) as exc:
        return _stderr(f"error: {one_line(str(exc))}", BAD_INPUT)
    except OSError as exc:  # a file read or written past the commands' own checks
        return _stderr(f"error: {_os_error(exc)}", BAD_INPUT)


def _stopped(received: list[int]) -> int:
    """Ctrl-C or SIGTERM stopped the command: one line, and 128 + the signal."""
    if received and received[0] == signal.SIGTERM:
        return _stderr("terminated", TERMINATED)
    return _stderr("interrupted", INTERRUPTED)


def main(argv: list[str] | None = None) -> int:
    """Run one command line and return its exit code (see the module docstring)."""
    with _stop_signals() as received:
        try:
            return _run(argv)
        except KeyboardInterrupt:
            return _stopped(received)
        except Exception:
            if not received:
                raise
            return _stopped(received)  # what the signal broke on its way (an ImportError, Ray's SystemError)


if __name__ == "__main__":
    sys.exit(main())
