"""Throughput benchmarks of the twin and the tuner (``python -m core bench``).

An agent-step is one agent's period: with 3 stores a chain has 5 agents, so one call of
``step`` on B chains is 5 B agent-steps. Timed work is what an environment does every period:
the twin's step plus the reconciliation of every agent's reward. Each figure is the median of
several repeats, so a busy moment on a shared machine moves it little.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.agents.observations import FEATURES, observe
from core.agents.roles import ROLES
from core.agents.rules import reorder_point_mix
from core.agents.tuning import tune_base_stock
from core.serving.guard import read_model
from core.serving.manifest import file_inside, role_card
from core.serving.models import EXPORTED_MODELS, learned_policy, load_hierarchy, load_manifest, load_policy
from core.serving.registry import Sources, mix_of, tuned_menu, uniform
from core.simulation.demand import sample_demand
from core.simulation.forecast import Forecast
from core.simulation.presets import get_preset
from core.simulation.reconcile import reconcile
from core.simulation.scenario import Scenario
from core.simulation.twin import reset, step
from core.simulation.untrusted import one_line


def step_rate(scenario: Scenario, batch_size: int, periods: int, repeats: int = 5) -> dict[str, float]:
    """Median chain-steps and agent-steps per second of step + reward, fixed actions."""
    demand = sample_demand(scenario, batch_size, np.random.default_rng(0), periods)
    start = reset(scenario, batch_size)
    actions = reorder_point_mix().actions(start, scenario)
    seconds = []
    for _ in range(repeats):
        state = start
        begin = time.perf_counter()
        for t in range(periods):
            state, flows = step(state, actions, demand[:, t], scenario)
            reconcile(flows, state, scenario).reward  # noqa: B018 - computing the reward is the point
        seconds.append((time.perf_counter() - begin) / periods)
    per_step = statistics.median(seconds)
    agents = scenario.num_stores + 2
    return {"batch_size": batch_size, "chain_steps_per_s": batch_size / per_step,
            "agent_steps_per_s": agents * batch_size / per_step, "microseconds_per_step": per_step * 1e6}


def tuner_seconds(scenario: Scenario, repeats: int = 3) -> float:
    """Median wall-clock seconds of ``tune_base_stock`` on the scenario."""
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        tune_base_stock(scenario)
        seconds.append(time.perf_counter() - begin)
    return statistics.median(seconds)


def run_bench(scenario_name: str = "steady") -> dict[str, object]:
    scenario = get_preset(scenario_name)
    return {
        "scenario": scenario_name,
        "agents_per_chain": scenario.num_stores + 2,
        "single_chain": step_rate(scenario, 1, 2000),
        "batched": step_rate(scenario, 4096, 100),
        "tuner_seconds": tuner_seconds(scenario),
    }


def run_serving_bench() -> dict[str, object]:
    """Decision latency and the one-year recompute, on the shipped policies."""
    return {"decision_latency": decision_latency(), "one_year_recompute_seconds": recompute_seconds()}


def _percentiles(seconds: list[float]) -> dict[str, float]:
    us = np.array(seconds) * 1e6
    return {"median_us": float(np.median(us)), "p99_us": float(np.percentile(us, 99))}


def decision_latency(models: Path = EXPORTED_MODELS, repeats: int = 2000) -> dict[str, object]:
    """Per-day decision of every agent of one chain (3 stores): observations excluded, the
    networks only: onnxruntime in one call (``hierarchy_policy.onnx``, what ``learned_mix`` uses)
    and in one call per role; torch, the exported layers rebuilt from the checked ONNX weights; and
    SB3's ``predict`` on a new policy of the same layer sizes (random weights: the same work, not the
    same decisions). Nothing the manifest names is unpickled: no training run is read."""
    scenario = get_preset("steady")
    state = reset(scenario, 1)
    forecast = Forecast.of(scenario)
    tuned = tuned_menu(scenario)
    obs = {role: observe(role, state, scenario, forecast, tuned).reshape(-1, len(FEATURES[role])) for role in ROLES}
    manifest = load_manifest(models)
    learned = [r for r in ROLES if role_card(manifest, r).kind == "learned"]
    result: dict[str, object] = {"learned_roles": learned, "agents": sum(len(obs[r]) for r in learned)}
    choosers = {r: load_policy(r, models, manifest) for r in learned}

    def timed(decide) -> dict[str, float]:
        for _ in range(50):
            decide()
        seconds = []
        for _ in range(repeats):
            begin = time.perf_counter()
            decide()
            seconds.append(time.perf_counter() - begin)
        return _percentiles(seconds)

    if learned and manifest.get("hierarchy"):
        joint = load_hierarchy(models, manifest, choosers)
        result["onnxruntime_one_call"] = timed(lambda: joint.run(obs))
    result["onnxruntime"] = timed(lambda: [choosers[r].run(obs[r]) for r in learned])
    layers = {r: onnx_layers(read_model(file_inside(models, role_card(manifest, r).file, f"manifest {r}")))
              for r in learned}
    if learned and all(layers.values()):
        result.update(torch_latency({r: layers[r] for r in learned}, obs, choosers, timed))
    return result


def onnx_layers(model: bytes) -> dict[str, np.ndarray] | None:
    """The weights of a graph laid out as ``core.learning.export.Actor`` writes it (clip, Gemm + Tanh layers,
    a Gemm head plus a Gemm of the clipped observation (the tuned safety factor's part), ArgMax, Softmax), named as
    the Actor names them, read off the Gemm nodes' inputs (the exporter leaves out a zero bias, such as a fresh
    policy's); None for any other graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_model_from_string(model).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    operators = [node.op_type for node in graph.node]
    hidden = operators.count("Tanh")
    layout = ["Max", "Min", *["Gemm", "Tanh"] * hidden, "Gemm", "Gemm", "Add", "ArgMax", "Softmax"]
    if operators != layout:
        return None
    names = [*(f"features.{2 * i}" for i in range(hidden)), "head", "tuned"]
    gemms = [node for node in graph.node if node.op_type == "Gemm"]
    clips = graph.node[:2]
    plain = {"alpha": 1.0, "beta": 1.0, "transA": 0}
    if any(onnx.helper.get_attribute_value(a) != plain[a.name] for node in gemms for a in node.attribute
           if a.name in plain):
        return None
    weights = {"low": constants.get(clips[0].input[1]), "high": constants.get(clips[1].input[1])}
    for name, node in zip(names, gemms, strict=True):
        transposed = any(a.name == "transB" and a.i for a in node.attribute)
        weight = constants.get(node.input[1])
        weights[f"{name}.weight"] = None if weight is None else weight if transposed else weight.T
        if name != "tuned" and weight is not None:
            bias = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            weights[f"{name}.bias"] = np.zeros(len(weights[f"{name}.weight"]), weight.dtype) if bias is None else bias
        elif len(node.input) > 2 and node.input[2]:
            return None  # the tuned part has no bias
    return None if any(value is None for value in weights.values()) else weights


def torch_latency(layers: dict[str, dict[str, np.ndarray]], obs: dict[str, np.ndarray], choosers: dict,
                  timed) -> dict[str, object]:
    """torch and SB3 ``predict`` figures for the learned roles' networks (see ``decision_latency``)."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common.policies import ActorCriticPolicy
    from torch import nn

    from core.agents.menus import NUM_ACTIONS
    from core.agents.observations import CLIP
    from core.learning.policies import Standardize

    torch.set_num_threads(1)
    actors, policies = {}, {}
    for role, weights in layers.items():
        hidden = len([name for name in weights if name.startswith("features.") and name.endswith(".weight")])
        modules: list[nn.Module] = []
        for i in range(hidden):
            out_features, in_features = weights[f"features.{2 * i}.weight"].shape
            modules += [nn.Linear(in_features, out_features), nn.Tanh()]
        head = nn.Linear(*reversed(weights["head.weight"].shape))
        tuned = nn.Linear(*reversed(weights["tuned.weight"].shape), bias=False)
        actor = nn.ModuleDict({"features": nn.Sequential(*modules), "head": head, "tuned": tuned}).eval()
        actor.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in weights.items() if k not in ("low", "high")})
        actors[role] = (actor, torch.from_numpy(weights["low"].copy()), torch.from_numpy(weights["high"].copy()))
        width = len(FEATURES[role])
        policies[role] = ActorCriticPolicy(
            gym.spaces.Box(-CLIP, CLIP, (width,), np.float32), gym.spaces.Discrete(NUM_ACTIONS), lambda _: 0.0,
            net_arch=[weights[f"features.{2 * i}.weight"].shape[0] for i in range(hidden)],
            features_extractor_class=Standardize,
            features_extractor_kwargs={"mean": [0.0] * width, "std": [1.0] * width})
    tensors = {role: torch.as_tensor(obs[role]) for role in layers}

    def torch_decide() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        decided = {}
        with torch.no_grad():
            for role, (actor, low, high) in actors.items():
                clipped = torch.minimum(torch.maximum(tensors[role], low), high)
                logits = actor["head"](actor["features"](clipped)) + actor["tuned"](clipped)
                decided[role] = torch.argmax(logits, dim=-1), torch.softmax(logits, dim=-1)
        return decided

    for role, (_, probabilities) in torch_decide().items():  # the rebuilt actor is the exported one
        if np.abs(probabilities.numpy() - choosers[role].run(obs[role])[1]).max() > 1e-5:
            return {"torch_skipped": f"the {role} actor rebuilt in torch differs from its ONNX file"}
    return {"torch": timed(torch_decide),
            "sb3_predict": timed(lambda: [policies[r].predict(obs[r], deterministic=True) for r in layers])}


def recompute_seconds(repeats: int = 5) -> float:
    """Median seconds for the Live page's work after a slider move: build the scenario and run
    one chain for a year with the shipped policies at every echelon."""
    from core.app.live import Controls, apply_controls, run_year

    sources = Sources(learned={r: learned_policy(r).choose for r in ROLES})
    seconds = []
    for i in range(repeats):
        begin = time.perf_counter()
        scenario = apply_controls("seasonal", Controls(demand_scale=1.0 + 0.05 * i, seasonality_amplitude=0.5))
        run_year(scenario, mix_of(uniform("learned"), scenario, sources), seed=i)
        seconds.append(time.perf_counter() - begin)
    return statistics.median(seconds)


def head_to_head_seconds(scenario_name: str = "steady", first: str = "learned", second: str = "reorder_point",
                         repeats: int = 5) -> dict[str, float]:
    """Median seconds of the head-to-head page's server-side work (``core.app.compare``), every role of the
    first mix on ``first`` and of the second on ``second``, served as the page serves them (the shipped ONNX
    policies one session per role). ``first_visit``: both mixes on the 50 evaluation paths plus the
    headline, tables and chart for 50 seeds, what a new preset or the first load costs once the mixes are built
    (a tuned rule tunes once per scenario, before: not timed); ``mix_change``: one mix simulated again plus the
    same; ``seeds_or_path_change``: the headline, tables and chart alone (the simulations are cached);
    ``references``: the clairvoyant bound of the 50 paths and the exact optimum, solved on request."""
    from core.app import compare
    from core.evaluation.plots import cumulative_cost_figure

    scenario = get_preset(scenario_name)
    sources = Sources(learned={r: learned_policy(r).choose for r in ROLES})
    choices = {"first": uniform(first), "second": uniform(second)}
    mixes = {name: mix_of(keys, scenario, sources) for name, keys in choices.items()}
    names = compare.mix_names(choices["first"], choices["second"])

    def median_seconds(work, times: int = repeats) -> float:
        seconds = []
        for _ in range(times):
            begin = time.perf_counter()
            work()
            seconds.append(time.perf_counter() - begin)
        return statistics.median(seconds)

    def present(a: compare.PathResults, b: compare.PathResults) -> None:
        compare.headline(names, a, b, compare.PATHS)
        compare.summary_rows(names, a, b, compare.PATHS)
        compare.path_rows(names, a, b, 0)
        cumulative_cost_figure({name: run.daily_cost[0] for name, run in zip(names, (a, b), strict=True)}, "")

    runs = {name: compare.simulate(scenario, mix) for name, mix in mixes.items()}
    return {
        "first_visit": median_seconds(lambda: present(*(compare.simulate(scenario, m) for m in mixes.values()))),
        "mix_change": median_seconds(lambda: present(compare.simulate(scenario, mixes["first"]), runs["second"])),
        "seeds_or_path_change": median_seconds(lambda: present(runs["first"], runs["second"])),
        "references": median_seconds(lambda: compare.references(scenario), times=max(1, repeats // 2)),
    }


APP = Path(__file__).resolve().parents[1] / "streamlit_app.py"


def _cold_caches() -> None:
    """Forget every cached result (Streamlit's caches and the registry's tuned rules): a first visit's work."""
    import streamlit as st

    from core.serving import registry

    st.cache_data.clear()
    st.cache_resource.clear()
    for tuned in (registry.tuned_mix, registry.tuned_menu, registry.tuned_capped_mix):
        tuned.cache_clear()


def _page_steps() -> dict[str, list[tuple[str, Callable[[Any], Any]]]]:
    """Per page (its file under ``pages/``), the interactions timed in order: a name and the widget change
    (the script run after it is what is timed). The first entry of each page is its first load."""
    def at_page(name: str):
        return lambda at: at.switch_page(f"pages/{name}")

    return {
        "live_twin.py": [
            ("first load (new session, cold caches)", lambda at: at),
            ("preset thin_margin -> seasonal", lambda at: at.selectbox(key="live_preset").set_value("seasonal")),
            ("stores 3 -> 20", lambda at: at.slider(key="live_num_stores").set_value(20)),
            ("store policy -> reorder point", lambda at: at.selectbox(key="live_store").set_value("reorder_point")),
            ("demand slider +0.3", lambda at: at.slider(key="live_demand_scale").set_value(
                round(at.slider(key="live_demand_scale").value + 0.3, 2))),
            ("comparison mix -> reorder point", lambda at: at.selectbox(key="live_compare").set_value("reorder_point")),
        ],
        "head_to_head.py": [
            ("first load (cold caches, 50 paths x 2 mixes)", at_page("head_to_head.py")),
            ("preset -> seasonal", lambda at: at.selectbox(key="h2h_preset").set_value("seasonal")),
            ("second mix, store -> reorder point",
             lambda at: at.selectbox(key="h2h_b_store").set_value("reorder_point")),
            ("summary paths 50 -> 20", lambda at: at.slider(key="h2h_seeds").set_value(20)),
            ("summary paths 20 -> 50", lambda at: at.slider(key="h2h_seeds").set_value(50)),
            ("demand path shown 0 -> 7", lambda at: at.number_input(key="h2h_seed").set_value(7)),
            ("clairvoyant bound on (50 LPs)", lambda at: at.toggle(key="h2h_bound").set_value(True)),
        ],
        "policy_inspector.py": [
            ("first load (cold caches)", at_page("policy_inspector.py")),
            ("demand level 40 -> 120", lambda at: at.slider(key="inspect_demand").set_value(120.0)),
            ("lead time 2 -> 4", lambda at: at.slider(key="inspect_lead").set_value(4)),
            ("grid point on hand -> 0", lambda at: at.select_slider(key="inspect_i").set_value(0)),
        ],
        "train_and_export.py": [
            ("first load (cold caches)", at_page("train_and_export.py")),
            ("upload role store -> warehouse", lambda at: at.selectbox(key="upload_role").set_value("warehouse")),
            ("training budget -> 50,000", lambda at: at.select_slider(key="train_budget").set_value(50_000)),
        ],
        "about.py": [("first load (cold caches)", at_page("about.py"))],
    }


def page_seconds(repeats: int = 3, timeout: float = 300.0) -> dict[str, dict[str, float]]:
    """Median server-side seconds of every page's first load and of each of its interactions.

    A script run under ``streamlit.testing.v1.AppTest`` is the run the server does for a browser session (the
    same script, session state, widgets and caches; no network or drawing): each interaction is the widget
    change then ``run()``, timed. Every repeat starts from cold caches (and a page other than the Live page
    is first reached from a fresh session on the Live page, then its caches are cleared again), so the figures
    are a first visitor's. Raises ``RuntimeError`` naming the step if a run raises or shows an error.
    """
    from streamlit.testing.v1 import AppTest

    seconds: dict[str, dict[str, list[float]]] = {}
    for page, steps in _page_steps().items():
        times = seconds.setdefault(page, {name: [] for name, _ in steps})
        for _ in range(repeats):
            _cold_caches()
            at = AppTest.from_file(str(APP), default_timeout=timeout)
            if page != "live_twin.py":
                at.run()
                _cold_caches()
            for name, change in steps:
                change(at)
                begin = time.perf_counter()
                at.run()
                times[name].append(time.perf_counter() - begin)
                if at.exception or at.error:
                    problems = [e.message for e in at.exception] + [e.value for e in at.error]
                    raise RuntimeError(f"{page}, {name}: {one_line(str(problems), 300)}")
    return {page: {name: statistics.median(values) for name, values in times.items()}
            for page, times in seconds.items()}


def deploy_module(models: Path = EXPORTED_MODELS) -> Any:
    """``exported_models/deploy_policy.py``, the standalone script, loaded as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("deploy_policy", Path(models) / "deploy_policy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def twin_store_table(rows: int, stores: int = 50, chains: int = 2000) -> Any:
    """At least ``rows`` raw store rows (``core.serving.deployment.store_rows``) from reorder-point runs of
    ``steady`` with ``stores`` stores, a day of ``chains`` chains at a time, cut to ``rows``."""
    import pyarrow as pa

    from core.serving.deployment import store_rows

    scenario = get_preset("steady").with_num_stores(stores)
    days = -(-rows // (stores * chains))
    demand = sample_demand(scenario, chains, np.random.default_rng(5), days + 7)
    state, forecast, mix, tables = reset(scenario, chains), Forecast.of(scenario), reorder_point_mix(), []
    for t in range(days + 7):
        if t >= 7:  # past the opening week
            tables.append(pa.table(store_rows(state, scenario, forecast)))
        state, _ = step(state, mix.actions(state, scenario), demand[:, t], scenario)
    return pa.concat_tables(tables).slice(0, rows)


IN_MEMORY_ROWS = 1_000_000  # at most this many rows are decided in memory by ``deploy_rate``


def deploy_rate(rows: int = 1_000_000, repeats: int = 3) -> dict[str, float]:
    """Store decisions per second of the batch deployment. In memory: checks, features, onnxruntime on one thread
    and quantities on ``min(rows, IN_MEMORY_ROWS)`` twin rows (median of ``repeats``). End to end: the script run
    as a process on a Parquet file of ``rows`` rows (``write_twin_parquet``) to the orders CSV, once, with its
    wall-clock seconds and peak resident memory."""
    deploy = deploy_module()
    table = twin_store_table(min(rows, IN_MEMORY_ROWS))
    decider = deploy.StoreDecider(EXPORTED_MODELS)
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        decider.decide(deploy.checked_states(table))
        seconds.append(time.perf_counter() - begin)
    with tempfile.TemporaryDirectory() as folder:
        states, out = Path(folder) / "states.parquet", Path(folder) / "orders.csv"
        write_twin_parquet(table, rows, states)
        end_to_end, peak_kb = process_run([sys.executable, str(EXPORTED_MODELS / "deploy_policy.py"),
                                           "--input", str(states), "--output", str(out)])
    return {"rows": rows, "in_memory_rows": table.num_rows,
            "decisions_per_s": table.num_rows / statistics.median(seconds),
            "end_to_end_decisions_per_s": rows / end_to_end, "end_to_end_seconds": end_to_end,
            "end_to_end_peak_rss_mb": peak_kb / 1024}


def write_twin_parquet(table: Any, rows: int, path: Path) -> None:
    """``rows`` rows to Parquet at ``path``: ``table`` written again and again (the last time cut), a row group a
    time, so a file of any size is written without holding more than ``table``."""
    import pyarrow.parquet as pq

    with pq.ParquetWriter(path, table.schema) as writer:
        for start in range(0, rows, table.num_rows):
            writer.write_table(table.slice(0, rows - start))


PEAK_OF_CHILD = """import os, subprocess, sys, time
begin = time.perf_counter()
child = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(child.pid, 0)
print(time.perf_counter() - begin, usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""  # run by a small Python process: see ``process_run``


def process_run(command: list[str]) -> tuple[float, int]:
    """Wall-clock seconds and peak resident memory (kB, Linux's ``ru_maxrss``) of ``command`` run as a process.
    A small Python process starts it and reads its figures (``PEAK_OF_CHILD``, ``os.wait4``): Linux carries a
    parent's peak into its child's ``ru_maxrss`` across fork and exec, so a child of this process (which holds
    the twin tables) would report this process's peak, and ``RUSAGE_CHILDREN`` is the largest over every child
    ever waited for. Raises ``RuntimeError`` with the last line on stderr if the command fails."""
    with tempfile.TemporaryFile() as errors:
        result = subprocess.run([sys.executable, "-c", PEAK_OF_CHILD, *command], stdout=subprocess.PIPE,
                                stderr=errors, text=True)
        if result.returncode:
            errors.seek(0)
            lines = errors.read().decode(errors="replace").strip().splitlines() or ["(nothing on stderr)"]
            raise RuntimeError(f"{one_line(' '.join(command), 200)} exited {result.returncode}: "
                               f"{one_line(lines[-1], 300)}")
    seconds, peak_kb = result.stdout.split()
    return float(seconds), int(peak_kb)


SPEEDUP_GRID = {"dispersion": (0.2, 0.8), "warehouse_to_store": (1, 3), "num_stores": (3,), "capacity_factor": (1.5,),
                "cost_ratio": (4.0, 40.0)}


def sweep_speedup(workers: int = 4, seeds: int = 8, periods: int = 120) -> dict[str, float]:
    """Seconds of a small sweep (``SPEEDUP_GRID``) run serially and on a local Ray of ``workers`` CPUs (its
    start-up timed apart), and the speed-up; both give the same table."""
    import ray

    from core.evaluation.distributed import RayExecutor
    from core.evaluation.sweep import sweep

    begin = time.perf_counter()
    serial = sweep(SPEEDUP_GRID, seeds=seeds, periods=periods)
    serial_seconds = time.perf_counter() - begin
    begin = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        run = RayExecutor()
        startup = time.perf_counter() - begin
        begin = time.perf_counter()
        distributed = sweep(SPEEDUP_GRID, seeds=seeds, periods=periods, run=run)
        ray_seconds = time.perf_counter() - begin
    finally:
        ray.shutdown()
    return {"workers": workers, "serial_seconds": serial_seconds, "ray_seconds": ray_seconds,
            "ray_startup_seconds": startup, "speedup": serial_seconds / ray_seconds,
            "same_table": float(str(serial) == str(distributed))}
