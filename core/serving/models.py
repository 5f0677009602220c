"""Serve exported policies with onnxruntime: numpy and onnxruntime only, never torch.

``exported_models/manifest.json`` lists one model card per role (read and type-checked by
``core.serving.manifest``; every file it names stays inside its folder). ``load_policy`` checks a
model before it is used: the file's sha256 against the manifest, then ``core.serving.guard``'s
checks of every uploaded or listed model (size, operators, shapes and cost bounded before anything
runs, the input width against the role's feature list, the outputs ``action`` and ``probabilities``,
timed probes over the training range). Any problem raises ``PolicyLoadError`` naming the file and
what is wrong; nothing half-loaded is returned, and a decision outside the menu raises it too.
``learned_mix`` decides each day with one onnxruntime call for every learned agent of a chain
(``hierarchy_policy.onnx``: the role graphs side by side), checked against the role files.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import onnxruntime as ort

from core.agents.menus import MenuPolicy, Tuning, decide, tuned_entry_policy
from core.agents.observations import observe
from core.agents.roles import ROLES
from core.agents.rules import PolicyMix
from core.serving.guard import OUTPUTS, PolicyLoadError, checked_session, menu_indices, probe_observations, read_model
from core.serving.manifest import file_inside, hierarchy_card, read_manifest, role_card
from core.simulation.scenario import Scenario
from core.simulation.twin import Actions, State

EXPORTED_MODELS = Path(__file__).resolve().parents[2] / "exported_models"
HIERARCHY_FILE = "hierarchy_policy.onnx"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class OnnxChooser:
    """Menu indices (and probabilities) from an ONNX policy, for a batch of observations."""

    session: ort.InferenceSession
    input_name: str

    @staticmethod
    def checked(model: bytes | str | Path, role: str, name: str | None = None) -> OnnxChooser:
        """Load ``model`` (bytes, or a file of at most ``guard.MAX_MODEL_BYTES``) and check it fits ``role``
        and has bounded cost (``core.serving.guard``); ``name`` names it in errors (default: its file name)."""
        if name is None and not isinstance(model, bytes):
            name = Path(model).name
        label = f"{role} policy {name}" if name else f"uploaded {role} policy"
        data = model if isinstance(model, bytes) else read_model(Path(model))
        sess, inputs = checked_session(data, (role,), label)
        return OnnxChooser(sess, inputs[role])

    def run(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        action, probabilities = self.session.run(None, {self.input_name: np.asarray(obs, np.float32)})
        return menu_indices(action, "the ONNX policy"), probabilities

    def probabilities(self, obs: np.ndarray) -> np.ndarray:
        return self.run(obs)[1]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.run(obs)[0]


def load_manifest(folder: Path = EXPORTED_MODELS) -> dict:
    return read_manifest(Path(folder) / "manifest.json")


def load_policy(role: str, folder: Path = EXPORTED_MODELS, manifest: dict | None = None) -> OnnxChooser:
    """The checked ONNX chooser of ``role`` from an export folder."""
    folder = Path(folder)
    manifest = load_manifest(folder) if manifest is None else manifest
    card = role_card(manifest, role)
    if card.kind != "learned":
        raise PolicyLoadError(f"manifest {role}: kind {card.kind!r}; allowed: 'learned'")
    path = file_inside(folder, card.file, f"manifest {role}")
    if not path.is_file():
        raise PolicyLoadError(f"{path}: missing")
    data = read_model(path)
    digest = hashlib.sha256(data).hexdigest()
    if digest != card.sha256:
        raise PolicyLoadError(f"{path}: sha256 {digest[:12]}... does not match the manifest's {card.sha256[:12]}...")
    return OnnxChooser.checked(data, role, path.name)


def _tuning(folder: Path, tuning: Tuning | None) -> Tuning:
    """``tuning``, or by default the registry's: the tuned safety factors ``folder`` ships for a scenario, else tuned
    here (``core.serving.registry.scenario_tuning``)."""
    if tuning is not None:
        return tuning
    from core.serving.registry import scenario_tuning  # the registry builds on this module
    return scenario_tuning(Path(folder))


def learned_policy(role: str, folder: Path = EXPORTED_MODELS, manifest: dict | None = None,
                   tuning: Tuning | None = None) -> MenuPolicy:
    """The role's exported policy, observing the tuned safety factors ``tuning`` gives each scenario (``_tuning``);
    a role whose training was never kept acts by its tuned entry."""
    manifest = load_manifest(folder) if manifest is None else manifest
    card = role_card(manifest, role)
    tuning = _tuning(folder, tuning)
    if card.kind == "rule":
        return tuned_entry_policy(role, tuning)
    return MenuPolicy(role, load_policy(role, folder, manifest), tuning=tuning)


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
        return {role: (menu_indices(outputs[2 * i], f"the ONNX {role} policy"), outputs[2 * i + 1])
                for i, role in enumerate(self.roles)}


def load_hierarchy(folder: Path, manifest: dict, choosers: dict[str, OnnxChooser]) -> HierarchyChooser:
    """The manifest's one-call hierarchy file, checked: its sha256, its roles, and the same
    decisions as the role files ``choosers`` on a probe batch."""
    card = hierarchy_card(manifest)
    path = file_inside(Path(folder), card.file, "manifest hierarchy") if card else None
    data = read_model(path) if path is not None and path.is_file() else b""
    if path is None or hashlib.sha256(data).hexdigest() != card.sha256:
        raise PolicyLoadError(f"manifest hierarchy: file missing or its sha256 does not match ({path})")
    roles = card.roles
    if set(roles) != set(choosers):
        raise PolicyLoadError(f"{path}: roles {roles}; the manifest's learned roles are {tuple(choosers)}")
    joint = HierarchyChooser(checked_session(data, roles, str(path), prefixed=True)[0], roles)
    probe = {role: probe_observations(role) for role in roles}
    decided = joint.run(probe)
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
        forecast, tuned = policies[self.joint.roles[0]].context(scenario, state.day + 1)
        obs = {role: observe(role, state, scenario, forecast, tuned) for role in self.joint.roles}
        decided = self.joint.run({role: o.reshape(-1, o.shape[-1]) for role, o in obs.items()})
        choices = {role: decided[role][0].reshape(obs[role].shape[:-1]) if role in decided
                   else policies[role].choices(state, scenario, forecast, tuned) for role in ROLES}
        return decide(state, scenario, forecast, choices)


def learned_mix(folder: Path = EXPORTED_MODELS, tuning: Tuning | None = None) -> PolicyMix:
    """The shipped hierarchy: one exported policy per role (observing the tuned safety factors of ``_tuning``),
    deciding in one onnxruntime call a day when the export has a hierarchy file."""
    manifest = load_manifest(folder)
    tuning = _tuning(folder, tuning)
    policies = [learned_policy(role, folder, manifest, tuning) for role in ROLES]
    choosers = {p.role: p.choose for p in policies if isinstance(p.choose, OnnxChooser)}
    if not choosers or not manifest.get("hierarchy"):
        return PolicyMix(*policies)
    return HierarchyMix(*policies, joint=load_hierarchy(folder, manifest, choosers))
