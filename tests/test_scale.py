"""Beyond one machine: evaluate, tune and sweep on a local Ray (2 CPUs) give the serial path's numbers, and the
batch deployment (``exported_models/deploy_policy.py --input``) orders what the twin's served policies order."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from core.agents.observations import FEATURES, TUNED, observe
from core.agents.tuning import tune_base_stock
from core.cli import main
from core.evaluation.distributed import RayExecutor, SerialExecutor, per_seed, policy_job
from core.evaluation.report import LEARNED, evaluate_preset
from core.evaluation.sweep import sweep
from core.serving.deployment import (
    EXAMPLE_OBSERVATION,
    example_observation,
    example_state,
    store_rows,
    write_example_observation,
)
from core.serving.models import EXPORTED_MODELS, learned_mix, learned_policy
from core.serving.registry import Sources, mix_of, scenario_tuning, uniform
from core.simulation.demand import sample_demand
from core.simulation.forecast import Forecast
from core.simulation.presets import PRESETS
from core.simulation.rollout import kpis, rollout
from core.simulation.twin import reset, step

DEPLOY = EXPORTED_MODELS / "deploy_policy.py"
SHORT = dataclasses.replace(PRESETS["steady"], horizon=40)  # short runs keep the file under a minute
TINY_GRID = {"dispersion": (0.3,), "warehouse_to_store": (1, 2), "num_stores": (2,), "capacity_factor": (1.5,),
             "cost_ratio": (10.0,)}


def _deploy_module():
    spec = importlib.util.spec_from_file_location("deploy_policy", DEPLOY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


deploy = _deploy_module()


@pytest.fixture(scope="module")
def ray_run():
    """A local Ray with 2 CPUs for the module, shut down after it."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield RayExecutor()
    finally:
        ray.shutdown()


def same(a: object, b: object) -> bool:
    """Equal to the last bit, NaN equal to NaN (through JSON, which writes both as NaN)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def test_seed_blocks_give_each_chain_the_kpis_of_one_batched_rollout() -> None:
    """Cut into blocks of 2 seeds, every policy's per-seed KPIs are those of one rollout on all seeds."""
    policies = {"reorder_point": uniform("reorder_point"), **LEARNED}
    demand = sample_demand(SHORT, 5, np.random.default_rng(7))
    whole = {name: kpis(rollout(SHORT, mix_of(choices, SHORT, Sources()), demand))
             for name, choices in policies.items()}
    blocked = per_seed(SerialExecutor(), {name: policy_job(SHORT, choices, 5, 7) for name, choices in policies.items()},
                       per_block=2)
    for name in policies:
        for kpi, values in whole[name].items():
            np.testing.assert_array_equal(blocked[name][kpi], values, err_msg=f"{name} {kpi}")


def test_evaluate_on_ray_equals_the_serial_evaluation(ray_run: RayExecutor) -> None:
    policies = {"reorder_point": uniform("reorder_point"), "tuned_base_stock": uniform("tuned_base_stock"),
                "learned_hierarchy": LEARNED["learned_hierarchy"]}
    serial = evaluate_preset(SHORT, 6, EXPORTED_MODELS, policies=policies)
    distributed = evaluate_preset(SHORT, 6, EXPORTED_MODELS, policies=policies, run=ray_run, per_block=2)
    assert same(dataclasses.asdict(serial), dataclasses.asdict(distributed))
    assert serial.bound.mean <= min(v["cost_per_day"].mean for v in serial.policies.values())


def test_tune_on_ray_equals_the_serial_tuner(ray_run: RayExecutor) -> None:
    from core.evaluation.distributed import candidate_costs_on

    serial = tune_base_stock(SHORT, seeds=4, periods=30)
    distributed = tune_base_stock(SHORT, seeds=4, periods=30, costs_of=candidate_costs_on(ray_run, per_block=1))
    assert serial == distributed


def test_sweep_on_ray_equals_the_serial_sweep(ray_run: RayExecutor) -> None:
    serial = sweep(TINY_GRID, seeds=3, periods=30)
    distributed = sweep(TINY_GRID, seeds=3, periods=30, run=ray_run)
    assert same(serial, distributed)
    assert {row["policy"] for row in serial} >= {"learned", "reorder_point", "tuned_base_stock"}
    assert "random" not in {row["policy"] for row in serial}
    for row in serial:  # the best rule is the cheapest rule of its point; nothing beats it by more than noise
        point = [r for r in serial if r["warehouse_to_store"] == row["warehouse_to_store"]]
        assert row["best_rule"] == min((r for r in point if r["rule"]), key=lambda r: r["cost_per_day"])["policy"]


