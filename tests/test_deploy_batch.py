"""The batch mode of ``exported_models/deploy_policy.py`` under hostile files (issue 22): seeded mutations of a
valid states file (CSV and Parquet) end in exit 2 with exactly one stderr line ``error: ...`` naming what is wrong
and no file left behind, or in exit 0 with the orders the non-streaming decision (``decide_table``) gives for the
same rows; the input's bytes never change. Most cases run in this process through the script's ``main``; a
representative subset, Ctrl-C and a closed stdout run the script as a process. Last, the measures of
``python -m core bench --deploy``."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from core.bench import deploy_module, twin_store_table
from core.serving.models import EXPORTED_MODELS

DEPLOY = EXPORTED_MODELS / "deploy_policy.py"
deploy = deploy_module()
SEEDS = range(72)  # 18 mutation kinds, each 4 times with its own random details
BY_PROCESS = (3, 9, 20, 33, 46, 60)  # seeds also run as a process (one line on stderr, no traceback)
PIPELINE_DAYS = 5


def base_table() -> pa.Table:
    """2,000 twin store rows, varied with a fixed seed: lead times 1 to 6 days, five pipeline days, lost sales and
    backorders, whole and fractional units."""
    table = twin_store_table(2000, stores=10, chains=100)
    rng = np.random.default_rng(22)
    n = table.num_rows
    allowed = rng.integers(0, 2, n).astype(float)
    changes = {"lead_time_days": rng.integers(1, 7, n).astype(float), "backorders_allowed": allowed,
               "backorders": allowed * rng.choice([0.0, 3.5, 40.0], n), "whole_units": rng.integers(0, 2, n) * 1.0,
               **{f"pipeline_day_{k}": rng.uniform(0, 60, n) * (rng.random(n) < 0.5)
                  for k in range(1, PIPELINE_DAYS + 1)}}
    columns = {name: changes.get(name, table.column(name)) for name in table.column_names}
    for k in range(3, PIPELINE_DAYS + 1):
        columns[f"pipeline_day_{k}"] = changes[f"pipeline_day_{k}"]
    return pa.table(columns)


BASE = base_table()
NUMBERS = deploy.number_columns([f"pipeline_day_{k}" for k in range(1, PIPELINE_DAYS + 1)])
TUNED = deploy.TUNED  # the store's tuned safety factor: a number from -4 to 10, not a quantity


@dataclass
class Case:
    """A file to decide and what must come of it: ``table`` written as ``suffix``, or ``raw`` bytes; ``expect``
    a text the one error line contains, or None for exit 0 with ``decide_table(reference)``'s orders."""

    suffix: str
    table: pa.Table | None = None
    raw: bytes | None = None
    expect: str | None = None
    reference: pa.Table | None = None


def write(case: Case, path: Path) -> None:
    if case.raw is not None:
        path.write_bytes(case.raw)
    elif case.suffix == ".parquet":
        pq.write_table(case.table, path)
    else:
        pcsv.write_csv(case.table, path)


def replaced(table: pa.Table, name: str, column: pa.Array | pa.ChunkedArray) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, column)


def with_cell(table: pa.Table, name: str, row: int, value: object, data_type: pa.DataType | None = None) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    return replaced(table, name, pa.array(values, data_type or table.column(name).type))


def csv_with_text(table: pa.Table, name: str, row: int, text: bytes) -> bytes:
    """``table`` as CSV bytes with the cell of column ``name``, data row ``row`` (0-based), replaced by ``text``."""
    lines = pa_csv_bytes(table).split(b"\n")
    cells = lines[row + 1].split(b",")
    cells[table.column_names.index(name)] = text
    lines[row + 1] = b",".join(cells)
    return b"\n".join(lines)


def pa_csv_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pcsv.write_csv(table, sink)
    return sink.getvalue().to_pybytes()


# --- the mutations: each takes a random generator and a suffix and returns the case ------------------------------

def drop_column(rng, suffix) -> Case:
    name = str(rng.choice(["role", *NUMBERS]))
    table = BASE.drop_columns([name])
    if name.startswith("pipeline_day_"):
        day = int(name.rsplit("_", 1)[1])
        if day == PIPELINE_DAYS:  # the last day: fewer days in transit, still a valid file
            return Case(suffix, table, reference=table)
        return Case(suffix, table, expect=f"header: column pipeline_day_{day + 1} without pipeline_day_{day}")
    return Case(suffix, table, expect=f"header: missing column {name}")


def duplicate_column(rng, suffix) -> Case:
    name = str(rng.choice(BASE.column_names))
    return Case(suffix, BASE.append_column(name, BASE.column(name)), expect=f"column '{name}' appears more than once")


