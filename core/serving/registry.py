"""The policy registry: every policy a person can pick, once, with its key, display label and factory.

The CLI's ``--policy`` SPECs, the app's pickers and the evaluation report all read this table. A key names
a role policy kind (``reorder_point``, ``tuned_base_stock``, ``forecast_base_stock``, ``learned``, ``random``);
a mix gives each role a key. ``learned`` is served from ONNX (``core.serving.models``); the ``tuned_*`` rules
are tuned for the scenario by simulation (``core.agents.tuning``), once per scenario, unless the models folder's
manifest ships them for that scenario (``TUNED_RULES``, written by ``python -m core tune --all --record``); the rest
are fixed rules.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from core.agents.menus import Chooser, MenuPolicy, Tuning, forecast_base_stock, reference_policy
from core.agents.roles import ROLES
from core.agents.rules import PolicyMix, RandomPolicy, ReorderPoint, RolePolicy, base_stock_mix
from core.agents.tuning import (
    MENU_SEEDS,
    capped_mix,
    tune_base_stock,
    tune_capped_base_stock,
    tune_menu,
    tuned_safety_factors,
)
from core.serving import model_sets
from core.serving.models import EXPORTED_MODELS, PolicyLoadError, learned_mix, learned_policy, load_manifest
from core.simulation.scenario import Scenario

TUNED_RULES = "tuned_rules"  # the manifest's section of tuned rules: {"command", "scenarios": {key: {rule: entry}}}


@dataclass
class Sources:
    """What the factories may draw on: the exported models (or choosers that replace them, such as a
    person's uploads) and a random generator."""

    models: Path = EXPORTED_MODELS
    learned: Mapping[str, Chooser] = field(default_factory=dict)  # role -> chooser, instead of ``models``
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))


class PolicyChoiceError(ValueError):
    """A policy key that the registry does not have, or that does not apply to the scenario."""


class TunedCache:
    """A tuner's results for the latest ``size`` scenarios (as ``functools.lru_cache``), which also says whether
    it holds a scenario's (``in``): what the app tells a person it is about to tune."""

    def __init__(self, tune: Callable[[Scenario], object], size: int = 32) -> None:
        self.tune, self.size = tune, size
        self.held: OrderedDict[Scenario, object] = OrderedDict()
        self.lock = threading.Lock()
        functools.update_wrapper(self, tune)

    def __call__(self, scenario: Scenario):
        with self.lock:
            if scenario in self.held:
                self.held.move_to_end(scenario)
                return self.held[scenario]
        result = self.tune(scenario)
        with self.lock:
            self.held[scenario] = result
            while len(self.held) > self.size:
                self.held.popitem(last=False)
        return result

    def __contains__(self, scenario: Scenario) -> bool:
        return scenario in self.held

    def cache_clear(self) -> None:
        with self.lock:
            self.held.clear()


@TunedCache
def tuned_mix(scenario: Scenario) -> PolicyMix:
    """Base-stock levels tuned for ``scenario`` (about 1.5 s at 3 stores, 15 s at 50)."""
    return tune_base_stock(scenario).mix()


tuned_menu = TunedCache(tuned_safety_factors)


@TunedCache
def tuned_capped_mix(scenario: Scenario) -> PolicyMix:
    """Capped base-stock (S, cap) tuned for a single-store ``scenario`` (about 2 s)."""
    return tune_capped_base_stock(scenario).mix()


def scenario_key(scenario: Scenario) -> str:
    """What names a scenario among the shipped tuned rules: the sha256 of its JSON."""
    return hashlib.sha256(scenario.to_json().encode()).hexdigest()


def tuned_entries(scenario: Scenario) -> dict[str, dict]:
    """Every tuned rule that applies to ``scenario``, tuned here as the registry tunes it, as the manifest ships it
    (``TUNED_RULES``; a capped base-stock without a cap has ``cap`` None)."""
    entries = {"tuned_forecast_base_stock": tune_menu(scenario, seeds=MENU_SEEDS),
               "tuned_base_stock": dataclasses.asdict(tune_base_stock(scenario))}
    if POLICIES["tuned_capped_base_stock"].applies(scenario):
        capped = dataclasses.asdict(tune_capped_base_stock(scenario))
        entries["tuned_capped_base_stock"] = {**capped, "cap": capped["cap"] if math.isfinite(capped["cap"]) else None}
    return entries


