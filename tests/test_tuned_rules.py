"""Tuned rules shipped with the models (``python -m core tune --all --record``): the registry serves them as the
tuner would tune them, every preset and its Live-page year has them, anything else is tuned (the app says so),
malformed entries are tuned again, and recording writes both manifests of a copy of the models folder only."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.app.live import Controls, apply_controls, preset_year
from core.cli import BAD_INPUT, main
from core.serving import model_sets, registry
from core.simulation.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "exported_models"
SHIPPED = registry.TUNED_RULES in json.loads((MODELS / "manifest.json").read_text())
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="the shipped manifest has no tuned rules yet")


def levels(mix) -> list:
    """Every role's parameters of a mix of base-stock rules."""
    return [np.asarray(getattr(getattr(mix, role), name)).tolist()
            for role in ("store", "warehouse", "supplier") for name in ("level", "cap") if hasattr(getattr(mix, role),
                                                                                                  name)]


@pytest.fixture
def models_copy(tmp_path: Path) -> Path:
    """A copy of the shipped models folder (tests write into it, never into the tracked one)."""
    copy = tmp_path / "models"
    shutil.copytree(MODELS, copy)
    return copy


@needs_shipped
@pytest.mark.parametrize(("key", "preset"), [("tuned_forecast_base_stock", "thin_margin"),
                                             ("tuned_base_stock", "thin_margin"),
                                             ("tuned_capped_base_stock", "lost_sales_textbook")])
def test_shipped_rules_are_what_the_tuner_tunes(key: str, preset: str) -> None:
    scenario = preset_year(preset)
    shipped = registry.tuned(key, scenario)
    fresh = registry.TUNERS[key](scenario)
    if key == "tuned_forecast_base_stock":
        assert shipped == fresh
    else:
        assert levels(shipped) == levels(fresh)


@needs_shipped
def test_every_preset_and_its_live_year_ships_every_tuned_rule_that_applies() -> None:
    keys = list(registry.TUNERS)
    for name in PRESETS:
        for scenario in (PRESETS[name], preset_year(name)):
            assert registry.to_tune(dict(enumerate(keys)), scenario) == [], name
            applies = [k for k in keys if registry.POLICIES[k].applies(scenario)]
            assert all(registry.shipped_entry(k, scenario) is not None for k in applies), name


def test_a_reshaped_scenario_is_tuned_once_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = apply_controls("thin_margin", Controls(num_stores=50))
    choices = {"store": "learned", "compare": "tuned_forecast_base_stock"}
    assert registry.to_tune(choices, scenario) == ["tuned_forecast_base_stock"]
    assert registry.to_tune({"store": "reorder_point"}, scenario) == []
    monkeypatch.setattr(registry.tuned_menu, "tune", lambda s: dict.fromkeys(("store", "warehouse", "supplier"), 1.0))
    assert registry.tuned("tuned_forecast_base_stock", scenario)["store"] == 1.0  # tuned here, once
    assert registry.to_tune(choices, scenario) == []  # then held: nothing more to tune
    registry.tuned_menu.cache_clear()
    assert registry.to_tune(choices, scenario) == ["tuned_forecast_base_stock"]


@pytest.mark.parametrize("broken", [{"safety_factors": {"store": "x"}}, {"safety_factors": {"store": 1.0}},
                                    {"safety_factors": None}, "not an entry"])
def test_a_malformed_entry_is_tuned_again(broken, models_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A well-formed shipped entry is served as it is; a malformed one is tuned again (whether or not the shipped
    manifest has tuned rules of its own: the entry is written here)."""
    scenario = preset_year("steady")
    manifest_path = models_copy / "manifest.json"
    monkeypatch.setitem(registry.TUNERS, "tuned_forecast_base_stock", lambda s: {"tuned": "here"})

    def ship(entry) -> None:
        manifest = json.loads(manifest_path.read_text())
        section = manifest.setdefault(registry.TUNED_RULES, {"command": "test", "scenarios": {}})
        section["scenarios"].setdefault(registry.scenario_key(scenario), {})["tuned_forecast_base_stock"] = entry
        manifest_path.write_text(json.dumps(manifest))

    well_formed = {"store": 1.0, "warehouse": 0.5, "supplier": 0.0}
    ship({"safety_factors": well_formed, "cost_per_day": 1.0})
    assert registry.tuned("tuned_forecast_base_stock", scenario, models_copy) == well_formed
    ship(broken)
    assert registry.tuned("tuned_forecast_base_stock", scenario, models_copy) == {"tuned": "here"}


def test_recording_writes_both_manifests_of_the_served_set(models_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "tuned_entries", lambda s: {"tuned_forecast_base_stock": {
        "safety_factors": {"store": 1.0, "warehouse": 0.5, "supplier": 0.0}, "cost_per_day": 1.0}})
    scenario = preset_year("steady")
    rules = registry.tuned_rules([scenario])
    registry.record_tuned(models_copy, rules, model_sets.served_set(models_copy)[1], "test")
    version = model_sets.current_version(models_copy)
    for folder in (models_copy, models_copy / version):
        section = json.loads((folder / "manifest.json").read_text())[registry.TUNED_RULES]
        assert section == {"command": "test", "scenarios": rules}
    shipped = registry.tuned("tuned_forecast_base_stock", scenario, models_copy)
    assert shipped == {"store": 1.0, "warehouse": 0.5, "supplier": 0.0}
    with pytest.raises(model_sets.ModelSetChanged):  # measured on another set: nothing written
        registry.record_tuned(models_copy, {}, {"version": None, "files": {}}, "test")
    assert json.loads((models_copy / "manifest.json").read_text())[registry.TUNED_RULES]["scenarios"] == rules


def test_an_uncapped_rule_ships_without_infinity() -> None:
    entry = {"level": 20.0, "cap": None, "warehouse_level": 0.0, "supplier_level": 0.0}
    mix = registry._from_entry("tuned_capped_base_stock", entry, preset_year("lost_sales_textbook"))
    assert math.isinf(mix.store.cap)


@pytest.mark.parametrize("argv", [["tune", "--all", "--seeds", "4"], ["tune", "--all", "--scenario", "steady"],
                                  ["tune", "--all", "--menu"], ["tune", "--record"]])
def test_tune_all_refuses_other_settings_in_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == BAD_INPUT
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and ("--all" in err or "--record" in err), err