def rename_column(rng, suffix) -> Case:
    name = str(rng.choice(NUMBERS[:-PIPELINE_DAYS]))
    new = str(rng.choice([f"{name} ", name.upper(), f"x_{rng.integers(1000)}"]))
    return Case(suffix, BASE.rename_columns([new if c == name else c for c in BASE.column_names]),
                expect=f"header: missing column {name}")


def text_in_numbers(rng, suffix) -> Case:
    name, row = str(rng.choice(NUMBERS)), int(rng.integers(BASE.num_rows))
    text = str(rng.choice(["abc", "1,5", "12kg", "0x10", "--3", "1e", "\u0663"]))
    if suffix == ".csv":
        return Case(suffix, raw=csv_with_text(BASE, name, row, f'"{text}"'.encode()),
                    expect=f"row {row + 1}, column {name}: got {text!r}; allowed: a number")
    table = replaced(BASE, name, BASE.column(name).cast(pa.string()))
    return Case(suffix, with_cell(table, name, row, text), expect=f"header: column {name} has type string")


def nested_type(rng, suffix) -> Case:
    name = str(rng.choice(NUMBERS))
    values = BASE.column(name).to_pylist()
    column = {"list": pa.array([[v] for v in values]), "struct": pa.array([{"v": v} for v in values]),
              "map": pa.array([[("v", v)] for v in values], pa.map_(pa.string(), pa.float64()))}
    kind = str(rng.choice(list(column)))
    return Case(".parquet", replaced(BASE, name, column[kind]), expect=f"header: column {name} has type {kind}")


def binary_role(rng, suffix) -> Case:
    row = int(rng.integers(BASE.num_rows))
    garbage = bytes(rng.choice([b"\xff\xfe", b"st\xc3ore", b"\x80"]))
    if suffix == ".csv":
        return Case(suffix, raw=csv_with_text(BASE, "role", row, garbage),
                    expect=f"row {row + 1}, column role: got {garbage!r}")
    roles = [b"store"] * BASE.num_rows
    roles[row] = garbage
    return Case(suffix, replaced(BASE, "role", pa.array(roles, pa.binary())),
                expect=f"row {row + 1}, column role: got {garbage!r}")


def control_characters(rng, suffix) -> Case:
    """Escapes, carriage returns and line feeds in a cell or a column name: the error is still one line."""
    row = int(rng.integers(BASE.num_rows))
    forged = "st\x1b[2Jore\r\nerror: forged\x07"
    if rng.random() < 0.5:  # a CSV header cannot hold a line feed
        tail = "\x07" if suffix == ".csv" else "\nerror: forged"
        return Case(suffix, BASE.append_column("pipeline_day_\x1b[31m" + tail, BASE.column("on_hand")),
                    expect="header: column " + repr("pipeline_day_\x1b[31m" + tail)[:40])
    expect = f"row {row + 1}, column role: got 'st\\x1b[2Jore\\r\\nerror: forged\\x07'; allowed: store"
    if suffix == ".csv":  # quoted, a value may hold line feeds
        return Case(suffix, raw=csv_with_text(BASE, "role", row, f'"{forged}"'.encode()), expect=expect)
    return Case(suffix, with_cell(BASE, "role", row, forged), expect=expect)


def huge_value(rng, suffix) -> Case:
    name, row = str(rng.choice(NUMBERS)), int(rng.integers(BASE.num_rows))
    value = float(rng.choice([1.000001e12, 1e308, np.inf, -np.inf, 2.0**60]))
    return Case(suffix, with_cell(BASE, name, row, value), expect=f"row {row + 1}, column {name}: got ")


def values_at_the_bound(rng, suffix) -> Case:
    """Every quantity, forecast, demand and cost of some rows at MAX_VALUE: decided, every order finite."""
    rows = rng.choice(BASE.num_rows, 50, replace=False)
    table = BASE
    for name in NUMBERS:
        if name not in ("lead_time_days", "backorders_allowed", "whole_units"):
            values = table.column(name).to_numpy().copy()
            values[rows] = deploy.MAX_VALUE if rng.random() < 0.7 else 0.0
            if name == TUNED:  # its bounds are the menu's
                values[rows] = deploy.TUNED_RANGE[int(rng.integers(2))]
            table = replaced(table, name, pa.array(values))
    table = replaced(table, "average_demand_per_day", pa.array(np.maximum(table.column("average_demand_per_day")
                                                                         .to_numpy(), 1e-9)))
    return Case(suffix, table, reference=table)


def negative_value(rng, suffix) -> Case:
    name, row = str(rng.choice([n for n in NUMBERS if n != TUNED])), int(rng.integers(BASE.num_rows))
    return Case(suffix, with_cell(BASE, name, row, -float(rng.choice([1e-9, 1.0, 5e3]))),
                expect=f"row {row + 1}, column {name}: got -")


