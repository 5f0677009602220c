"""Independent work, run in this process or on a Ray cluster, with the same results either way.

The unit of work is a ``Block``: one scenario, one policy (or the clairvoyant bound, or a grid of tuning
candidates) and a block of seeds. A block owns its seeds: it draws the evaluation's common demand from the
evaluation's seed and keeps its own rows, so a row's demand, and everything computed from it, is the same
whichever process runs the block and however the seeds are cut into blocks (common random numbers). Per-seed
results are put back together in seed order before any mean is taken.

``SerialExecutor`` runs the blocks one after another; ``RayExecutor`` runs them as Ray tasks (``ray.init``
locally, or ``ray.init(address=...)`` to join a cluster started with ``ray start --head``). Ray is imported
only when a ``RayExecutor`` is made. A cluster address is checked before Ray is imported (``probe``: a gRPC
server must answer there within ``PROBE_SECONDS``), and ``ray.init`` must return within its deadline
(``bounded``), so a wrong address fails in seconds with one line (``RayStartError``) instead of hanging.
"""

from __future__ import annotations

import logging
import math
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from core.agents.tuning import CandidateCosts, per_seed_candidate_costs
from core.evaluation.bound import clairvoyant_bound
from core.serving.registry import Sources, mix_of
from core.simulation.demand import sample_demand
from core.simulation.rollout import kpis, rollout
from core.simulation.scenario import Scenario
from core.simulation.untrusted import one_line, shown

LOCAL_CPUS = 2  # a local Ray instance's CPUs (this machine's cores)
PROBE_SECONDS = 5.0  # to connect to a cluster address and hear its gRPC server's first frame
JOIN_SECONDS = 20.0  # for ray.init to join a cluster that answered the probe
START_SECONDS = 120.0  # for ray.init to start a local instance
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # what a gRPC client sends first
HTTP2_SETTINGS = 4  # frame type of the SETTINGS frame a gRPC server sends first
ADDRESS_FORMS = "HOST:PORT or ray://HOST:PORT with a port from 1 to 65535 (no ADDRESS: a local instance)"

Task = TypeVar("Task")


class Executor(Protocol):
    """Runs ``function`` on every task and returns the results in the tasks' order."""

    workers: int

    def map(self, function: Callable[[Task], Any], tasks: Sequence[Task]) -> list[Any]: ...


class SerialExecutor:
    """Every task in this process, one after another."""

    workers = 1

    def map(self, function: Callable[[Task], Any], tasks: Sequence[Task]) -> list[Any]:
        return [function(task) for task in tasks]


class RayStartError(ValueError):
    """Ray cannot be used: ``--ray ADDRESS`` is malformed or nothing there answers as a Ray cluster, or
    ``ray.init`` failed or did not return in time."""


