"""A fleet's router is trained on its own evaluation: prices from measured cost, tasks from rows."""

from __future__ import annotations

import json

import pytest

from router._errors import DataError
from router.data import query_costs
from router.fleet.fleet_router import build_fleet_router, fleet_prices, select_rows, write_training_inputs
from router.routing import load_router

CODE = [f"Write a Python function number {i} that returns the sum of a list of integers" for i in range(12)]
MATH = [f"Tom has {i} apples and buys {i + 3} more. How many apples does he have now?" for i in range(12)]


def _results(tmp_path, extra_model_rows=0):
    """An evaluation where 'big' solves the code questions and 'small' the math ones."""
    rows, queries = [], []
    for task, questions in (("humaneval", CODE), ("gsm8k", MATH)):
        for question in questions:
            scores = {"big": int(task == "humaneval"), "small": int(task == "gsm8k")}
            rows.append({"question": question, "task": task, "scores": scores})
            for model, cost in (("big", 3e-4), ("small", 1e-4)):
                queries.append({"model": model, "task": task, "score": scores[model],
                                "measured_cost": cost, "config_cost": 0.0})
    rows += [{"question": f"only big {i}", "task": "mmlu", "scores": {"big": 1}} for i in range(extra_model_rows)]
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    (tmp_path / "queries.json").write_text(json.dumps(queries))
    return tmp_path


def test_prices_give_back_the_measured_cost_under_the_routers_token_convention():
    rows = [{"question": "a b c"}, {"question": "d e f g h"}]
    queries = [{"model": "m", "measured_cost": 0.002}, {"model": "m", "measured_cost": 0.004}]
    price = fleet_prices(rows, queries, ["m"], "measured")["m"]
    convention = query_costs([r["question"] for r in rows], [price]).sum()
    assert convention == pytest.approx(0.006)


def test_config_cost_without_prices_is_refused():
    with pytest.raises(DataError, match="configured price"):
        fleet_prices([{"question": "q"}], [{"model": "m", "config_cost": 0.0}], ["m"], "config")


def test_rows_missing_a_chosen_model_are_left_out():
    rows = [{"question": "a", "scores": {"x": 1, "y": 0, "z": 1}}, {"question": "b", "scores": {"x": 1}}]
    assert select_rows(rows, ["x", "y"]) == [{"question": "a", "scores": {"x": 1, "y": 0}}]


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
    assert artifact.manifest["groups"] == ["gsm8k", "humaneval"]
    assert artifact.manifest["prices"]["big"] == pytest.approx(3 * artifact.manifest["prices"]["small"])
    router = load_router(tmp_path / "router")
    assert {router.route(question).model for question in CODE} == {"big"}
    assert {router.route(question).model for question in MATH} == {"small"}



def test_the_cli_writes_an_artifact_and_its_training_inputs(tmp_path, capsys):
    from router.cli import main

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