def nan_or_empty(rng, suffix) -> Case:
    name, row = str(rng.choice(["role", *NUMBERS])), int(rng.integers(BASE.num_rows))
    if name == "role" or rng.random() < 0.5:
        return Case(suffix, with_cell(BASE, name, row, None), expect=f"row {row + 1}, column {name}: got an empty cell")
    return Case(suffix, with_cell(BASE, name, row, float("nan")),
                expect=f"row {row + 1}, column {name}: got nan; allowed: a finite number")


def pipeline_gap(rng, suffix) -> Case:
    zeros = pa.array(np.zeros(BASE.num_rows))
    day = int(rng.choice([PIPELINE_DAYS + 1, PIPELINE_DAYS + 2, PIPELINE_DAYS + 9, 400]))
    table = BASE.append_column(f"pipeline_day_{day}", zeros)
    if day == PIPELINE_DAYS + 1:  # the next day: a valid file with one more day in transit
        return Case(suffix, table, reference=table)
    if day == 400:
        return Case(suffix, table, expect="column 'pipeline_day_400'; allowed: pipeline_day_1 to pipeline_day_365")
    return Case(suffix, table, expect=f"column pipeline_day_{day} without pipeline_day_{day - 1}")


def integers_beyond_2_53(rng, suffix) -> Case:
    name = str(rng.choice(["on_hand", "day", "yesterday_demand", "pipeline_day_1"]))
    row = int(rng.integers(BASE.num_rows))
    value, data_type = [(2**53 + 1, pa.int64()), (-(2**63), pa.int64()), (2**64 - 1, pa.uint64())][rng.integers(3)]
    if suffix == ".csv":
        return Case(suffix, raw=csv_with_text(BASE, name, row, str(value).encode()),
                    expect=f"row {row + 1}, column {name}: got ")
    whole = pa.array(np.round(BASE.column(name).to_numpy()).astype(np.int64)).cast(data_type)
    return Case(suffix, with_cell(replaced(BASE, name, whole), name, row, value, data_type),
                expect=f"row {row + 1}, column {name}: got {value}; allowed: ")


def header_only(rng, suffix) -> Case:
    return Case(suffix, BASE.slice(0, 0), reference=BASE.slice(0, 0))


def extra_columns(rng, suffix) -> Case:
    """Columns the decision does not read, of any type and name: ignored."""
    n = BASE.num_rows
    extras = {"notes\x1b": pa.array(["a\nb\x1b,\"c\""] * n), "blob": pa.array([b"\xff"] * n),
              "nested": pa.array([[1, 2]] * n), "pipeline": pa.array(np.ones(n))}
    keep = [k for k in extras if rng.random() < 0.7 and (suffix == ".parquet" or k in ("notes\x1b", "pipeline"))]
    table = BASE
    for name in keep:
        table = table.append_column(name, extras[name])
    return Case(suffix, table, reference=BASE)


def other_encodings(rng, suffix) -> Case:
    """Dictionary-encoded role, store and numbers, integer and float32 numbers (Parquet): the same decisions."""
    table = replaced(BASE, "role", BASE.column("role").dictionary_encode())
    table = replaced(table, "store", table.column("store").cast(pa.int32()).dictionary_encode())
    table = replaced(table, "lead_time_days", table.column("lead_time_days").cast(pa.uint8()))
    table = replaced(table, "whole_units", table.column("whole_units").cast(pa.float32()))
    table = replaced(table, "stockout_cost_per_unit", table.column("stockout_cost_per_unit").dictionary_encode())
    return Case(".parquet", table, reference=table)


def shuffled_columns(rng, suffix) -> Case:
    table = BASE.select(list(rng.permutation(BASE.column_names)))
    return Case(suffix, table, reference=table)


def bad_flag_or_lead(rng, suffix) -> Case:
    name = str(rng.choice(["lead_time_days", "backorders_allowed", "whole_units", TUNED]))
    row = int(rng.integers(2000))
    value = {"lead_time_days": float(rng.choice([0.0, 1.5, 366.0])), "backorders_allowed": 0.5,
             "whole_units": 2.0, TUNED: float(rng.choice([-4.5, 10.5, 64.0]))}[name]
    allowed = {"lead_time_days": "a whole number of days, 1 to 365",
               TUNED: "-4 to 10 (a safety factor of the menu)"}.get(name, "0 or 1")
    return Case(suffix, with_cell(BASE, name, row, value),
                expect=f"row {row + 1}, column {name}: got {value!r}; allowed: {allowed}")


MUTATIONS = [drop_column, duplicate_column, rename_column, text_in_numbers, nested_type, binary_role,
             control_characters, huge_value, values_at_the_bound, negative_value, nan_or_empty, pipeline_gap,
             integers_beyond_2_53, header_only, extra_columns, other_encodings, shuffled_columns, bad_flag_or_lead]


