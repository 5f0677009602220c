"""The command line's edges (issue 22): Ctrl-C and SIGTERM, a closed standard output, paths that cannot be read
or written, a ``--ray`` address that is malformed or does not answer, and every numeric option's range. Each
ends with one line on standard error and its exit code, never a traceback, a hang or a half-written file.

Subprocess runs are bounded by ``WAIT`` seconds (a run that takes longer is hung, as in the issue); nothing is
timed. Refusals run in this process through ``core.cli.main``, with the commands' long work replaced by a
failure (``no_work``), so a refusal that came after the work started fails the test instead of running it."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import core.cli as cli
from core.cli import ARGUMENT_RANGES, BAD_INPUT, CLOSED_PIPE, INTERRUPTED, TERMINATED, build_parser, main
from core.evaluation import distributed, optimum
from core.evaluation.sweep import PARAMETERS, read_table
from core.simulation.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
WAIT = 60  # seconds before a subprocess counts as hung
SMALL_SWEEP = ["sweep", "--dispersion", "0.3", "--warehouse-to-store", "2", "--num-stores", "1",
               "--capacity-factor", "1.5", "--cost-ratio", "4", "--seeds", "2", "--periods", "20"]
LONG_WORK = (("core.evaluation.report", "evaluate"), ("core.evaluation.sweep", "sweep"),
             ("core.evaluation.optimum", "solve"), ("core.learning.training", "run_phases"),
             ("core.learning.export", "export_run"), ("core.tools.browser", "take_screenshots"),
             ("core.cli", "_cmd_validate"))


# --- helpers ------------------------------------------------------------------------------------------------

def _start(argv: list[str], stdout: int = subprocess.PIPE) -> subprocess.Popen:
    """``python -m core ARGV`` in the repository, with Ctrl-C's default action even where the test runner was
    started with SIGINT ignored (a background job)."""
    return subprocess.Popen([sys.executable, "-m", "core", *argv], cwd=ROOT, text=True, stdout=stdout,
                            stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _finish(process: subprocess.Popen) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of ``process``, which must end within ``WAIT`` seconds."""
    try:
        out, err = process.communicate(timeout=WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, out or "", err


def _wait_for(path: Path, process: subprocess.Popen) -> None:
    """Until ``path`` exists (the command made it), while ``process`` runs; at most ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while not path.exists():
        assert process.poll() is None, _finish(process)
        assert time.monotonic() < deadline, f"{path} not made within {WAIT} s"
        time.sleep(0.05)


def _one_error_line(err: str) -> None:
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert err[:-1].isprintable() and "Traceback" not in err, err


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], *words: str) -> str:
    """``main(argv)`` exits with ``BAD_INPUT``, one line naming ``words`` on standard error, nothing on standard
    output; returns the line."""
    code = main(argv)
    captured = capsys.readouterr()
    assert code == BAD_INPUT and captured.out == "", (argv, code, captured)
    _one_error_line(captured.err)
    for word in words:
        assert word in captured.err, (argv, captured.err)
    return captured.err


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every command's long work fails the test if it starts: refusals must come before it."""

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("the command's work started before its arguments and paths were checked")

    for module, name in LONG_WORK:
        monkeypatch.setattr(f"{module}.{name}", started)


@pytest.fixture
def under_a_file(tmp_path: Path) -> Path:
    """A path below a regular file: nothing can be made there, whoever runs the tests (root included)."""
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    return file / "below"


# --- 1. Ctrl-C and SIGTERM ------------------------------------------------------------------------------

@pytest.mark.parametrize("number, code, line", [(signal.SIGINT, INTERRUPTED, "interrupted"),
                                                (signal.SIGTERM, TERMINATED, "terminated")], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_evaluate_with_one_line_and_nothing_half_written(tmp_path: Path, number: int, code: int,
                                                                        line: str) -> None:
    out = tmp_path / "new" / "evaluation"
    process = _start(["evaluate", "--seeds", "30", "--out", str(out)])
    _wait_for(out, process)  # made by the check of --out before the evaluation (about a minute of work) starts
    time.sleep(1.0)  # past that check's probe file, into the evaluation
    process.send_signal(number)
    returncode, stdout, err = _finish(process)
    assert (returncode, err, stdout) == (code, f"{line}\n", "")
    assert list(out.iterdir()) == []  # no report file, no temporary: the files are written at the end or not at all


def test_sweep_interrupted_while_writing_writes_table_and_figure(tmp_path: Path, capsys, monkeypatch) -> None:
    """Ctrl-C after the table is written waits until the figure is written too (both or neither), then stops the
    command; the handlers of SIGINT and SIGTERM are what they were before."""
    write = cli.write_bytes_atomic
    calls = []

    def write_then_interrupt(path: Path, data: bytes) -> None:
        write(path, data)
        calls.append(path)
        if len(calls) == 1:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(cli, "write_bytes_atomic", write_then_interrupt)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    out = tmp_path / "sweep.csv"
    code = main([*SMALL_SWEEP, "--out", str(out)])
    captured = capsys.readouterr()
    assert (code, captured.err) == (INTERRUPTED, "interrupted\n")
    assert calls == [out, tmp_path / "sweep.html"]
    assert {row["policy"] for row in read_table(out)} >= {"learned"}
    assert (tmp_path / "sweep.html").read_text().rstrip().endswith("</html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.csv", "sweep.html"]  # no temporary left
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_sweep_interrupted_while_running_writes_neither(tmp_path: Path, capsys, monkeypatch) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("core.evaluation.sweep.sweep", interrupted)
    code = main([*SMALL_SWEEP, "--out", str(tmp_path / "sweep.csv")])
    assert (code, capsys.readouterr().err) == (INTERRUPTED, "interrupted\n")
    assert list(tmp_path.iterdir()) == []


# --- 2. a closed standard output ----------------------------------------------------------------------------

def test_standard_output_closed_before_the_first_line_ends_quietly_with_141() -> None:
    read, write = os.pipe()
    os.close(read)  # the reader has gone, as `| head -1` after its line
    process = _start(["validate", "--scenario", "steady", "--periods", "30"], stdout=write)
    os.close(write)
    code, _, err = _finish(process)
    assert (code, err) == (CLOSED_PIPE, "")


def test_validate_piped_into_head_prints_no_traceback() -> None:
    """``python -m core validate | head -1``: the reader leaves after one line, while validate may still write."""
    process = _start(["validate"])
    first = process.stdout.readline()
    process.stdout.close()
    code, _, err = _finish(process)
    assert first.startswith("PASS ") and err == "" and code in (0, CLOSED_PIPE), (code, err)


# --- 3. paths that cannot be read or written -----------------------------------------------------------------

UNWRITABLE = [  # (argv from the blocked path and tmp_path, the option named)
    (lambda b, t: ["optimum", "--policy-out", str(b / "policy.csv")], "--policy-out"),
    (lambda b, t: ["optimum", "--policy-out", "/proc/no_such_folder/policy.csv"], "--policy-out"),
    (lambda b, t: ["optimum", "--policy-out", str(t)], "--policy-out"),  # a folder
    (lambda b, t: ["train", "--out", str(b)], "--out"),
    (lambda b, t: ["train", "--out", "/proc/no_such_run"], "--out"),
    (lambda b, t: ["evaluate", "--out", str(b)], "--out"),
    (lambda b, t: ["evaluate", "--out", str(t / "a_file")], "--out"),  # a file where a folder belongs
    (lambda b, t: ["evaluate", "--record", "--models", str(b), "--out", str(t / "evaluation")], "--models"),
    (lambda b, t: ["sweep", "--out", str(b / "sweep.csv")], "--out"),
    (lambda b, t: ["sweep", "--out", str(t / "sweep.csv"), "--figure", str(b / "sweep.html")], "--figure"),
    (lambda b, t: ["screenshots", "--out", str(b)], "--out"),
    (lambda b, t: ["screenshots", "--out", str(t / "pictures"), "--log", str(b / "server.log")], "--log"),
    (lambda b, t: ["pipeline", "--out", str(b)], "--out"),
    (lambda b, t: ["pipeline", "--out", str(t / "run"), "--models", str(b)], "--models"),
]


@pytest.mark.parametrize("argv, option", UNWRITABLE, ids=[f"{i}" for i in range(len(UNWRITABLE))])
def test_unwritable_path_is_refused_before_the_work(argv, option: str, under_a_file: Path, tmp_path: Path, capsys,
                                                    no_work) -> None:
    err = _refused(argv(under_a_file, tmp_path), capsys, option, "cannot write (")
    assert not (tmp_path / "sweep.csv").exists(), err  # the table is not written when the figure cannot be


@pytest.mark.parametrize("files, words", [
    ({}, ("config.json", "cannot read (No such file or directory)")),
    ({"config.json": '{"seed": 0'}, ("config.json", "not JSON")),
    ({"config.json": "[" * 100_000}, ("config.json", "not JSON")),
    ({"config.json": "[1, 2]"}, ("config.json", "got a JSON list")),
    ({"config.json": b"\xff\xfe{}"}, ("config.json", "not UTF-8")),
    ({"config.json": "{}", "hierarchy.json": '{"roles": 3}'}, ("hierarchy.json", "not a training record")),
    ({"config.json": "{}", "hierarchy.json": "{"}, ("hierarchy.json", "not a training record")),
], ids=["missing", "cut", "deep", "list", "binary", "bad-record", "cut-record"])
def test_export_from_a_folder_that_is_no_training_run(files: dict, words: tuple, tmp_path: Path, capsys,
                                                       no_work) -> None:
    run = tmp_path / "run"
    run.mkdir()
    for name, content in files.items():
        (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    _refused(["export", "--from", str(run), "--out", str(tmp_path / "models")], capsys, "--from", *words)
    assert not (tmp_path / "models").exists()


def test_export_of_a_missing_model_file_is_one_line(tmp_path: Path, capsys) -> None:
    """A file the run's record names but that is gone: the error reaches ``main`` as an ``OSError``."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "hierarchy.json").write_text('{"roles": {"store": "phase1/model.zip"}, "phases": []}')
    _refused(["export", "--from", str(run), "--out", str(tmp_path / "models")], capsys, "model.zip",
             "No such file or directory")


def test_policy_table_is_written_atomically_into_a_new_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "new" / "policy.csv"
    assert main(["optimum", "--level", "30", "--policy-out", str(out)]) == 0
    assert f"policy table: {out}" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert lines[0].endswith(",inventory_position,order") and len(lines) > 1000
    assert [p.name for p in out.parent.iterdir()] == ["policy.csv"]  # no temporary, no probe file left


# --- 4. --ray ADDRESS ------------------------------------------------------------------------------------------

def test_ray_address_where_nothing_listens_fails_within_the_bound(tmp_path: Path) -> None:
    """The issue's `evaluate --ray 127.0.0.1:1` hung past 100 s and ignored Ctrl-C."""
    code, out, err = _finish(_start(["evaluate", "--ray", "127.0.0.1:1", "--out", str(tmp_path / "evaluation")]))
    assert (code, out) == (BAD_INPUT, "")
    _one_error_line(err)
    assert "--ray: nothing answers at '127.0.0.1:1'" in err


@pytest.mark.parametrize("address", ["nonsense", "host:99999", "host:0", "host:", ":6379", "http://host:8265",
                                     "host:" + "9" * 5000, "host:\u0661\u0662", "ho\u202est:6379", "ray://"])
def test_malformed_ray_address_is_refused_before_anything_starts(address: str, tmp_path: Path, capsys,
                                                                 no_work) -> None:
    out = tmp_path / "evaluation"
    _refused(["evaluate", "--ray", address, "--out", str(out)], capsys, "--ray: got", "HOST:PORT")
    assert not out.exists()


def _answer_once(server: socket.socket, reply: bytes) -> None:
    connection, _ = server.accept()
    with connection:
        connection.recv(64)
        connection.sendall(reply)


def test_ray_address_that_answers_but_not_as_ray_is_refused(capsys, no_work) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        threading.Thread(target=_answer_once, args=(server, b"HTTP/1.1 400 Bad Request\r\n\r\n"), daemon=True).start()
        _refused(["tune", "--ray", f"127.0.0.1:{server.getsockname()[1]}"], capsys, "not as a Ray cluster")


def test_ray_address_that_accepts_but_never_answers_is_refused(capsys, no_work) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:  # never accepted: the kernel completes the handshake
        _refused(["tune", "--ray", f"127.0.0.1:{server.getsockname()[1]}"], capsys,
                 f"no answer within {distributed.PROBE_SECONDS:g} s")


def test_ray_init_is_bounded() -> None:
    """``ray.init`` runs under ``bounded``: a call that does not return is given up, a failure is one line."""
    never = threading.Event()
    with pytest.raises(distributed.RayStartError, match=r"joining the cluster did not finish within 0.2 s"):
        distributed.bounded(never.wait, 0.2, "joining the cluster")
    never.set()

    def fails() -> None:
        raise ConnectionError("GCS said\nno")

    with pytest.raises(distributed.RayStartError, match=r"joining the cluster failed: GCS said\\nno$"):
        distributed.bounded(fails, 5.0, "joining the cluster")
    assert distributed.bounded(lambda: 7, 5.0, "a call") == 7


# --- 5. numeric options ----------------------------------------------------------------------------------------

def test_optimum_level_of_a_billion_is_refused_at_once() -> None:
    """The issue's run looped once per unit up to the level before its size check."""
    code, out, err = _finish(_start(["optimum", "--level", "1000000000"]))
    assert (code, out) == (BAD_INPUT, "")
    _one_error_line(err)
    most = optimum.largest_level(PRESETS["lost_sales_textbook"])
    assert f"level: got 1000000000; allowed: an integer from 0 to {most}" in err


@pytest.mark.parametrize("unmet, lead", [("lost_sales", 1), ("lost_sales", 3), ("lost_sales", 5), ("backorders", 1),
                                         ("backorders", 4)])
def test_largest_level_is_the_last_that_fits_the_size_bound(unmet: str, lead: int) -> None:
    base = PRESETS["lost_sales_textbook"]
    scenario = dataclasses.replace(base, unmet_demand=unmet,
                                   lead_times=dataclasses.replace(base.lead_times, warehouse_to_store=lead))
    most = optimum.largest_level(scenario)
    bound, lower = optimum._bounds(scenario)
    assert optimum._size(scenario, max(bound, most), lower) <= optimum.MAX_TRANSITIONS
    assert optimum._size(scenario, max(bound, most + 1), lower) > optimum.MAX_TRANSITIONS
    with pytest.raises(optimum.ScenarioError, match=f"allowed: an integer from 0 to {most:,}"):
        optimum.evaluate_policy(scenario, most + 1)


CHECKED_BY_THE_COMMAND = {"level", "cap", "scenarios", "demand_paths"}  # ranges that depend on the scenario or command
BAD_INTEGERS = ["-1", "-7", str(-10**30), str(10**30), str(2**63), "9" * 5000, "1e9", "1.5", "x", "", "0x10", "nan",
                "inf", "-inf", "1e400", "\u202e1", "1 2", "--"]
BAD_LISTS = ["nan", "-1", "1e400", "1e9", "inf", "0.3,x", "0.3,", ",", "", "x", "0.3;0.4", "\u202e0.3"]
BAD_INTEGER_LISTS = ["2.5", "1,2.5"]  # the lead times and store counts of a sweep are integers
EXTRA = {"cap": ["--level", "5"]}  # --cap is checked with a --level


def _numeric_options() -> list[tuple[str, str, str, str]]:
    """(command, option, dest, kind) of every option that takes a number ("int") or a list of numbers ("list")."""
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    options = []
    for command, sub in commands.items():
        for action in sub._actions:
            kind = "int" if action.type is int else "float" if action.type is float else (
                "list" if command == "sweep" and action.dest in PARAMETERS else None)
            if kind:
                options.append((command, action.option_strings[0], action.dest, kind))
    return options


def test_every_numeric_option_has_a_range() -> None:
    options = _numeric_options()
    unchecked = [(c, o) for c, o, dest, kind in options
                 if kind != "list" and dest not in ARGUMENT_RANGES and dest not in CHECKED_BY_THE_COMMAND]
    assert not unchecked, f"options without a range (add them to core.cli.ARGUMENT_RANGES): {unchecked}"
    assert {dest for _, _, dest, kind in options if kind == "list"} == set(PARAMETERS)


def test_fuzz_numeric_options_exit_2_with_one_line(capsys, no_work) -> None:
    """Every numeric option of every command, with out-of-range and malformed values (seeded): exit code 2 and
    one line naming the option, before any work; each option at least once, then at random."""
    rng = np.random.default_rng(22)
    options = _numeric_options()
    picks = list(range(len(options))) + list(rng.integers(0, len(options), 150))
    for index in picks:
        command, option, dest, kind = options[index]
        values = BAD_INTEGERS if kind != "list" else BAD_LISTS + (
            BAD_INTEGER_LISTS if PARAMETERS[dest][1] else [])
        value = values[int(rng.integers(0, len(values)))]
        argv = [command, *EXTRA.get(dest, []), option, value]
        second = [o for o in options if o[0] == command and o[2] != dest and o[3] != "list"]
        if second and rng.random() < 0.3:  # a second bad option of the same command: either may be named
            argv += [second[int(rng.integers(0, len(second)))][1], str(-10**30)]
            _refused(argv, capsys)
        else:
            _refused(argv, capsys, option.lstrip("-"))
