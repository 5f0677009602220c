"""What the pages share: cached onnxruntime sessions, cached runs, and the policy pickers (offering what applies
to the scenario shown, and saying so when a kept choice no longer does).

The caches are bounded in entries and time (``CACHE_SECONDS``): an uploaded model's session (at most
``guard.MAX_MODEL_BYTES`` of file, ``guard.MAX_PARAMETERS`` weights) is held for at most
``UPLOADED_SESSIONS`` uploads at a time, and dropped an hour after it was made (it is checked again if
a page needs it later)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

import streamlit as st

from core.agents.roles import ROLES
from core.app.live import YearRun, run_year_and_paths, year_references
from core.serving.models import OnnxChooser, PolicyLoadError, learned_policy
from core.serving.registry import POLICIES, PolicyChoiceError, Sources, mix_of
from core.simulation.scenario import Scenario

KEEP = "session"  # widgets keep their values when a person visits another page and comes back
ROLE_LABELS = {"store": "Stores", "warehouse": "Warehouse", "supplier": "Supplier"}
CACHE_SECONDS = 3600
UPLOADED_SESSIONS = 8


@st.cache_resource(show_spinner=False, max_entries=len(ROLES))
def shipped_chooser(role: str):
    """The shipped policy of ``role`` (an ONNX session, or the rule-based entry the manifest names)."""
    return learned_policy(role).choose


@st.cache_resource(show_spinner=False, max_entries=UPLOADED_SESSIONS, ttl=CACHE_SECONDS)
def uploaded_chooser(role: str, _model: bytes, digest: str) -> OnnxChooser:
    """A checked session for an uploaded model (``digest``, its sha256, keys the cache: the bytes are not hashed
    again)."""
    return OnnxChooser.checked(_model, role)


def uploaded_models() -> dict[str, bytes]:
    """This browser session's uploaded policies, by role."""
    return st.session_state.setdefault("uploaded_models", {})


def uploaded_names() -> dict[str, str]:
    """What this browser session calls its uploaded policies (the file name), by role."""
    return st.session_state.setdefault("uploaded_names", {})


def uploaded_label(role: str) -> str:
    """The uploaded policy of ``role`` in words: its name and the start of its sha256."""
    data = uploaded_models()[role]
    return f"{uploaded_names().get(role, 'uploaded file')}, sha256 {hashlib.sha256(data).hexdigest()[:12]}"


def uploaded_in_use(choices: dict[str, str]) -> str | None:
    """A sentence naming the uploaded policies that ``choices`` use (the roles on "learned"), or None."""
    used = [role for role in ROLES if choices.get(role) == "learned" and role in uploaded_models()]
    if not used:
        return None
    return "Uploaded policy in use: " + "; ".join(f"{ROLE_LABELS[role].lower()} {uploaded_label(role)}"
                                                   for role in used) + " (instead of the shipped one)."


def learned_choosers(roles: tuple[str, ...] = ROLES) -> dict:
    """Uploaded policies where this session has one, shipped ones otherwise, for ``roles``."""
    uploaded = uploaded_models()
    return {role: uploaded_chooser(role, uploaded[role], hashlib.sha256(uploaded[role]).hexdigest())
            if role in uploaded else shipped_chooser(role) for role in roles}


def learned_for(choices: dict[str, str]) -> dict:
    """The learned choosers that ``choices`` ask for (and no others, so a missing model only
    matters to the echelons that use it)."""
    return learned_choosers(tuple(r for r in ROLES if choices[r] == "learned"))


@st.cache_data(show_spinner=False, max_entries=64, ttl=CACHE_SECONDS)
def cached_run(scenario_json: str, choices: tuple[tuple[str, str], ...], seed: int, paths: int,
               uploads: tuple[str, ...]) -> YearRun:
    """The year of one chain on ``seed``'s customers and the mix on ``paths`` evaluation demand paths, in one batched
    rollout; ``uploads`` (digests of uploaded models) is part of the cache key."""
    del uploads
    scenario = Scenario.from_json(scenario_json)
    return run_year_and_paths(scenario, mix_for(scenario, dict(choices)), seed, paths)


def mix_for(scenario: Scenario, choices: dict[str, str]):
    """The mix of per-role registry keys, with this session's uploaded policies where it has them."""
    return mix_of(choices, scenario, Sources(learned=learned_for(choices)))


def upload_digests() -> tuple[str, ...]:
    """This session's uploaded models, by role and sha256: part of the cache keys of what they run."""
    return tuple(sorted(f"{r}:{hashlib.sha256(b).hexdigest()}" for r, b in uploaded_models().items()))


Result = TypeVar("Result")


def _or_message(compute: Callable[[], Result]) -> Result | None:
    """``compute()``, or an error message on the page (never a traceback) for a policy that cannot load or run."""
    try:
        return compute()
    except PolicyLoadError as exc:
        st.error(f"The learned policy cannot be loaded: {exc}. Choose a rule-based policy for that echelon.")
    except PolicyChoiceError as exc:
        st.error(f"That policy cannot run here: {exc}. Choose another for that echelon.")
    return None


def run_for(scenario: Scenario, choices: dict[str, str], seed: int, paths: int) -> YearRun | None:
    """A cached ``cached_run``, or an error message on the page (never a traceback)."""
    return _or_message(lambda: cached_run(scenario.to_json(), tuple(sorted(choices.items())), seed, paths,
                                          upload_digests()))


def valid_choice(key: str, options: list[str], default: str, what: str, container=st.sidebar) -> str:
    """The policy picker ``key``'s default among ``options`` (``default``, or the first option). A kept choice
    that ``options`` no longer has (it does not apply to the scenario now shown) is put back to it, with a
    message in ``container`` saying why."""
    default = default if default in options else options[0]
    kept = st.session_state.get(key)
    if kept is not None and kept not in options:
        st.session_state[key] = default
        kind = POLICIES.get(kept)
        why = f"{kind.label} does not apply to this scenario ({kind.description})" if kind else f"{kept!r} is unknown"
        container.info(f"{what}: {why}; now {POLICIES[default].label}.")
    return default


def policy_pickers(key: str, defaults: dict[str, str] | None = None, container=st.sidebar,
                   options: list[str] | None = None, roles: tuple[str, ...] = ROLES) -> dict[str, str]:
    """One selectbox per echelon of ``roles`` (pass ``compare.active_roles(scenario)`` to leave out the roles with
    nothing to do) over ``options`` (default: the whole policy registry; pass ``registry.applicable(scenario)``),
    kept for the session; the registry keys of the choices, by role of ``roles``."""
    defaults = defaults or {}
    options = list(POLICIES) if options is None else options
    uploaded = uploaded_models()

    def label(role: str) -> Callable[[str], str]:
        return lambda k: POLICIES[k].label + (" - uploaded" if k == "learned" and role in uploaded else "")

    def picker(role: str) -> str:
        default = valid_choice(f"{key}_{role}", options, defaults.get(role, "learned"),
                               f"{ROLE_LABELS[role]} policy", container)
        return container.selectbox(f"{ROLE_LABELS[role]} policy", options, format_func=label(role),
                                   index=options.index(default), key=f"{key}_{role}", persist_state=KEEP)

    return {role: picker(role) for role in roles}


@st.cache_data(show_spinner=False, max_entries=64, ttl=CACHE_SECONDS)
def cached_references(scenario_json: str, seed: int) -> dict:
    """The clairvoyant bound of the year's customers and the exact optimum where it exists (``year_references``)."""
    return year_references(Scenario.from_json(scenario_json), seed)
