"""Headless UI tests of the Streamlit app with ``streamlit.testing.v1.AppTest``.

Every test opens the app from its entry point (``streamlit_app.py``, which uses ``st.navigation``) and
switches to a page, as a visitor would. Tests that need the shipped policies skip (with the reason) until
``exported_models/manifest.json`` exists. Uploading a policy is exercised here with AppTest's
``file_uploader`` and, in a real browser, in ``test_browser.py``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.app import compare
from core.evaluation.statistics import REPORTED
from core.serving.registry import POLICIES, applicable
from core.simulation.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "streamlit_app.py")
MODELS = ROOT / "exported_models"
MANIFEST = MODELS / "manifest.json"
TIMEOUT = 120

RULE = "reorder_point"
LIVE_SLIDERS = (
    "live_demand_scale", "live_dispersion", "live_weekly_seasonality", "live_seasonality_amplitude", "live_num_stores",
    "live_promotion_start_day", "live_promotion_length", "live_promotion_lift",
    "live_disruption_start_day", "live_disruption_length", "live_disruption_capacity_loss",
    "live_warehouse_to_store", "live_supplier_to_warehouse", "live_production",
)
LIVE_SELECTBOXES = ("live_preset", "live_store", "live_warehouse", "live_supplier", "live_compare")
KPI_LABELS = ("Cost per day", "Fill rate", "Stockouts per day", "Saved in the year")
YEAR_TILES = ("Saved in the year", "Extra cost in the year")  # the last tile, by which way the year went

needs_models = pytest.mark.skipif(not MANIFEST.exists(),
                                  reason=f"{MANIFEST} does not exist yet (the training pipeline writes it)")


# --------------------------------------------------------------------------------------------- helpers

def open_page(page: str | None, clean: bool = True) -> AppTest:
    """A fresh session on ``pages/<page>`` (``None``: the default page), run once; with ``clean``, checked for
    exceptions and st.error (pass ``clean=False`` before choosing rule-based policies without shipped models)."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, _exceptions(at)
    if page is not None:
        at.switch_page(f"pages/{page}").run()
    if clean:
        assert_clean(at)
    else:
        assert not at.exception, _exceptions(at)
    return at


def _exceptions(at: AppTest) -> list[str]:
    return [f"{e.message}\n{''.join(e.stack_trace)}" for e in at.exception]


def assert_clean(at: AppTest) -> None:
    """No traceback and no st.error on the page."""
    assert not at.exception, _exceptions(at)
    assert not at.error, [e.value for e in at.error]


