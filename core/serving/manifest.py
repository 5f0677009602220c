"""An export folder's ``manifest.json`` read as untrusted input.

The file is at most ``MAX_MANIFEST_BYTES`` of UTF-8 JSON, nested at most ``MAX_DEPTH`` deep, without
duplicate keys or non-finite numbers. The fields serving uses are type-checked here (``role_card``,
``hierarchy_card``), and every file the manifest names must be a plain relative name that resolves inside
the folder (``file_inside``: no absolute paths, no ``..``, no symlink out of it). Any problem raises
``PolicyLoadError``; the manifest never names a file that is unpickled or a folder outside its own.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.agents.menus import SAFETY_FACTORS
from core.agents.observations import FEATURES
from core.agents.roles import ROLES
from core.serving.guard import PolicyLoadError, read_limited

MAX_MANIFEST_BYTES = 2**20
MAX_DEPTH = 32
FILE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}(/[A-Za-z0-9_.-]{1,128}){0,3}")
SHA256 = re.compile(r"[0-9a-f]{64}")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise ValueError(f"duplicate key {_short(duplicate)}")
    return dict(pairs)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} out of range")
    return value


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number")


def _depth(value: object) -> int:
    """How deep lists and objects nest in ``value`` (iterative: no recursion to exhaust)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth <= MAX_DEPTH:
                stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def read_manifest(path: Path) -> dict:
    """The manifest at ``path``: a JSON object with a ``roles`` object."""
    data = read_limited(path, MAX_MANIFEST_BYTES, "a manifest")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise PolicyLoadError(f"{path}: not UTF-8 text") from None
    try:
        manifest = json.loads(text, object_pairs_hook=_unique_keys, parse_float=_finite,
                              parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PolicyLoadError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except ValueError as exc:  # duplicate keys, non-finite numbers, integers of too many digits
        raise PolicyLoadError(f"{path}: not valid JSON ({str(exc)[:120]})") from None
    except RecursionError:
        raise PolicyLoadError(f"{path}: nested too deeply; allowed: at most {MAX_DEPTH} levels") from None
    if _depth(manifest) > MAX_DEPTH:
        raise PolicyLoadError(f"{path}: nested too deeply; allowed: at most {MAX_DEPTH} levels")
    if not isinstance(manifest, dict) or not isinstance(manifest.get("roles"), dict):
        raise PolicyLoadError(f"{path}: no 'roles' object")
    return manifest


def file_inside(folder: Path, name: object, field: str) -> Path:
    """``folder / name`` for a relative file name that stays inside ``folder`` once symlinks are resolved."""
    allowed = f"allowed: a relative name of letters, digits, '_', '-', '.' inside {folder}"
    if not isinstance(name, str) or not FILE_NAME.fullmatch(name) or any(p in (".", "..") for p in name.split("/")):
        raise PolicyLoadError(f"{field}: file {_short(name)}; {allowed}")
    try:
        root = Path(folder).resolve()
        path = (root / name).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise PolicyLoadError(f"{field}: file {_short(name)} cannot be resolved ({exc})") from None
    if not path.is_relative_to(root):
        raise PolicyLoadError(f"{field}: file {_short(name)} resolves outside {folder}; {allowed}")
    return Path(folder) / name


@dataclass(frozen=True)
class RoleCard:
    """A role's entry in the manifest: its learned ONNX policy, or the menu entry it keeps as a rule."""

    kind: str  # "learned" or "rule"
    features: tuple[str, ...]  # the observation's columns, in order
    safety_factor: float | None = None  # rule: its menu entry
    file: str | None = None  # learned: the ONNX file, relative to the manifest's folder
    sha256: str | None = None
    opset: int | None = None
    input: str | None = None
    outputs: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()  # what each menu entry means
    safety_factor_menu: tuple[float, ...] = ()
    trained_from: str | None = None  # the SB3 model in the training run it was exported from
    training_steps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
                if v is not None and v != ()}


@dataclass(frozen=True)
class HierarchyCard:
    """The one-call file that holds every learned role's graph side by side."""

    file: str
    sha256: str
    roles: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "sha256": self.sha256, "roles": list(self.roles)}


