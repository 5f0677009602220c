"""Hierarchical PPO training, one role at a time (``python -m core train``).

Every policy corrects a rule: it observes its role's tuned safety factor for the scenario (the best constant menu
entry, ``core.agents.tuning.tuned_safety_factors``) and aims at it plus a learned correction that starts at zero
(``core.learning.policies.SafetyFactorHead``). Training and acceptance scenarios come from the run's pools
(``core.learning.pool``: scenarios of the benchmark's family from seeds of their own, and the presets), each tuned
once. Phase 0 gives every role its start policy, untrained: the tuned rule itself. Phase 1 trains the store policy,
shared by every store; phase 2 the warehouse with the stores frozen; phase 3 the supplier with stores and warehouse
frozen; phase 4 fine-tunes the learned roles in turn (round robin, each with the others frozen at their latest
version) at a lower learning rate. A role without a kept phase acts by its tuned entry. Every phase begins with the
critic's warm-up: for its first ``critic_warmup`` share of transitions only the value function learns
(``actor_frozen``). After it the learning rate falls over the phase (``LearningRateDecay``), and after every update
the actor is pulled a little back toward its start (``StartAnchor``): toward a correction of zero, so that it leaves
the rule only where the cost says to.

After each phase the new hierarchy and the previous one are evaluated on held-out seeds of every preset and of the
acceptance pool's scenarios; the phase is kept only if it lowers the mean system cost and raises no scenario's by
more than ``TOLERATED_RISE`` (it is judged by its worst scenario), otherwise the role keeps its previous policy.
Each phase writes, under ``OUT/phaseK_ROLE/``: the SB3 checkpoint (``model.zip``, plus periodic ones to resume from:
each written atomically, and a damaged latest one is skipped for the one before), TensorBoard logs, ``metrics.json``
(per episode: reward, fill rate, lost sales, holding and total cost per day; per update: losses) and plotly learning
curves (``learning_curves.html``). ``OUT/hierarchy.json`` records which model each role uses.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback, CheckpointCallback
from stable_baselines3.common.logger import KVWriter, Logger, make_output_format
from stable_baselines3.common.utils import FloatSchedule

from core.agents.menus import SAFETY_FACTORS, Tuning
from core.agents.observations import FEATURES
from core.agents.roles import ROLE, ROLES
from core.evaluation.plots import learning_curves_figure
from core.evaluation.statistics import mean_cost
from core.learning import pool as pools
from core.learning.hierarchy import Hierarchy, PhaseRecord
from core.learning.policies import SafetyFactorPolicy, Standardize, frozen_choosers, model_mix
from core.learning.pool import PoolScenario
from core.learning.vec_env import RoleVecEnv
from core.serving.files import remove_temporaries, write_atomic, write_bytes_atomic, write_json_atomic
from core.simulation.scenario import Scenario

TOLERATED_RISE = 0.01  # a phase is rejected if it raises any preset's held-out cost by more than this fraction
FALLBACK_SHARES = (0.9, 0.8, 0.7)  # a rejected role phase tries its checkpoints at these shares of its budget
ANCHOR_SAMPLE, ANCHOR_STEPS, ANCHOR_RATE = 4096, 10, 1e-4  # how ``StartAnchor`` fits its pull (Adam)
SAMPLE_SPREAD = 0.5  # safety factors around the start's while the standardisation is measured
PHASES = {0: "start", 1: "store", 2: "warehouse", 3: "supplier", 4: "joint"}
LOG = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """Everything a training run depends on; written to ``OUT/config.json``."""

    out: str = "runs/latest"  # output folder
    timesteps: int = 500_000  # agent transitions per upstream phase (phase 4: in total)
    store_timesteps: int = 7_000_000  # agent transitions of the store phase (the stores learn the most)
    seed: int = 0
    groups: int = 16  # scenarios trained on at once (each redrawn every episode)
    rows: int = pools.STORE_ROWS  # stores per scenario while the stores learn (rows / its stores chains)
    upstream_chains: int = 16  # chains per scenario while the warehouse or the supplier learns
    pool_scenarios: int = 192  # random training scenarios (``core.learning.pool``), besides the presets
    acceptance_scenarios: int = 24  # random scenarios of the phase acceptance check, besides the presets
    preset_share: float = 0.0  # share of training scenarios that are presets (drawn more often than the others,
    # the stores learned corrections that helped the presets and cost up to 3.5 % on drawn scenarios like them)
    horizon: int = 365  # days per training episode
    learning_rate: float = 1e-3
    joint_learning_rate: float = 3e-4
    joint_rounds: int = 2
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    n_steps: int = 16  # per row; a rollout is n_steps x rows transitions
    batch_size: int = 4096
    n_epochs: int = 5
    net_arch: tuple[int, ...] = (64, 64)
    exploration_spread: float = 0.3  # the policy's exploration around the safety factor it aims at
    learning_rate_end: float = 0.02  # the learning rate at a phase's end, as a share of its start (linear decay)
    anchor_pull: float = 1 / 150  # share of the way back to the start's aims after every update (``StartAnchor``)
    critic_warmup: float = 0.1  # share of a fresh policy's phase at its start in which only the value function learns
    acceptance_seeds: int = 16  # held-out seeds per scenario for the phase acceptance check
    acceptance_days: int | None = None  # days of each preset in the acceptance check (None: its horizon, as evaluated)
    checkpoint_every: int = 250_000  # transitions
    progress_bar: bool = True
    scenario: str | None = None  # a scenario's JSON: train and accept on it alone (``train --scenario``)

    def __post_init__(self) -> None:
        for name in ("timesteps", "store_timesteps", "groups", "rows", "upstream_chains", "pool_scenarios", "horizon",
                     "n_steps", "batch_size", "n_epochs", "acceptance_seeds", "checkpoint_every", "joint_rounds"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}; allowed: an integer >= 1")
        if self.rows % max(pools.STORE_COUNTS):
            raise ValueError(f"rows: got {self.rows!r}; allowed: a multiple of {max(pools.STORE_COUNTS)}")
        if not isinstance(self.acceptance_scenarios, int) or self.acceptance_scenarios < 0:
            raise ValueError(f"acceptance_scenarios: got {self.acceptance_scenarios!r}; allowed: an integer >= 0")
        if not 0.0 <= self.preset_share <= 1.0:
            raise ValueError(f"preset_share: got {self.preset_share!r}; allowed: 0 to 1")
        if self.acceptance_days is not None and (not isinstance(self.acceptance_days, int) or self.acceptance_days < 1):
            raise ValueError(f"acceptance_days: got {self.acceptance_days!r}; allowed: an integer >= 1, or None")
        if not 0.0 < self.learning_rate_end <= 1.0:
            raise ValueError(f"learning_rate_end: got {self.learning_rate_end!r}; allowed: above 0 to 1")
        if not 0.0 <= self.anchor_pull < 1.0:
            raise ValueError(f"anchor_pull: got {self.anchor_pull!r}; allowed: 0 to below 1")
        if not 0.0 <= self.critic_warmup < 1.0:
            raise ValueError(f"critic_warmup: got {self.critic_warmup!r}; allowed: 0 to below 1")
        if not 0.01 <= self.exploration_spread <= 10.0:
            raise ValueError(f"exploration_spread: got {self.exploration_spread!r}; allowed: 0.01 to 10")
        self.fixed_scenario()  # a bad scenario fails here, before the run writes anything

    def fixed_scenario(self) -> Scenario | None:
        """The one scenario this run trains on, or None: a freshly randomised scenario every episode."""
        return None if self.scenario is None else Scenario.from_json(self.scenario)


class TrainingLog(KVWriter):
    """Keeps SB3's per-update values (losses, entropy, ...) for ``metrics.json``."""

    def __init__(self) -> None:
        self.updates: list[dict[str, float]] = []

    def write(self, key_values, key_excluded, step=0) -> None:
        row = {k: float(v) for k, v in key_values.items() if isinstance(v, (int, float, np.floating))}
        row["timesteps"] = float(step)
        self.updates.append(row)

    def close(self) -> None:
        pass


