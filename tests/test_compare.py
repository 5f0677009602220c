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


def test_close_costs_get_the_digits_that_tell_them_apart() -> None:
    """"$4.8 against $4.8" on lost_sales_textbook: two costs that differ show different numbers."""
    first, second = np.full(20, 4.7847) + np.tile([-0.01, 0.01], 10), np.full(20, 4.8233)
    text = compare.headline(NAMES, results(first), results(second), 20).text
    assert "($4.78 against $4.82;" in text
    assert compare.cost_decimals(140.31, 140.02) == 1 and compare.cost_decimals(140.31, 140.29) == 2
    assert compare.cost_decimals(4.78, 4.82) == 2 and compare.cost_decimals(4.7847, 4.7851) == 3
    same = compare.headline(NAMES, results(second), results(second), 20).text
    assert same.endswith("($4.82).")


def test_long_mix_names_become_a_and_b_with_a_legend() -> None:
    mixed = {**uniform("reorder_point"), "store": "learned"}
    names = compare.mix_names(mixed, uniform("tuned_forecast_base_stock"))
    assert max(map(len, names)) > compare.NAME_CHARACTERS
    assert compare.short_names(names) == ("A", "B")
    assert compare.legend(names) == ("**A**: stores learned (PPO, ONNX), warehouse and supplier reorder point (s, S); "
                                     "**B**: forecast base-stock, tuned")
    short = compare.mix_names(uniform("learned"), uniform("reorder_point"))
    assert compare.short_names(short) == short and compare.legend(short) is None
    rows = compare.summary_rows(compare.short_names(names), results(np.ones(5)), results(np.ones(5)), 5)
    assert [row["Policy"] for row in rows] == ["A", "B", "difference"]


def test_roles_with_nothing_to_do_have_no_choice_and_no_name() -> None:
    textbook, serial = PRESETS["lost_sales_textbook"], PRESETS["serial_textbook"]
    assert compare.active_roles(textbook) == ("store",)
    assert compare.active_roles(serial) == ("store", "warehouse", "supplier")  # one store, but a network
    assert compare.idle_roles_note(serial) is None
    assert "warehouse and the supplier have nothing to do" in compare.idle_roles_note(textbook)
    choices = compare.with_idle_roles({"store": "tuned_capped_base_stock"}, textbook)
    assert choices == uniform("tuned_capped_base_stock")
    kept = {"store": "learned", "warehouse": "reorder_point", "supplier": "random"}
    assert compare.with_idle_roles(kept, serial) == kept
    uploaded = {**uniform("learned")}
    assert compare.mix_names(uploaded, uniform("reorder_point"), frozenset({"store"}), ("store",)) == (
        "uploaded (ONNX)", POLICIES["reorder_point"].label)  # the idle roles' shipped models are not named


def test_the_cost_chart_shows_the_difference_and_says_when_lines_coincide() -> None:
    from core.evaluation.plots import cumulative_cost_figure

    days = np.linspace(100.0, 120.0, 30)
    fig = cumulative_cost_figure({"A": days, "B": days + 0.01}, "")
    first, second, difference = fig.data
    assert (first.name, second.name) == ("A", "B") and first.line.dash != second.line.dash
    np.testing.assert_allclose(difference.y, np.cumsum(days) - np.cumsum(days + 0.01))
    assert not fig.layout.annotations[-1].text.startswith("the two lines coincide")
    same = cumulative_cost_figure({"A": days, "B": days.copy()}, "")
    assert same.layout.annotations[-1].text == "the two lines coincide: both cost the same every day"