_OPTIONAL = {"opset": int, "input": str, "trained_from": str, "training_steps": int}  # informative fields
_LISTS = {"outputs": str, "actions": str, "safety_factor_menu": (int, float)}


def _informative(card: dict, role: str) -> dict[str, Any]:
    """The card's informative fields, type-checked (they are shown, not used to decide)."""
    out: dict[str, Any] = {}
    for name, kind in _OPTIONAL.items():
        value = card.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise PolicyLoadError(f"manifest {role}: {name} {_short(value)}; allowed: {kind.__name__}")
        out[name] = value
    for name, kind in _LISTS.items():
        value = card.get(name, [])
        if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
            raise PolicyLoadError(f"manifest {role}: {name} {_short(value)}; allowed: a list")
        out[name] = tuple(value)
    return out


def role_card(manifest: dict, role: str) -> RoleCard:
    """The role's model card, checked: a rule (its ``safety_factor``) or a learned policy (its ``file``,
    ``sha256`` and ``features``, which must be this version's)."""
    roles = manifest.get("roles") if isinstance(manifest, dict) else None
    card = roles.get(role) if isinstance(roles, dict) else None
    kind = card.get("kind", "learned") if isinstance(card, dict) else None
    if kind == "rule":
        factor = card.get("safety_factor")
        if isinstance(factor, bool) or not isinstance(factor, int | float) \
                or not min(SAFETY_FACTORS) <= factor <= max(SAFETY_FACTORS):
            raise PolicyLoadError(f"manifest {role}: safety_factor {_short(factor)}; allowed: a number from "
                                  f"{min(SAFETY_FACTORS):g} to {max(SAFETY_FACTORS):g}")
        return RoleCard(kind="rule", features=FEATURES[role], safety_factor=float(factor),
                        **_informative(card, role))
    if kind != "learned" or not {"file", "sha256", "features"} <= set(card):
        if kind not in (None, "learned"):
            raise PolicyLoadError(f"manifest {role}: kind {_short(kind)}; allowed: 'learned' or 'rule'")
        raise PolicyLoadError(f"manifest: no complete entry for role {role!r} (needs file, sha256, features)")
    if card["features"] != list(FEATURES[role]):
        raise PolicyLoadError(f"manifest {role}: features differ from this version's {role} observation")
    if not isinstance(card["sha256"], str) or not SHA256.fullmatch(card["sha256"]):
        raise PolicyLoadError(f"manifest {role}: sha256 {_short(card['sha256'])}; allowed: 64 hexadecimal digits")
    if not isinstance(card["file"], str):
        raise PolicyLoadError(f"manifest {role}: file {_short(card['file'])}; allowed: a relative file name")
    return RoleCard(kind="learned", features=FEATURES[role], file=card["file"], sha256=card["sha256"],
                    **_informative(card, role))


def hierarchy_card(manifest: dict) -> HierarchyCard | None:
    """The one-call hierarchy file's card, checked (None when the manifest has none)."""
    card = manifest.get("hierarchy") if isinstance(manifest, dict) else None
    if not card:
        return None
    if not isinstance(card, dict):
        raise PolicyLoadError(f"manifest hierarchy: {_short(card)}; allowed: an object with file, sha256, roles")
    roles = card.get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) and r in ROLES for r in roles) \
            or len(set(roles)) != len(roles):
        raise PolicyLoadError(f"manifest hierarchy: roles {_short(roles)}; allowed: a list of distinct roles "
                              f"from {', '.join(ROLES)}")
    if not isinstance(card.get("sha256"), str):
        raise PolicyLoadError(f"manifest hierarchy: sha256 {_short(card.get('sha256'))}; allowed: 64 hex digits")
    if not isinstance(card.get("file"), str):
        raise PolicyLoadError(f"manifest hierarchy: file {_short(card.get('file'))}; allowed: a relative file name")
    return HierarchyCard(file=card["file"], sha256=card["sha256"], roles=tuple(roles))