class EpisodeLog(BaseCallback):
    """Collects every finished training episode's business metrics from the VecEnv."""

    def __init__(self) -> None:
        super().__init__()
        self.episodes: list[dict[str, float | str]] = []

    def _on_step(self) -> bool:
        env: RoleVecEnv = self.training_env
        for episode in env.completed_episodes:
            self.episodes.append({**episode, "timesteps": self.num_timesteps})
        env.completed_episodes.clear()
        return True


def _save_model(model: PPO, path: Path) -> None:
    write_atomic(path, model.save)


class AtomicCheckpoint(CheckpointCallback):
    """SB3's periodic checkpoints (``ROLE_<steps>_steps.zip``), each written atomically."""

    def _on_step(self) -> bool:
        if self.n_calls % self.save_freq == 0:
            _save_model(self.model, Path(self._checkpoint_path(extension="zip")))
        return True


CHECKPOINT_MEMBERS = frozenset({"data", "policy.pth", "policy.optimizer.pth"})  # what resuming reads


def _damage(checkpoint: Path) -> str | None:
    """Why ``checkpoint`` cannot be resumed from (not a zip, a member failing its CRC check, or
    SB3's members missing: a truncated file can look like the zip nested at its end), or None."""
    try:
        with zipfile.ZipFile(checkpoint) as archive:
            broken = archive.testzip()
            missing = CHECKPOINT_MEMBERS - set(archive.namelist())
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        return f"{type(exc).__name__}: {exc}"
    if broken:
        return f"member {broken} fails its CRC check"
    return f"lacks {', '.join(sorted(missing))}" if missing else None


