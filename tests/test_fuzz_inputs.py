"""Hostile input through the public entry points: scenario JSON (``Scenario.from_json``,
``load_scenario``), sales-history CSV (``load_demand_csv``), command-line arguments (``core.cli.main``)
and the twin's actions. Every case must end in a valid result or a one-line error of the documented
classes (exit code 2 on the command line): never a traceback, a hang or silently accepted nonsense.

The fuzz cases are seeded (NumPy Generators) and their counts keep the file to a few seconds; the
regression tests below them pin each item of issue 9 (items 5, 6, 7 and 9) that these entry points own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from core.agents.menus import reference_policy
from core.agents.rules import PolicyMix, reorder_point_mix
from core.cli import main
from core.serving.models import PolicyLoadError
from core.serving.policy_spec import PolicySpecError
from core.simulation.demand import DemandFileError, load_demand_csv, sample_demand, scenario_for_history
from core.simulation.forecast import LOOKAHEAD, Forecast
from core.simulation.limits import (
    MAX_AGENT_DAYS,
    MAX_DAYS,
    MAX_DEMAND_CSV_BYTES,
    MAX_DEMAND_MEAN,
    MAX_DISRUPTIONS,
    MAX_NAME_LENGTH,
    MAX_PROMOTIONS,
    MAX_QUANTITY,
    MAX_SCENARIO_BYTES,
    MAX_STORES,
)
from core.simulation.presets import PRESETS, get_preset, load_scenario
from core.simulation.rollout import simulate
from core.simulation.scenario import Capacities, Disruption, Promotion, Scenario, ScenarioError
from core.simulation.twin import ActionError, Actions, reset, step
from core.simulation.untrusted import name_problem

ERRORS = (ScenarioError, DemandFileError, PolicySpecError, PolicyLoadError)
BOM = b"\xef\xbb\xbf"


def _assert_one_line(exc: BaseException) -> None:
    assert isinstance(exc, ERRORS), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert message and "\n" not in message and "\r" not in message and len(message) < 1000, message
    assert message.isprintable(), message


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    if code == 2:
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, (argv, captured.err)
        assert captured.err[:-1].isprintable(), (argv, captured.err)
    return code, captured.out, captured.err


# --- scenario JSON --------------------------------------------------------------------------------------

RAW_VALUES = [  # JSON text put in place of one value of a valid preset
    "1" + "0" * 400, "1" + "0" * 5000, "1e400", "-1e400", "NaN", "Infinity", "-Infinity", "5e-324", "1e-310",
    "1e308", "-1", "0", "0.5", "1.5", "-0.0", "3650", str(MAX_DAYS + 1), "51", "123456789012345678901234567890",
    "true", "null", "{}", "[]", "[1, 1, 1, 1, 1, 1, 1]", "[" * 3000 + "]" * 3000, '"NaN"', '"\\ud800"',
    '"\\u202eevil"', '"a\\u0000b"', '"   "', '""', '"x"', '"' + "y" * 300 + '"', '"lowest_cover_first"',
    '"backorders"', '"normal"', "[" + ", ".join(['{"start_day": 1, "length": 2, "lift": 0.1}'] * 60) + "]",
]


def _value_paths(node: object, path: tuple = ()) -> list[tuple]:
    paths = [path] if path else []
    if isinstance(node, dict):
        for key, value in node.items():
            paths += _value_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            paths += _value_paths(value, (*path, i))
    return paths


def _set(data: object, path: tuple, value: object) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _mutated_scenario(rng: np.random.Generator) -> str | bytes:
    data = json.loads(get_preset(str(rng.choice(sorted(PRESETS)))).to_json())
    kind = int(rng.integers(0, 10))
    if kind <= 4:  # one value replaced by hostile JSON text
        paths = _value_paths(data)
        _set(data, paths[int(rng.integers(len(paths)))], "@@VALUE@@")
        raw = RAW_VALUES[int(rng.integers(len(RAW_VALUES)))]
        return json.dumps(data).replace('"@@VALUE@@"', raw)
    text = json.dumps(data, indent=int(rng.integers(0, 3)))
    if kind == 5:  # a key repeated, or an unknown one
        return text.replace("{", '{"horizon": 30, ' if rng.random() < 0.5 else '{"\\u202e": 1, ', 1)
    if kind == 6:  # cut short
        return text[: int(rng.integers(0, len(text)))]
    raw = bytearray(text.encode())
    if kind == 7:  # random bytes flipped
        for _ in range(int(rng.integers(1, 4))):
            raw[int(rng.integers(len(raw)))] = int(rng.integers(0, 256))
        return bytes(raw)
    if kind == 8:  # another encoding, or a byte-order mark
        return [BOM + raw, text.encode("utf-16"), text.encode("utf-32"), text.encode("latin-1")][int(rng.integers(4))]
    return rng.bytes(int(rng.integers(0, 200)))


def _assert_usable(scenario: Scenario) -> None:
    """An accepted scenario round-trips and runs: KPIs finite, stocks never negative."""
    assert Scenario.from_json(scenario.to_json()) == scenario
    assert name_problem(scenario.name) is None and scenario.horizon <= MAX_DAYS
    kpis = simulate(scenario, reorder_point_mix(), seeds=2, periods=5)
    assert math.isfinite(kpis["cost_per_day"]["mean"]) and kpis["cost_per_day"]["mean"] >= 0


def test_fuzz_scenario_json(tmp_path: Path) -> None:
    rng = np.random.default_rng(20240901)
    outcomes = {"accepted": 0, "rejected": 0}
    for case in range(1500):
        text = _mutated_scenario(rng)
        try:
            if case % 5 == 0:
                path = tmp_path / f"case{case}.json"
                path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
                scenario = load_scenario(str(path))
            else:
                scenario = Scenario.from_json(text)
        except Exception as exc:  # noqa: BLE001 - the assertion reports any other class
            _assert_one_line(exc)
            outcomes["rejected"] += 1
            continue
        _assert_usable(scenario)
        outcomes["accepted"] += 1
    assert outcomes["accepted"] >= 100 and outcomes["rejected"] >= 1000, outcomes  # both paths exercised


# --- sales-history CSV ----------------------------------------------------------------------------------

STORES = ("north", "south", "east")
DATES = ["20240101", "2024/01/01", "2024-1-01", "01-01-2024", "2024-02-30", "0000-01-01", "0001-01-01",
         "9999-12-31", "", " 2024-01-03", "2024-01-03T00:00", "\uff12\uff10\uff12\uff14-01-03", "2024-W01-3",
         "2024-003", "2024-01-04"]
QUANTITIES = ["1_000", "nan", "NaN", "inf", "-1", "-0", "1e3", "", " 5", "5 ", "0x10", "\u0661\u0662", "1e400",
              "9" * 400, str(int(MAX_DEMAND_MEAN) + 1), str(int(MAX_DEMAND_MEAN)), "0", "3.5", ".5", "5.", "+5",
              "1,5", "\u221e"]
NAMES = [" north", "north ", "", " ", "a\x00b", "a\u202eb", "\u2066x", "x\ty", "n" * (MAX_NAME_LENGTH + 1),
         "n" * MAX_NAME_LENGTH, "South", "north\u2028", "\u00e9", "\u65e5\u672c", '"quoted, name"']


def _csv_rows(days: int = 8) -> list[list[str]]:
    return [[f"2024-01-{d + 1:02d}", s, str(5 + d)] for d in range(days) for s in STORES]


def _csv_text(rows: list[list[str]], header: tuple[str, ...] = ("date", "store", "quantity")) -> str:
    def cell(x: str) -> str:
        return '"' + x.replace('"', '""') + '"' if any(c in x for c in ',"\n\r') else x
    return "\n".join(",".join(cell(x) for x in row) for row in [list(header), *rows]) + "\n"


def _mutated_csv(rng: np.random.Generator) -> bytes:
    rows = _csv_rows()
    header: tuple[str, ...] = ("date", "store", "quantity")
    row = rows[int(rng.integers(len(rows)))]
    kind = int(rng.integers(0, 12))
    if kind == 0:
        row[0] = DATES[int(rng.integers(len(DATES)))]
    elif kind == 1:
        row[2] = QUANTITIES[int(rng.integers(len(QUANTITIES)))]
    elif kind == 2:  # a store renamed on every row of the store, or on one
        name, old = NAMES[int(rng.integers(len(NAMES)))], row[1]
        for r in rows if rng.random() < 0.5 else [row]:
            r[1] = name if r[1] == old else r[1]
    elif kind == 3:
        row.append(["", "extra", "1"][int(rng.integers(3))])
    elif kind == 4:
        row.pop()
    elif kind == 5:
        rows.remove(row) if rng.random() < 0.5 else rows.append(list(row))
    elif kind == 6:
        header = [("date", "store", "quantity", "note"), ("store", "quantity"), ("quantity", "store", "date"),
                  ("date", "date", "quantity"), ("Date", "store", "quantity")][int(rng.integers(5))]
    elif kind == 7:  # many stores, or a long date span
        if rng.random() < 0.5:
            rows += [["2024-01-01", f"s{i}", "1"] for i in range(int(rng.integers(40, 70)))]
        else:
            rows.append([["1990-01-01", "2035-01-01", "2034-01-01"][int(rng.integers(3))], "north", "1"])
    text = _csv_text(rows, header)
    if kind == 8:
        text = text.replace("\n", "\r\n") if rng.random() < 0.5 else "\n\n" + text.replace("\n", "\n\n")
    data = text.encode("utf-8")
    if kind == 9:
        data = [BOM + data, text.encode("utf-16"), text.replace("north", "n\u00f6rth").encode("latin-1")][
            int(rng.integers(3))]
    elif kind == 10:
        data = bytearray(data)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(len(data)))] = int(rng.integers(0, 256))
        data = bytes(data)
    elif kind == 11:
        data = data[: int(rng.integers(0, len(data)))] if rng.random() < 0.5 else rng.bytes(int(rng.integers(300)))
    return data


def _assert_valid_history(history: np.ndarray, stores: list[str]) -> None:
    assert 1 <= len(stores) <= MAX_STORES and stores == sorted(set(stores))
    assert all(name_problem(s) is None for s in stores)
    assert history.shape[1] == len(stores) and 1 <= history.shape[0] <= MAX_DAYS
    assert np.isfinite(history).all() and (history >= 0).all() and (history <= MAX_DEMAND_MEAN).all()
    scenario_for_history(get_preset("steady"), history)  # a valid scenario, not an error


def test_fuzz_demand_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(20240902)
    outcomes = {"accepted": 0, "rejected": 0}
    path = tmp_path / "sales.csv"
    for _ in range(2000):
        path.write_bytes(_mutated_csv(rng))
        try:
            history, stores = load_demand_csv(path)
        except Exception as exc:  # noqa: BLE001 - the assertion reports any other class
            _assert_one_line(exc)
            outcomes["rejected"] += 1
            continue
        _assert_valid_history(history, stores)
        outcomes["accepted"] += 1
    assert outcomes["accepted"] >= 100 and outcomes["rejected"] >= 1000, outcomes


# --- command-line arguments -----------------------------------------------------------------------------

def _cli_files(tmp_path: Path) -> dict[str, list[str]]:
    good = tmp_path / "good.json"
    good.write_text(dataclasses.replace(get_preset("promo_shock"), horizon=20).to_json())
    wide = tmp_path / "wide.json"
    wide.write_text(dataclasses.replace(get_preset("steady").with_num_stores(MAX_STORES), horizon=30).to_json())
    bad = tmp_path / "bad.json"
    bad.write_bytes(b'{"name": "\xff"}')
    sales = tmp_path / "sales.csv"
    sales.write_text(_csv_text(_csv_rows(6)))
    broken = tmp_path / "broken.csv"
    broken.write_text(_csv_text([*_csv_rows(3), ["20240104", "north", "1"]]))
    return {
        "scenario": ["steady", "serial_textbook", str(good), str(wide), str(bad), str(tmp_path), "/dev/null",
                     str(tmp_path / "absent.json"), "atlantis", "a\nb", "x" * 5000],
        "policy": ["reorder_point", "random", "store=base_stock:level=40", "warehouse=echelon_base_stock:level=1e308",
                   "store=reorder_point:z=1e308", "supplier=random:scale=nan", "store=base_stock:level=1/2",
                   "garbage", "store=reorder_point:cycle_days=-1", "store=reorder_point:z=2:cycle_days=3",
                   "store=random:scale=1000"],
        "demand-csv": [str(sales), str(broken), str(tmp_path / "absent.csv"), str(tmp_path)],
        "number": ["0", "-1", "1", "2", "3", "5", "12", str(MAX_DAYS + 1), "100000000",
                   "1000000000", "9" * 30, "9" * 5000, "x", "", "1e3", "2.5", " 7"],
    }


def _random_argv(rng: np.random.Generator, files: dict[str, list[str]]) -> list[str]:
    def pick(pool: list[str]) -> str:
        return pool[int(rng.integers(len(pool)))]

    def small() -> str:  # valid runs stay short
        return pick(files["number"]) if rng.random() < 0.4 else str(int(rng.integers(1, 12)))

    command = pick(["simulate", "simulate", "simulate", "tune", "validate"])
    argv = [command]
    if rng.random() < 0.9:
        argv += ["--scenario", pick(files["scenario"])]
    argv += ["--periods", small()] if command == "tune" or rng.random() < 0.9 else []
    if command != "validate" and rng.random() < 0.8:
        argv += ["--seeds", small()]
    if command == "simulate":
        for option in ("policy", "demand-csv"):
            if rng.random() < 0.4:
                argv += [f"--{option}", pick(files[option])]
        for option in ("warmup", "seed"):
            if rng.random() < 0.4:
                argv += [f"--{option}", small()]
    if command == "tune" and rng.random() < 0.1:
        argv.append("--menu")
    if rng.random() < 0.3:
        argv.append("--json")
    if rng.random() < 0.05:
        argv.append(pick(["--bogus", "extra", "--periods"]))
    return argv


def test_fuzz_cli_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(20240903)
    files = _cli_files(tmp_path)
    outcomes = {0: 0, 1: 0, 2: 0}
    for _ in range(400):
        argv = _random_argv(rng, files)
        code, out, err = _cli(argv, capsys)
        # 1: validate ran and reports failed checks (a few random-action days cannot cover the request range)
        assert code in (0, 2) or (code == 1 and argv[0] == "validate" and out.endswith("checks failed\n")), \
            (argv, code, err)
        outcomes[code] += 1
        if code == 0 and "--json" in argv and argv[0] == "simulate":
            result = json.loads(out)
            assert math.isfinite(result["kpis"]["cost_per_day"]["mean"]), (argv, out)
    assert outcomes[0] >= 30 and outcomes[2] >= 150, outcomes


# --- regression tests: scenario JSON --------------------------------------------------------------------

def _preset_text(name: str = "steady") -> str:
    return get_preset(name).to_json()


def _with(value: str, key: str = '"horizon": 365') -> str:
    text = _preset_text()
    assert key in text
    return text.replace(key, key.split(":")[0] + ": " + value, 1)


@pytest.mark.parametrize("text", [
    _with("1" + "0" * 309), _with("1" + "0" * 5000), _with("-" + "9" * 400),
    _with("1" + "0" * 309, '"warehouse_to_store": 2'), _with("1e400"), _with("-1e400"), _with("NaN"),
    _with("Infinity"), _with("3661"), _with("5e-324", '"stockout": 20.0'), _with("1e-310", '"mean": 40.0'),
    _with("1e-12", '"dispersion": 0.35'),
    _with("1e400", '"production": 120.0'), _with("-1", '"production": 120.0'), _with("0", '"production": 120.0'),
    _with('"NaN"', '"stockout": 20.0'), _with("NaN", '"name": "steady"'),
    "[" * 100_000 + "]" * 100_000, '{"a": ' * 50_000 + "1" + "}" * 50_000,
    _preset_text().replace("{", '{"horizon": 30, ', 1), _preset_text().replace("{", '{"\\n": 1, ', 1),
], ids=lambda t: t[:24])
def test_scenario_json_rejects(text: str) -> None:
    with pytest.raises(ScenarioError) as info:
        Scenario.from_json(text)
    _assert_one_line(info.value)


@pytest.mark.parametrize("name", [
    "a\x07b", "a\x00b", "\u202aa", "\u202bb", "\u202cc", "\u202dd", "evil\u202egnp.exe", "\u2066a", "\u2067b",
    "\u2068c", "\u2069d", "   ", "", "\t", " padded", "padded ", "a\ud800b", "line\nbreak", "n" * (MAX_NAME_LENGTH + 1),
])
def test_scenario_name_rejected(name: str) -> None:
    with pytest.raises(ScenarioError, match="name") as info:
        Scenario.from_dict({**json.loads(_preset_text()), "name": name})
    _assert_one_line(info.value)


@pytest.mark.parametrize("name", ["n" * MAX_NAME_LENGTH, "caf\u00e9 \u65e5\u672c", "NaN", "steady (copy)"])
def test_scenario_name_accepted(name: str) -> None:
    assert Scenario.from_dict({**json.loads(_preset_text()), "name": name}).name == name


def test_scenario_file_with_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "excel.json"
    path.write_bytes(BOM + _preset_text("promo_shock").encode())
    assert load_scenario(str(path)) == get_preset("promo_shock")
    assert Scenario.from_json(BOM + _preset_text().encode()) == get_preset("steady")


@pytest.mark.parametrize("content", [b'{"name": "\xff"}', _preset_text().encode("utf-16"), b"\x00" * 10])
def test_scenario_file_not_utf8(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    _assert_one_line(info.value)


def test_scenario_file_size_is_capped_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    with path.open("wb") as handle:  # sparse: nothing is written to disk
        handle.truncate(MAX_SCENARIO_BYTES + 1)
    with pytest.raises(ScenarioError, match=f"allowed: at most {MAX_SCENARIO_BYTES:,}"):
        load_scenario(str(path))
    with pytest.raises(ScenarioError, match="characters"):
        Scenario.from_json(" " * (MAX_SCENARIO_BYTES + 1))


@pytest.mark.parametrize("ref", ["/dev/zero", "/dev/null", "{tmp}", "{tmp}/absent.json"])
def test_scenario_path_must_be_a_readable_regular_file(tmp_path: Path, ref: str) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(ref.format(tmp=tmp_path))
    _assert_one_line(info.value)


def test_capacity_unlimited_only_as_null() -> None:
    data = json.loads(_preset_text())
    data["capacities"]["production"] = None
    assert Scenario.from_dict(data).capacities.production == math.inf
    data["capacities"]["production"] = math.inf
    with pytest.raises(ScenarioError, match="null for unlimited"):
        Scenario.from_dict(data)


@pytest.mark.parametrize("build", [
    lambda s: dataclasses.replace(s, horizon=MAX_DAYS + 1),
    lambda s: dataclasses.replace(s, disruptions=(Disruption(start_day=0, length=1),) * (MAX_DISRUPTIONS + 1)),
    lambda s: dataclasses.replace(s, stores=(dataclasses.replace(
        s.stores[0], promotions=(Promotion(start_day=0, length=1, lift=0.1),) * (MAX_PROMOTIONS + 1)),)),
    lambda s: dataclasses.replace(s, capacities=Capacities(production=MAX_QUANTITY * 10)),
    lambda s: Promotion(start_day=MAX_DAYS + 1, length=1, lift=0.1),
    lambda s: Disruption(start_day=10**400, length=1),
], ids=["horizon", "disruptions", "promotions", "capacity", "promotion_start", "disruption_start"])
def test_valid_but_huge_scenarios_are_capped(build) -> None:
    with pytest.raises(ScenarioError) as info:
        build(get_preset("steady"))
    _assert_one_line(info.value)


def test_largest_scenario_is_accepted() -> None:
    steady = get_preset("steady").with_num_stores(MAX_STORES)
    stores = tuple(dataclasses.replace(m, promotions=(Promotion(start_day=0, length=1, lift=0.1),) * MAX_PROMOTIONS)
                   for m in steady.stores)
    scenario = dataclasses.replace(steady, stores=stores, horizon=MAX_DAYS,
                                   disruptions=(Disruption(start_day=0, length=1),) * MAX_DISRUPTIONS)
    assert Scenario.from_json(scenario.to_json()) == scenario


# --- regression tests: sales-history CSV ----------------------------------------------------------------

def _write_csv(tmp_path: Path, rows: list[list[str]], header=("date", "store", "quantity")) -> Path:
    path = tmp_path / "sales.csv"
    path.write_text(_csv_text(rows, header))
    return path


def test_csv_with_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    path.write_bytes(BOM + _csv_text(_csv_rows(4)).replace("\n", "\r\n").encode())
    history, stores = load_demand_csv(path)
    assert stores == sorted(STORES) and history.shape == (4, 3)


@pytest.mark.parametrize("field, value", [
    *[(0, d) for d in ("20240101", "2024/01/02", "2024-1-02", "\uff12\uff10\uff12\uff14-01-02", "2024-W01-2", "")],
    *[(2, q) for q in ("1_000", "nan", "NaN", "inf", "-1", "1e3", "", " 5", "+5", "\u0661", "1000001")],
    *[(1, s) for s in (" north", "north ", "", " ", "a\x00b", "a\u202eb", "\u2069x", "n" * (MAX_NAME_LENGTH + 1))],
])
def test_csv_field_rejected(tmp_path: Path, field: int, value: str) -> None:
    rows = _csv_rows(3)
    rows[4][field] = value
    with pytest.raises(DemandFileError, match=":6: ") as info:
        load_demand_csv(_write_csv(tmp_path, rows))
    _assert_one_line(info.value)


@pytest.mark.parametrize("change", ["extra_field", "missing_field", "extra_column", "duplicate_column"])
def test_csv_shape_rejected(tmp_path: Path, change: str) -> None:
    rows, header = _csv_rows(3), ("date", "store", "quantity")
    if change == "extra_field":
        rows[2].append("note")
    elif change == "missing_field":
        rows[2].pop()
    elif change == "extra_column":
        header, rows = (*header, "note"), [[*r, ""] for r in rows]
    else:
        header = ("date", "store", "store")
    with pytest.raises(DemandFileError) as info:
        load_demand_csv(_write_csv(tmp_path, rows, header))
    _assert_one_line(info.value)


def test_csv_padded_store_is_not_a_second_store(tmp_path: Path) -> None:
    rows = [*_csv_rows(2), ["2024-01-01", " north", "4"]]
    with pytest.raises(DemandFileError, match="leading or trailing whitespace"):
        load_demand_csv(_write_csv(tmp_path, rows))


@pytest.mark.parametrize("content", [b"date,store,quantity\n2024-01-01,n\xf6rth,1\n", "x".encode("utf-16"), b""])
def test_csv_not_utf8_or_empty(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "sales.csv"
    path.write_bytes(content)
    with pytest.raises(DemandFileError) as info:
        load_demand_csv(path)
    _assert_one_line(info.value)


def test_csv_size_is_capped_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    with path.open("wb") as handle:  # sparse: nothing is written to disk
        handle.truncate(MAX_DEMAND_CSV_BYTES + 1)
    with pytest.raises(DemandFileError, match=f"allowed: at most {MAX_DEMAND_CSV_BYTES:,}"):
        load_demand_csv(path)


def test_csv_store_count_and_date_span_bounded(tmp_path: Path) -> None:
    rows = [["2024-01-01", f"store{i:02d}", "1"] for i in range(MAX_STORES + 1)]
    with pytest.raises(DemandFileError, match=f"at most {MAX_STORES} stores"):
        load_demand_csv(_write_csv(tmp_path, rows))
    rows = [["2024-01-01", "a", "1"], [str(np.datetime64("2024-01-01") + MAX_DAYS), "a", "1"]]
    with pytest.raises(DemandFileError, match=f"at most {MAX_DAYS:,} days"):
        load_demand_csv(_write_csv(tmp_path, rows))


def test_csv_spanning_the_calendar_with_2000_stores_fails_small(tmp_path: Path) -> None:
    """The issue's 2 MB file (0001-01-01..9999-12-31, 2,000 stores) asked for 54 GiB: now it is refused
    while reading, with a peak of a few MB."""
    rng = np.random.default_rng(7)
    years = rng.integers(1, 10_000, 100_000)
    rows = [["0001-01-01", "s0", "1"], ["9999-12-31", "s1", "1"]]
    rows += [[f"{y:04d}-06-15", f"s{i % 2000}", "1"] for i, y in enumerate(years)]
    path = _write_csv(tmp_path, rows)
    assert 1_500_000 < path.stat().st_size < MAX_DEMAND_CSV_BYTES
    tracemalloc.start()
    try:
        with pytest.raises(DemandFileError) as info:
            load_demand_csv(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    _assert_one_line(info.value)
    assert peak < 50e6, peak


# --- regression tests: command line ---------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["simulate", "--periods", "100000000"], ["simulate", "--seeds", "1000000000"], ["tune", "--seeds", "1000000000"],
    ["simulate", "--warmup", "100000000"], ["simulate", "--seed", "-1"], ["validate", "--periods", str(MAX_DAYS + 1)],
    ["simulate", "--seeds", "2000", "--periods", "3000"], ["evaluate", "--seeds", "10000"],
    ["train", "--timesteps", "0"], ["simulate", "--warmup", "365"], ["simulate", "--periods", "x"],
    ["simulate", "--nope"], ["simulate", "--policy", "store=reorder_point:z=1e308"],
    ["simulate", "--policy", "store=base_stock:level=inf"], ["simulate", "--scenario", "evil\u202e\n"],
])
def test_cli_bad_arguments_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(argv, capsys)
    assert code == 2 and out == ""


def test_cli_run_size_counts_the_scenario_stores(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wide = tmp_path / "wide.json"
    wide.write_text(dataclasses.replace(get_preset("steady").with_num_stores(MAX_STORES), horizon=MAX_DAYS).to_json())
    seeds = MAX_AGENT_DAYS // (MAX_DAYS * (MAX_STORES + 2)) + 1
    code, _, err = _cli(["simulate", "--scenario", str(wide), "--seeds", str(seeds)], capsys)
    assert code == 2 and "agent-days" in err
    code, _, err = _cli(["tune", "--scenario", str(wide), "--seeds", str(seeds)], capsys)
    assert code == 2 and "agent-days" in err


def test_cli_warmup_as_long_as_the_history_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write_csv(tmp_path, _csv_rows(4))
    code, _, err = _cli(["simulate", "--demand-csv", str(path), "--warmup", "4", "--seeds", "2"], capsys)
    assert code == 2 and "--warmup" in err
    code, out, _ = _cli(["simulate", "--demand-csv", str(path), "--warmup", "3", "--seeds", "2", "--json"], capsys)
    assert code == 0 and math.isfinite(json.loads(out)["kpis"]["cost_per_day"]["mean"])


def test_cli_short_run_of_a_long_wide_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's case (50 stores, long horizon, a 30-day run) through a forecast-driven policy."""
    wide = tmp_path / "wide.json"
    wide.write_text(dataclasses.replace(get_preset("promo_shock").with_num_stores(MAX_STORES),
                                        horizon=MAX_DAYS).to_json())
    code, out, _ = _cli(["simulate", "--scenario", str(wide), "--policy", "learned", "--periods", "30",
                         "--seeds", "3", "--json"], capsys)
    assert code == 0 and json.loads(out)["periods"] == 30


