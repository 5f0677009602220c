"""Check an untrusted ONNX policy before onnxruntime runs it for real: the project's side of
``core.serving.onnx_checks``.

``onnx_checks`` holds every check (size, parsing, operators, no subgraphs, functions or external data, node and
parameter counts, shapes bounding the values and operations per observation row, the signature, timed probes and
the checks of their decisions); this module gives it what the project fixes: each role's ``FEATURES`` (the input
widths), ``NUM_ACTIONS`` menu entries, and the probe observations (``probe_observations``: edge rows, uniform over
+-``CLIP``, and what rule policies see in randomised training scenarios). Model files are read through
``core.simulation.untrusted`` (``read_model``). Any failure raises ``PolicyLoadError``; ``menu_indices`` checks
every decision made later, since probes cannot prove that no input triggers nonsense.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.agents.menus import NUM_ACTIONS, SAFETY_FACTORS
from core.agents.observations import CLIP, FEATURES, observe
from core.agents.roles import ROLES
from core.agents.rules import random_mix, reorder_point_mix
from core.serving import onnx_checks
from core.serving.onnx_checks import (
    ALLOWED_OPERATORS,
    CONSTANT_ATTRIBUTES,
    MAX_MODEL_BYTES,
    MAX_NODES,
    MAX_OPERATIONS_PER_ROW,
    MAX_PARAMETERS,
    MAX_SECONDS_PER_ROW,
    MAX_VALUES_PER_ROW,
    NUMERIC,
    OPSETS,
    OUTPUTS,
    PROBABILITY_SUM_TOLERANCE,
    PROBE_ROWS,
    TIE_TOLERANCE,
    TIMED_ROWS,
    TIMING_REPEATS,
    PolicyLoadError,
    session_options,
    timed_run,
)
from core.simulation.demand import sample_demand
from core.simulation.forecast import Forecast
from core.simulation.randomization import draw_scenario
from core.simulation.twin import reset, step
from core.simulation.untrusted import InputFileError, read_bytes

__all__ = [
    "ALLOWED_OPERATORS", "CONSTANT_ATTRIBUTES", "MAX_MODEL_BYTES", "MAX_NODES", "MAX_OPERATIONS_PER_ROW",
    "MAX_PARAMETERS", "MAX_SECONDS_PER_ROW", "MAX_VALUES_PER_ROW", "NUMERIC", "OPSETS", "OUTPUTS",
    "PROBABILITY_SUM_TOLERANCE", "PROBE_ROWS", "TIE_TOLERANCE", "TIMED_ROWS", "TIMING_REPEATS", "PolicyLoadError",
    "check_decisions", "checked_session", "menu_indices", "probe_observations", "read_limited", "read_model",
    "rollout_observations", "session_options", "timed_run",
]


def read_limited(path: Path, limit: int, what: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (``what`` it should hold, for the message)."""
    try:
        return read_bytes(Path(path), limit)
    except InputFileError as exc:
        raise PolicyLoadError(f"{path}: {exc} ({what})") from None


def read_model(path: Path) -> bytes:
    return read_limited(path, MAX_MODEL_BYTES, "an ONNX policy")


def checked_session(data: bytes, roles: tuple[str, ...], label: str,
                    prefixed: bool = False) -> tuple[ort.InferenceSession, dict[str, str]]:
    """A session for a policy graph that passed every check, and its input name per role.

    One role's file (``prefixed`` False) has one input of any name and the outputs ``OUTPUTS``; a
    hierarchy file has ``ROLE/observation`` inputs and ``ROLE/action``, ``ROLE/probabilities`` outputs."""
    return onnx_checks.checked_session(data, {role: FEATURES[role] for role in roles}, NUM_ACTIONS,
                                       probe_observations, label, prefixed, MAX_SECONDS_PER_ROW)


@functools.cache
def probe_observations(role: str) -> np.ndarray:
    """Observations over the range the features take in training: edge rows, uniform over +-``CLIP``,
    and what the rule policies' agents see in randomised training scenarios (float32, fixed seeds)."""
    edges_and_uniform = onnx_checks.range_rows(len(FEATURES[role]), CLIP)
    return np.concatenate([edges_and_uniform, rollout_observations()[role]]).astype(np.float32)


@functools.cache
def rollout_observations(scenarios: int = 4, chains: int = 4, days: int = 60, every: int = 3) -> dict[str, np.ndarray]:
    """What each role observes under the baseline rule and under random orders, in training scenarios."""
    rng = np.random.default_rng(1)
    seen: dict[str, list[np.ndarray]] = {role: [] for role in ROLES}
    for i in range(scenarios):
        scenario = draw_scenario(rng, "probe", store_counts=(3,))
        tuned = {role: float(rng.choice(SAFETY_FACTORS)) for role in ROLES}  # what tuning may find
        forecast = Forecast.of(scenario, days)
        demand = sample_demand(scenario, chains, rng, days)
        mix = reorder_point_mix() if i % 2 == 0 else random_mix(rng)
        state = reset(scenario, chains)
        for day in range(days):
            if day % every == 0:
                for role in ROLES:
                    seen[role].append(observe(role, state, scenario, forecast, tuned).reshape(-1, len(FEATURES[role])))
            state, _ = step(state, mix.actions(state, scenario), demand[:, day], scenario)
    return {role: np.concatenate(parts) for role, parts in seen.items()}


def check_decisions(action: np.ndarray, probabilities: np.ndarray, rows: int, label: str,
                    names: tuple[str, str] = OUTPUTS) -> None:
    """``onnx_checks.check_decisions`` for a menu of ``NUM_ACTIONS`` entries."""
    onnx_checks.check_decisions(action, probabilities, rows, label, NUM_ACTIONS, names)


def menu_indices(action: np.ndarray, label: str) -> np.ndarray:
    """``action`` as int64 indices into the menu of ``NUM_ACTIONS`` entries, checked at every decision."""
    return onnx_checks.menu_indices(action, label, NUM_ACTIONS)
