"""``OUT/hierarchy.json`` of a training run: the model each learned role uses, and every phase's outcome."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.serving.files import write_json_atomic
from core.serving.manifest import file_inside

FILE = "hierarchy.json"


@dataclass(frozen=True)
class PhaseRecord:
    """One training phase's outcome: kept only if it lowered the mean held-out system cost (at its end, or else at one
    of its later checkpoints: ``training.fallback_checkpoints``)."""

    phase: int
    role: str  # the role trained, or "joint"
    kept: bool
    cost_before: dict[str, float]  # preset -> held-out cost per day of the hierarchy before the phase
    cost_after: dict[str, float]
    relative_cost: float  # mean over presets of after / before
    seconds: float
    checkpoint: int | None = None  # kept at this checkpoint's transitions, not the phase's end (its end was rejected)


@dataclass
class Hierarchy:
    """The learned roles' models (paths relative to the run folder) and the phases run so far."""

    roles: dict[str, str] = field(default_factory=dict)
    phases: list[PhaseRecord] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def done(self, phase: int) -> bool:
        return any(record.phase == phase for record in self.phases)

    def model_path(self, run: Path, role: str) -> Path:
        """The role's model file, which must lie inside the run folder."""
        return file_inside(run, self.roles[role], f"{FILE} {role}")

    @staticmethod
    def load(run: Path) -> Hierarchy:
        """The run's record (empty for a new run)."""
        path = Path(run) / FILE
        if not path.exists():
            return Hierarchy()
        data = json.loads(path.read_text())
        return Hierarchy(roles=dict(data["roles"]), phases=[PhaseRecord(**record) for record in data["phases"]])

    def save(self, run: Path) -> None:
        write_json_atomic(Path(run) / FILE, self.to_dict())