def case_of(seed: int) -> Case:
    rng = np.random.default_rng(seed)
    return MUTATIONS[seed % len(MUTATIONS)](rng, ".csv" if rng.random() < 0.5 else ".parquet")


# --- running the script ---------------------------------------------------------------------------------------

def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_in_process(capsys, *argv: str) -> tuple[int, str, str]:
    code = deploy.main([*argv, "--models", str(EXPORTED_MODELS)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_process(*argv: str, timeout: float = 120) -> tuple[int, str, str]:
    result = subprocess.run([sys.executable, str(DEPLOY), *argv], capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr


def assert_one_error(code: int, err: str, expect: str) -> None:
    assert code == 2, err
    assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("error: "), repr(err)
    assert expect in err, (expect, err)


def read_orders(path: Path) -> pa.Table:
    types = {"store": pa.string(), "product": pa.string(), "safety_factor": pa.float64(),
             "order_quantity_units": pa.float64()}
    return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types=types))


def assert_orders_of(out: Path, reference: pa.Table) -> None:
    """The output holds ``decide_table(reference)``'s orders, row by row, to the bit."""
    expected = deploy.decide_table(reference, EXPORTED_MODELS)
    orders = read_orders(out)
    assert orders.column_names == expected.column_names
    assert orders.num_rows == reference.num_rows
    for name in ("safety_factor", "order_quantity_units"):
        np.testing.assert_array_equal(orders.column(name).to_numpy(), expected.column(name).to_numpy(), name)
    assert np.isfinite(orders.column("order_quantity_units").to_numpy()).all()
    for name in ("store", "product"):
        assert orders.column(name).to_pylist() == [str(v) for v in expected.column(name).to_pylist()]


@pytest.mark.parametrize("seed", SEEDS)
def test_a_mutated_file_is_refused_in_one_line_or_decided_correctly(seed: int, tmp_path: Path, capsys) -> None:
    case = case_of(seed)
    states, out = tmp_path / f"states{case.suffix}", tmp_path / "orders.csv"
    write(case, states)
    before = digest(states)
    runs = [run_in_process(capsys, "--input", str(states), "--output", str(out))]
    if seed in BY_PROCESS:
        out.unlink(missing_ok=True)
        runs.append(run_process("--input", str(states), "--output", str(out)))
    for code, stdout, err in runs:
        assert "Traceback" not in err
        if case.expect is None:
            assert code == 0 and err == "", err
            assert stdout == f"{case.reference.num_rows:,} orders written to {out}\n"
            assert_orders_of(out, case.reference)
            assert sorted(tmp_path.iterdir()) == sorted([states, out])
        else:
            assert_one_error(code, err, case.expect)
            assert list(tmp_path.iterdir()) == [states]  # no output, no temporary file
    assert digest(states) == before


def test_every_mutation_kind_is_drawn() -> None:
    kinds = {case_of(seed).expect is None for seed in SEEDS}
    assert kinds == {True, False}
    assert {MUTATIONS[seed % len(MUTATIONS)] for seed in SEEDS} == set(MUTATIONS)


# --- the tuned safety factor ------------------------------------------------------------------------------------

def test_the_tuned_safety_factor_is_the_store_s_tuned_entry_passed_through() -> None:
    """The twin's rows carry the store's tuned entry (one value for the scenario, on the menu), and the script
    passes the column through as the feature of that name, the store policy's last."""
    from core.agents.menus import SAFETY_FACTORS
    from core.serving.registry import scenario_tuning
    from core.simulation.presets import get_preset

    tuned = BASE.column(TUNED).to_numpy()
    store = scenario_tuning()(get_preset("steady").with_num_stores(10))["store"]
    assert (tuned == store).all() and store in SAFETY_FACTORS
    assert list(deploy.STATE_COLUMNS)[-1] == TUNED
    features, _ = deploy.store_features(deploy.checked_states(BASE))
    np.testing.assert_array_equal(features[TUNED], tuned)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("value, expect", [
    ("missing", f"header: missing column {TUNED}"),
    (-4.5, f"row 17, column {TUNED}: got -4.5; allowed: -4 to 10 (a safety factor of the menu)"),
    (10.25, f"row 17, column {TUNED}: got 10.25; allowed: -4 to 10 (a safety factor of the menu)"),
    (None, f"row 17, column {TUNED}: got an empty cell; allowed: a finite number (no empty cell, no NaN)"),
])
def test_a_missing_or_out_of_range_tuned_safety_factor_is_refused_in_one_line(value: object, expect: str, suffix: str,
                                                                             tmp_path: Path, capsys) -> None:
    """A file without the column, or a row whose value is off the menu's range (-4 to 10) or empty: exit 2, one
    line naming the column (and the row, the value and the allowed range), nothing written; at the range's ends
    the rows are decided. In this process, and as a command for the CSV file."""
    table = BASE.slice(0, 40)
    table = table.drop_columns([TUNED]) if value == "missing" else with_cell(table, TUNED, 16, value)
    states, out = tmp_path / f"states{suffix}", tmp_path / "orders.csv"
    write(Case(suffix, table), states)
    runs = [run_in_process(capsys, "--input", str(states), "--output", str(out))]
    if suffix == ".csv":
        runs.append(run_process("--input", str(states), "--output", str(out)))
    for code, stdout, err in runs:
        assert_one_error(code, err, expect)
        assert stdout == "" and list(tmp_path.iterdir()) == [states]
    for edge in deploy.TUNED_RANGE:
        write(Case(suffix, with_cell(BASE.slice(0, 40), TUNED, 16, edge)), states)
        code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(out))
        assert code == 0 and err == "", err
        out.unlink()