def checkpoint_steps(checkpoint: Path) -> int:
    """The transitions a checkpoint was saved at (``ROLE_<steps>_steps.zip``)."""
    return int(checkpoint.stem.split("_")[-2])


def saved_checkpoints(phase_dir: Path) -> list[Path]:
    """A phase's checkpoints, in order of steps."""
    return sorted((phase_dir / "checkpoints").glob("*_steps.zip"), key=checkpoint_steps)


def latest_intact(checkpoints: list[Path]) -> Path | None:
    """The last of ``checkpoints`` (in order of steps) that is intact; those skipped are logged."""
    for checkpoint in reversed(checkpoints):
        damage = _damage(checkpoint)
        if damage is None:
            return checkpoint
        LOG.warning("skipped checkpoint %s (cannot resume from it: %s)", checkpoint, damage)
    if checkpoints:
        LOG.warning("no intact checkpoint in %s: the phase starts again", checkpoints[0].parent)
    return None


def _figures(phase_dir: Path, episodes: list[dict], updates: list[dict]) -> None:
    """learning_curves.html, written atomically."""
    figure = learning_curves_figure(episodes, updates, f"Learning curves: {phase_dir.name}")
    write_bytes_atomic(phase_dir / "learning_curves.html", figure.to_html(include_plotlyjs=True).encode())


@dataclass(frozen=True)
class TrainingProgress:
    """Where a phase stands: the fraction done and its learning curve so far (``metrics.json``'s points)."""

    fraction: float
    episodes: list[dict]
    updates: list[dict]


class Progress(BaseCallback):
    """Reports a ``TrainingProgress`` to ``report`` after every step (the app's progress bar and live curve)."""

    def __init__(self, report: Callable[[TrainingProgress], None], total: int, episodes: EpisodeLog,
                 log: TrainingLog) -> None:
        super().__init__()
        self.report, self.total, self.episodes, self.log = report, total, episodes, log

    def _on_step(self) -> bool:
        self.report(TrainingProgress(min(self.num_timesteps / self.total, 1.0), self.episodes.episodes,
                                     self.log.updates))
        return True


def observation_sample(env: RoleVecEnv, seed: int, days: int = 120) -> np.ndarray:
    """The role's observations over ``days`` of choices near where a fresh policy starts (``start_aims``;
    standard deviation ``SAMPLE_SPREAD``): the states a policy visits, not those of random
    menu entries, which would stretch the standardisation so far that the visited states look alike."""
    rng = np.random.default_rng(seed)
    menu = np.asarray(SAFETY_FACTORS)
    samples = [env.reset()]
    for _ in range(min(days, env.horizon - 1)):
        aims = start_aims(samples[-1], env.role) + rng.normal(0.0, SAMPLE_SPREAD, env.num_envs)
        samples.append(env.step(np.abs(aims[:, None] - menu[None, :]).argmin(axis=1))[0])
    env.reset()
    return np.concatenate(samples)


