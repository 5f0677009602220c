"""Serve exported policies with onnxruntime: numpy and onnxruntime only, never torch.

``exported_models/manifest.json`` lists one model card per role. ``load_policy`` checks a model
before it is used: the file's sha256 against the manifest, the ONNX graph's input width against
the role's feature list, and its outputs (``action``, ``probabilities``). Any problem raises
``PolicyLoadError`` naming the file and what is wrong; nothing half-loaded is returned.
``learned_mix`` decides each day with one onnxruntime call for every learned agent of a chain
(``hierarchy_policy.onnx``: the role graphs side by side), checked against the role files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.agents.menus import NUM_ACTIONS, MenuPolicy, decide, forecast_base_stock
from core.agents.observations import FEATURES, observe
from core.agents.roles import ROLES
from core.agents.rules import PolicyMix
from core.simulation.scenario import Scenario
from core.simulation.twin import Actions, State

EXPORTED_MODELS = Path(__file__).resolve().parents[2] / "exported_models"
OUTPUTS = ("action", "probabilities")
HIERARCHY_FILE = "hierarchy_policy.onnx"


class PolicyLoadError(ValueError):
    """An exported policy or its manifest cannot be used; the message says why."""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def session(model: bytes | str | Path) -> ort.InferenceSession:
    """A single-threaded onnxruntime session (the networks are tiny: threads only add latency)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several types for unreadable graphs
        raise PolicyLoadError(f"not a loadable ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None


@dataclass
class OnnxChooser:
    """Menu indices (and probabilities) from an ONNX policy, for a batch of observations."""

    session: ort.InferenceSession
    input_name: str

    @staticmethod
    def checked(model: bytes | str | Path, role: str) -> OnnxChooser:
        """Load ``model`` and check it fits ``role``: input width, the two outputs, and a batch of
        float32 observations of any size giving one probability per menu entry."""
        label = f"{role} policy {Path(model).name}" if not isinstance(model, bytes) else f"uploaded {role} policy"
        try:
            sess = session(model)
        except PolicyLoadError as exc:
            raise PolicyLoadError(f"{label}: {exc}") from None
        inputs = sess.get_inputs()
        width = len(FEATURES[role])
        if len(inputs) != 1 or inputs[0].shape[-1] != width:
            got = [i.shape for i in inputs]
            raise PolicyLoadError(f"{label}: input shape {got}; allowed: one input of width {width} "
                                  f"({', '.join(FEATURES[role][:3])}, ...)")
        names = tuple(o.name for o in sess.get_outputs())
        if names != OUTPUTS:
            raise PolicyLoadError(f"{label}: outputs {names}; allowed: {OUTPUTS}")
        chooser = OnnxChooser(sess, inputs[0].name)
        try:
            probe = chooser.probabilities(np.zeros((3, width), np.float32))
        except Exception as exc:  # onnxruntime: wrong dtype, fixed batch size, broken graph
            raise PolicyLoadError(f"{label}: cannot run a batch of 3 float32 observations "
                                  f"({type(exc).__name__}: {str(exc)[:160]})") from None
        if probe.shape != (3, NUM_ACTIONS):
            raise PolicyLoadError(f"{label}: probabilities of shape {probe.shape[1:]}; "
                                  f"allowed: ({NUM_ACTIONS},), one per menu entry")
        return chooser

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action, probabilities = self.session.run(None, {self.input_name: np.asarray(obs, np.float32)})
        return action.astype(np.int64), probabilities

    def probabilities(self, obs: np.ndarray) -> np.ndarray:
        return self.run(obs)[1]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.run(obs)[0]


def load_manifest(folder: Path = EXPORTED_MODELS) -> dict:
    path = Path(folder) / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except OSError as exc:
        raise PolicyLoadError(f"{path}: cannot read ({exc.strerror})") from None
    except json.JSONDecodeError as exc:
        raise PolicyLoadError(f"{path}: not valid JSON ({exc.msg})") from None
    except UnicodeDecodeError:
        raise PolicyLoadError(f"{path}: not a text file") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("roles"), dict):
        raise PolicyLoadError(f"{path}: no 'roles' object")
    return manifest