def test_sweep_cli_writes_a_table_and_a_figure(tmp_path: Path, capsys) -> None:
    out = tmp_path / "sweep.parquet"
    assert main(["sweep", "--dispersion", "0.3", "--warehouse-to-store", "2", "--num-stores", "1",
                 "--capacity-factor", "2", "--cost-ratio", "9", "--seeds", "2", "--periods", "20",
                 "--out", str(out)]) == 0
    table = pq.read_table(out).to_pylist()
    assert {row["policy"] for row in table} >= {"learned", "tuned_capped_base_stock"}  # one store: capped applies
    assert (tmp_path / "sweep.html").read_text().count("learned vs best rule") >= 1
    assert "learned" in capsys.readouterr().out


@pytest.mark.parametrize("argv, field", [
    (["sweep", "--dispersion", "5"], "--dispersion"),
    (["sweep", "--num-stores", "2.5"], "--num-stores"),
    (["sweep", "--out", "table.txt"], "--out"),
    (["sweep", "--base", "nowhere"], "--base"),
    (["tune", "--menu", "--ray"], "--ray"),
    (["evaluate", "--scenario", "nowhere", "--ray"], "--scenario"),
])
def test_bad_scale_arguments_exit_2_with_one_line(argv: list[str], field: str, capsys) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and field in err and "\n" not in err


# --- batch deployment ----------------------------------------------------------------------------------------

def twin_states(name: str, chains: int = 6, days: tuple[int, ...] = (0, 9, 33, 70)):
    """States of the shipped hierarchy on preset ``name`` on several days, with the served store orders."""
    scenario = PRESETS[name]
    mix, store = learned_mix(), learned_policy("store")
    demand = sample_demand(scenario, chains, np.random.default_rng(11), max(days) + 1)
    state = reset(scenario, chains)
    for t in range(max(days) + 1):
        if t in days:
            yield scenario, state, store.act(state, scenario)
        state, _ = step(state, mix.actions(state, scenario), demand[:, t], scenario)


