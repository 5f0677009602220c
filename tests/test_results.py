"""The About page's results summary (``core.app.results``) from both shapes of the manifest's evaluation."""

from __future__ import annotations

import pytest

from core.app.results import NOT_RECORDED, learned_versus_best_rule, results_summary


def _policies(**costs: float) -> dict:
    return {name: {"cost_per_day": cost, "fill_rate": 0.95} for name, cost in costs.items()}


def test_current_shape_uses_the_recorded_best_rule_bound_and_optimum() -> None:
    evaluation = {"seeds": 30, "presets": {
        "lost_sales_textbook": {"best_rule": "tuned_capped_base_stock", "bound": 0.03, "optimum": 4.729,
                                "policies": _policies(reorder_point=27.34, tuned_capped_base_stock=4.82,
                                                      forecast_base_stock=11.39, learned_hierarchy=10.38)},
        "steady": {"best_rule": "forecast_base_stock", "bound": 83.44, "optimum": None,
                   "policies": _policies(reorder_point=197.43, forecast_base_stock=140.39,
                                         learned_hierarchy=140.39)},
    }}
    summary = results_summary(evaluation)
    textbook, steady = summary.rows
    assert textbook["Best rule"] == "capped base-stock, tuned"
    assert textbook["Learned vs best rule"] == "+115.4 %"  # 10.38 / 4.82 - 1
    assert textbook["Exact optimum"] == "$4.729" and textbook["Clairvoyant bound"] == "$0.03"  # small costs: 2 decimals
    assert (textbook["Best rule, cost per day"], textbook["Learned, cost per day"]) == ("$4.82", "$10.38")
    assert steady["Exact optimum"] == "-" and steady["Clairvoyant bound"] == "$83.4"
    assert steady["Learned vs best rule"] == "+0.0 %"
    assert summary.seeds == 30
    assert "+0.0 % to +115.4 %" in summary.headline[0] and "best rule listed" not in summary.headline[0]
    assert not any("older evaluation" in note for note in summary.notes)


def test_close_costs_are_shown_with_the_digits_that_tell_them_apart() -> None:
    evaluation = {"seeds": 30, "presets": {"lost_sales_textbook": {
        "best_rule": "tuned_capped_base_stock", "bound": 0.0304, "optimum": 4.7285,
        "policies": _policies(tuned_capped_base_stock=4.8233, learned_hierarchy=4.7847)}}}
    (row,) = results_summary(evaluation).rows
    assert (row["Best rule, cost per day"], row["Learned, cost per day"]) == ("$4.82", "$4.78")  # not $4.8 and $4.8


def test_learned_versus_best_rule_reads_the_recorded_interval() -> None:
    recorded = {"cost_per_day": 4.7847, "fill_rate": 0.89, "cost_vs_best_rule": {"mean": -0.0386, "low": -0.07,
                                                                                 "high": -0.0072}}
    evaluation = {"seeds": 30, "presets": {
        "lost_sales_textbook": {"best_rule": "tuned_capped_base_stock", "policies": {
            "tuned_capped_base_stock": {"cost_per_day": 4.8233, "fill_rate": 0.89}, "learned_hierarchy": recorded}},
        "steady": {"best_rule": "forecast_base_stock", "policies": _policies(forecast_base_stock=140.28,
                                                                             learned_hierarchy=140.67)},
        "seasonal": "oops"}}
    textbook, steady = learned_versus_best_rule(evaluation)
    assert textbook["preset"] == "lost_sales_textbook" and textbook["best_rule"] == "capped base-stock, tuned"
    assert textbook["relative"] == pytest.approx(4.7847 / 4.8233 - 1)
    assert textbook["low"] == pytest.approx(-0.07 / 4.8233) and textbook["high"] == pytest.approx(-0.0072 / 4.8233)
    assert steady["relative"] > 0 and steady["low"] is None and steady["high"] is None  # no interval recorded
    assert learned_versus_best_rule(None) == []


def test_older_shape_picks_the_cheapest_listed_rule_and_says_what_is_missing() -> None:
    evaluation = {"seeds": 30, "presets": {"steady": _policies(
        reorder_point=197.43, tuned_base_stock=140.44, forecast_base_stock=140.39, phase1_stores=120.0,
        learned_hierarchy=140.40)}}
    summary = results_summary(evaluation)
    (row,) = summary.rows
    assert row["Best rule"] == "forecast base-stock"  # a learned phase is no rule, however cheap
    assert row["Clairvoyant bound"] == row["Exact optimum"] == NOT_RECORDED
    assert "best rule listed" in summary.headline[0]
    notes = " ".join(summary.notes)
    assert "older evaluation" in notes and "forecast base-stock, tuned (steady)" in notes
    assert "lost_sales_textbook" in notes  # a preset the summary lacks


def test_malformed_sections_give_a_message_not_an_error() -> None:
    assert results_summary(None).notes == ["The manifest holds no evaluation summary."]
    malformed = {"steady": "oops", "seasonal": {"learned_hierarchy": {"cost_per_day": True}}}
    summary = results_summary({"presets": malformed})
    assert summary.seeds is None and summary.rows[0]["Learned, cost per day"] == "-"
