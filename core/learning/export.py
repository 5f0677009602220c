"""Export trained policies to ONNX (``python -m core export``).

Each role's SB3 actor becomes one self-contained ``.onnx`` file (opset ``OPSET``, weights inside,
no ``.onnx.data`` sidecar): a batch of raw observations in, the greedy menu index (``action``,
int64) and the menu probabilities (``probabilities``, float32) out. The graph includes the
observations' normalisation (clipping to +-``CLIP``, then standardising with the statistics
measured when the policy was trained: ``core.learning.policies.Standardize``), folded into a per-feature
clip and the first layer (``Actor``).
``hierarchy_policy.onnx`` holds the learned roles' graphs side by side, for one onnxruntime call
per day (``merge_roles``). ``manifest.json`` holds a model card per role. The files are written
as a new version folder and switched to at once (``core.serving.model_sets``), so an interrupted
export leaves the previous models.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
from pathlib import Path

import numpy as np
import onnx
import torch
from stable_baselines3 import PPO
from torch import nn

from core.agents.menus import ACTION_MEANINGS, SAFETY_FACTORS
from core.agents.observations import CLIP, FEATURES
from core.agents.roles import ROLE, ROLES
from core.learning.hierarchy import Hierarchy
from core.learning.policies import STANDARD_CLIP
from core.serving import model_sets
from core.serving.manifest import HierarchyCard, RoleCard
from core.serving.models import HIERARCHY_FILE, OUTPUTS, sha256
from core.simulation.randomization import RANGES

OPSET = 18
PACKAGES = ("numpy", "onnxruntime", "torch", "stable-baselines3", "gymnasium", "pettingzoo")


class Actor(nn.Module):
    """What acting needs from an SB3 PPO policy, in few operators for low latency: one clip of
    every feature to the range whose standardised value lies within the extractor's
    +-``STANDARD_CLIP`` (and the observations' +-``CLIP``), the actor network with the
    standardisation folded into its first layer, the head (the correction, a linear layer of the latent, plus
    the tuned safety factor's part, a linear layer of the clipped observation), argmax and softmax. Equal to the
    policy's own clip -> standardise -> clip -> network up to float rounding (so a near-tie of two menu entries
    may resolve either way)."""

    def __init__(self, model: PPO) -> None:
        super().__init__()
        standardize = model.policy.pi_features_extractor
        mean, std = standardize.mean.detach().clone(), standardize.std.detach().clone()
        low, high = mean - STANDARD_CLIP * std, mean + STANDARD_CLIP * std
        # clip(clip(x, -CLIP, CLIP), low, high) as one clip, also when the two ranges do not overlap
        self.register_buffer("low", torch.minimum(torch.clamp(low, min=-CLIP), high))
        self.register_buffer("high", torch.maximum(torch.clamp(high, max=CLIP), low))
        layers = list(model.policy.mlp_extractor.policy_net)
        first = layers[0]
        folded = nn.Linear(first.in_features, first.out_features)
        with torch.no_grad():
            folded.weight.copy_(first.weight / std)
            folded.bias.copy_(first.bias - first.weight @ (mean / std))
        self.features = nn.Sequential(folded, *layers[1:])
        self.head, self.tuned = model.policy.action_net.as_linear(first.in_features)

    def forward(self, observation: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        clipped = torch.minimum(torch.maximum(observation, self.low), self.high)
        logits = self.head(self.features(clipped)) + self.tuned(clipped)
        return torch.argmax(logits, dim=-1), torch.softmax(logits, dim=-1)


def export_actor(model: PPO, role: str, path: Path) -> None:
    """Write ``model``'s actor as a single-file ONNX graph with a dynamic batch axis."""
    torch.set_num_threads(1)
    actor = Actor(model).eval()
    example = torch.zeros(4, len(FEATURES[role]), dtype=torch.float32)
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    with torch.no_grad():
        torch.onnx.export(actor, (example,), str(path), input_names=["observation"], output_names=list(OUTPUTS),
                          dynamic_shapes=({0: batch},), opset_version=OPSET, dynamo=True, external_data=False)
    onnx.checker.check_model(onnx.load(str(path)))


def merge_roles(paths: dict[str, Path]) -> onnx.ModelProto:
    """One graph with every given role's policy side by side: inputs ``ROLE/observation``, outputs
    ``ROLE/action`` and ``ROLE/probabilities``, so that one onnxruntime call decides a chain's day."""
    merged = None
    for role, path in paths.items():
        model = onnx.load(str(path))
        for value in [*model.graph.input, *model.graph.output, *model.graph.value_info]:
            for dim in value.type.tensor_type.shape.dim:
                if dim.dim_param:  # each role keeps its own batch size
                    dim.dim_param = f"{role}_{dim.dim_param}"
        model = onnx.compose.add_prefix(model, f"{role}/")
        merged = model if merged is None else onnx.compose.merge_models(merged, model, io_map=[])
    onnx.checker.check_model(merged)
    return merged


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in PACKAGES}


def export_run(run: Path, out: Path, command: str = "") -> dict:
    """Export every role of a training run (``run/hierarchy.json``) as a new model set in ``out``
    (``core.serving.model_sets``: a version folder, then one atomic switch, holding ``out``'s writer
    lock throughout: ``FolderBusy`` names the writer that keeps it); returns the manifest."""
    run, out = Path(run), Path(out)
    hierarchy = Hierarchy.load(run)
    config = json.loads((run / "config.json").read_text())
    with model_sets.new_set(out, command) as staging:
        learned: dict[str, Path] = {}  # role -> its ONNX file
        cards = {}
        for role in ROLES:
            if role not in hierarchy.roles:  # no phase for this role was kept: it stays rule-based
                cards[role] = RoleCard(kind="rule", features=FEATURES[role],
                                       safety_factor=ROLE[role].reference_safety_factor, actions=ACTION_MEANINGS,
                                       safety_factor_menu=SAFETY_FACTORS)
                continue
            model = PPO.load(hierarchy.model_path(run, role), device="cpu")
            path = staging / f"{role}_policy.onnx"
            export_actor(model, role, path)
            learned[role] = path
            cards[role] = RoleCard(kind="learned", features=FEATURES[role], file=path.name, sha256=sha256(path),
                                   opset=OPSET, input="observation", outputs=OUTPUTS, actions=ACTION_MEANINGS,
                                   safety_factor_menu=SAFETY_FACTORS, trained_from=hierarchy.roles[role],
                                   training_steps=int(model.num_timesteps))
        joint = {}
        if learned:
            onnx.save(merge_roles(learned), str(staging / HIERARCHY_FILE))
            joint = HierarchyCard(HIERARCHY_FILE, sha256(staging / HIERARCHY_FILE), tuple(learned)).to_dict()
        manifest = {
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": command, "training": {"config": config, "phases": hierarchy.to_dict()["phases"]},
            "training_ranges": RANGES, "evaluation": {}, "packages": _versions(),
            "roles": {role: card.to_dict() for role, card in cards.items()}, "hierarchy": joint,
        }
        return model_sets.publish(out, staging, manifest)


def torch_probabilities(model: PPO, obs: np.ndarray) -> np.ndarray:
    """The SB3 policy's own menu probabilities (for parity checks)."""
    with torch.no_grad():
        return model.policy.get_distribution(torch.as_tensor(obs, dtype=torch.float32)).distribution.probs.numpy()