# --- regression tests: forecast built only for the run --------------------------------------------------

def test_forecast_covers_the_run_and_matches_the_whole_horizon() -> None:
    scenario = dataclasses.replace(get_preset("promo_shock"), horizon=2000, disruptions=(
        Disruption(start_day=20, length=15, capacity_loss=0.5, extra_lead_time=3),))
    lead = scenario.lead_times
    reach = lead.warehouse_to_store + scenario.max_supplier_lead_time + lead.production
    short, full = Forecast.of(scenario, 30), Forecast.of(scenario)
    assert short.capacity.size == 30 + reach + LOOKAHEAD and full.capacity.size == 2000 + LOOKAHEAD
    size = short.capacity.size
    assert np.array_equal(short.cumulative, full.cumulative[: size + 1])
    assert np.array_equal(short.capacity, full.capacity[:size])
    assert np.array_equal(short.supplier_lead_time, full.supplier_lead_time[:size])


def test_growing_forecast_decides_as_the_whole_horizon_forecast() -> None:
    """Forecast-driven policies request the same quantities whether their forecast grows with the run
    (past the first year here) or covers the whole horizon from the start. The disruption lies just
    past what a first-year forecast without the protection-window reach would hold, so the supplier's
    pre-build in the days before day 365 would differ."""
    scenario = dataclasses.replace(get_preset("promo_shock"), horizon=900, capacities=Capacities(production=84.0),
                                   disruptions=(Disruption(start_day=470, length=40, capacity_loss=1.0),))
    demand = sample_demand(scenario, 2, np.random.default_rng(3), 420)

    def mix(whole: bool) -> PolicyMix:
        policies = [reference_policy(role) for role in ("store", "warehouse", "supplier")]
        for policy in policies:
            policy._cache = (scenario, Forecast.of(scenario), None) if whole else None  # (scenario, forecast, tuned)
        return PolicyMix(*policies)

    growing, whole = mix(False), mix(True)
    state = reset(scenario, 2)
    for t in range(demand.shape[1]):
        asked, reference = growing.actions(state, scenario), whole.actions(state, scenario)
        for name in ("store_orders", "warehouse_order", "production"):
            assert np.array_equal(getattr(asked, name), getattr(reference, name)), (t, name)
        state, _ = step(state, asked, demand[:, t], scenario)
    assert growing.supplier._cache[1].periods == 730  # grown once, past the first year


