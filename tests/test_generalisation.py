"""The held-out generalisation benchmark (``core.evaluation.generalisation``): its scenarios span the app's sliders
and the business settings and are valid, its seeds are ones training, phase acceptance and ``evaluate`` never
use, its summary statistics are right, and a tiny run gives a line per scenario."""

from __future__ import annotations

import inspect
import itertools
import json
import math
import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from pools import TUNED

from core.agents import tuning
from core.agents.observations import observe
from core.app.live import SLIDERS as APP_SLIDERS
from core.cli import ARGUMENT_RANGES, build_parser, main
from core.evaluation.generalisation import (
    CANDIDATE,
    DEFAULT_SEEDS,
    MAX_SCENARIOS,
    MIN_SEEDS,
    SEED_STREAMS,
    HeldOutRow,
    HeldOutTask,
    evaluate_held_out,
    generalise,
    held_out_scenarios,
    held_out_seed,
    markdown,
    summarise_generalisation,
    write,
)
from core.evaluation.report import rule_policies
from core.evaluation.statistics import ACCEPTANCE_SEED, EVAL_SEED
from core.evaluation.statistics import mean_cost as real_mean_cost
from core.learning import pool as pools
from core.learning import training
from core.serving.models import EXPORTED_MODELS
from core.serving.registry import uniform
from core.simulation.forecast import Forecast
from core.simulation.limits import MAX_SEED, MAX_SEEDS, MAX_STORES
from core.simulation.presets import PRESETS
from core.simulation.randomization import RANGES, SLIDERS
from core.simulation.scenario import Scenario
from core.simulation.twin import reset

DRAWS = held_out_scenarios(200, 0)
POOL_SEED_OF = pools.pool_seed  # the pools' seeds, as a run hands them out


def test_the_draws_are_the_same_for_a_seed_and_do_not_depend_on_how_many() -> None:
    assert held_out_scenarios(5, 3) == held_out_scenarios(5, 3)
    assert held_out_scenarios(3, 3) == held_out_scenarios(5, 3)[:3]
    assert held_out_scenarios(5, 3) != held_out_scenarios(5, 4)
    assert DRAWS[:5] == held_out_scenarios(5, 0)


def test_every_draw_is_a_valid_scenario_the_learned_policies_can_observe() -> None:
    for scenario in DRAWS:
        assert Scenario.from_json(scenario.to_json()) == scenario
        state, forecast = reset(scenario, 1), Forecast.of(scenario)
        for role in ("store", "warehouse", "supplier"):
            assert np.isfinite(observe(role, state, scenario, forecast, TUNED)).all(), (scenario.name, role)


def test_the_draws_cover_the_business_settings() -> None:
    stores = np.array([s.num_stores for s in DRAWS])
    assert stores.min() == 1 and stores.max() <= MAX_STORES and stores.max() >= 40
    assert 0.3 < np.mean(stores <= 7) < 0.7  # log-uniform: about as many chains of 1-7 stores as of 8-50
    assert {s.unmet_demand for s in DRAWS} == {"lost_sales", "backorders"}
    kinds = [{m.distribution for m in s.stores} for s in DRAWS]
    assert all(len(k) == 1 for k in kinds) and set().union(*kinds) == {"normal", "negative_binomial"}
    assert {s.name.split("_", 3)[3] for s in DRAWS} == set(PRESETS)
    ratios = np.array([s.costs.stockout / s.costs.store_holding for s in DRAWS])
    low, high = RANGES["stockout_to_holding"]
    assert low - 1e-9 <= ratios.min() and ratios.max() <= high + 1e-9 and (low, high) == (3.0, 60.0)
    thirds = np.histogram(np.log(ratios), bins=np.linspace(np.log(low), np.log(high), 4))[0] / ratios.size
    assert (thirds > 0.2).all(), thirds  # evenly spread in log scale (a third each, within sampling noise)


