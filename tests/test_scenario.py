"""Scenario validation, JSON round-trips, presets and the demand history file."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from core.simulation.demand import DemandFileError, load_demand_csv, sample_demand
from core.simulation.presets import PRESETS, get_preset
from core.simulation.scenario import (
    MAX_STORES,
    Capacities,
    DemandModel,
    Disruption,
    Promotion,
    Scenario,
    ScenarioError,
)


def _plain(name: str = "steady") -> dict:
    return json.loads(get_preset(name).to_json())


def _raises(data_or_text, *fragments: str) -> str:
    with pytest.raises(ScenarioError) as info:
        if isinstance(data_or_text, str):
            Scenario.from_json(data_or_text)
        else:
            Scenario.from_dict(data_or_text)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --- round trips -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_round_trips_through_json(name: str) -> None:
    scenario = get_preset(name)
    assert scenario.name == name
    text = scenario.to_json()
    assert Scenario.from_json(text) == scenario
    assert Scenario.from_dict(scenario.to_dict()) == scenario
    assert Scenario.from_json(text).to_json() == text
    json.loads(text)  # strict JSON: infinity written as null, not Infinity
    assert "Infinity" not in text and "NaN" not in text


def test_round_trip_keeps_infinities_promotions_and_disruptions() -> None:
    scenario = Scenario(
        name="everything",
        stores=(DemandModel(mean=3.5, weekly_pattern=(0.5, 1.5, 1.0, 1.0, 1.0, 1.0, 1.0),
                            promotions=(Promotion(start_day=3, length=2, lift=0.25),)),
                DemandModel(mean=1e-3, distribution="normal")),
        capacities=Capacities(production=math.inf, warehouse_storage=120.5),
        disruptions=(Disruption(start_day=0, length=3, capacity_loss=1.0, extra_lead_time=2),),
        unmet_demand="backorders", allocation="lowest_cover_first")
    back = Scenario.from_json(scenario.to_json())
    assert back == scenario
    assert back.capacities.production == math.inf and back.capacities.store_shelf == math.inf
    assert json.loads(scenario.to_json())["capacities"]["production"] is None


def test_round_trip_of_any_valid_name() -> None:
    """Any valid name (text that looks like a JSON constant too) survives to_json/from_json."""
    for name in ("x", "steady copy", "NaN", "Infinity", "-Infinity"):
        scenario = dataclasses.replace(get_preset("steady"), name=name)
        assert Scenario.from_json(scenario.to_json()) == scenario, name


def test_with_num_stores_and_presets() -> None:
    steady = get_preset("steady")
    five = steady.with_num_stores(5)
    assert five.num_stores == 5
    assert five.stores == steady.stores + steady.stores[:2]
    assert dataclasses.replace(five, stores=steady.stores) == steady
    with pytest.raises(ScenarioError, match="num_stores"):
        steady.with_num_stores(MAX_STORES + 1)
    textbook = get_preset("serial_textbook")
    assert textbook.num_stores == 1 and textbook.unmet_demand == "backorders"
    assert (textbook.costs.store_holding, textbook.costs.warehouse_holding, textbook.costs.supplier_holding) == (
        7.0, 4.0, 2.0)
    assert (textbook.lead_times.warehouse_to_store, textbook.lead_times.supplier_to_warehouse,
            textbook.lead_times.production) == (1, 1, 2)
    assert textbook.stores[0].mean == 5.0 and textbook.stores[0].dispersion * 5.0 == pytest.approx(1.0)


# --- errors name the field, the value and what is allowed ---------------------------------------

def test_missing_required_field() -> None:
    data = _plain()
    del data["stores"]
    _raises(data, "stores", "missing")


def test_unknown_field() -> None:
    data = _plain()
    data["colour"] = "red"
    _raises(data, "colour", "'red'", "allowed")
    nested = _plain()
    nested["lead_times"]["teleport"] = 0
    _raises(nested, "lead_times.teleport")


def test_wrong_type() -> None:
    data = _plain()
    data["horizon"] = "ten"
    _raises(data, "horizon", "'ten'", "integer")
    data = _plain()
    data["horizon"] = 10.5
    _raises(data, "horizon", "10.5")
    data = _plain()
    data["stores"][1]["mean"] = True
    _raises(data, "stores[1].mean", "True")
    data = _plain()
    data["stores"] = {"mean": 3}
    _raises(data, "stores", "list")


def test_nan_in_json_text() -> None:
    text = get_preset("steady").to_json().replace('"mean": 25.0', '"mean": NaN', 1)
    assert "NaN" in text
    _raises(text, "stores[1].mean", "NaN")
    text = get_preset("steady").to_json().replace('"horizon": 365', '"horizon": Infinity', 1)
    _raises(text, "horizon", "Infinity")
    with pytest.raises(ScenarioError, match="demand.mean"):
        DemandModel(mean=float("nan"))
    _raises("{not json", "JSON")


def test_negative_lead_time() -> None:
    data = _plain()
    data["lead_times"]["warehouse_to_store"] = -1
    _raises(data, "lead_times.warehouse_to_store", "-1", "[1, 60]")
    data["lead_times"]["warehouse_to_store"] = 0
    _raises(data, "lead_times.warehouse_to_store", "0")


def test_store_count_limits() -> None:
    data = _plain()
    data["stores"] = []
    _raises(data, "stores", "got 0", "1 to 50")
    data["stores"] = [_plain()["stores"][0]] * (MAX_STORES + 1)
    _raises(data, "stores", "51", "1 to 50")
    data["stores"] = [_plain()["stores"][0]] * MAX_STORES
    assert Scenario.from_dict(data).num_stores == MAX_STORES


def test_unknown_choices() -> None:
    data = _plain()
    data["allocation"] = "greedy"
    _raises(data, "allocation", "'greedy'", "proportional", "lowest_cover_first")
    data = _plain()
    data["unmet_demand"] = "shrug"
    _raises(data, "unmet_demand", "'shrug'", "lost_sales")
    data = _plain()
    data["stores"][0]["distribution"] = "poisson"
    _raises(data, "stores[0].distribution", "'poisson'")
    data = _plain()
    data["upstream"] = "nearby"
    _raises(data, "upstream", "'nearby'", "network", "ample")


def test_upstream_defaults_to_the_network() -> None:
    """Scenario files written before the option existed still load, with the whole network."""
    data = _plain()
    del data["upstream"]
    assert Scenario.from_dict(data) == get_preset("steady")
    assert get_preset("steady").upstream == "network"
    textbook = get_preset("lost_sales_textbook")
    assert textbook.upstream == "ample" and textbook.num_stores == 1 and textbook.unmet_demand == "lost_sales"
    assert textbook.lead_times.warehouse_to_store == 5
    assert (textbook.costs.store_holding, textbook.costs.stockout) == (1.0, 4.0)
    # Poisson(5): the twin draws a negative binomial whose variance is the mean as Poisson.
    model = textbook.stores[0]
    assert model.mean == 5.0 and (model.dispersion * model.mean) ** 2 == pytest.approx(5.0, rel=1e-12)


def test_unknown_preset() -> None:
    with pytest.raises(ScenarioError) as info:
        get_preset("atlantis")
    assert "'atlantis'" in str(info.value)
    for name in PRESETS:
        assert name in str(info.value)


def test_weekly_pattern() -> None:
    data = _plain()
    data["stores"][2]["weekly_pattern"] = [1.0, 1.0, 1.0]
    _raises(data, "stores[2].weekly_pattern", "7")
    data["stores"][2]["weekly_pattern"] = [2.0] * 7
    _raises(data, "stores[2].weekly_pattern", "mean is 1")


def test_nested_errors_carry_their_path() -> None:
    data = _plain("promo_shock")
    data["stores"][1]["promotions"][2]["lift"] = -0.5
    _raises(data, "stores[1].promotions[2].lift", "-0.5")
    data = _plain("supply_disruption")
    data["disruptions"][0]["capacity_loss"] = 1.5
    _raises(data, "disruptions[0].capacity_loss", "1.5", "[0, 1]")
    data = _plain()
    data["capacities"]["store_shelf"] = 0
    _raises(data, "capacities.store_shelf", "0")
    data = _plain()
    data["costs"]["stockout"] = -3
    _raises(data, "costs.stockout", "-3")


def test_scenario_error_is_a_value_error() -> None:
    assert issubclass(ScenarioError, ValueError)


# --- demand ------------------------------------------------------------------------------------

def test_sampled_demand_matches_the_model() -> None:
    scenario = dataclasses.replace(get_preset("steady"), stores=(
        DemandModel(mean=40.0, dispersion=0.5), DemandModel(mean=7.0, dispersion=0.2, distribution="normal")))
    d = sample_demand(scenario, 400, np.random.default_rng(0), 50)
    assert d.shape == (400, 50, 2) and (d >= 0).all()
    assert np.array_equal(d[:, :, 0], np.round(d[:, :, 0]))  # negative binomial: whole units
    assert abs(d[:, :, 0].mean() - 40.0) < 0.3 and abs(d[:, :, 0].std() / 40.0 - 0.5) < 0.02
    assert abs(d[:, :, 1].mean() - 7.0) < 0.03 and abs(d[:, :, 1].std() / 7.0 - 0.2) < 0.01


def _write(tmp_path, rows: list[str]):
    path = tmp_path / "sales.csv"
    path.write_text("\n".join(["date,store,quantity", *rows]) + "\n")
    return path


def test_demand_csv_loads_in_date_and_store_order(tmp_path) -> None:
    path = _write(tmp_path, ["2024-03-02,north,5", "2024-03-01,south,7.5", "2024-03-01,north,3",
                             "2024-03-03,south,0", "2024-03-02,south,2", "2024-03-03,north,4"])
    history, stores = load_demand_csv(path)
    assert stores == ["north", "south"]
    assert history.shape == (3, 2)
    np.testing.assert_array_equal(history, [[3.0, 7.5], [5.0, 2.0], [4.0, 0.0]])


def test_demand_csv_missing_row(tmp_path) -> None:
    path = _write(tmp_path, ["2024-03-01,north,3", "2024-03-01,south,1", "2024-03-03,north,4",
                             "2024-03-03,south,2", "2024-03-02,north,5"])
    with pytest.raises(DemandFileError, match=r"south.*2024-03-02"):
        load_demand_csv(path)


def test_demand_csv_negative_quantity(tmp_path) -> None:
    path = _write(tmp_path, ["2024-03-01,north,3", "2024-03-02,north,-2"])
    with pytest.raises(DemandFileError, match=r":3:.*'-2'"):
        load_demand_csv(path)


@pytest.mark.parametrize("bad", ["2024-13-01", "01/03/2024", ""])
def test_demand_csv_bad_date(tmp_path, bad: str) -> None:
    path = _write(tmp_path, ["2024-03-01,north,3", f"{bad},north,2"])
    with pytest.raises(DemandFileError, match=r":3: date"):
        load_demand_csv(path)


def test_demand_csv_other_problems(tmp_path) -> None:
    with pytest.raises(DemandFileError, match="cannot read"):
        load_demand_csv(tmp_path / "absent.csv")
    (tmp_path / "cols.csv").write_text("day,store,quantity\n2024-01-01,a,1\n")
    with pytest.raises(DemandFileError, match="columns"):
        load_demand_csv(tmp_path / "cols.csv")
    path = _write(tmp_path, ["2024-03-01,north,3", "2024-03-01,north,4"])
    with pytest.raises(DemandFileError, match="second row"):
        load_demand_csv(path)
    path = _write(tmp_path, ["2024-03-01,north,lots"])
    with pytest.raises(DemandFileError, match="'lots'"):
        load_demand_csv(path)
    assert issubclass(DemandFileError, ValueError)