# --- regression tests: the twin's actions ---------------------------------------------------------------

@pytest.mark.parametrize("field", ["store_orders", "warehouse_order", "production"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_twin_rejects_non_finite_orders(field: str, value: float) -> None:
    scenario = get_preset("steady")
    state = reset(scenario, 2)
    actions = reorder_point_mix().actions(state, scenario)
    bad = getattr(actions, field).copy()
    bad.flat[-1] = value
    with pytest.raises(ActionError, match=f"actions.{field}") as info:
        step(state, dataclasses.replace(actions, **{field: bad}), np.ones((2, scenario.num_stores)), scenario)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


@pytest.mark.parametrize("allocation", ["proportional", "lowest_cover_first"])
def test_twin_huge_orders_ship_the_stock(allocation: str) -> None:
    """Orders of 1e308 once overflowed the proportional total, so nothing was shipped: requests are
    now cut to MAX_QUANTITY first, so the warehouse ships all it holds and every stock stays finite."""
    scenario = dataclasses.replace(get_preset("steady"), allocation=allocation, capacities=Capacities())
    state = reset(scenario, 1)
    huge = Actions(store_orders=np.array([[1e308, 1e308, 10.0]]), warehouse_order=np.array([1e308]),
                   production=np.array([1e308]))
    new, flows = step(state, huge, np.zeros((1, 3)), scenario)
    assert flows.warehouse_shipped.sum() == pytest.approx(state.warehouse_on_hand[0], rel=1e-12)
    assert (flows.store_orders <= MAX_QUANTITY).all() and flows.production_started[0] == MAX_QUANTITY
    opening, sold = state.units_in_network[0], flows.sold.sum()
    assert new.units_in_network[0] == pytest.approx(opening + flows.production_started[0] - sold, rel=1e-12)
    for name in ("store_on_hand", "warehouse_on_hand", "supplier_on_hand", "store_pipeline", "production_pipeline"):
        assert np.isfinite(getattr(new, name)).all(), name
