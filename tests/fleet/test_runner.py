"""The fleet runner and report with a scripted backend: rows, tables, costs, the CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import fleet.cli
from backends.errors import BackendError
from backends.fake import FakeBackend
from backends.types import Message
from fleet.benchmarks import BenchmarkItem
from fleet.cli import add_fleet_commands
from fleet.models import EvalModel, load_eval_models
from fleet.runner import evaluate_model
from fleet.tables import CostRates, markdown, measured_cost, query_log, table, training_rows
from router._errors import DataError


def _mc(n: int, reference: str) -> BenchmarkItem:
    question = f"Question {n}?\n\nA. x\nB. y\nC. z\nD. w"
    return BenchmarkItem(f"mmlu/{n}", "mmlu", question, (Message("user", question),), reference)


def _math(n: int, reference: str) -> BenchmarkItem:
    question = f"What is {reference}?"
    return BenchmarkItem(f"gsm8k/{n}", "gsm8k", question, (Message("user", question),), reference)


ITEMS = [_mc(1, "A"), _mc(2, "B"), _math(3, "7")]


def _model(name: str, reply: str, **kwargs: object) -> EvalModel:
    return EvalModel(name=name, backend=FakeBackend(name, reply, **kwargs),  # type: ignore[arg-type]
                     price_input=1.0, price_output=2.0)


async def test_evaluate_model_scores_and_times_each_query() -> None:
    model = _model("a", "The answer is A, so #### 7")
    run = await evaluate_model(model, ITEMS, progress=False)
    assert [r.score for r in run.results] == [1, 0, 1]
    assert all(r.seconds >= 0 and r.completion_tokens > 0 for r in run.results)
    assert run.results[0].config_cost == pytest.approx((1.0 * run.results[0].prompt_tokens
                                                         + 2.0 * run.results[0].completion_tokens) / 1e6)
    assert model.backend.closed  # type: ignore[attr-defined]
    assert run.file_bytes is None and run.peak_memory_bytes is not None


async def test_backend_errors_score_zero_and_are_counted() -> None:
    run = await evaluate_model(_model("bad", "x", error=BackendError("boom")), ITEMS, progress=False)
    assert [r.score for r in run.results] == [0, 0, 0]
    assert table([run])[-1]["errors"] == 3


async def test_rows_merge_models_by_question_and_table_has_each_task() -> None:
    runs = [
        await evaluate_model(_model("a", "Answer: A"), ITEMS, progress=False),
        await evaluate_model(_model("b", "Answer: B #### 7"), ITEMS, progress=False),
    ]
    rows = training_rows(runs)
    assert len(rows) == 3
    assert rows[0] == {"question": ITEMS[0].question, "task": "mmlu", "scores": {"a": 1, "b": 0}}
    assert rows[2]["scores"] == {"a": 0, "b": 1}
    entries = table(runs)
    assert [(e["model"], e["task"]) for e in entries] == [
        ("a", "gsm8k"), ("a", "mmlu"), ("a", "all"), ("b", "gsm8k"), ("b", "mmlu"), ("b", "all"),
    ]
    assert entries[1]["accuracy"] == 0.5
    text = markdown(entries)
    assert text.startswith("| model | task |") and "| a | mmlu | 2 | 0.500 |" in text


async def test_measured_cost_formula() -> None:
    run = await evaluate_model(_model("a", "Answer: A"), ITEMS[:1], progress=False)
    run.peak_memory_bytes = 2_000_000_000
    result = run.results[0]
    rates = CostRates(cpu_second=3.0, gb_second=5.0)
    # not in process: compute is the wall time
    assert measured_cost(run, result, rates) == pytest.approx(result.seconds * 3.0 + 2.0 * result.seconds * 5.0)


async def test_table_records_the_kv_cache_shape_from_the_gguf(smollm2_gguf: str) -> None:
    model = EvalModel(name="s", backend=FakeBackend("s", "Answer: A", context_length=1024),  # type: ignore[arg-type]
                      gguf=smollm2_gguf)
    run = await evaluate_model(model, ITEMS[:1], progress=False)
    entry = table([run])[0]
    assert entry["file_bytes"] == 98_362_432 and entry["context_length"] == 1024
    assert (entry["n_layer"], entry["n_head_kv"], entry["head_dim"]) == (30, 3, 64)
    assert entry["kv_bytes_per_token"] == 23_040
    remote = table([await evaluate_model(_model("r", "A"), ITEMS[:1], progress=False)])[0]
    assert remote["kv_bytes_per_token"] is None and remote["n_layer"] is None


def test_eval_models_are_built_from_the_validated_fleet_config(tmp_path: Path) -> None:
    config = tmp_path / "fleet.yaml"
    config.write_text(
        "models:\n"
        "  - {name: local, backend: llama_cpp, gguf: m.gguf, params: 1e6, quant: Q4_0, price: {input: 1}}\n"
        "  - {name: remote, backend: openai, base_url: 'http://127.0.0.1:9/v1'}\n"
    )
    models = load_eval_models(config)
    assert [m.name for m in models] == ["local", "remote"]
    assert models[0].gguf == str(tmp_path / "m.gguf") and models[0].in_process and models[0].params == 1e6
    assert models[0].price_input == 1.0 and not models[1].in_process
    default = load_eval_models(None)  # the embedded default fleet: three models, then its route
    models = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    assert [m.name for m in default] == [*models, "vote-1.5b"]
    assert default[0].gguf == "packaged:smollm2-135m-instruct-q4_1" and default[0].in_process
    routes = Path(__file__).resolve().parents[2] / "benchmarks" / "fleet" / "routes_fleet.yaml"
    assert [m.name for m in load_eval_models(routes)] == [
        *models, "plan-solve-0.5b", "plan-1.5b-solve-0.5b", "vote-0.5b", "cascade-0.5b-1.5b", "vote-1.5b",
    ]


def test_a_fleet_config_that_cannot_be_served_is_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "fleet.yaml"
    config.write_text("models:\n  - {name: local, backend: llama_cpp}\n")
    with pytest.raises(DataError, match=r"models\[0\]\.gguf"):
        load_eval_models(config)
    args = _parse(["fleet", "eval", "--config", str(config), "--out", str(tmp_path / "out")])
    assert args.func(args) == 2
    assert "models[0].gguf" in capsys.readouterr().err


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_fleet_commands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.fixture
def fleet_of(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Serve the CLI these models whatever --config says."""

    def use(models: list[EvalModel]) -> None:
        monkeypatch.setattr(fleet.cli, "load_eval_models", lambda path: models)

    return use