def parse_address(address: str) -> tuple[str, int]:
    """(host, port) of ``HOST:PORT`` or ``ray://HOST:PORT`` (an IPv6 host in brackets)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not (host and host.isprintable() and "/" not in host and port.isascii() and port.isdigit()
            and len(port) <= 5 and 1 <= int(port) <= 65535):
        raise RayStartError(f"--ray: got {shown(address)}; allowed: {ADDRESS_FORMS}")
    return host, int(port)


def probe(address: str) -> None:
    """Connect to ``address`` and wait for the SETTINGS frame every gRPC server (a Ray head's GCS, a Ray
    client server) sends first; ``RayStartError`` if nothing answers so within ``PROBE_SECONDS``."""
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS) as connection:
            connection.sendall(HTTP2_PREFACE)
            first = connection.recv(9)  # a frame header: length (3 bytes), type, flags, stream (4)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a host name that cannot be encoded (IDNA)
        reason = (f"no answer within {PROBE_SECONDS:g} s" if isinstance(exc, TimeoutError)
                  else getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        raise RayStartError(f"--ray: nothing answers at {shown(address)} ({one_line(reason, 120)})") from None
    if len(first) < 4 or first[3] != HTTP2_SETTINGS:
        raise RayStartError(f"--ray: {shown(address)} answers, but not as a Ray cluster (no gRPC server there; a "
                            "head listens on 6379, its Ray client server on 10001, unless `ray start --head` chose "
                            "other ports)")


def bounded(call: Callable[[], Any], seconds: float, what: str) -> Any:
    """``call()`` in a daemon thread: its result, or its exception as ``RayStartError``, also when it has not
    returned within ``seconds``. The thread then stays parked for the life of the process: Ray gives the processes
    of a local instance the death signal of the thread that started them (PR_SET_PDEATHSIG), so it must not end."""
    outcome: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed to the caller's thread below
            outcome["error"] = exc
        done.set()
        threading.Event().wait()  # parked; a daemon does not keep the process alive

    threading.Thread(target=target, name="ray-init", daemon=True).start()
    if not done.wait(seconds):
        raise RayStartError(f"--ray: {what} did not finish within {seconds:g} s")
    if "error" in outcome:
        raise RayStartError(f"--ray: {what} failed: {one_line(str(outcome['error']), 300)}")
    return outcome["value"]


def _without_sigterm_warning(record: logging.LogRecord) -> bool:
    """Ray's warning that ``ray.init`` outside the main thread leaves SIGTERM alone: the caller handles it."""
    return "SIGTERM handler" not in record.getMessage()


class RayExecutor:
    """Every task as a Ray task: on a local Ray instance (``address`` None: ``num_cpus`` CPUs) or on the
    cluster at ``address`` (probed first). An instance that is already running (a test's, a notebook's) is
    used as is. ``ray.init`` runs in a thread with a deadline (``bounded``)."""

    def __init__(self, address: str | None = None, num_cpus: int = LOCAL_CPUS) -> None:
        if address is not None:
            probe(address)
        import ray

        if not ray.is_initialized():
            if address is None:
                self._init(lambda: ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False),
                           START_SECONDS, "starting a local Ray instance")
            else:
                self._init(lambda: ray.init(address=address, log_to_driver=False), JOIN_SECONDS,
                           f"joining the Ray cluster at {shown(address)}")
        self._ray = ray
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))

    @staticmethod
    def _init(call: Callable[[], Any], seconds: float, what: str) -> None:
        """``bounded(call)``; then the SIGTERM handler from before is put back (Ray's core installs one that
        aborts with a stack dump), where this thread may set it."""
        worker_log = logging.getLogger("ray._private.worker")
        worker_log.addFilter(_without_sigterm_warning)
        sigterm = signal.getsignal(signal.SIGTERM)
        try:
            bounded(call, seconds, what)
        finally:
            worker_log.removeFilter(_without_sigterm_warning)
            if sigterm is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, sigterm)

    def map(self, function: Callable[[Task], Any], tasks: Sequence[Task]) -> list[Any]:
        remote = self._ray.remote(num_cpus=1)(function)
        return self._ray.get([remote.remote(task) for task in tasks])


def executor(ray: str | None) -> Executor:
    """The CLI's ``--ray [ADDRESS]``: None runs serially, ``"local"`` starts a local Ray, anything else is a
    cluster address (``parse_address``; ``RayStartError`` when it is malformed or does not answer)."""
    if ray is None:
        return SerialExecutor()
    return RayExecutor(None if ray == "local" else ray)


def seed_blocks(seeds: int, per_block: int | None) -> list[tuple[int, int]]:
    """[first, last) rows of each block of at most ``per_block`` seeds (None: one block)."""
    size = seeds if per_block is None else max(1, per_block)
    return [(first, min(first + size, seeds)) for first in range(0, seeds, size)]