def kpis(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def has_live_tiles(at: AppTest) -> bool:
    """The Live page's KPI tiles, in order: the last says what the year saved or cost extra."""
    labels = tuple(kpis(at))
    return labels[:-1] == KPI_LABELS[:-1] and labels[-1] in YEAR_TILES


def year_figure_of(at: AppTest) -> dict:
    """The Live page's year figure, as sent to the browser."""
    (spec,) = plotly_specs(at)
    return spec


def live_headline(at: AppTest) -> str:
    """The Live page's verdict (the first markdown, a coloured heading), without its markup."""
    return at.markdown[0].value.removeprefix("#### ").split("[", 1)[1].removesuffix("]")


def best_rule(preset: str) -> str:
    from core.serving.models import load_manifest

    return compare.default_baseline(PRESETS[preset], load_manifest())


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def plotly_array(value) -> np.ndarray:
    """A trace's data: plotly serialises numpy arrays as {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
        return array
    return np.asarray(value)


def dataframe_values(at: AppTest) -> list[list]:
    return [df.value.astype(str).values.tolist() for df in at.dataframe]


def tiny_policy(role: str, action: int = 0) -> bytes:
    """A valid policy for ``role`` that always picks menu entry ``action``: (N, F) -> action (N,), probabilities
    (N, NUM_ACTIONS). Built with onnx.helper so the upload tests do not depend on the training pipeline."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from core.agents.menus import NUM_ACTIONS
    from core.agents.observations import FEATURES

    width = len(FEATURES[role])
    logits = np.full(NUM_ACTIONS, -5.0, np.float32)
    logits[action] = 5.0
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "w"], ["z"]),
         helper.make_node("Add", ["z", "b"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
         helper.make_node("ArgMax", ["logits"], ["action"], axis=1, keepdims=0)],
        "tiny_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", width])],
        [helper.make_tensor_value_info("action", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", NUM_ACTIONS])],
        [numpy_helper.from_array(np.zeros((width, NUM_ACTIONS), np.float32), "w"),
         numpy_helper.from_array(logits, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


# --------------------------------------------------------------------------------------------- all pages

PAGES = {
    "live_twin.py": "Live twin",
    "head_to_head.py": "Head-to-head",
    "policy_inspector.py": "Policy inspector",
    "train_and_export.py": "Train and export",
    "about.py": "About this lab",
}


@needs_models
@pytest.mark.parametrize("page", list(PAGES))
def test_every_page_renders_without_errors(page: str) -> None:
    at = open_page(page)
    assert at.title[0].value == PAGES[page]


def test_default_page_is_the_live_twin() -> None:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception, _exceptions(at)
    assert at.title[0].value == "Live twin"
    assert at.selectbox(key="live_store").value == "learned"


def test_about_page_shows_the_chain_the_agents_and_the_results() -> None:
    from core.agents.menus import NUM_ACTIONS, SAFETY_FACTORS
    from core.agents.observations import FEATURES
    from core.evaluation.glossary import FEATURE_WORDS

    at = open_page("about.py")
    diagram = plotly_specs(at)[0]
    boxes = " ".join(a["text"] for a in diagram["layout"]["annotations"])
    for node in ("Supplier", "Warehouse", "Store 1", "Customers"):
        assert f"<b>{node}</b>" in boxes
    assert sum(a.get("showarrow", False) for a in diagram["layout"]["annotations"]) >= 6  # goods and orders
    text = "\n".join(m.value for m in at.markdown)
    for names in FEATURES.values():  # every feature in plain words, none as a raw name
        assert all(FEATURE_WORDS[n] in text for n in names)
        assert not any(n in text for n in names if "_" in n)
    lowest, highest = f"z = {min(SAFETY_FACTORS):g}", f"z = {max(SAFETY_FACTORS):g}"  # the menu's range, as it is
    assert lowest in text and highest in text and f"{NUM_ACTIONS} ({lowest} to {highest})" in text
    assert not at.code  # no raw docstring
    assert "learned hierarchy against the best rule" in text
    results = at.dataframe[0].value
    assert {"Preset", "Best rule", "Learned vs best rule", "Clairvoyant bound", "Exact optimum"} <= set(results)
    assert "steady" in list(results["Preset"])
    assert all(cell.endswith(" %") for cell in results["Learned vs best rule"])


def test_about_page_without_a_manifest_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.serving import models

    monkeypatch.setattr(models, "EXPORTED_MODELS", tmp_path)  # an empty folder: no manifest.json
    at = open_page("about.py")
    assert not at.dataframe
    assert len(at.info) == 1 and "No results to show" in at.info[0].value
    assert "manifest.json" in at.info[0].value
    assert at.get("plotly_chart")  # the diagram still shows


# --------------------------------------------------------------------------------------------- Live twin

@needs_models
def test_live_widgets_exist_with_stable_keys() -> None:
    at = open_page("live_twin.py")
    for key in LIVE_SLIDERS:
        assert at.slider(key=key) is not None
    for key in LIVE_SELECTBOXES:
        assert at.selectbox(key=key) is not None
    assert at.number_input(key="live_seed").value == 0
    assert at.toggle(key="live_references").value is False
    assert has_live_tiles(at)
    assert not at.button and not at.dataframe  # the year plays in the figure: no server-side play, step or ledger
    figure = year_figure_of(at)
    assert len(figure["frames"]) == 365
    assert [b["label"].split()[-1] for b in figure["layout"]["updatemenus"][0]["buttons"]] == ["Play", "Fast", "Pause"]


@needs_models
def test_live_opens_where_learning_pays_against_the_presets_best_rule() -> None:
    """The first screen: thin_margin, the learned policies against its best rule in the shipped evaluation, the
    year's outcome before anyone presses Play (in green where they are cheaper), what the shipped evaluation found,
    the spread over demand paths, and tiles with short deltas."""
    from core.app.live import (
        FIRST_PRESET,
        HEADLINE_PATHS,
        VERDICT_COLOURS,
        headline,
        preset_year,
        run_year,
        year_kpis,
    )
    from core.serving.registry import mix_of, uniform

    at = open_page("live_twin.py")
    assert at.selectbox(key="live_preset").value == FIRST_PRESET == "thin_margin"
    best = best_rule(FIRST_PRESET)
    assert best == json.loads(MANIFEST.read_text())["evaluation"]["presets"][FIRST_PRESET]["best_rule"]
    assert at.selectbox(key="live_compare").value == best
    label = POLICIES[best].label
    scenario = preset_year(FIRST_PRESET)
    year, baseline = (run_year(scenario, mix_of(uniform(key), scenario), 0) for key in ("learned", best))
    outcome = headline(year, baseline, ("the learned policies", label))
    # the year's verdict, in its colour: green where the learned policies are cheaper (VERDICT_COLOURS)
    assert at.markdown[0].value == f"#### :{VERDICT_COLOURS[outcome.verdict]}[{outcome.title}]"
    assert live_headline(at).startswith("Over the year, the learned policies cost ")
    evaluation = json.loads(MANIFEST.read_text())["evaluation"]
    costs = {k: v["cost_per_day"] for k, v in evaluation["presets"][FIRST_PRESET]["policies"].items()}
    evaluated = costs["learned_hierarchy"] / costs[best] - 1.0  # the shipped evaluation's, over its 30 paths
    assert (f"Compared with {label}: thin_margin's best rule in the shipped evaluation, where the learned hierarchy "
            f"costs {100 * abs(evaluated):.1f} % {'less' if evaluated < 0 else 'more'} than it over "
            f"{evaluation['seeds']} demand paths.") in at.markdown[1].value
    spread = at.caption[0].value
    assert f"on the same {HEADLINE_PATHS} demand paths" in spread
    mine, theirs = year_kpis(year), year_kpis(baseline)
    tiles = {m.label: m for m in at.metric}
    assert tiles["Cost per day"].value == f"${mine['cost_per_day']:,.2f}"
    change = f"{100 * (mine['cost_per_day'] / theirs['cost_per_day'] - 1):+.1f} %"
    assert tiles["Cost per day"].delta == ("same" if float(change.split()[0]) == 0.0 else change)  # "same": grey
    saved = theirs["cost"] - mine["cost"]
    tile = tiles["Saved in the year" if saved >= 0 else "Extra cost in the year"]
    assert tile.value == f"${abs(saved):,.0f}"
    assert all(len(m.delta or "") <= 10 for m in at.metric)  # short enough for a narrow tile


def test_live_year_and_its_spread_are_one_batch_of_the_same_runs() -> None:
    """The year played and the headline's paths come from one batched rollout: the year is ``run_year`` on the seed's
    customers, the paths are head-to-head's evaluation paths (``compare.simulate``)."""
    from core.app.live import preset_year, run_year, run_year_and_paths
    from core.serving.registry import mix_of, uniform

    scenario = preset_year("steady")
    mix = mix_of(uniform("forecast_base_stock"), scenario)
    both = run_year_and_paths(scenario, mix, 3, 5)
    alone = run_year(scenario, mix, 3)
    assert both.year.store_orders.shape == alone.store_orders.shape
    for key, values in alone.ledger.items():
        assert np.allclose(both.year.ledger[key], values, rtol=1e-12, atol=1e-9), key
    paths = compare.simulate(scenario, mix, 5)
    for key in REPORTED:
        assert np.allclose(both.paths.kpis[key], paths.kpis[key], rtol=1e-12, equal_nan=True), key
    assert np.allclose(both.paths.daily_cost, paths.daily_cost)


@needs_models
def test_live_comparison_follows_the_preset_until_a_person_picks_one() -> None:
    at = open_page("live_twin.py")
    for preset in ("steady", "lost_sales_textbook", "high_volatility"):
        at.selectbox(key="live_preset").set_value(preset).run()
        assert_clean(at)
        assert at.selectbox(key="live_compare").value == best_rule(preset)
    assert len({best_rule(p) for p in ("steady", "lost_sales_textbook", "high_volatility")}) == 3
    at.slider(key="live_num_stores").set_value(5).run()  # settings that reshape the preset: its rule, tuned again
    assert_clean(at)
    assert "tuned again for these settings; another rule may do better" in at.markdown[1].value
    at.selectbox(key="live_compare").set_value(RULE).run()  # a person's pick
    for preset in ("seasonal", "thin_margin"):
        at.selectbox(key="live_preset").set_value(preset).run()
        assert_clean(at)
        assert at.selectbox(key="live_compare").value == RULE
        assert live_headline(at).endswith(POLICIES[RULE].label)
        assert "best rule" not in at.markdown[1].value


@needs_models
def test_live_demand_and_volatility_sliders_change_the_outcome() -> None:
    at = open_page("live_twin.py")
    before, figure = kpis(at), year_figure_of(at)
    at.slider(key="live_demand_scale").set_value(1.5).run()
    assert_clean(at)
    busier = kpis(at)
    assert busier["Cost per day"] != before["Cost per day"]
    assert year_figure_of(at) != figure  # the year is simulated again and sent again
    at.slider(key="live_dispersion").set_value(0.9).run()
    assert_clean(at)
    assert kpis(at) != busier


@needs_models
def test_live_switching_a_policy_changes_the_outcome() -> None:
    at = open_page("live_twin.py")
    learned = kpis(at)
    at.selectbox(key="live_store").set_value(RULE).run()
    assert_clean(at)
    assert kpis(at) != learned
    assert live_headline(at).startswith("Over the year, your policies ")  # no longer all learned


@needs_models
def test_live_references_rerun_alone_and_leave_the_year_as_it_was() -> None:
    at = open_page("live_twin.py")
    figure, headline = year_figure_of(at), live_headline(at)
    assert not any("clairvoyant bound" in c.value for c in at.caption)  # on request only
    at.toggle(key="live_references").set_value(True).run()
    assert_clean(at)
    assert any("clairvoyant bound" in c.value for c in at.caption)
    assert year_figure_of(at) == figure and live_headline(at) == headline


@needs_models
def test_live_more_stores_and_a_disruption_still_render() -> None:
    at = open_page("live_twin.py")
    at.slider(key="live_num_stores").set_value(12)
    at.slider(key="live_disruption_start_day").set_value(2)
    at.slider(key="live_disruption_length").set_value(30)
    at.slider(key="live_supplier_to_warehouse").set_value(6)
    at.run()
    assert_clean(at)
    figure = year_figure_of(at)
    frame = figure["frames"][2]
    labels = [label for k, change in zip(frame["traces"], frame["data"], strict=True)
              if figure["data"][k].get("mode") == "markers+text" and figure["data"][k].get("xaxis", "x") == "x"
              for label in change["text"]]
    assert sum(label.startswith("store_") for label in labels) == 3  # twelve stores: the three worst off drawn
    assert sum(label.startswith("9 other stores") for label in labels) == 1  # and the other nine summed
    assert sum(label.startswith(("warehouse", "supplier")) for label in labels) == 2
    assert any(s["name"] == "supply disruption" for s in figure["layout"]["shapes"])


@needs_models
def test_live_new_preset_loads_its_slider_values() -> None:
    from core.app.live import controls_of

    at = open_page("live_twin.py")
    at.slider(key="live_demand_scale").set_value(1.8).run()
    at.selectbox(key="live_preset").set_value("supply_disruption").run()
    assert_clean(at)
    expected = controls_of(PRESETS["supply_disruption"])
    assert at.slider(key="live_demand_scale").value == pytest.approx(expected.demand_scale)
    assert at.slider(key="live_disruption_length").value == expected.disruption_length


@needs_models
def test_two_sessions_are_independent() -> None:
    first = open_page("live_twin.py")
    second = open_page("live_twin.py")
    shared = kpis(second)
    first.selectbox(key="live_store").set_value(RULE).run()
    second.run()
    assert second.selectbox(key="live_store").value == "learned" and kpis(second) == shared
    assert kpis(first) != shared


# --------------------------------------------------------------------------------------------- Head-to-head

def headline_of(at: AppTest) -> str:
    """The head-to-head page's headline (the first markdown, a heading)."""
    return at.markdown[0].value.removeprefix("#### ")


@needs_models
def test_head_to_head_names_the_policies_and_leads_with_the_difference() -> None:
    at = open_page("head_to_head.py")
    for key in ("h2h_preset", "h2h_a_store", "h2h_a_warehouse", "h2h_a_supplier",
                "h2h_b_store", "h2h_b_warehouse", "h2h_b_supplier"):
        assert at.selectbox(key=key) is not None
    assert at.slider(key="h2h_seeds") is not None and at.number_input(key="h2h_seed") is not None
    baseline = at.selectbox(key="h2h_b_store").value
    assert POLICIES[baseline].rule  # mix B defaults to a rule (the preset's best in the shipped evaluation)
    assert len(at.dataframe) == 2  # the many-path summary, the path shown
    summary, single = (df.value for df in at.dataframe)
    for table in (summary, single):
        assert list(table["Policy"][:2]) == [POLICIES["learned"].label, POLICIES[baseline].label]
        assert list(table.columns[1:]) == [compare.kpi_column(k) for k in REPORTED]  # glossary titles, no raw keys
    (chart,) = plotly_specs(at)
    lines = chart["data"][:2]  # the cumulative costs; then their difference
    assert [line["name"] for line in lines] == [POLICIES["learned"].label, POLICIES[baseline].label]
    assert lines[0]["line"]["color"] != lines[1]["line"]["color"]

    for role in ("store", "warehouse", "supplier"):
        at.selectbox(key=f"h2h_b_{role}").set_value(RULE)
    at.slider(key="h2h_seeds").set_value(20)
    at.run()
    assert_clean(at)
    text = headline_of(at)
    assert text.startswith(f"{POLICIES['learned'].label} costs ") and f"than {POLICIES[RULE].label} per day" in text
    assert "% less than" in text  # the shipped policies cost about 30 % less than (s, S) on steady
    assert "95 % interval" in text and text.endswith(", significant on the same 20 demand paths.")
    assert "20 demand paths" in at.markdown[-2].value
    assert [line["name"] for line in plotly_specs(at)[0]["data"][:2]] == [POLICIES["learned"].label,
                                                                          POLICIES[RULE].label]
    before = dataframe_values(at)
    at.selectbox(key="h2h_b_store").set_value("forecast_base_stock").run()
    assert_clean(at)
    after = dataframe_values(at)
    assert after[0] != before[0] and after[1] != before[1]
    assert list(at.dataframe[0].value["Policy"][:2]) == ["A", "B"]  # long names: a legend says what they are
    assert "**B**: stores forecast base-stock" in at.markdown[1].value


@needs_models
def test_head_to_head_same_mix_reads_same() -> None:
    at = open_page("head_to_head.py")
    for role in ("store", "warehouse", "supplier"):
        at.selectbox(key=f"h2h_a_{role}").set_value(RULE)
        at.selectbox(key=f"h2h_b_{role}").set_value(RULE)
    at.run()
    assert_clean(at)
    assert headline_of(at).startswith(f"A: {POLICIES[RULE].label} and B: {POLICIES[RULE].label} cost the same per day")
    for table in (df.value for df in at.dataframe):
        assert list(table["Policy"][:2]) == [f"A: {POLICIES[RULE].label}", f"B: {POLICIES[RULE].label}"]
        assert (table.iloc[2, 1:] == "same").all()
        assert table.iloc[:2, 1:].map(lambda cell: len(cell) <= 16).all().all()  # rounded, no float noise


def test_head_to_head_offers_every_policy_that_applies_and_keeps_the_choices() -> None:
    at = open_page("head_to_head.py", clean=False)
    at.selectbox(key="h2h_preset").set_value("serial_textbook").run()  # one store, but a warehouse and supplier
    for key in ("h2h_a_store", "h2h_b_supplier"):
        assert at.selectbox(key=key).options == [POLICIES[k].label for k in applicable(PRESETS["serial_textbook"])]
    at.selectbox(key="h2h_b_warehouse").set_value("reorder_point").run()
    at.selectbox(key="h2h_preset").set_value("lost_sales_textbook").run()
    assert at.selectbox(key="h2h_a_store").options == [POLICIES[k].label
                                                       for k in applicable(PRESETS["lost_sales_textbook"])]
    at.switch_page("pages/about.py").run()
    at.switch_page("pages/head_to_head.py").run()
    assert at.selectbox(key="h2h_preset").value == "lost_sales_textbook"
    at.selectbox(key="h2h_preset").set_value("serial_textbook").run()
    assert at.selectbox(key="h2h_b_warehouse").value == "reorder_point"  # kept while it was hidden


@needs_models
def test_head_to_head_second_mix_follows_the_presets_best_rule_until_picked() -> None:
    from core.app.compare import default_baseline
    from core.serving.models import load_manifest

    def best(preset: str) -> str:
        return default_baseline(PRESETS[preset], load_manifest())

    at = open_page("head_to_head.py", clean=False)
    at.selectbox(key="h2h_b_warehouse").set_value("reorder_point").run()  # a person's pick
    for preset in ("high_volatility", "lost_sales_textbook", "steady"):
        at.selectbox(key="h2h_preset").set_value(preset).run()
        assert_clean(at)
        assert at.selectbox(key="h2h_b_store").value == best(preset)
        if preset == "lost_sales_textbook":  # an ample source: the warehouse and supplier have no picker
            continue
        assert at.selectbox(key="h2h_b_supplier").value == best(preset)
        assert at.selectbox(key="h2h_b_warehouse").value == "reorder_point"  # kept
    assert len({best(p) for p in ("high_volatility", "lost_sales_textbook", "steady")}) == 3


def test_head_to_head_summary_follows_each_sessions_uploaded_policy() -> None:
    """The simulations are cached across sessions; their key includes the session's uploads (it used to show
    one session's uploaded policy to every other session)."""
    tables = []
    for action in (0, 19):  # always z = -1, always z = 10
        at = open_page("train_and_export.py")
        at.file_uploader(key="upload_file_0").upload(f"always_{action}.onnx", tiny_policy("store", action)).run()
        assert_clean(at)
        at.switch_page("pages/head_to_head.py").run()
        for role in ("warehouse", "supplier"):  # mix A: the uploaded store policy under rule-based echelons
            at.selectbox(key=f"h2h_a_{role}").set_value(RULE)
        at.run()
        assert_clean(at)
        assert at.dataframe[0].value["Policy"][0] == "A"
        assert at.markdown[1].value.startswith("**A**: stores uploaded (ONNX)")
        tables.append(dataframe_values(at))
    (summary_0, single_0), (summary_19, single_19) = tables
    assert single_0 != single_19
    assert summary_0 != summary_19


# --------------------------------------------------------------------------------------------- Policy inspector

@needs_models
def test_policy_inspector_renders_its_charts() -> None:
    from core.agents.menus import NUM_ACTIONS

    at = open_page("policy_inspector.py")
    heatmap, bars = plotly_specs(at)
    assert [t["type"] for t in heatmap["data"]] == ["heatmap"] * 3
    assert plotly_array(heatmap["data"][0]["z"]).shape == (21, 21)
    assert bars["data"][0]["type"] == "bar" and len(plotly_array(bars["data"][0]["y"])) == NUM_ACTIONS
    caption = at.caption[-1].value
    at.select_slider(key="inspect_i").set_value(0)
    at.slider(key="inspect_demand").set_value(120.0)
    at.slider(key="inspect_lead").set_value(4)
    at.run()
    assert_clean(at)
    assert at.caption[-1].value != caption  # a different point of the grid, another order
    assert [t["type"] for t in plotly_specs(at)[0]["data"]] == ["heatmap"] * 3


@needs_models
def test_policy_inspector_is_readable() -> None:
    from core.agents.menus import ACTION_LABELS, SAFETY_FACTORS
    from core.agents.observations import FEATURES
    from core.evaluation.glossary import FEATURE_WORDS

    at = open_page("policy_inspector.py")
    heatmap, bars = plotly_specs(at)
    layout = heatmap["layout"]
    bar_positions = []
    for k, trace in enumerate(heatmap["data"]):  # every map on its own scale, its bar beside its own panel
        assert trace.get("coloraxis") is None and trace.get("showscale", True)
        x = trace["colorbar"]["x"]
        right_edge = layout[trace["xaxis"].replace("x", "xaxis")]["domain"][1]
        assert right_edge < x
        if k + 1 < len(heatmap["data"]):
            assert x < layout[heatmap["data"][k + 1]["xaxis"].replace("x", "xaxis")]["domain"][0]
        bar_positions.append(x)
    assert len(set(bar_positions)) == 3
    assert [heatmap["data"][k]["colorscale"] for k in range(3)] != [heatmap["data"][0]["colorscale"]] * 3
    assert all("days of demand" in layout[a]["title"]["text"] for a in ("xaxis", "xaxis2", "xaxis3", "yaxis"))
    assert list(bars["data"][0]["x"]) == list(ACTION_LABELS) and ACTION_LABELS[SAFETY_FACTORS.index(2.5)] == "z = 2.5"
    assert bars["layout"]["yaxis"]["title"]["text"] == "probability"
    assert at.caption[-1].value.startswith("Chosen: z = ")
    words = at.expander[0].markdown[0].value
    assert all(FEATURE_WORDS[name] in words for name in FEATURES["store"])
    assert "_" not in words  # no raw feature names


# --------------------------------------------------------------------------------------------- Train and export

@needs_models
def test_train_and_export_offers_the_shipped_files_for_download() -> None:
    at = open_page("train_and_export.py")
    manifest = json.loads(MANIFEST.read_text())  # the served set (a version folder, or files directly in MODELS)
    served = [card["file"] for card in [*manifest["roles"].values(), manifest.get("hierarchy") or {}] if "file" in card]
    assert served and all((MODELS / file).is_file() for file in served)
    expected = sorted(Path(file).name for file in served) + ["manifest.json", "deploy_policy.py", "onnx_checks.py",
                                                             "example_states.csv", "example_observation.json"]
    labels = [b.label for b in at.download_button]
    assert labels == expected
    for name in expected:
        assert at.download_button(key=f"download_{name}").label == name
    assert at.button(key="train_go") is not None
    assert at.select_slider(key="train_budget").value == 400_000
    uploader = at.file_uploader(key="upload_file_0")
    assert uploader.allowed_type == [".onnx"]
    assert at.selectbox(key="upload_role").value == "store"


@needs_models
def test_uploading_garbage_is_rejected_and_changes_nothing() -> None:
    at = open_page("train_and_export.py")
    at.file_uploader(key="upload_file_0").upload("bad.onnx", b"\x00garbage, not a model\xff" * 10).run()
    assert not at.exception, _exceptions(at)
    assert len(at.error) == 1 and at.error[0].value.startswith("Rejected bad.onnx")
    assert "Nothing was changed" in at.error[0].value
    assert not at.session_state["uploaded_models"]
    assert not at.success
    at.switch_page("pages/live_twin.py").run()
    assert_clean(at)
    assert at.title[0].value == "Live twin" and has_live_tiles(at)


@needs_models
def test_uploading_a_valid_policy_serves_the_live_page_of_that_session_only() -> None:
    from core.agents.menus import SAFETY_FACTORS

    at = open_page("live_twin.py")
    shipped = kpis(at)
    other = open_page("live_twin.py")

    at.switch_page("pages/train_and_export.py").run()
    minus_1 = tiny_policy("store", SAFETY_FACTORS.index(-1.0))
    at.file_uploader(key="upload_file_0").upload("always_z_minus_1.onnx", minus_1).run()
    assert_clean(at)
    assert "always_z_minus_1.onnx" in at.success[0].value
    assert set(at.session_state["uploaded_models"]) == {"store"}

    at.switch_page("pages/live_twin.py").run()
    assert_clean(at)
    assert kpis(at) != shipped  # the learned stores now order up to forecast - 1 sd
    digest = hashlib.sha256(minus_1).hexdigest()[:12]
    marked = f"Uploaded policy in use: stores always_z_minus_1.onnx, sha256 {digest} (instead of the shipped one)."
    assert marked in [c.value for c in at.caption]
    learned = POLICIES["learned"].label
    assert f"{learned} - uploaded" in at.selectbox(key="live_store").options
    assert learned in at.selectbox(key="live_warehouse").options  # no upload for the warehouse
    other.run()
    assert kpis(other) == shipped  # another session keeps the shipped policy
    assert not any(c.value.startswith("Uploaded policy in use") for c in other.caption)
    assert f"{learned} - uploaded" not in other.selectbox(key="live_store").options

    at.switch_page("pages/policy_inspector.py").run()
    assert_clean(at)
    assert marked in [c.value for c in at.caption]
    at.switch_page("pages/live_twin.py").run()
    at.selectbox(key="live_store").set_value(RULE).run()  # the upload is no longer in use
    assert_clean(at)
    assert not any(c.value.startswith("Uploaded policy in use") for c in at.caption)


def test_a_policy_of_the_wrong_width_is_rejected() -> None:
    from core.agents.observations import FEATURES

    store, supplier = len(FEATURES["store"]), len(FEATURES["supplier"])
    assert store != supplier
    at = open_page("train_and_export.py")
    at.selectbox(key="upload_role").set_value("supplier").run()
    at.file_uploader(key="upload_file_0").upload("store_policy.onnx", tiny_policy("store")).run()
    assert not at.exception, _exceptions(at)
    assert len(at.error) == 1 and at.error[0].value.startswith("Rejected store_policy.onnx")
    message = at.error[0].value
    assert "input shape" in message and f"{store}]" in message and f"width {supplier}" in message
    assert not at.session_state["uploaded_models"]


def test_forget_uploaded_policies_forgets_them() -> None:
    at = open_page("train_and_export.py")
    at.file_uploader(key="upload_file_0").upload("mine.onnx", tiny_policy("store")).run()
    assert set(at.session_state["uploaded_models"]) == {"store"}
    at.button(key="upload_clear").click().run()
    assert_clean(at)
    assert not at.session_state["uploaded_models"]


def test_head_to_head_shows_the_clairvoyant_bound_and_the_optimum_where_it_exists() -> None:
    at = open_page("head_to_head.py", clean=False)
    for role in ("store", "warehouse", "supplier"):  # rules: no shipped models needed
        at.selectbox(key=f"h2h_a_{role}").set_value("forecast_base_stock")
        at.selectbox(key=f"h2h_b_{role}").set_value(RULE)
    at.run()
    assert_clean(at)
    assert "Clairvoyant bound" not in " ".join(c.value for c in at.caption)  # solved on request only
    at.toggle(key="h2h_bound").set_value(True).run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert "Clairvoyant bound" in captions and "Exact optimum" not in captions  # three stores: no DP
    at.selectbox(key="h2h_preset").set_value("lost_sales_textbook").run()
    assert_clean(at)
    captions = " ".join(c.value for c in at.caption)
    assert "Exact optimum of any policy (dynamic programme): $4.729 per day" in captions


def test_live_compares_with_a_rule_on_the_same_customers() -> None:
    """The learned mix against a chosen rule: each tile's change is the run's against the rule's on the same demand,
    the headline names the rule with the right sign and colour; comparing a mix with itself reads "same"."""
    at = open_page("live_twin.py")
    at.selectbox(key="live_compare").set_value(RULE).run()
    assert_clean(at)
    tiles = {m.label: m for m in at.metric}
    assert tiles["Cost per day"].delta.startswith("-")  # the learned policies are cheaper than the textbook rule
    assert live_headline(at).endswith(f"% less than {POLICIES[RULE].label}")
    for role in ("store", "warehouse", "supplier"):
        at.selectbox(key=f"live_{role}").set_value(RULE)
    at.run()
    assert_clean(at)
    tiles = {m.label: m for m in at.metric}
    assert tiles["Cost per day"].delta == tiles["Fill rate"].delta == "same"
    assert at.markdown[0].value.startswith("#### :gray[") and "cost the same as" in live_headline(at)
    assert "cost the same per day" in at.caption[0].value