def test_the_draws_stay_in_the_app_slider_ranges() -> None:
    for scenario in DRAWS:
        lead, first = scenario.lead_times, scenario.stores[0]
        for name, value in (("warehouse_to_store", lead.warehouse_to_store),
                            ("supplier_to_warehouse", lead.supplier_to_warehouse), ("production", lead.production),
                            ("dispersion", first.dispersion), ("seasonality_amplitude", first.seasonality_amplitude)):
            assert SLIDERS[name][0] <= value <= SLIDERS[name][1], (scenario.name, name, value)
        assert scenario.horizon == 365
        for promotion in first.promotions:
            assert SLIDERS["promotion_length"][0] <= promotion.length <= SLIDERS["promotion_length"][1]
        for disruption in scenario.disruptions:
            assert SLIDERS["disruption_length"][0] <= disruption.length <= SLIDERS["disruption_length"][1]
        base = PRESETS[scenario.name.split("_", 3)[3]]
        capacity = base.capacities.production / sum(m.mean for m in base.stores)  # per unit of mean demand
        assert scenario.capacities.production / sum(m.mean for m in scenario.stores) == pytest.approx(capacity)
    assert 0.3 < np.mean([bool(s.stores[0].promotions) for s in DRAWS]) < 0.7
    assert 0.3 < np.mean([bool(s.disruptions) for s in DRAWS]) < 0.7


def test_the_slider_ranges_are_the_live_pages() -> None:
    """Every Live page slider but the number of stores (drawn log-uniformly over its range), with the range a
    promotion or disruption has when it is on."""
    app = {s.field: s for s in APP_SLIDERS}
    assert set(app) == {*SLIDERS, "num_stores"}
    assert (app["num_stores"].low, app["num_stores"].high) == (1, MAX_STORES)
    for field, (low, high) in SLIDERS.items():
        slider = app[field]
        assert slider.high == high, field
        assert slider.low == low or (slider.off == slider.low and RANGES[field][0] == low), field