def test_cli_writes_rows_and_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str], fleet_of) -> None:  # type: ignore[no-untyped-def]
    fleet_of([_model("a", "Answer: A #### 18"), _model("b", "Answer: C")])
    args = _parse(["fleet", "eval", "--benchmarks", "mmlu,gsm8k", "--limit", "2", "--out", str(tmp_path),
                   "--max-tokens", "mmlu=8,gsm8k=16", "--no-progress"])
    assert args.func(args) == 0
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == 4 and all(set(r["scores"]) == {"a", "b"} for r in rows)
    assert {r["task"] for r in rows} == {"mmlu", "gsm8k"}
    document = json.loads((tmp_path / "table.json").read_text())
    assert {e["model"] for e in document["table"]} == {"a", "b"} and document["limit"] == 2
    assert "| model | task |" in (tmp_path / "table.md").read_text()
    assert (tmp_path / "queries.json").is_file()
    assert "cost/query (measured)" in capsys.readouterr().out


def test_cli_rejects_unknown_models(tmp_path: Path, capsys: pytest.CaptureFixture[str], fleet_of) -> None:  # type: ignore[no-untyped-def]
    fleet_of([_model("a", "A")])
    args = _parse(["fleet", "eval", "--models", "zzz", "--limit", "1", "--out", str(tmp_path)])
    assert args.func(args) == 2
    assert "not in the fleet: zzz" in capsys.readouterr().err


async def test_a_diverse_routes_samples_are_each_scored_and_kept_in_the_query_log() -> None:
    from backends.composite import DiverseBackend, DiverseSettings, Sampler

    right, wrong = FakeBackend("right", "so #### 7"), FakeBackend("wrong", "so #### 8")
    route = DiverseBackend("vote", [Sampler(right, 0.0), Sampler(wrong, 0.7), Sampler(wrong, 0.7)],
                           settings=DiverseSettings(dedupe_threshold=1.0))
    model = EvalModel(name="vote", backend=route, price_input=1.0, price_output=1.0)  # type: ignore[arg-type]
    run = await evaluate_model(model, [_math(3, "7")], progress=False)
    (result,) = run.results
    assert result.score == 0  # two wrong samples outvote the right one
    assert [(s["model"], s["temperature"], s["score"], s["answer"]) for s in result.samples] == [
        ("right", 0.0, 1, "7"), ("wrong", 0.7, 0, "8"), ("wrong", 0.7, 0, "8"),
    ]
    assert all(s["completion_tokens"] > 0 and s["definite"] for s in result.samples)
    (logged,) = query_log([run], CostRates(1.0, 1.0))
    assert logged["samples"] == list(result.samples)
    plain = await evaluate_model(_model("a", "#### 7"), [_math(3, "7")], progress=False)
    assert "samples" not in query_log([plain], CostRates(1.0, 1.0))[0]