def start_aims(observations: np.ndarray, role: str) -> np.ndarray:
    """Where a fresh policy aims in each situation: the role's tuned safety factor (its last observation)."""
    return observations[:, -1].astype(float)


class LearningRateDecay(BaseCallback):
    """The learning rate over a phase: ``rate`` at its first transition (``first``; a resumed or continued model
    counts from there), falling linearly to ``end_share`` of it at its last, set before every update. The model
    keeps SB3's own constant schedule: a saved model holds no class of ours."""

    def __init__(self, rate: float, end_share: float, first: int, timesteps: int) -> None:
        super().__init__()
        self.rate, self.end_share, self.first, self.timesteps = rate, end_share, first, timesteps

    def share(self) -> float:
        """The rate now, as a share of ``rate``."""
        left = 1.0 - min(max(self.model.num_timesteps - self.first, 0) / self.timesteps, 1.0)
        return self.end_share + (1.0 - self.end_share) * left

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.model.lr_schedule = FloatSchedule(self.rate * self.share())


class StartAnchor(BaseCallback):
    """A pull toward the rule a policy started from: after every update the actor's aims move ``pull`` x the learning
    rate's share (``share``) of the way back to ``start_aims``, fitted on ``ANCHOR_SAMPLE`` of the last rollout's
    observations. Where the cost falls steeply away from the rule (sales lost at a low margin) the updates outrun the
    pull; where it is flat around the rule's near-optimal choice (the retail presets) the updates' noise and what
    the network carries over from other situations no longer walk the aims away. Measured, store phase of seed 0 on
    the acceptance seeds: without it the stores ended 0.1-0.4 % above their start on the retail presets, aiming 0.2-0.8
    safety factors higher; with a pull of 1/150 at 0.0-0.3 %, the lost-sales and thin-margin gains unchanged. Scaled
    with the learning rate, it keeps its balance with the updates as the rate falls (a constant pull of 1/150 held
    the retail presets but took most of the gains back at the phase's end)."""

    def __init__(self, role: str, pull: float, share: Callable[[], float], seed: int) -> None:
        super().__init__()
        self.role, self.pull, self.share = role, pull, share
        self.rng = np.random.default_rng(seed)
        self.sample: np.ndarray | None = None

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:  # the update comes next: keep where the policy went
        observations = self.model.rollout_buffer.observations.reshape(-1, len(FEATURES[self.role]))
        self.sample = observations[self.rng.choice(len(observations), min(ANCHOR_SAMPLE, len(observations)),
                                                   replace=False)]

    def _on_rollout_start(self) -> None:  # after the update, before the next rollout's probabilities
        if self.sample is None:
            return
        policy: SafetyFactorPolicy = self.model.policy
        x = torch.as_tensor(self.sample, dtype=torch.float32)
        start = torch.as_tensor(start_aims(self.sample, self.role), dtype=torch.float32)
        with torch.no_grad():
            now = policy.aims(x)
            target = now + self.pull * self.share() * (start - now)
        optimizer = torch.optim.Adam(policy.actor_parameters(), lr=ANCHOR_RATE)
        for _ in range(ANCHOR_STEPS):
            loss = torch.mean((policy.aims(x) - target) ** 2)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


@contextmanager
def actor_frozen(policy: SafetyFactorPolicy) -> Iterator[None]:
    """Inside, PPO's updates train the value function only: a fresh policy starts from a rule, and advantages from an
    untrained critic would first move it at random (measured: on ``steady`` alone, from the reference entry,
    held-out cost +3 % after 4 M transitions, its training cost rising for the first 1.5 M)."""
    actor = policy.actor_parameters()
    for parameter in actor:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter in actor:
            parameter.requires_grad_(True)


