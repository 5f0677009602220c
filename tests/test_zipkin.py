"""``python -m core zipkin``: Zipkin's instances as the twin holds them, and one instance evaluated end to end."""

from __future__ import annotations

import pytest

from core.evaluation.optimum import optimum_or_reason
from core.evaluation.report import Difference
from core.evaluation.zipkin import (
    CANDIDATE,
    LEADS,
    PENALTIES,
    ZipkinRow,
    ZipkinTask,
    evaluate_instance,
    instance,
    markdown,
    summary,
)
from core.serving.models import EXPORTED_MODELS
from core.simulation.presets import PRESETS

# Zipkin (2008), Table 3 and its lost-sales costs 9, 19, 39: optimal cost per period by lead time 1 to 4
PUBLISHED = {4: (4.04, 4.40, 4.60, 4.73), 9: (5.44, 6.09, 6.53, 6.84), 19: (6.68, 7.66, 8.36, 8.89)}


def test_an_instance_is_the_textbook_preset_with_zipkins_lead_time_plus_one_and_his_penalty() -> None:
    base = PRESETS["lost_sales_textbook"]
    for lead in LEADS:
        for penalty in PENALTIES:
            scenario = instance(lead, penalty)
            assert scenario.lead_times.warehouse_to_store == lead + 1
            assert scenario.costs.stockout == penalty
            assert scenario.stores == base.stores and scenario.unmet_demand == "lost_sales"
    assert instance(4, 4).lead_times == base.lead_times and instance(4, 4).costs == base.costs


@pytest.mark.parametrize("penalty", [9, 19])
def test_the_optimum_of_small_instances_is_zipkins(penalty: int) -> None:
    for lead in (1, 2, 3):  # lead 4 takes seconds each; tests/test_optimum.py checks penalty 4
        optimum, reason = optimum_or_reason(instance(lead, penalty))
        assert reason is None
        assert optimum.cost_per_day == pytest.approx(PUBLISHED[penalty][lead - 1], abs=0.006)


def test_one_instance_end_to_end() -> None:
    row = evaluate_instance(ZipkinTask(lead=1, penalty=4, seeds=2, models=str(EXPORTED_MODELS)))
    assert row.optimum == pytest.approx(4.0407, abs=1e-3)
    assert row.learned > 0.0 and row.capped > 0.0
    # no policy beats the optimum by more than the noise of two 1,000-day paths
    assert min(row.learned, row.capped, row.best_rule_cost) > 0.95 * row.optimum
    assert row.vs_optimum == pytest.approx(row.learned / row.optimum - 1.0)
    assert row.best_rule != CANDIDATE


def test_the_table_and_its_summary_name_the_worst_instance() -> None:
    same = Difference(0.0, -0.1, 0.1, 0.0)
    rows = [ZipkinRow(lead=1, penalty=4, optimum=4.0, optimum_reason=None, learned=4.04, capped=4.1,
                      best_rule="tuned_capped_base_stock", best_rule_cost=4.1, vs_best_rule=same),
            ZipkinRow(lead=4, penalty=39, optimum=None, optimum_reason="too large", learned=10.2, capped=10.0,
                      best_rule="tuned_capped_base_stock", best_rule_cost=10.0, vs_best_rule=same)]
    worst = summary(rows)
    assert worst["with_optimum"] == 1 and worst["worst_vs_optimum"] == pytest.approx(0.01)
    assert worst["worst_vs_capped"] == pytest.approx(0.02)
    table = markdown(rows)
    assert "| 4 | 39 | - | 10.200 | - |" in table and "+1.0%" in table