def blocks_for(run: Executor, seeds: int, jobs: int, per_block: int | None = None) -> list[tuple[int, int]]:
    """The seed blocks of one of ``jobs`` (scenario, policy) jobs: ``per_block`` seeds each; by default one
    block in this process, and on Ray as many as keep every worker busy twice over. A job is cut no further:
    each task builds its policy (a tuned rule tunes itself), so more blocks than needed repeat that work."""
    if per_block is None and not isinstance(run, SerialExecutor):
        per_block = math.ceil(seeds / max(1, math.ceil(2 * run.workers / jobs)))
    return seed_blocks(seeds, per_block)


@dataclass(frozen=True)
class Block:
    """Rows [first, last) of the ``seeds`` demand paths drawn from ``seed`` on ``scenario`` (``periods``
    days, default the horizon), and what to run on them: a policy (role -> registry key), the clairvoyant
    bound (``choices`` None), or tuning candidates (``safety``, see ``core.agents.tuning``)."""

    scenario: Scenario
    seed: int
    seeds: int
    first: int
    last: int
    periods: int | None = None
    choices: tuple[tuple[str, str], ...] | None = None
    models: str = ""
    safety: tuple[tuple[float, float, float], ...] | None = None

    def demand(self) -> np.ndarray:
        """This block's rows of the common demand."""
        every = sample_demand(self.scenario, self.seeds, np.random.default_rng(self.seed), self.periods)
        return every[self.first:self.last]


def run_block(block: Block) -> Any:
    """Per-seed results of one block: KPI arrays (a policy), bound costs (no policy) or a (C, seeds)
    array of candidate costs (tuning)."""
    demand = block.demand()
    if block.safety is not None:
        return per_seed_candidate_costs(block.scenario, np.array(block.safety), demand)
    if block.choices is None:
        return clairvoyant_bound(block.scenario, demand)
    sources = Sources(models=Path(block.models)) if block.models else Sources()
    return kpis(rollout(block.scenario, mix_of(dict(block.choices), block.scenario, sources), demand))


def _joined(parts: list[Any]) -> Any:
    """Blocks' per-seed results put back in seed order."""
    if isinstance(parts[0], dict):
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return np.concatenate(parts, axis=-1)


def per_seed(run: Executor, jobs: dict[str, Block], per_block: int | None = None) -> dict[str, Any]:
    """Every job's per-seed results, each job cut into seed blocks and all blocks run by ``run`` at once."""
    tasks, owners = [], []
    for name, job in jobs.items():
        for first, last in blocks_for(run, job.seeds, len(jobs), per_block):
            tasks.append(Block(**{**job.__dict__, "first": first, "last": last}))
            owners.append(name)
    results = run.map(run_block, tasks)
    return {name: _joined([r for r, owner in zip(results, owners, strict=True) if owner == name]) for name in jobs}


def policy_job(scenario: Scenario, choices: dict[str, str], seeds: int, seed: int, models: Path | str = "",
               periods: int | None = None) -> Block:
    """The whole seed range of one policy on one scenario (``per_seed`` cuts it into blocks)."""
    return Block(scenario, seed, seeds, 0, seeds, periods, tuple(sorted(choices.items())), str(models))


def bound_job(scenario: Scenario, seeds: int, seed: int, periods: int | None = None) -> Block:
    return Block(scenario, seed, seeds, 0, seeds, periods)


def candidate_costs_on(run: Executor, per_block: int | None = None) -> CandidateCosts:
    """The base-stock tuner's ``costs_of``: (C,) mean cost per day of each candidate, its seeds cut into
    blocks run by ``run``; the same numbers as one batched rollout on every seed."""

    def costs(scenario: Scenario, safety: np.ndarray, seeds: int, seed: int, periods: int | None) -> np.ndarray:
        job = Block(scenario, seed, seeds, 0, seeds, periods, safety=tuple(map(tuple, safety.tolist())))
        return per_seed(run, {"candidates": job}, per_block)["candidates"].mean(axis=1)

    return costs