def _seeds_training_derives(config_seed: int, out: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every seed a full training run (all phases, every one kept) with ``config_seed`` hands its generators: the
    seeds of its training and acceptance pools' draws (``core.learning.pool.pool_seed``, recorded where the pool asks
    for them; their tuning, whose seed is the tuner's own, replaced by a stand-in), every role's seed, and the seed of
    every phase acceptance check. A role's seed reaches its environment, observation sample, PPO model and start
    anchor through ``train_role``'s ``seed``; so it is recorded there (training itself replaced by a stand-in), and
    the acceptance seed where ``mean_cost`` receives it."""
    seeds: list[int] = []
    costs = itertools.count(1000.0, -1.0)  # every check cheaper than the last: every phase is kept

    def pool_seed(seed: int, stream: str) -> int:
        seeds.append(POOL_SEED_OF(seed, stream))
        return seeds[-1]

    def train_role(config: training.TrainConfig, role: str, phase_dir: Path, models: dict, pool: list,
                   timesteps: int, learning_rate: float, seed: int, **_: Any) -> SimpleNamespace:
        seeds.append(seed)
        return SimpleNamespace(policy=None, num_timesteps=0)

    def mean_cost(*args: Any, **kwargs: Any) -> dict[str, float]:
        call = inspect.signature(real_mean_cost).bind(*args, **kwargs)
        call.apply_defaults()
        seeds.append(call.arguments["seed"])
        cost = next(costs)
        return {s.name: cost for s in call.arguments["scenarios"]}

    monkeypatch.setattr(pools, "pool_seed", pool_seed)
    monkeypatch.setattr(pools, "tune_all", lambda scenarios, processes=None: [TUNED] * len(scenarios))
    monkeypatch.setattr(training, "train_role", train_role)
    monkeypatch.setattr(training, "mean_cost", mean_cost)
    config = training.TrainConfig(out=str(out), seed=config_seed, progress_bar=False)
    hierarchy = training.run_phases(config, list(training.PHASES))
    assert all(record.kept for record in hierarchy.phases)
    assert [s for s in seeds if s >= pools.POOL_SEED] == [POOL_SEED_OF(config_seed, stream)
                                                         for stream in ("training", "acceptance")]
    return seeds


def test_training_acceptance_and_evaluate_never_use_a_benchmark_seed(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Training's seeds grow with its ``--seed`` (100 x it plus a phase offset; its pools' from ``POOL_SEED`` up, two
    per seed), whose largest is ``MAX_SEED`` plus the runs of ``train --runs`` after the first; the benchmark's, from
    ``held_out_seed``, grow with its ``--seed`` and stream. So the largest training, pool, acceptance, evaluation or
    tuning seed below the smallest benchmark seed proves that no ``--seed`` of either can make them meet; and the
    pools' seeds lie above every other, so no pool scenario is drawn from a generator that draws demand."""
    largest_config_seed = MAX_SEED + ARGUMENT_RANGES["runs"][1] - 1
    smallest = _seeds_training_derives(0, tmp_path / "first", monkeypatch)
    largest = _seeds_training_derives(largest_config_seed, tmp_path / "last", monkeypatch)
    assert ACCEPTANCE_SEED in smallest and max(smallest) < max(largest)
    tuner_seeds = [inspect.signature(tuner).parameters["seed"].default
                   for tuner in (tuning.tune_base_stock, tuning.tune_menu, tuning.tune_capped_base_stock)]
    others = [*smallest, *largest, EVAL_SEED, *tuner_seeds]
    assert all(isinstance(s, int) and s >= 0 for s in others)
    assert max(others) < held_out_seed(0, 0)
    pool = [s for s in others if s >= pools.POOL_SEED]
    assert len(pool) == 4 and max(s for s in others if s < pools.POOL_SEED) < pools.POOL_SEED
    assert held_out_seed(0, 0) < held_out_seed(MAX_SEED, MAX_SCENARIOS)  # the benchmark's range, every --seed
    assert held_out_seed(7, MAX_SCENARIOS) < held_out_seed(8, 0) and SEED_STREAMS == MAX_SCENARIOS + 1


def _unnamed(scenario: Scenario) -> str:
    return scenario.to_json().replace(scenario.name, "")


def test_the_pools_draw_the_benchmark_s_family_but_none_of_its_scenarios() -> None:
    """Training and acceptance scenarios are ``draw_scenario``'s (every preset, both unmet-demand rules, the app's
    sliders), training's with a store count that divides the VecEnv's store rows; not one is a benchmark scenario."""
    training_draws = pools.drawn_scenarios(100, 0, "training")
    acceptance_draws = pools.drawn_scenarios(40, 0, "acceptance")
    assert training_draws == pools.drawn_scenarios(100, 0, "training")  # the same for a seed
    assert training_draws[:5] != pools.drawn_scenarios(5, 1, "training")
    assert {s.num_stores for s in training_draws} <= set(pools.STORE_COUNTS)
    assert all(pools.STORE_ROWS % s.num_stores == 0 for s in training_draws)
    assert len({s.num_stores for s in training_draws}) >= 6
    assert max(s.num_stores for s in acceptance_draws) > 1
    for draws, prefix in ((training_draws, "train"), (acceptance_draws, "accept")):
        assert all(s.name.startswith(f"{prefix}_{k}_") for k, s in enumerate(draws, start=1))
        assert {s.unmet_demand for s in draws} == {"lost_sales", "backorders"}
        assert all(s.horizon == 365 for s in draws)
        assert {s.name.split("_", 2)[2] for s in draws} <= set(PRESETS)
    assert len({s.name.split("_", 2)[2] for s in training_draws}) == len(PRESETS)
    benchmark = {_unnamed(s) for s in DRAWS}
    assert not benchmark & {_unnamed(s) for s in [*training_draws, *acceptance_draws]}
    assert not {_unnamed(s) for s in training_draws} & {_unnamed(s) for s in acceptance_draws}


def _row(relative: float, low: float, high: float, ratio: float, unmet: str) -> HeldOutRow:
    return HeldOutRow(scenario="hand_made", parameters={"stockout_ratio": ratio, "unmet_demand": unmet},
                      best_rule="tuned_base_stock", best_rule_cost=10.0, learned_cost=10.0 * (1 + relative),
                      relative=relative, low=low, high=high)


HAND_MADE = [_row(-0.05, -0.08, -0.02, 5.0, "lost_sales"),  # significant win
             _row(-0.03, -0.05, -0.01, 12.0, "backorders"),  # significant win, exactly 3 %
             _row(-0.02, -0.03, -0.01, 40.0, "lost_sales"),  # significant, too small for a win
             _row(0.00, -0.01, 0.01, 10.0, "backorders"),
             _row(0.01, 0.005, 0.015, 30.0, "lost_sales"),  # significant, not over 1 %
             _row(0.02, 0.01, 0.03, 60.0, "backorders"),  # significant loss
             _row(0.04, -0.01, 0.09, 3.0, "lost_sales"),  # not significant
             _row(0.08, 0.05, 0.11, 25.0, "lost_sales")]  # significant loss


@pytest.mark.parametrize(("group", "expected"), [
    (("all",), (8, 0.005, 0.025, 0.08, 2, 2)),
    (("by_stockout_ratio", "p/h <= 10"), (3, 0.0, 0.02, 0.04, 0, 1)),
    (("by_stockout_ratio", "10 < p/h <= 30"), (3, 0.01, 0.045, 0.08, 1, 1)),
    (("by_stockout_ratio", "p/h > 30"), (2, 0.0, 0.01, 0.02, 1, 0)),
    (("by_unmet_demand", "lost_sales"), (5, 0.01, 0.04, 0.08, 1, 1)),
    (("by_unmet_demand", "backorders"), (3, 0.0, 0.01, 0.02, 1, 1)),
])
def test_summary_of_hand_made_differences(group: tuple[str, ...], expected: tuple) -> None:
    stats = summarise_generalisation(HAND_MADE)
    for key in group:
        stats = stats[key]
    count, median, p75, worst, losses, wins = expected
    assert stats["scenarios"] == count
    assert stats["median"] == pytest.approx(median, abs=1e-12)
    assert stats["percentile_75"] == pytest.approx(p75, abs=1e-12)
    assert stats["worst"] == pytest.approx(worst, abs=1e-12)
    assert (stats["significant_losses_over_1pct"], stats["significant_wins_3pct_or_more"]) == (losses, wins)


def test_summary_of_no_scenario_has_no_statistics() -> None:
    stats = summarise_generalisation([])["all"]
    assert stats["scenarios"] == 0 and stats["median"] is None and stats["worst"] is None


class PicklingExecutor:
    """Every task and result through pickle, in this process: what a Ray worker receives and sends back."""

    workers = 2

    def map(self, function: Callable[[Any], Any], tasks: Sequence[Any]) -> list[Any]:
        function = pickle.loads(pickle.dumps(function))
        return [pickle.loads(pickle.dumps(function(pickle.loads(pickle.dumps(task))))) for task in tasks]


def test_a_tiny_run_gives_a_line_per_scenario_and_zero_against_the_best_rule_itself(tmp_path: Path) -> None:
    report = generalise(2, 0, seeds=3, run=PicklingExecutor(), horizon=30)
    assert [row.scenario for row in report.rows] == [s.name for s in held_out_scenarios(2, 0)]
    for k, (row, scenario) in enumerate(zip(report.rows, report.scenarios, strict=True), start=1):
        assert row.best_rule in rule_policies(scenario)
        assert math.isfinite(row.learned_cost) and row.learned_cost > 0
        assert row.relative == pytest.approx(row.learned_cost / row.best_rule_cost - 1.0)
        assert row.low <= row.relative <= row.high
        itself = HeldOutTask(scenario, held_out_seed(0, k), 3, str(EXPORTED_MODELS),
                             tuple(sorted(uniform(row.best_rule).items())))
        same, result = evaluate_held_out(itself)
        assert (same.best_rule, same.best_rule_cost) == (row.best_rule, row.best_rule_cost)
        assert (same.relative, same.low, same.high) == (0.0, 0.0, 0.0)
        assert result.bound is None and result.optimum is None and CANDIDATE in result.policies
    table = markdown(report)
    assert all(f"| {row.scenario} | {row.parameters['stores']} |" in table for row in report.rows)
    write(report, tmp_path)
    data = json.loads((tmp_path / "generalisation.json").read_text())
    assert data["summary"]["all"]["scenarios"] == 2 and len(data["rows"]) == len(data["scenarios"]) == 2
    assert (tmp_path / "generalisation.md").read_text() == table + "\n"


@pytest.mark.parametrize(("argv", "field"), [
    (["--scenarios", "0"], "--scenarios"), (["--scenarios", "257"], "--scenarios"), (["--seeds", "1"], "--seeds"),
    (["--seeds", "0"], "--seeds"), (["--seeds", "10001"], "--seeds"), (["--seed", "-1"], "--seed"),
    (["--scenarios", "256", "--seeds", "10000"], "--seeds x --periods x agents"),
])
def test_cli_bad_options_exit_2_with_one_line(argv: list[str], field: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generalise", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {field}") and "allowed" in err


def test_cli_help_states_the_bounds_the_command_checks() -> None:
    command = build_parser()._subparsers._group_actions[0].choices["generalise"]
    text = " ".join(command.format_help().split())
    assert f"1 to {MAX_SCENARIOS}" in text and f"{MIN_SEEDS} to {MAX_SEEDS:,} (default: {DEFAULT_SEEDS})" in text