# --- blocks ---------------------------------------------------------------------------------------------------

@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of 300 Parquet rows and 16 kB of CSV (about 60 rows), so 2,000 rows take many."""
    monkeypatch.setattr(deploy, "BLOCK_ROWS", 300)
    monkeypatch.setattr(deploy, "BLOCK_BYTES", 2**14)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_orders_equal_the_whole_table_decision(suffix: str, small_blocks, tmp_path: Path, capsys) -> None:
    states, out = tmp_path / f"states{suffix}", tmp_path / "orders.csv"
    write(Case(suffix, BASE), states)
    blocks = list(deploy.read_states(states))
    assert len(blocks) > 5 and sum(b.num_rows for b in blocks) == BASE.num_rows
    assert max(b.num_rows for b in blocks) <= 300
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(out))
    assert code == 0, err
    assert_orders_of(out, BASE)


@pytest.mark.parametrize("suffix, value, expect", [
    (".parquet", -1.0, "got -1.0; allowed: 0 or more"),
    (".csv", -1.0, "got -1.0; allowed: 0 or more"),
    (".csv", "7 units", "got '7 units'; allowed: a number"),  # found by reading the file again as bytes
])
def test_a_bad_row_in_a_later_block_is_named_by_its_row_in_the_file(suffix: str, value: object, expect: str,
                                                                     small_blocks, tmp_path: Path, capsys) -> None:
    states, out = tmp_path / f"states{suffix}", tmp_path / "orders.csv"
    row = 1733
    if isinstance(value, str):
        states.write_bytes(csv_with_text(BASE, "on_hand", row - 1, value.encode()))
    else:
        write(Case(suffix, with_cell(BASE, "on_hand", row - 1, value)), states)
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(out))
    assert_one_error(code, err, f"row {row}, column on_hand: {expect}")
    assert list(tmp_path.iterdir()) == [states]


def test_a_dictionary_encoded_parquet_of_identical_rows_is_read_in_blocks(tmp_path: Path) -> None:
    """200,000 identical rows compress to a few kB; they are read BLOCK_ROWS at a time, never all at once."""
    states = tmp_path / "states.parquet"
    pq.write_table(BASE.take(np.zeros(200_000, np.int64)), states, row_group_size=200_000)
    assert states.stat().st_size < 100_000
    sizes = [block.num_rows for block in deploy.read_states(states)]
    assert sum(sizes) == 200_000 and max(sizes) <= deploy.BLOCK_ROWS


# --- outputs --------------------------------------------------------------------------------------------------

@pytest.fixture
def states(tmp_path: Path) -> Path:
    path = tmp_path / "states.csv"
    write(Case(".csv", BASE.slice(0, 200)), path)
    return path


@pytest.mark.parametrize("link", ["same path", "relative path", "hard link", "symlink"])
def test_an_output_that_is_the_input_is_refused(link: str, states: Path, tmp_path: Path, capsys,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    before = digest(states)
    out = states
    if link == "relative path":
        monkeypatch.chdir(tmp_path)
        out = Path("sub/../states.csv")
        (tmp_path / "sub").mkdir()
    elif link == "hard link":
        out = tmp_path / "orders.csv"
        os.link(states, out)
    elif link == "symlink":
        out = tmp_path / "orders.csv"
        out.symlink_to(states)
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(out))
    assert_one_error(code, err, "is the input file")
    assert digest(states) == before


def test_a_symlink_at_the_output_is_replaced_not_followed(states: Path, tmp_path: Path, capsys) -> None:
    victim = tmp_path / "victim.csv"
    victim.write_text("keep me\n")
    out = tmp_path / "orders.csv"
    out.symlink_to(victim)
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(out))
    assert code == 0, err
    assert not out.is_symlink() and victim.read_text() == "keep me\n"
    assert_orders_of(out, BASE.slice(0, 200))


def test_planted_symlinks_in_the_output_folder_are_never_followed(states: Path, tmp_path: Path, capsys) -> None:
    """The temporary file is new, of random name, created exclusively: links planted at the names an attacker
    could guess (the old fixed name among them) are left alone and their targets untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    planted = [tmp_path / name for name in (".orders.csv.partial", "orders.csv.tmp", ".orders.csv.tmp",
                                            "orders.csv.partial", "orders.csv~")]
    for link in planted:
        link.symlink_to(victim)
    out = tmp_path / "orders.csv"
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(out))
    assert code == 0, err
    assert victim.read_text() == "keep me\n" and all(link.is_symlink() for link in planted)
    assert sorted(tmp_path.iterdir()) == sorted([states, victim, out, *planted])
    assert_orders_of(out, BASE.slice(0, 200))
    assert (out.stat().st_mode & 0o777) == 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("where, expect", [
    ("missing/orders.csv", "the folder"),
    ("folder.csv", "a folder; allowed: a .csv file"),
    ("orders.txt", "allowed: a .csv file"),
    ("states.csv/orders.csv", "does not exist"),
])
def test_an_output_that_cannot_be_written_is_refused_in_one_line(where: str, expect: str, states: Path,
                                                                  tmp_path: Path, capsys) -> None:
    (tmp_path / "folder.csv").mkdir()
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(tmp_path / where))
    assert_one_error(code, err, expect)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.csv", "states.csv"]
    assert not any((tmp_path / "folder.csv").iterdir())


