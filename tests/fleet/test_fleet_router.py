"""A fleet's router is trained on its own evaluation: prices from measured cost, tasks from rows."""

from __future__ import annotations

import json

import pytest

from fleet.fleet_router import build_fleet_router, fleet_prices, select_rows, write_training_inputs
from router._errors import DataError
from router.data import query_costs
from router.routing import load_router

CODE = [f"Write a Python function number {i} that returns the sum of a list of integers" for i in range(12)]
MATH = [f"Tom has {i} apples and buys {i + 3} more. How many apples does he have now?" for i in range(12)]


def _results(tmp_path, extra_model_rows=0, math_route=False):
    """An evaluation where 'big' solves the code questions and 'small' the math ones.

    With ``math_route``, a 'route' evaluated on the math questions only solves them all, at
    twice the small model's cost.
    """
    rows, queries = [], []
    for task, questions in (("humaneval", CODE), ("gsm8k", MATH)):
        for question in questions:
            scores = {"big": int(task == "humaneval"), "small": int(task == "gsm8k")}
            rows.append({"question": question, "task": task, "scores": scores})
            for model, cost in (("big", 3e-4), ("small", 1e-4)):
                queries.append({"model": model, "task": task, "score": scores[model],
                                "measured_cost": cost, "config_cost": 0.0})
            if math_route and task == "gsm8k":
                rows[-1]["scores"]["route"] = 1
                queries.append({"model": "route", "task": task, "score": 1,
                                "measured_cost": 2e-4, "config_cost": 0.0})
    rows += [{"question": f"only big {i}", "task": "mmlu", "scores": {"big": 1}} for i in range(extra_model_rows)]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    return tmp_path


def test_prices_give_back_the_measured_cost_under_the_routers_token_convention():
    rows = [{"question": "a b c", "scores": {"m": 1, "r": 1}}, {"question": "d e f g h", "scores": {"m": 0}}]
    queries = [{"model": "m", "measured_cost": 0.002}, {"model": "m", "measured_cost": 0.004},
               {"model": "r", "measured_cost": 0.003}]
    prices = fleet_prices(rows, queries, ["m", "r"], "measured")
    convention = query_costs([r["question"] for r in rows], [prices["m"]]).sum()
    assert convention == pytest.approx(0.006)
    # a model that answered some of the questions is priced over those only
    assert query_costs(["a b c"], [prices["r"]]).sum() == pytest.approx(0.003)


def test_config_cost_without_prices_is_refused():
    with pytest.raises(DataError, match="configured price"):
        fleet_prices([{"question": "q", "scores": {"m": 1}}], [{"model": "m", "config_cost": 0.0}], ["m"], "config")


def test_rows_keep_the_chosen_models_scores_and_rows_scoring_none_are_left_out():
    rows = [{"question": "a", "scores": {"x": 1, "y": 0, "z": 1}}, {"question": "b", "scores": {"x": 1}},
            {"question": "c", "scores": {"z": 1}}]
    assert select_rows(rows, ["x", "y"]) == [
        {"question": "a", "scores": {"x": 1, "y": 0}}, {"question": "b", "scores": {"x": 1}}
    ]


def test_unknown_or_single_models_are_named(tmp_path):
    results = _results(tmp_path)
    with pytest.raises(DataError, match="no evaluation of ghost"):
        write_training_inputs(results, tmp_path / "t", ["big", "ghost"])
    with pytest.raises(DataError, match="at least two models"):
        write_training_inputs(results, tmp_path / "t", ["big"])


def test_the_trained_router_sends_each_task_to_the_model_that_solved_it(tmp_path):
    (tmp_path / "eval").mkdir()
    results = _results(tmp_path / "eval", extra_model_rows=3)
    artifact = build_fleet_router(results, tmp_path / "router", folds=0, clusters=4)
    assert artifact.manifest["groups"] == ["gsm8k", "humaneval", "mmlu"]
    router = load_router(tmp_path / "router")
    assert {router.route(question).model for question in CODE} == {"big"}
    assert {router.route(question).model for question in MATH} == {"small"}


def test_a_candidate_measured_on_one_task_is_chosen_there_only(tmp_path):
    (tmp_path / "eval").mkdir()
    results = _results(tmp_path / "eval", math_route=True)
    artifact = build_fleet_router(results, tmp_path / "router", folds=2, clusters=4)
    assert artifact.manifest["training_data"]["partial_rows"] == len(CODE)
    # every row is judged, among the candidates scored on it (code rows: without the route)
    assert artifact.manifest["cv"]["rows_per_fold"] == (len(MATH) + len(CODE)) / 2
    prices = artifact.manifest["prices"]
    assert prices["big"] == pytest.approx(3 * prices["small"])
    assert prices["route"] == pytest.approx(2 * prices["small"])  # over the questions it answered
    # the out-of-distribution default is scored everywhere, and best where every model answered
    assert artifact.manifest["ood"]["default_model"] == "small"
    router = load_router(tmp_path / "router")
    quality = router.presets.get("quality", 1.0)
    assert {router.route(question, alpha=quality).model for question in MATH} == {"route"}
    code = [router.route(question, alpha=quality) for question in CODE]
    assert {d.model for d in code if not d.out_of_distribution} == {"big"}
    assert "route" not in {d.model for d in code}  # never measured on code: no credit there



def test_the_cli_writes_an_artifact_and_its_training_inputs(tmp_path, capsys):
    from gateway.cli import main

    (tmp_path / "eval").mkdir()
    results = _results(tmp_path / "eval")
    out = tmp_path / "router"
    assert main(["fleet", "router", "--results", str(results), "--out", str(out), "--folds", "2",
                 "--clusters", "4"]) == 0
    assert "written to" in capsys.readouterr().out
    prices = json.loads((out / "training" / "models.json").read_text())
    assert set(prices) == {"big", "small"} and prices["big"]["cost_source"] == "measured"
    assert load_router(out).models == ["big", "small"]
    assert main(["fleet", "router", "--results", str(tmp_path), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_preset_can_become_what_plain_auto_uses(tmp_path):
    (tmp_path / "eval").mkdir()
    results = _results(tmp_path / "eval")
    artifact = build_fleet_router(results, tmp_path / "r", folds=2, clusters=4, default_alpha="cheap")
    assert artifact.manifest["alpha"]["default"] == artifact.manifest["alpha"]["presets"]["cheap"]
    assert load_router(tmp_path / "r").default_alpha == artifact.manifest["alpha"]["presets"]["cheap"]
    assert build_fleet_router(results, tmp_path / "r3", folds=2, clusters=4, default_alpha="0.8").manifest[
        "alpha"]["default"] == 0.8
    for wrong in ("fast", "1.5"):
        with pytest.raises(DataError, match="must name a preset"):
            build_fleet_router(results, tmp_path / "r2", folds=2, clusters=4, default_alpha=wrong)