def vec_env(config: TrainConfig, role: str, models: dict[str, PPO], pool: list[PoolScenario], seed: int
            ) -> RoleVecEnv:
    """The VecEnv ``role`` learns in, the other roles frozen: ``config.rows`` stores per group (a run on one scenario:
    the most whole chains of it within them), or ``config.upstream_chains`` chains."""
    fixed = config.fixed_scenario()
    if not ROLE[role].per_store:
        rows = config.upstream_chains
    else:
        rows = config.rows if fixed is None else max(1, config.rows // fixed.num_stores) * fixed.num_stores
    return RoleVecEnv(role, frozen_choosers(models, role), pool, groups=config.groups, rows=rows,
                      horizon=config.horizon, seed=seed, preset_share=config.preset_share)


def train_role(config: TrainConfig, role: str, phase_dir: Path, models: dict[str, PPO], pool: list[PoolScenario],
               timesteps: int, learning_rate: float, seed: int, start_from: Path | None = None,
               progress: Callable[[TrainingProgress], None] | None = None) -> PPO:
    """Train ``role`` for ``timesteps`` transitions on scenarios of ``pool`` with the other roles frozen; resumable."""
    torch.set_num_threads(1)
    phase_dir.mkdir(parents=True, exist_ok=True)
    env = vec_env(config, role, models, pool, seed)
    checkpoint_dir = phase_dir / "checkpoints"
    for folder in (phase_dir, checkpoint_dir):  # what an interrupted write left
        if folder.is_dir():
            remove_temporaries(folder)
    resume = latest_intact(saved_checkpoints(phase_dir))  # the intact one with the most steps
    origin = phase_dir / "origin.json"  # steps the phase started from (phase 4 continues a model)
    fresh = True
    if resume is not None:
        model = PPO.load(resume, env=env, device="cpu")
        fresh = False
    elif start_from is not None:
        model = PPO.load(start_from, env=env, device="cpu", learning_rate=learning_rate)
        write_json_atomic(origin, {"start_timesteps": int(model.num_timesteps)})
    else:
        sample = observation_sample(env, seed)
        mean, std = sample.mean(axis=0).tolist(), np.maximum(sample.std(axis=0), 1e-3).tolist()
        # a fresh policy is the tuned rule (its correction starts at zero): PPO then improves on the rule
        policy_kwargs = {"net_arch": list(config.net_arch), "features_extractor_class": Standardize,
                         "features_extractor_kwargs": {"mean": mean, "std": std},
                         "spread": config.exploration_spread}
        model = PPO(SafetyFactorPolicy, env, learning_rate=learning_rate, n_steps=config.n_steps,
                    batch_size=config.batch_size, n_epochs=config.n_epochs,
                    gamma=config.gamma,
                    gae_lambda=config.gae_lambda, clip_range=config.clip_range, ent_coef=config.ent_coef,
                    policy_kwargs=policy_kwargs, seed=seed, device="cpu", verbose=0)
    log = TrainingLog()
    model.set_logger(Logger(str(phase_dir), [log, make_output_format("tensorboard", str(phase_dir / "tensorboard"))]))
    episodes = EpisodeLog()
    start = json.loads(origin.read_text())["start_timesteps"] if origin.exists() else 0
    done = model.num_timesteps - start
    checkpoint = AtomicCheckpoint(max(config.checkpoint_every // env.num_envs, 1), str(checkpoint_dir),
                                  name_prefix=role)
    trained = timesteps > done
    if trained:
        callbacks = [episodes, checkpoint] + ([Progress(progress, timesteps, episodes, log)] if progress else [])
        reset = fresh and start_from is None
        warmup = int(config.critic_warmup * timesteps) - done
        if warmup > 0:
            with actor_frozen(model.policy):
                model.learn(warmup, callback=callbacks, progress_bar=config.progress_bar, reset_num_timesteps=reset)
            reset = False
        left = timesteps - (model.num_timesteps - start)
        if left > 0:  # the critic's warm-up keeps the start rate; from there it falls as if it had from the start
            decay = LearningRateDecay(learning_rate, config.learning_rate_end, start, timesteps)
            anchor = [StartAnchor(role, config.anchor_pull, decay.share, seed)] if config.anchor_pull else []
            model.learn(left, callback=[*callbacks, decay, *anchor], progress_bar=config.progress_bar,
                        reset_num_timesteps=reset)
    _save_model(model, phase_dir / "model.zip")
    metrics_path = phase_dir / "metrics.json"
    earlier = json.loads(metrics_path.read_text()) if metrics_path.exists() else {"episodes": [], "updates": []}
    metrics = {"role": role, "episodes": earlier["episodes"] + episodes.episodes,
               "updates": earlier["updates"] + log.updates}
    if trained or not metrics_path.exists():
        write_json_atomic(metrics_path, metrics)
    if metrics["episodes"]:
        _figures(phase_dir, metrics["episodes"], metrics["updates"])
    return model


@dataclass(frozen=True)
class Pools:
    """A run's training and acceptance scenarios, tuned (``core.learning.pool``; kept in ``OUT/pool.json`` and
    ``OUT/acceptance.json``)."""

    training: list[PoolScenario]
    acceptance: list[PoolScenario]

    @staticmethod
    def of(config: TrainConfig) -> Pools:
        """The run's pools: the presets (or the run's one scenario) and scenarios drawn for the run's seed."""
        out, fixed = Path(config.out), config.fixed_scenario()
        presets = pools.preset_scenarios(fixed)
        drawn = [] if fixed else pools.drawn_scenarios(config.pool_scenarios, config.seed, "training")
        accept = [] if fixed else pools.drawn_scenarios(config.acceptance_scenarios, config.seed, "acceptance")
        return Pools(pools.load_or_build(out / "pool.json", drawn, presets),
                     pools.load_or_build(out / "acceptance.json", accept, presets))

    def tuning(self) -> Tuning:
        """The tuned safety factors of the pools' scenarios, by name."""
        by_name = {p.scenario.name: p.tuned for p in [*self.training, *self.acceptance]}
        return lambda scenario: by_name[scenario.name]


def acceptance_cost(config: TrainConfig, models: dict[str, PPO], acceptance: Pools) -> dict[str, float]:
    """Mean system cost per day on held-out seeds of every acceptance scenario (the presets, or the run's one
    scenario, and the drawn ones), each over its own horizon as ``evaluate`` measures it: cut to the training year, a
    textbook preset's 1,000 days would weigh the start-up three times as much (``lost_sales_textbook``: about 3 %
    dearer than over its horizon)."""
    scenarios = [p.scenario if config.acceptance_days is None
                 else dataclasses.replace(p.scenario, horizon=config.acceptance_days) for p in acceptance.acceptance]
    return mean_cost(scenarios, model_mix(models, acceptance.tuning()), config.acceptance_seeds)


def _relative(new: dict[str, float], old: dict[str, float]) -> float:
    return float(np.mean([new[k] / old[k] for k in old]))


def _accepted(after: dict[str, float], before: dict[str, float]) -> bool:
    """Lower mean held-out cost, and no scenario's raised by more than ``TOLERATED_RISE``."""
    return _relative(after, before) < 1.0 and max(after[k] / before[k] for k in before) <= 1.0 + TOLERATED_RISE


def fallback_checkpoints(phase_dir: Path, budget: int) -> list[Path]:
    """The phase's intact checkpoints nearest below each of ``FALLBACK_SHARES`` of its budget, latest first: what a
    rejected phase tries before giving up (measured: a store phase rejected for one preset's +1.3 % at its end passed
    at 6 M of its 7 M transitions, the last million having pushed that preset's noisy cost up)."""
    newest_first = saved_checkpoints(phase_dir)[::-1]
    chosen: list[Path] = []
    for share in FALLBACK_SHARES:  # only the checkpoints walked past are opened and checked
        below = next((c for c in newest_first if checkpoint_steps(c) <= share * budget and _damage(c) is None), None)
        if below is not None and below not in chosen:
            chosen.append(below)
    return chosen


def _kept_checkpoint(config: TrainConfig, trained: dict[str, PPO], role: str, candidates: list[Path],
                     before: dict[str, float], run_pools: Pools) -> tuple[Path, PPO, dict[str, float]] | None:
    """The first of ``candidates`` (checkpoints of ``role``'s rejected phase) that passes acceptance, with its model
    and held-out costs; None if none does."""
    for candidate in candidates:
        model = PPO.load(candidate, device="cpu")
        cost = acceptance_cost(config, {**trained, role: model}, run_pools)
        LOG.info("%s: its checkpoint %s: held-out cost x%.3f", role, candidate.name, _relative(cost, before))
        if _accepted(cost, before):
            return candidate, model, cost
    return None


def phase_folder(out: Path, phase: int) -> Path:
    """Where a single-role phase writes its model (``model.zip``), metrics and learning curves."""
    return Path(out) / f"phase{phase}_{PHASES[phase]}"


def run_phases(config: TrainConfig, phases: list[int], progress: Callable[[TrainingProgress], None] | None = None
               ) -> Hierarchy:
    """Run the chosen phases in order, keeping a phase only if it lowers held-out system cost."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "config.json", dataclasses.asdict(config))
    hierarchy = Hierarchy.load(out)
    run_pools = Pools.of(config)
    models = {role: PPO.load(hierarchy.model_path(out, role), device="cpu") for role in hierarchy.roles}
    for phase in phases:
        if hierarchy.done(phase):
            LOG.info("phase %d (%s): already done in %s, skipped", phase, PHASES[phase], out)
            continue
        started = time.perf_counter()
        before = acceptance_cost(config, models, run_pools)
        trained = dict(models)
        paths: dict[str, str] = {}
        if PHASES[phase] == "start":  # every role's fresh policy, untrained: what it does until its phase is kept
            for role in ROLES:
                phase_dir = out / f"phase0_start/{role}"
                trained[role] = train_role(config, role, phase_dir, {}, run_pools.training, 0, config.learning_rate,
                                           seed=config.seed * 100 + ROLES.index(role))
                paths[role] = str((phase_dir / "model.zip").relative_to(out))
        elif PHASES[phase] != "joint":
            role = PHASES[phase]
            phase_dir = phase_folder(out, phase)
            budget = config.store_timesteps if ROLE[role].per_store else config.timesteps
            trained[role] = train_role(config, role, phase_dir, models, run_pools.training, budget,
                                       config.learning_rate,
                                       seed=config.seed * 100 + phase, progress=progress)
            paths[role] = str((phase_dir / "model.zip").relative_to(out))
        else:
            learned = [r for r in ROLES if r in models]
            budget = config.timesteps // max(1, config.joint_rounds * len(learned))
            for round_ in range(config.joint_rounds):
                for role in learned:
                    phase_dir = out / f"phase4_joint/round{round_}_{role}"
                    start = out / paths[role] if role in paths else hierarchy.model_path(out, role)
                    trained[role] = train_role(config, role, phase_dir, trained, run_pools.training, budget,
                                               config.joint_learning_rate,
                                               seed=config.seed * 100 + 40 + 3 * round_ + ROLES.index(role),
                                               start_from=start)
                    paths[role] = str((phase_dir / "model.zip").relative_to(out))
        after = acceptance_cost(config, trained, run_pools)
        kept, checkpoint = PHASES[phase] == "start" or _accepted(after, before), None  # the start is the tuned rule
        if not kept and PHASES[phase] not in ("start", "joint"):
            worst = max(before, key=lambda k: after[k] / before[k])
            LOG.info("phase %d (%s): rejected at its end (held-out cost x%.3f, %s %+.1f %%); trying its checkpoints",
                     phase, PHASES[phase], _relative(after, before), worst, 100 * (after[worst] / before[worst] - 1))
            fallback = _kept_checkpoint(config, trained, role, fallback_checkpoints(phase_dir, budget), before,
                                        run_pools)
            if fallback is not None:
                candidate, trained[role], after = fallback
                kept, checkpoint, paths[role] = True, trained[role].num_timesteps, str(candidate.relative_to(out))
        record = PhaseRecord(phase=phase, role=PHASES[phase], kept=kept, cost_before=before, cost_after=after,
                             relative_cost=_relative(after, before), seconds=time.perf_counter() - started,
                             checkpoint=checkpoint)
        LOG.info("phase %d (%s): %.0f s, held-out cost x%.3f -> %s; cost per day %s", phase, PHASES[phase],
                 record.seconds, record.relative_cost,
                 "rejected: the roles keep their previous policies" if not kept
                 else "kept" if checkpoint is None else f"kept at its checkpoint of {checkpoint:,} transitions",
                 ", ".join(f"{name} {after[name]:.2f}" for name in after))
        if kept:
            models = trained
            hierarchy.roles.update(paths)
        hierarchy.phases.append(record)
        hierarchy.save(out)
    return hierarchy