def tuned_rules(scenarios: list[Scenario]) -> dict[str, dict]:
    """``tuned_entries`` of each of ``scenarios``, by ``scenario_key``, each with the scenario's name: the manifest's
    ``TUNED_RULES`` scenarios."""
    return {scenario_key(s): {"scenario": s.name, "horizon": s.horizon, **tuned_entries(s)} for s in scenarios}


def record_tuned(out: Path, rules: dict[str, dict], serving: dict | None, command: str = "") -> None:
    """Write ``rules`` (``tuned_rules``) into ``out``'s manifest as its ``TUNED_RULES`` section, replacing what it
    held; refused (``model_sets.ModelSetChanged``, nothing written) unless ``out`` still serves ``serving``
    (``model_sets.served_set``'s description)."""
    section = {"command": command, "scenarios": rules}
    model_sets.update_manifest(out, lambda manifest: manifest.update({TUNED_RULES: section}), serving, command)


@functools.lru_cache(maxsize=8)
def _shipped_section(models: Path, stamp: tuple[int, int]) -> dict:
    """The manifest's tuned rules by scenario key (``stamp``, the manifest's mtime and size, keys the cache)."""
    del stamp
    try:
        section = load_manifest(models).get(TUNED_RULES, {})
    except PolicyLoadError:
        return {}
    scenarios = section.get("scenarios") if isinstance(section, dict) else None
    return scenarios if isinstance(scenarios, dict) else {}


def shipped_entry(key: str, scenario: Scenario, models: Path = EXPORTED_MODELS) -> dict | None:
    """The tuned rule ``key`` for exactly ``scenario`` as ``models``'s manifest ships it, or None."""
    try:
        stat = (Path(models) / model_sets.MANIFEST).stat()
    except OSError:
        return None
    entry = _shipped_section(Path(models), (stat.st_mtime_ns, stat.st_size)).get(scenario_key(scenario), {})
    found = entry.get(key) if isinstance(entry, dict) else None
    return found if isinstance(found, dict) else None


def _numbers(entry: dict, *names: str) -> dict[str, float]:
    """The finite numbers ``names`` of ``entry`` (``ValueError`` if one is not)."""
    values = {name: float(entry[name]) for name in names}
    if not all(map(math.isfinite, values.values())):
        raise ValueError(f"not finite: {values}")
    return values


def _from_entry(key: str, entry: dict, scenario: Scenario):
    """A shipped entry as its tuner's result (the menu: safety factors by role; else the mix); None if malformed."""
    try:
        if key == "tuned_forecast_base_stock":
            return _numbers(entry["safety_factors"], *ROLES)
        if key == "tuned_base_stock":
            levels = tuple(float(x) for x in entry["store_levels"])
            if len(levels) != scenario.num_stores or not all(map(math.isfinite, levels)):
                return None
            upstream = _numbers(entry, "warehouse_level", "supplier_level")
            return base_stock_mix(np.array(levels), upstream["warehouse_level"], upstream["supplier_level"])
        cap = math.inf if entry["cap"] is None else _numbers(entry, "cap")["cap"]
        return capped_mix(cap=cap, **_numbers(entry, "level", "warehouse_level", "supplier_level"))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


TUNERS = {"tuned_forecast_base_stock": tuned_menu, "tuned_base_stock": tuned_mix,
          "tuned_capped_base_stock": tuned_capped_mix}


def tuned(key: str, scenario: Scenario, models: Path = EXPORTED_MODELS):
    """The tuned rule ``key`` (a ``TUNERS`` key) for ``scenario``: shipped in ``models``'s manifest for exactly this
    scenario, else tuned here (once per scenario)."""
    entry = shipped_entry(key, scenario, models)
    shipped = None if entry is None else _from_entry(key, entry, scenario)
    return TUNERS[key](scenario) if shipped is None else shipped