def test_an_unwritable_folder_is_one_line_and_leaves_nothing(states: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(folder / "orders.csv"))
        assert_one_error(code, err, "cannot write (Permission denied)")
    finally:
        folder.chmod(0o700)


# --- inputs that cannot be read -------------------------------------------------------------------------------

def _parquet_bytes() -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(BASE, sink)
    return sink.getvalue().to_pybytes()


UNREADABLE = {  # name -> (file name, its bytes or "missing", "folder", "fifo"; what the error line says)
    "missing": ("missing.csv", "missing", "cannot read (No such file or directory)"),
    "folder": ("folder.parquet", "folder", "not a regular file"),
    "fifo": ("pipe.csv", "fifo", "not a regular file"),
    "empty": ("empty.csv", b"", "cannot read"),
    "not parquet": ("x.parquet", b"PAR1 not really\nerror: x PAR1", "cannot read"),
    "truncated parquet": ("x.parquet", _parquet_bytes()[:-100], "cannot read"),
    "header not UTF-8": ("x.csv", b"role,\xff\xfe\n", "cannot read"),
    "a short row with an escape": ("x.csv", pa_csv_bytes(BASE.slice(0, 5)) + b"1,2\x1b[2J\n", "cannot read"),
    "json": ("x.json", b"{}", "allowed: a .csv or .parquet file"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_an_input_that_cannot_be_read_is_one_line(case: str, tmp_path: Path, capsys) -> None:
    name, content, expect = UNREADABLE[case]
    path = tmp_path / name
    if content == "folder":
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    elif content != "missing":
        path.write_bytes(content)
    code, _, err = run_in_process(capsys, "--input", str(path), "--output", str(tmp_path / "orders.csv"))
    assert_one_error(code, err, expect)
    assert not (tmp_path / "orders.csv").exists()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_flipped_bytes_are_refused_in_one_line_or_decided(suffix: str, tmp_path: Path, capsys) -> None:
    """Seeded byte flips anywhere in a 300-row file (values, delimiters, quotes, line ends, Parquet pages and
    footer): never a traceback; exit 2 with one line and nothing written, or exit 0 with finite orders."""
    sink = pa.BufferOutputStream()
    if suffix == ".csv":
        pcsv.write_csv(BASE.slice(0, 300), sink)
    else:
        pq.write_table(BASE.slice(0, 300), sink, row_group_size=100)
    original = sink.getvalue().to_pybytes()
    states, out = tmp_path / f"states{suffix}", tmp_path / "orders.csv"
    outcomes = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        data = bytearray(original)
        for _ in range(rng.integers(1, 4)):
            where = int(rng.integers(len(data))) if rng.random() < 0.7 else len(data) - 1 - int(rng.integers(500))
            data[where] = int(rng.choice([0, 10, 13, 27, 34, 44, 0x80, 0xC3, 0xFF, 48, 65]))
        states.write_bytes(bytes(data))
        code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(out))
        outcomes.add(code)
        if code == 2:
            assert_one_error(code, err, "")
            assert list(tmp_path.iterdir()) == [states]
        else:
            assert code == 0 and err == "", err
            assert np.isfinite(read_orders(out).column("order_quantity_units").to_numpy()).all()
            out.unlink()
    assert 2 in outcomes


def test_command_line_mistakes_are_one_line(capsys) -> None:
    for argv in (["--role", "shop", "--observation", "x.json"], ["--input", "x.csv"], ["--bogus"], []):
        code, _, err = run_in_process(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and err.startswith("error: "), (argv, err)


# --- Ray ------------------------------------------------------------------------------------------------------

def test_a_header_only_file_with_ray_gives_a_header_only_output(tmp_path: Path, capsys) -> None:
    states, out = tmp_path / "states.parquet", tmp_path / "orders.csv"
    write(Case(".parquet", BASE.slice(0, 0)), states)
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(out), "--ray")
    assert code == 0, err
    orders = read_orders(out)
    assert orders.num_rows == 0 and orders.column_names[-2:] == ["safety_factor", "order_quantity_units"]


def test_ray_at_an_address_where_nothing_answers_fails_fast_in_one_line(tmp_path: Path, capsys,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as closed:  # a port that was free a moment ago: nothing listens there
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    states = tmp_path / "states.parquet"
    write(Case(".parquet", BASE.slice(0, 50)), states)
    begin = time.monotonic()
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(tmp_path / "orders.csv"), "--ray")
    assert_one_error(code, err, f"RAY_ADDRESS '127.0.0.1:{port}': nothing answers")
    assert time.monotonic() - begin < 30
    monkeypatch.setenv("RAY_ADDRESS", "no port\x1b")
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(tmp_path / "orders.csv"), "--ray")
    assert_one_error(code, err, "RAY_ADDRESS 'no port\\x1b': allowed: host:port")