@pytest.mark.parametrize("name", ["seasonal", "serial_textbook", "supply_disruption"])
def test_batch_decisions_equal_the_served_store_policy(name: str, tmp_path: Path) -> None:
    """Twin states written as raw rows (Parquet), decided by the deploy script's command: the same order
    quantities as the served policy (the same float64 operations, so to rounding of the last bit), placed as whole
    units where demand comes in whole units and to three decimals otherwise."""
    tables, served = [], []
    for scenario, state, orders in twin_states(name):
        tables.append(pa.table(store_rows(state, scenario, Forecast.of(scenario))))
        served.append(np.round(orders.reshape(-1), 0 if scenario.whole_units else 3))
    states = tmp_path / "states.parquet"
    pq.write_table(pa.concat_tables(tables), states)
    result = subprocess.run([sys.executable, str(DEPLOY), "--input", str(states), "--output",
                             str(tmp_path / "orders.csv")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    orders = pcsv.read_csv(tmp_path / "orders.csv")
    expected = np.concatenate(served)
    assert orders.num_rows == expected.size
    np.testing.assert_array_equal(orders.column("order_quantity_units").to_numpy(), expected)
    assert orders.column("order_quantity_units").to_numpy().max() > 0  # real orders, not all zero


def test_batch_features_equal_the_twin_observations() -> None:
    """The script's store features from raw rows are the twin's observations (``observe``), row by row, with
    lead times (1, 2 and 5 days), lost sales and backorders mixed in one table: the same float64 operations, so
    equal after the cast to float32 but for a float32 rounding step (rtol 2**-23) where the last float64 bits
    differ, and atol 1e-9 for features that are zero up to float64 rounding (the sales lost before arrival
    where demand waits). The last feature, the store's tuned safety factor, is the rows' column of that name
    (the scenario's tuned store entry, as serving observes it), passed through."""
    rows, observed, entries = [], [], []
    for name in ("thin_margin", "serial_textbook", "seasonal"):
        tuned = scenario_tuning()(PRESETS[name])
        for scenario, state, _ in twin_states(name, chains=3, days=(0, 9, 33)):
            forecast = Forecast.of(scenario)
            rows.append(store_rows(state, scenario, forecast))
            observed.append(observe("store", state, scenario, forecast, tuned).reshape(-1, len(FEATURES["store"])))
            entries.append(np.full(len(rows[-1]["role"]), tuned["store"]))
    widest = max(rows, key=len)  # every row gets the widest pipeline: a day past a row's own lead brings nothing
    table = pa.concat_tables([pa.table({c: r.get(c, np.zeros(len(r["role"]))) for c in widest}) for r in rows])
    features, _ = deploy.store_features(deploy.checked_states(table))
    matrix = deploy.observation_matrix(features, list(FEATURES["store"]))
    expected = np.concatenate(observed)
    assert matrix.dtype == np.float32 and matrix.shape == expected.shape
    lost = FEATURES["store"].index("expected_lost_before_arrival_spreads")
    assert (expected[:, lost] > 0.1).any()  # sales lost before arrival (which leave stock unsold) are in the sample
    np.testing.assert_allclose(matrix, expected, rtol=2.0**-23, atol=1e-9)
    assert FEATURES["store"][-1] == TUNED and TUNED in table.column_names
    np.testing.assert_array_equal(table.column(TUNED).to_numpy(), np.concatenate(entries))
    np.testing.assert_array_equal(matrix[:, -1], np.concatenate(entries).astype(np.float32))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_batch_on_ray_data_equals_the_batch_without(suffix: str, ray_run: RayExecutor, tmp_path: Path) -> None:
    """Ray Data reads the file with the script's column types and gives the streamed run's orders, in order."""
    states = tmp_path / f"states{suffix}"
    table = pcsv.read_csv(EXPORTED_MODELS / "example_states.csv")
    (pq.write_table if suffix == ".parquet" else pcsv.write_csv)(pa.concat_tables([table] * 30), states)
    with_ray = pa.concat_tables(deploy.decide_with_ray(states, EXPORTED_MODELS))
    without = pa.concat_tables(deploy.decide_blocks(states, EXPORTED_MODELS))
    assert with_ray.num_rows == 30 * table.num_rows and with_ray.equals(without)


def test_the_shipped_example_file_is_decided(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(DEPLOY), "--input", str(EXPORTED_MODELS / "example_states.csv"),
                             "--output", str(tmp_path / "orders.csv")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    orders = pcsv.read_csv(tmp_path / "orders.csv")
    assert orders.column_names == ["store", "product", "safety_factor", "order_quantity_units"]
    assert orders.num_rows == pcsv.read_csv(EXPORTED_MODELS / "example_states.csv").num_rows


def test_the_shipped_example_observation_is_written_from_the_twin(tmp_path: Path) -> None:
    """``example_observation.json`` is what ``write_example_observation`` writes, and the single mode orders from
    it what the served store policy orders in the twin's state it describes, placed as whole units."""
    write_example_observation(tmp_path / "example_observation.json")
    assert (tmp_path / "example_observation.json").read_bytes() == EXAMPLE_OBSERVATION.read_bytes()
    assert json.loads(EXAMPLE_OBSERVATION.read_text()) == example_observation()
    result = subprocess.run([sys.executable, str(DEPLOY), "--role", "store", "--observation",
                             str(EXAMPLE_OBSERVATION)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    scenario, _, state = example_state()
    served = float(learned_policy("store").act(state, scenario)[0, 0])
    assert scenario.whole_units and served > 0 and served != round(served)  # the twin's order is fractional
    assert result.stdout.splitlines()[-1] == f"order quantity: {round(served)} units"


def _example_rows() -> list[str]:
    return (EXPORTED_MODELS / "example_states.csv").read_text().splitlines()


def _edit(column: str, value: str, row: int = 3) -> str:
    lines = _example_rows()
    header = lines[0].replace('"', "").split(",")
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


def _drop(column: str) -> str:
    lines = [line.split(",") for line in _example_rows()]
    index = [c.strip('"') for c in lines[0]].index(column)
    return "\n".join(",".join(c for i, c in enumerate(cells) if i != index) for cells in lines) + "\n"


@pytest.mark.parametrize("make, message", [  # made when the test runs
    (partial(_drop, "on_hand"), "header: missing column on_hand"),
    (partial(_drop, "pipeline_day_1"), "header: column pipeline_day_2 without pipeline_day_1"),
    (partial(_edit, "on_hand", "NaN"), "row 3, column on_hand"),
    (partial(_edit, "on_hand", ""), "row 3, column on_hand"),
    (partial(_edit, "on_hand", "-4"), "row 3, column on_hand: got -4.0; allowed: 0 or more"),
    (partial(_edit, "pipeline_day_2", "-1", row=5), "row 5, column pipeline_day_2"),
    (partial(_edit, "role", '"shop"', row=2), "row 2, column role: got 'shop'; allowed: store"),
    (partial(_edit, "lead_time_days", "1.5"), "row 3, column lead_time_days"),
    (partial(_edit, "lead_time_days", "366", row=4), "row 4, column lead_time_days: got 366.0; allowed: a whole "
                                                      "number of days, 1 to 365"),
    (partial(_edit, "demand_cv", "abc"), "row 3, column demand_cv: got 'abc'; allowed: a number"),
    (partial(_drop, TUNED), f"header: missing column {TUNED}"),
    (partial(_edit, TUNED, "10.5", row=2), f"row 2, column {TUNED}: got 10.5; allowed: -4 to 10 (a safety factor"),
    (partial(_edit, TUNED, "-5"), f"row 3, column {TUNED}: got -5.0; allowed: -4 to 10 (a safety factor"),
], ids=["no on_hand", "no pipeline", "NaN", "empty", "negative stock", "negative pipeline", "unknown role",
        "fractional lead time", "lead time beyond a year", "text", "no tuned safety factor",
        "tuned safety factor above the menu", "tuned safety factor below the menu"])
def test_bad_rows_are_rejected_by_row_and_column_and_nothing_is_written(make: Callable[[], str], message: str,
                                                                        tmp_path: Path) -> None:
    states, out = tmp_path / "states.csv", tmp_path / "orders.csv"
    states.write_text(make())
    result = subprocess.run([sys.executable, str(DEPLOY), "--input", str(states), "--output", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists() and list(tmp_path.iterdir()) == [states]


def test_the_deploy_script_stays_standalone() -> None:
    """deploy_policy.py imports numpy and onnxruntime at module level, pyarrow and Ray only inside the functions
    that read files or run Ray Data, and never torch or the project's code."""
    import ast

    tree = ast.parse(DEPLOY.read_text())
    top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    every = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
             for alias in node.names}
    every |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert {"numpy", "onnxruntime"} <= top and not top & {"pyarrow", "ray", "torch", "core"}
    assert {"pyarrow", "ray"} <= every and not every & {"torch", "core"}


def test_about_page_shows_a_sweep_table(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The About page draws the learned-vs-best-rule figure of the sweep table it is given, one bar per
    scenario of the grid."""
    from streamlit.testing.v1 import AppTest

    from core.app import sweep as app_sweep
    from core.evaluation.sweep import write_table

    rows = sweep({**TINY_GRID, "cost_ratio": (4.0, 20.0)}, seeds=2, periods=20)
    table = tmp_path / "sweep.csv"
    write_table(rows, table)
    monkeypatch.setattr(app_sweep, "SHIPPED_SWEEP", table)
    monkeypatch.setattr(app_sweep.shipped_sweep, "__defaults__", (table,))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "streamlit_app.py"), default_timeout=120)
    at.run()
    at.switch_page("pages/about.py").run()
    assert not at.exception
    figures = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    bars = [trace for fig in figures for trace in fig["data"] if trace.get("name") == "learned vs best rule"]
    assert len(bars) == 1 and len(bars[0]["x"]) == 4  # 2 lead times x 2 cost ratios


# --- independent training runs ------------------------------------------------------------------------------

def test_training_runs_on_ray_equal_the_serial_runs_and_the_best_is_the_cheapest(ray_run, tmp_path: Path) -> None:
    """Two tiny store-phase runs (seeds 3 and 4) as Ray tasks give the same held-out costs as in this process
    (each run owns its seed; torch is single-threaded), and best.json names the cheaper one. Each run's pools are
    tuned beforehand, here, by a quick stand-in, and kept in its folder, where the run (here or in a Ray worker)
    finds them."""
    from core.learning import pool
    from core.learning.runs import BEST, train_runs
    from core.learning.training import Pools, TrainConfig

    tiny = {"timesteps": 256, "store_timesteps": 256, "groups": 1, "rows": 48, "upstream_chains": 2,
            "pool_scenarios": 1, "acceptance_scenarios": 0, "n_steps": 8, "batch_size": 32,
            "acceptance_seeds": 1, "acceptance_days": 10, "checkpoint_every": 10_000, "progress_bar": False,
            "horizon": 10, "seed": 3}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pool, "tune_all", lambda scenarios, processes=None: [
            {"store": 1.0 + 0.1 * k, "warehouse": 2.0, "supplier": 2.0} for k in range(len(scenarios))])
        for out in ("serial", "ray"):
            for seed in (3, 4):
                folder = tmp_path / out / f"seed{seed}"
                folder.mkdir(parents=True)
                Pools.of(TrainConfig(**{**tiny, "seed": seed}, out=str(folder)))
    serial = train_runs(TrainConfig(out=str(tmp_path / "serial"), **tiny), 2, [1], SerialExecutor())
    on_ray = train_runs(TrainConfig(out=str(tmp_path / "ray"), **tiny), 2, [1], ray_run)
    assert list(serial["runs"].values()) == list(on_ray["runs"].values())
    assert [Path(p).name for p in serial["runs"]] == ["seed3", "seed4"]
    for summary, out in ((serial, "serial"), (on_ray, "ray")):
        assert summary["runs"][summary["best"]] == min(summary["runs"].values())
        assert json.loads((tmp_path / out / BEST).read_text()) == summary
        assert all((Path(p) / "hierarchy.json").exists() for p in summary["runs"])


def test_train_runs_out_of_range_exits_2(capsys) -> None:
    assert main(["train", "--runs", "0", "--out", "unused"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
