"""The head-to-head's words and numbers (``core.app.compare``) on made-up per-path results: the headline's
difference, interval and verdict, "same" for no difference, rounding, names and mix B's default."""

from __future__ import annotations

import re

import numpy as np
import pytest

from core.app import compare
from core.app.compare import PathResults
from core.evaluation.statistics import REPORTED
from core.serving.registry import POLICIES, uniform
from core.simulation.presets import PRESETS

NAMES = ("learned (PPO, ONNX)", "reorder point (s, S)")


def results(cost: np.ndarray) -> PathResults:
    """Per-path results whose every KPI is ``cost`` (the tables only read ``kpis``)."""
    return PathResults(kpis={key: np.asarray(cost, dtype=float) for key in REPORTED},
                       daily_cost=np.ones((len(cost), 3)))


def test_headline_gives_the_percent_difference_its_interval_and_significance() -> None:
    base = 200.0 + np.linspace(-10.0, 10.0, 20)
    cheaper = 0.7 * base + np.tile([-1.0, 1.0], 10)  # 30 % less, a little noise
    text = compare.headline(NAMES, results(cheaper), results(base), 20)
    assert text.verdict == "significant"
    match = re.fullmatch(r"learned \(PPO, ONNX\) costs ([\d.]+) % less than reorder point \(s, S\) per day "
                         r"\(\$140\.0 against \$200\.0; 95 % interval ([\d.]+)-([\d.]+) %\), significant on the same "
                         r"20 demand paths\.", text.text)
    assert match, text.text
    shown, low, high = (float(g) for g in match.groups())
    assert shown == 30.0 and low < 30.0 < high and high - low <= 2.0
    reverse = compare.headline(NAMES[::-1], results(base), results(cheaper), 20)
    assert " costs 42.9 % more than " in reverse.text and reverse.verdict == "significant"  # 1 / 0.7 - 1


def test_headline_of_noise_is_not_significant() -> None:
    base = np.full(10, 100.0)
    noisy = base + np.tile([-1.0, 1.0], 5)  # zero mean difference
    text = compare.headline(NAMES, results(noisy), results(base), 10)
    assert text.verdict == "not significant"
    assert "costs about the same as reorder point (s, S) per day" in text.text
    assert "% less to " in text.text and "% more), not significant" in text.text


def test_equal_results_read_same_even_with_float_noise() -> None:
    cost = np.linspace(100.0, 120.0, 8)
    noise = cost + 2e-14  # what summing the same flows in another order can leave
    assert compare.headline(NAMES, results(noise), results(cost), 8).verdict == "same"
    summary = compare.summary_rows(NAMES, results(noise), results(cost), 8)
    assert all(summary[2][compare.kpi_column(k)] == "same" for k in REPORTED)
    path = compare.path_rows(NAMES, results(noise), results(cost), 3)
    assert all(path[2][compare.kpi_column(k)] == "same" for k in REPORTED)


def test_cells_are_rounded_to_their_interval() -> None:
    cost = 140.0 + np.tile([-1.0, 1.0], 10) * 0.123456789
    row = compare.summary_rows(NAMES, results(cost), results(cost + 10.0), 20)
    cell = row[0][compare.kpi_column("cost_per_day")]
    assert re.fullmatch(r"140\.0\d ± 0\.0\d", cell), cell  # to the interval's first significant digit
    assert row[2][compare.kpi_column("cost_per_day")] == "-10.0 ± 0.0"
    assert row[0][compare.kpi_column("fill_rate")].startswith("14,000.")  # a fraction shown in percent


def test_mix_names_follow_the_policies() -> None:
    assert compare.mix_names(uniform("learned"), uniform("reorder_point")) == (
        POLICIES["learned"].label, POLICIES["reorder_point"].label)
    assert compare.mix_names(uniform("random"), uniform("random")) == ("A: random", "B: random")
    mixed = {**uniform("reorder_point"), "store": "learned"}
    assert compare.mix_names(mixed, uniform("reorder_point"), frozenset({"store"})) == (
        "A: stores uploaded (ONNX), warehouse and supplier reorder point (s, S)", "reorder point (s, S)")


@pytest.mark.parametrize(("manifest", "expected"), [
    ({}, compare.FALLBACK_BASELINE),
    ({"evaluation": {"presets": {"steady": {"best_rule": "reorder_point"}}}}, "reorder_point"),
    ({"evaluation": {"presets": {"steady": {"best_rule": "tuned_capped_base_stock"}}}}, compare.FALLBACK_BASELINE),
    ({"evaluation": {"presets": {"steady": {"reorder_point": {"cost_per_day": 190.0},  # an older manifest
                                            "tuned_base_stock": {"cost_per_day": 150.0},
                                            "learned_hierarchy": {"cost_per_day": 100.0}}}}}, "tuned_base_stock"),
    ({"evaluation": "not an object"}, compare.FALLBACK_BASELINE),
])
def test_default_baseline_is_the_best_applicable_rule(manifest: dict, expected: str) -> None:
    assert compare.default_baseline(PRESETS["steady"], manifest) == expected