def test_ray_that_answers_but_never_connects_is_given_up_in_one_line(tmp_path: Path) -> None:
    """A port that accepts connections but is no Ray: ray.init, stuck retrying, is abandoned after
    RAY_INIT_SECONDS (3 s here, in a process of its own) with one line, Ray's own retry logs kept off stderr."""
    states = tmp_path / "states.parquet"
    write(Case(".parquet", BASE.slice(0, 50)), states)
    script = ("import importlib.util, sys\n"
              f"spec = importlib.util.spec_from_file_location('deploy_policy', {str(DEPLOY)!r})\n"
              "deploy = importlib.util.module_from_spec(spec)\n"
              "spec.loader.exec_module(deploy)\n"
              "deploy.RAY_INIT_SECONDS = 3.0\n"
              "sys.exit(deploy.main(sys.argv[1:]))\n")
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        begin = time.monotonic()
        result = subprocess.run([sys.executable, "-c", script, "--input", str(states), "--output",
                                 str(tmp_path / "orders.csv"), "--ray"], capture_output=True, text=True, timeout=120,
                                env={**os.environ, "RAY_ADDRESS": f"127.0.0.1:{port}"})
    expect = f"RAY_ADDRESS '127.0.0.1:{port}': Ray did not connect within 3 s"
    assert_one_error(result.returncode, result.stderr, expect)
    assert time.monotonic() - begin < 30 and list(tmp_path.iterdir()) == [states]


def test_ray_checks_every_row_before_it_starts(tmp_path: Path, capsys) -> None:
    states = tmp_path / "states.parquet"
    write(Case(".parquet", with_cell(BASE, "day", 1999, -3.0)), states)
    code, _, err = run_in_process(capsys, "--input", str(states), "--output", str(tmp_path / "orders.csv"), "--ray")
    assert_one_error(code, err, "row 2000, column day: got -3.0; allowed: 0 or more")
    assert list(tmp_path.iterdir()) == [states]


# --- signals and pipes ----------------------------------------------------------------------------------------

