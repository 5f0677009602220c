"""The package's layers: every module of ``core`` imports only from its own layer or the layers below it
(the order in ``core/__init__.py``), and nothing in ``core`` imports streamlit, except the page benchmark
(``core/bench.py``), inside the functions that run the app's pages."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "core"
LAYERS = ("simulation", "agents", "serving", "evaluation", "learning", "app", "tools")
TOP = len(LAYERS)  # core.cli, core.bench, core.__main__


def layer(module: str) -> int:
    """Rank of a ``core`` module by its layer (the top-level modules above every layer)."""
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else TOP


def imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def function_imports(path: Path) -> list[str]:
    """The modules imported inside functions (when the function runs, not when the module is imported)."""
    functions = [node for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)]
    names = []
    for function in functions:
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
            elif isinstance(node, ast.Import):
                names.extend(alias.name for alias in node.names)
    return names


MODULES = sorted(CORE.rglob("*.py"))
RUNS_PAGES = CORE / "bench.py"  # times the app's pages with streamlit's AppTest


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(CORE)) for p in MODULES])
def test_imports_run_downward(path: Path) -> None:
    module = ".".join(("core", *path.relative_to(CORE).with_suffix("").parts))
    upward = [name for name in imports(path) if name.startswith("core.") and layer(name) > layer(module)]
    assert not upward, f"{module} imports from a higher layer: {upward}"
    streamlit = [name for name in imports(path) if name.split(".")[0] == "streamlit"]
    if path == RUNS_PAGES:  # only where the benchmark runs: importing core.bench does not import streamlit
        lazy = [name for name in function_imports(path) if name.split(".")[0] == "streamlit"]
        assert sorted(streamlit) == sorted(lazy), f"{module} imports streamlit at module level"
    else:
        assert not streamlit, f"{module} imports streamlit"


def test_every_module_belongs_to_a_layer() -> None:
    loose = [p.name for p in CORE.glob("*.py") if p.stem not in ("__init__", "__main__", "cli", "bench")]
    assert not loose, f"modules outside the layers: {loose}"


RUNS_RAY = (CORE / "evaluation" / "distributed.py", CORE / "bench.py")  # the Ray glue, and the speed-up benchmark


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(CORE)) for p in MODULES])
def test_ray_is_imported_only_inside_the_ray_glue_functions(path: Path) -> None:
    """Importing any module of ``core`` (serving, the app's pages) never imports Ray; only the executor and
    the benchmark import it, inside the functions that run on Ray."""
    ray = [name for name in imports(path) if name.split(".")[0] == "ray"]
    if path in RUNS_RAY:
        assert sorted(ray) == sorted(n for n in function_imports(path) if n.split(".")[0] == "ray")
    else:
        assert not ray, f"{path.name} imports ray"