def to_tune(choices: Mapping[str, str], scenario: Scenario, models: Path = EXPORTED_MODELS) -> list[str]:
    """The tuned rules among ``choices`` that neither ``models`` ships for ``scenario`` nor this process has tuned
    for it: using them tunes them (seconds, more with more stores)."""
    keys = dict.fromkeys(k for k in choices.values() if k in TUNERS and POLICIES[k].applies(scenario))
    return [k for k in keys if shipped_entry(k, scenario, models) is None and scenario not in TUNERS[k]]


def scenario_tuning(models: Path = EXPORTED_MODELS) -> Tuning:
    """What the learned policies observe of a scenario: the tuned forecast base-stock's safety factors, shipped in
    ``models``'s manifest for it or tuned here (the same entries the rule ``tuned_forecast_base_stock`` uses)."""
    return functools.partial(tuned, "tuned_forecast_base_stock", models=models)


def _learned(role: str, scenario: Scenario, sources: Sources) -> RolePolicy:
    if role in sources.learned:
        return MenuPolicy(role, sources.learned[role], tuning=scenario_tuning(sources.models))
    return learned_policy(role, sources.models)


@dataclass(frozen=True)
class PolicyKind:
    """One entry of the registry."""

    key: str
    label: str  # what the app shows
    description: str
    build: Callable[[str, Scenario, Sources], RolePolicy]  # (role, scenario, sources) -> the role's policy
    rule: bool = True  # a rule-based policy (a candidate for the best rule)
    applies: Callable[[Scenario], bool] = lambda scenario: True


POLICIES = {kind.key: kind for kind in (
    PolicyKind("learned", "learned (PPO, ONNX)", "the exported PPO policies, served by onnxruntime", _learned,
               rule=False),
    PolicyKind("forecast_base_stock", "forecast base-stock",
               "every role on its reference menu entry: order up to the forecast plus z standard deviations",
               lambda role, scenario, sources: reference_policy(role)),
    PolicyKind("tuned_forecast_base_stock", "forecast base-stock, tuned",
               "every role on the constant menu entry that is best for the scenario (tuned by simulation)",
               lambda role, scenario, sources: forecast_base_stock(
                   role, tuned("tuned_forecast_base_stock", scenario, sources.models)[role])),
    PolicyKind("tuned_base_stock", "tuned base-stock", "base-stock levels tuned by simulation for the scenario",
               lambda role, scenario, sources: getattr(tuned("tuned_base_stock", scenario, sources.models), role)),
    PolicyKind("tuned_capped_base_stock", "capped base-stock, tuned",
               "order up to S but at most a cap a day (Xin 2021), tuned by simulation; one store only",
               lambda role, scenario, sources: getattr(tuned("tuned_capped_base_stock", scenario, sources.models),
                                                       role),
               applies=lambda scenario: scenario.num_stores == 1),
    PolicyKind("reorder_point", "reorder point (s, S)", "textbook (s, S): the original project's baseline",
               lambda role, scenario, sources: ReorderPoint(role)),
    PolicyKind("random", "random", "uniform random quantities",
               lambda role, scenario, sources: RandomPolicy(role, sources.rng), rule=False),
)}


def applicable(scenario: Scenario) -> list[str]:
    """The registry keys that apply to ``scenario``."""
    return [key for key, kind in POLICIES.items() if kind.applies(scenario)]


def uniform(key: str) -> dict[str, str]:
    """Every role on policy ``key``."""
    return dict.fromkeys(ROLES, key)


def mix_of(choices: Mapping[str, str], scenario: Scenario, sources: Sources | None = None) -> PolicyMix:
    """The mix that gives each role the policy its key names. With every role learned from the exported
    models, the hierarchy decides each day in one onnxruntime call."""
    sources = sources or Sources()
    for role in ROLES:
        key = choices.get(role)
        if key not in POLICIES:
            raise PolicyChoiceError(f"policy for {role}: got {key!r}; allowed: {', '.join(POLICIES)}")
        if not POLICIES[key].applies(scenario):
            raise PolicyChoiceError(f"policy for {role}: {key} does not apply to scenario {scenario.name!r} "
                                    f"({POLICIES[key].description})")
    if all(choices[role] == "learned" for role in ROLES) and not sources.learned:
        return learned_mix(sources.models)
    return PolicyMix(*(POLICIES[choices[role]].build(role, scenario, sources) for role in ROLES))