def test_ctrl_c_during_a_run_leaves_nothing_and_says_interrupted(tmp_path: Path) -> None:
    """SIGINT once the temporary file exists (mid-run, 300,000 rows): exit 130, one line, no output and no
    temporary file, the input's bytes unchanged."""
    states, out = tmp_path / "states.parquet", tmp_path / "orders.csv"
    pq.write_table(BASE.take(np.arange(300_000) % BASE.num_rows), states)
    before = digest(states)
    process = subprocess.Popen([sys.executable, str(DEPLOY), "--input", str(states), "--output", str(out)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be interrupted"
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert (process.returncode, stdout, stderr) == (130, "", "interrupted\n")
    assert list(tmp_path.iterdir()) == [states] and digest(states) == before


def test_a_closed_stdout_ends_quietly_after_a_complete_output(states: Path, tmp_path: Path) -> None:
    out = tmp_path / "orders.csv"
    read, write_end = os.pipe()
    os.close(read)
    try:
        result = subprocess.run([sys.executable, str(DEPLOY), "--input", str(states), "--output", str(out)],
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (141, "")
    assert_orders_of(out, BASE.slice(0, 200))


# --- single-observation mode: the order object ----------------------------------------------------------------

ORDER = {"forecast_per_day": 40.0, "protection_days": 2.0, "demand_sd_per_day": 12.0, "inventory_position": 150.0}


@pytest.mark.parametrize("field, value, expect", [
    ("forecast_per_day", -1.0, "order forecast_per_day: -1; allowed: 0 or more"),
    ("demand_sd_per_day", -0.5, "order demand_sd_per_day: -0.5; allowed: 0 or more"),
    ("forecast_per_day", 1e308, "order forecast_per_day: 1e+308; allowed: at most 1e+12 (MAX_VALUE)"),
    ("inventory_position", -1e13, "order inventory_position: -1e+13; allowed: -1e+12 or more"),
    ("prebuild", -3.0, "order prebuild: -3; allowed: 0 or more"),
    ("protection_days", 1e300, "order protection_days: 1e+300; allowed: at most"),
])
def test_the_order_object_is_bounded(field: str, value: float, expect: str) -> None:
    with pytest.raises(deploy.InputError, match="^" + re.escape(expect)):
        deploy.order_quantity({**ORDER, field: value}, 4.3)


def test_orders_at_the_bounds_are_finite() -> None:
    top = dict.fromkeys(("forecast_per_day", "protection_days", "demand_sd_per_day", "prebuild"), deploy.MAX_VALUE)
    assert np.isfinite(deploy.order_quantity({**top, "inventory_position": -deploy.MAX_VALUE}, 10.0))
    assert deploy.order_quantity({**ORDER, "whole_units": True}, 0.0) == 0.0
    assert deploy.order_quantity({**ORDER, "inventory_position": 0.0}, 1.0) == round(80 + 12 * 2**0.5, deploy.DECIMALS)


@pytest.mark.parametrize(("position", "whole", "expected"), [
    (24.51, True, 55.0), (24.49, False, 55.51), (24.4999, False, 55.5), (0.1 + 0.2, False, 79.7), (81.0, True, 0.0),
])
def test_single_orders_are_placed_whole_or_to_three_decimals(position: float, whole: bool, expected: float) -> None:
    """Where demand comes in whole units the target is whole and so is the order, even from stock that is not; else
    three decimals, never float noise (80 - 24.49 is 55.510000000000005 in floating point)."""
    order = {**ORDER, "protection_days": 2.0, "inventory_position": position, "whole_units": whole}
    quantity = deploy.order_quantity(order, 0.0)
    assert quantity == expected and repr(quantity) == repr(expected)


def test_batch_orders_are_placed_whole_or_to_three_decimals() -> None:
    """The batch mode's orders: whole units where whole_units is 1 (the example's rows), else three decimals; the
    header names the unit; the menu's index stays inside."""
    table = pcsv.read_csv(EXPORTED_MODELS / "example_states.csv")
    decided = deploy.decide_table(table, EXPORTED_MODELS)
    assert decided.column_names == ["store", "product", "safety_factor", "order_quantity_units"]
    whole = decided.column("order_quantity_units").to_numpy()
    assert (table.column("whole_units").to_numpy() == 1).all() and (whole == np.round(whole)).all() and whole.any()
    fractional = deploy.decide_table(table.set_column(table.schema.get_field_index("whole_units"), "whole_units",
                                                      pa.array(np.zeros(table.num_rows))), EXPORTED_MODELS)
    quantities = fractional.column("order_quantity_units").to_numpy()
    assert (quantities == np.round(quantities, 3)).all() and (quantities != np.round(quantities)).any()
    assert all(len(repr(float(q)).split(".")[-1]) <= 3 for q in quantities)  # no 55.49000000000001


# --- the benchmark's measures ---------------------------------------------------------------------------------

def test_the_benchmark_reports_the_script_s_own_peak_memory() -> None:
    """``process_run`` gives a child's own peak: not this process's (Linux carries a parent's into a child's
    ru_maxrss), and all of what the child touches."""
    from core.bench import process_run

    ballast = np.ones(2**25)  # 256 MB held here while the children run
    _, idle = process_run([sys.executable, "-c", "pass"])
    _, busy = process_run([sys.executable, "-c", "import numpy; numpy.ones(2**24)"])  # 128 MB touched
    assert idle < 64 * 1024 < 128 * 1024 < busy < 256 * 1024 and ballast.sum() == 2**25


def test_the_benchmark_s_parquet_file_repeats_the_table_a_row_group_at_a_time(tmp_path: Path) -> None:
    from core.bench import write_twin_parquet

    table = BASE.slice(0, 7)
    write_twin_parquet(table, 17, tmp_path / "states.parquet")
    written = pq.ParquetFile(tmp_path / "states.parquet")
    assert [written.metadata.row_group(i).num_rows for i in range(written.num_row_groups)] == [7, 7, 3]
    assert written.read().equals(pa.concat_tables([table, table, table.slice(0, 3)]))


def test_bench_rows_out_of_range_is_one_line(capsys) -> None:
    from core.cli import main

    assert main(["bench", "--deploy", "--no-sweep", "--rows", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--rows: got 0; allowed: an integer from 1 to 100,000,000" in err