def load_policy(role: str, folder: Path = EXPORTED_MODELS, manifest: dict | None = None) -> OnnxChooser:
    """The checked ONNX chooser of ``role`` from an export folder."""
    folder = Path(folder)
    manifest = load_manifest(folder) if manifest is None else manifest
    card = manifest["roles"].get(role)
    if not isinstance(card, dict) or not {"file", "sha256", "features"} <= set(card):
        raise PolicyLoadError(f"manifest: no complete entry for role {role!r} (needs file, sha256, features)")
    if list(card["features"]) != list(FEATURES[role]):
        raise PolicyLoadError(f"manifest {role}: features differ from this version's {role} observation")
    path = folder / card["file"]
    if not path.is_file():
        raise PolicyLoadError(f"{path}: missing")
    if sha256(path) != card["sha256"]:
        raise PolicyLoadError(f"{path}: sha256 {sha256(path)[:12]}... does not match the manifest's "
                              f"{str(card['sha256'])[:12]}...")
    return OnnxChooser.checked(path, role)


def learned_policy(role: str, folder: Path = EXPORTED_MODELS, manifest: dict | None = None) -> MenuPolicy:
    """The role's exported policy; a role whose training was never kept is its rule-based menu entry."""
    manifest = load_manifest(folder) if manifest is None else manifest
    card = manifest["roles"].get(role, {})
    if isinstance(card, dict) and card.get("kind") == "rule":
        return forecast_base_stock(role, float(card["safety_factor"]))
    return MenuPolicy(role, load_policy(role, folder, manifest))


@dataclass
class HierarchyChooser:
    """The learned roles' policies in one session: one call decides every learned agent."""

    session: ort.InferenceSession
    roles: tuple[str, ...]

    @cached_property
    def output_names(self) -> list[str]:
        return [f"{role}/{output}" for role in self.roles for output in OUTPUTS]

    def run(self, observations: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per role: (actions, probabilities) of its (M, F) observations."""
        outputs = self.session.run(self.output_names, {f"{role}/observation": np.asarray(observations[role], np.float32)
                                           for role in self.roles})
        return {role: (outputs[2 * i].astype(np.int64), outputs[2 * i + 1]) for i, role in enumerate(self.roles)}


def load_hierarchy(folder: Path, manifest: dict, choosers: dict[str, OnnxChooser]) -> HierarchyChooser:
    """The manifest's one-call hierarchy file, checked: its sha256, its roles, and the same
    decisions as the role files ``choosers`` on a probe batch."""
    card = manifest.get("hierarchy")
    path = Path(folder) / str(card.get("file")) if isinstance(card, dict) else None
    if path is None or not path.is_file() or sha256(path) != card.get("sha256"):
        raise PolicyLoadError(f"manifest hierarchy: file missing or its sha256 does not match ({path})")
    joint = HierarchyChooser(session(path), tuple(card.get("roles", ())))
    if set(joint.roles) != set(choosers):
        raise PolicyLoadError(f"{path}: roles {joint.roles}; the manifest's learned roles are {tuple(choosers)}")
    probe = {role: np.random.default_rng(0).uniform(-5, 30, (7, len(FEATURES[role]))).astype(np.float32)
             for role in joint.roles}
    try:
        decided = joint.run(probe)
    except Exception as exc:  # onnxruntime: wrong names, widths or types
        raise PolicyLoadError(f"{path}: cannot run ({type(exc).__name__}: {str(exc)[:160]})") from None
    for role, chooser in choosers.items():
        if not np.allclose(decided[role][1], chooser.probabilities(probe[role]), atol=1e-6):
            raise PolicyLoadError(f"{path}: its {role} policy differs from {role}_policy.onnx")
    return joint


@dataclass(frozen=True)
class HierarchyMix(PolicyMix):
    """Role policies whose learned roles decide each day in one call of ``joint``."""

    joint: HierarchyChooser

    def actions(self, state: State, scenario: Scenario) -> Actions:
        policies: dict[str, MenuPolicy] = {role: getattr(self, role) for role in ROLES}
        forecast = policies[self.joint.roles[0]].forecast(scenario, state.day + 1)
        obs = {role: observe(role, state, scenario, forecast) for role in self.joint.roles}
        decided = self.joint.run({role: o.reshape(-1, o.shape[-1]) for role, o in obs.items()})
        choices = {role: decided[role][0].reshape(obs[role].shape[:-1]) if role in decided
                   else policies[role].choices(state, scenario, forecast) for role in ROLES}
        return decide(state, scenario, forecast, choices)


def learned_mix(folder: Path = EXPORTED_MODELS) -> PolicyMix:
    """The shipped hierarchy: one exported policy per role, deciding in one onnxruntime call a day
    when the export has a hierarchy file."""
    manifest = load_manifest(folder)
    policies = [learned_policy(role, folder, manifest) for role in ROLES]
    choosers = {p.role: p.choose for p in policies if isinstance(p.choose, OnnxChooser)}
    if not choosers or not manifest.get("hierarchy"):
        return PolicyMix(*policies)
    return HierarchyMix(*policies, joint=load_hierarchy(folder, manifest, choosers))
