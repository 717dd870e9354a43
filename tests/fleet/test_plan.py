"""`smallfleet plan`: the rule's choices on synthetic tables, sizes, refusals, text and JSON output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from fleet.plan import (
    DEFAULT_OVERHEAD_BYTES,
    ModelFacts,
    NothingFits,
    PlanSettings,
    candidates_from_table,
    family_name,
    make_plan,
    needs_facts,
)
from fleet.plan_cli import parse_size, render_text, to_json
from gateway.cli import main

Q15, Q05, SMOL = 1.54e9, 494e6, 135e6
KV15, KV05, KVSMOL = 28_672, 12_288, 23_040
# model -> (params, quant, file bytes, KV bytes per token)
SIZES = {
    "qwen2.5-coder-1.5b": (Q15, "Q4_K_M", 1_117_320_768, KV15),
    "qwen2.5-coder-1.5b-q3_k_m": (Q15, "Q3_K_M", 924_456_000, KV15),
    "qwen2.5-coder-1.5b-q2_k": (Q15, "Q2_K", 752_880_192, KV15),
    "qwen2.5-coder-0.5b": (Q05, "Q4_K_M", 491_400_064, KV05),
    "smollm2-135m": (SMOL, "Q4_1", 98_362_432, KVSMOL),
}
# Footprints at context 4096 with 150 MB overhead: 1,385 / 1,192 / 1,020 / 692 / 343 MB.
COST = {"qwen2.5-coder-1.5b": 5e-5, "qwen2.5-coder-1.5b-q3_k_m": 4e-5, "qwen2.5-coder-1.5b-q2_k": 3.5e-5,
        "qwen2.5-coder-0.5b": 1.5e-5, "smollm2-135m": 0.5e-5}


def _table(accuracy: dict[str, dict[str, float]], *, with_kv: bool = True) -> list[dict[str, Any]]:
    entries = []
    for model, per_task in accuracy.items():
        params, quant, file_bytes, kv = SIZES[model]
        for task, value in [*per_task.items(), ("all", sum(per_task.values()) / len(per_task))]:
            entries.append({
                "model": model, "task": task, "n": 200, "accuracy": value, "file_bytes": file_bytes,
                "peak_memory_bytes": file_bytes + 250_000_000, "params": params, "quant": quant,
                "context_length": 4096 if with_kv else None,
                "kv_bytes_per_token": kv if with_kv else None,
                "measured_cost_per_query": COST[model] * (2 if task == "gsm8k" else 1),
            })
    return entries


BASE = {
    "qwen2.5-coder-1.5b": {"mmlu": 0.60, "gsm8k": 0.50, "humaneval": 0.45},
    "qwen2.5-coder-1.5b-q3_k_m": {"mmlu": 0.59, "gsm8k": 0.49, "humaneval": 0.44},
    "qwen2.5-coder-1.5b-q2_k": {"mmlu": 0.52, "gsm8k": 0.40, "humaneval": 0.35},
    "qwen2.5-coder-0.5b": {"mmlu": 0.45, "gsm8k": 0.30, "humaneval": 0.35},
    "smollm2-135m": {"mmlu": 0.25, "gsm8k": 0.02, "humaneval": 0.0},
}
# Q2_K within 0.02 of Q4_K_M everywhere; the 0.5B matches it on gsm8k only.
GOOD_Q2 = {
    **BASE,
    "qwen2.5-coder-1.5b-q2_k": {"mmlu": 0.59, "gsm8k": 0.49, "humaneval": 0.44},
    "qwen2.5-coder-0.5b": {"mmlu": 0.45, "gsm8k": 0.48, "humaneval": 0.35},
}


def _plan(accuracy: dict[str, dict[str, float]], budget: str, **settings: Any) -> Any:
    """The plan with a fixed 150 MB overhead per model unless told otherwise."""
    found, skipped = candidates_from_table(_table(accuracy))
    assert not skipped
    return make_plan(found, PlanSettings(parse_size(budget), **{"overhead": 150_000_000, **settings}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1.6GB", 1_600_000_000), ("1600MB", 1_600_000_000), ("1.5GiB", 1_610_612_736), ("800M", 800_000_000),
     ("2g", 2_000_000_000), ("512MiB", 536_870_912), ("1 GB", 1_000_000_000), ("123", 123), (".5GB", 500_000_000)],
)
def test_sizes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "1.6TB", "-1GB", "1,6GB", "lots"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected a size like 1.6GB"):
        parse_size(text)


def test_family_names() -> None:
    assert family_name("qwen2.5-coder-1.5b-q3_k_m") == "qwen2.5-coder-1.5b"
    assert family_name("qwen2.5-coder-1.5b-Q2_K") == "qwen2.5-coder-1.5b"
    assert family_name("llama-3b-f16") == family_name("llama-3b-iq4_xs") == "llama-3b"
    assert family_name("qwen2.5-coder-1.5b") == "qwen2.5-coder-1.5b"
    assert family_name("smollm2-135m") == "smollm2-135m"


def test_largest_family_at_its_lowest_acceptable_precision() -> None:
    plan = _plan(BASE, "1.6GB")
    [primary] = plan.chosen
    assert primary.candidate.name == "qwen2.5-coder-1.5b-q3_k_m" and primary.role == "primary"
    assert primary.footprint.weights == 924_456_000 and primary.footprint.kv_cache == KV15 * 4096
    assert primary.footprint.total == 924_456_000 + KV15 * 4096 + 150_000_000
    assert primary.reference is not None and primary.reference.name == "qwen2.5-coder-1.5b"
    assert primary.loss == pytest.approx({"mmlu": 0.01, "gsm8k": 0.01, "humaneval": 0.01})
    assert plan.assignment == dict.fromkeys(["mmlu", "gsm8k", "humaneval"], "qwen2.5-coder-1.5b-q3_k_m")
    reasons = {r.model: r.reason for r in plan.rejected}
    assert reasons["qwen2.5-coder-1.5b"].startswith("fits, but qwen2.5-coder-1.5b-q3_k_m is within 0.02")
    assert reasons["qwen2.5-coder-1.5b-q2_k"].startswith("loses 0.080 on mmlu")
    assert reasons["qwen2.5-coder-0.5b"] == "does not fit in the 408 MB left (692 MB)"
    assert reasons["smollm2-135m"] == "more than 0.02 below qwen2.5-coder-1.5b-q3_k_m on every task"
    assert plan.alternative is not None and plan.alternative.name == "qwen2.5-coder-0.5b"


def test_q2_k_and_the_half_billion_model_for_math() -> None:
    plan = _plan(GOOD_Q2, "1.8GB")
    assert [(c.candidate.name, c.role, c.tasks) for c in plan.chosen] == [
        ("qwen2.5-coder-1.5b-q2_k", "primary", ("mmlu", "humaneval")),
        ("qwen2.5-coder-0.5b", "helper", ("gsm8k",)),
    ]
    assert plan.assignment == {"mmlu": "qwen2.5-coder-1.5b-q2_k", "gsm8k": "qwen2.5-coder-0.5b",
                               "humaneval": "qwen2.5-coder-1.5b-q2_k"}
    assert plan.total == sum(c.footprint.total for c in plan.chosen) <= 1_800_000_000
    # the stricter budget leaves no room for the helper
    assert [c.candidate.name for c in _plan(GOOD_Q2, "1.6GB").chosen] == ["qwen2.5-coder-1.5b-q2_k"]


def test_a_tighter_max_loss_keeps_a_higher_precision() -> None:
    plan = _plan(BASE, "1.6GB", max_loss=0.005)
    assert plan.chosen[0].candidate.name == "qwen2.5-coder-1.5b"


def test_longer_context_and_overhead_count() -> None:
    # at 32k tokens the 1.5B's KV cache is 940 MB and none of its precisions fits
    plan = _plan(BASE, "1.6GB", context=32_768)
    assert plan.chosen[0].candidate.name == "qwen2.5-coder-0.5b"
    assert plan.chosen[0].footprint.kv_cache == KV05 * 32_768
    assert _plan(BASE, "1.6GB", overhead=900_000_000).chosen[0].candidate.name == "qwen2.5-coder-0.5b"
    # with 700 MB of overhead only the Q2_K of the 1.5B fits, and it beats the 0.5B: it is chosen
    assert _plan(BASE, "1.6GB", overhead=700_000_000).chosen[0].candidate.name == "qwen2.5-coder-1.5b-q2_k"


def test_overhead_is_measured_per_model_by_default() -> None:
    found, _ = candidates_from_table(_table(BASE))
    q2 = next(c for c in found if c.name == "qwen2.5-coder-1.5b-q2_k")
    assert q2.measured_overhead == 250_000_000 - KV15 * 4096
    at_eval = PlanSettings(parse_size("2GB")).footprint(q2)
    assert (at_eval.total, at_eval.overhead_source) == (q2.peak_memory_bytes, "measured")
    longer = PlanSettings(parse_size("2GB"), context=8192).footprint(q2)
    assert longer.total == q2.peak_memory_bytes + KV15 * 4096
    # not measured: the default; given: fixed
    unmeasured = candidates_from_table([{**e, "peak_memory_bytes": None} for e in _table(BASE)])[0][0]
    assert PlanSettings(1).footprint(unmeasured).overhead == DEFAULT_OVERHEAD_BYTES
    assert PlanSettings(1).footprint(unmeasured).overhead_source == "default"
    assert PlanSettings(1, overhead=7).footprint(q2).overhead_source == "fixed"
    # measured, a 1,003 MB Q2_K and a 741 MB 0.5B fill 1.75 GB
    plan = make_plan(candidates_from_table(_table(GOOD_Q2))[0], PlanSettings(parse_size("1.75GB")))
    assert [c.candidate.name for c in plan.chosen] == ["qwen2.5-coder-1.5b-q2_k", "qwen2.5-coder-0.5b"]
    assert plan.total == 752_880_192 + 491_400_064 + 500_000_000


def test_the_fleet_config_fills_in_what_older_tables_lack() -> None:
    old = [{**e, "kv_bytes_per_token": None, "context_length": None} for e in _table(BASE)]
    assert all(needs_facts(e) for e in old)
    facts = {name: ModelFacts(SIZES[name][3], 2048) for name in BASE}
    found, skipped = candidates_from_table(old, facts)
    assert not skipped and found[0].eval_context == 2048 and found[0].kv_bytes_per_token == KV15


def test_only_the_half_billion_model_fits() -> None:
    plan = _plan(BASE, "800MB")
    assert [c.candidate.name for c in plan.chosen] == ["qwen2.5-coder-0.5b"]
    reasons = {r.model: r.reason for r in plan.rejected}
    assert reasons["qwen2.5-coder-1.5b-q2_k"] == "does not fit: 1,020 MB > 800 MB"
    assert reasons["smollm2-135m"].startswith("does not fit in the 108 MB left")
    assert plan.alternative is not None and plan.alternative.name == "smollm2-135m"


def test_nothing_fits() -> None:
    with pytest.raises(NothingFits, match=r"nothing fits in 300 MB: the smallest footprint is smollm2-135m "
                                          r"at 343 MB \(weights 98 MB \+ KV cache 94 MB at context 4096"):
        _plan(BASE, "300MB")


def test_only_an_unmeasured_precision_fits() -> None:
    only_15b = {k: v for k, v in BASE.items() if k.startswith("qwen2.5-coder-1.5b")}
    only_15b["qwen2.5-coder-1.5b-q2_k"] = {"mmlu": 0.52, "humaneval": 0.35}
    with pytest.raises(NothingFits, match="qwen2.5-coder-1.5b-q2_k fit in 1,100 MB, but none is within 0.02"):
        _plan(only_15b, "1.1GB")


# The Q3_K_M loses more than 0.02 to its Q4_K_M on gsm8k, yet beats the 0.5B by far.
LOSSY_Q3 = {**BASE, "qwen2.5-coder-1.5b-q3_k_m": {"mmlu": 0.55, "gsm8k": 0.42, "humaneval": 0.40}}


def test_when_the_best_precision_does_not_fit_a_lower_one_is_judged_against_the_smaller_model() -> None:
    # 1.25 GB: the Q4_K_M (1,385 MB) does not fit; the Q3_K_M (1,192 MB) does
    plan = _plan(LOSSY_Q3, "1.25GB")
    assert plan.chosen[0].candidate.name == "qwen2.5-coder-1.5b-q3_k_m"
    assert "does not lose to the smaller model that would replace it" in plan.chosen[0].reason
    reasons = {r.model: r.reason for r in plan.rejected}
    assert reasons["qwen2.5-coder-1.5b"].startswith("does not fit")
    # where the Q4_K_M fits, the same Q3_K_M is judged against it, and loses
    assert _plan(LOSSY_Q3, "1.6GB").chosen[0].candidate.name == "qwen2.5-coder-1.5b"


def test_a_lower_precision_that_loses_to_the_smaller_model_gives_way_to_it() -> None:
    weak = {**BASE, "qwen2.5-coder-1.5b-q3_k_m": {"mmlu": 0.40, "gsm8k": 0.25, "humaneval": 0.30},
            "qwen2.5-coder-1.5b-q2_k": {"mmlu": 0.30, "gsm8k": 0.20, "humaneval": 0.20}}
    plan = _plan(weak, "1.25GB")
    assert plan.chosen[0].candidate.name == "qwen2.5-coder-0.5b"
    reasons = {r.model: r.reason for r in plan.rejected}
    assert reasons["qwen2.5-coder-1.5b-q3_k_m"].startswith(
        "qwen2.5-coder-1.5b does not fit, and at Q3_K_M it loses to qwen2.5-coder-0.5b (0.317 against 0.367")


def test_unmeasured_task_makes_a_precision_unacceptable() -> None:
    partial = {**BASE, "qwen2.5-coder-1.5b-q3_k_m": {"mmlu": 0.60, "humaneval": 0.45}}
    plan = _plan(partial, "1.6GB")
    assert plan.chosen[0].candidate.name == "qwen2.5-coder-1.5b"
    assert {r.model: r.reason for r in plan.rejected}["qwen2.5-coder-1.5b-q3_k_m"].startswith(
        "not measured on gsm8k")


def test_remote_models_and_missing_kv_are_skipped_with_a_reason() -> None:
    entries = _table({"qwen2.5-coder-0.5b": BASE["qwen2.5-coder-0.5b"]}, with_kv=False)
    entries.append({**entries[0], "model": "remote", "file_bytes": None})
    found, skipped = candidates_from_table(entries)
    assert found == [] and [s.model for s in skipped] == ["qwen2.5-coder-0.5b", "remote"]
    found, _ = candidates_from_table(entries, {"qwen2.5-coder-0.5b": ModelFacts(KV05, 4096)})
    assert found[0].kv_bytes_per_token == KV05 and found[0].accuracy["gsm8k"] == 0.30


def test_text_explains_the_choice() -> None:
    text = render_text(_plan(GOOD_Q2, "1.8GB"))
    assert text.startswith("Fleet for 1,800 MB at context 4096 tokens (max loss 0.02 per task")
    assert "qwen2.5-coder-1.5b-q2_k  primary: mmlu, humaneval" in text
    assert "footprint 1,020 MB = weights 753 MB + KV cache 117 MB + overhead 150 MB (fixed)" in text
    assert "minus qwen2.5-coder-1.5b (Q4_K_M): mmlu -0.010  gsm8k -0.010  humaneval -0.010" in text
    assert "qwen2.5-coder-0.5b  helper: gsm8k" in text
    assert "why: at most 0.02 below qwen2.5-coder-1.5b-q2_k on gsm8k, at a lower cost per query" in text
    assert "cost/query against qwen2.5-coder-1.5b-q2_k: gsm8k 3e-05 vs 7e-05" in text
    assert "Tasks: mmlu -> qwen2.5-coder-1.5b-q2_k, gsm8k -> qwen2.5-coder-0.5b" in text
    assert "Total 1,712 MB of 1,800 MB; 88 MB free." in text
    assert "The model with more parameters, at lower precision, is ahead on 3 of 3 tasks." in text
    assert "fleet eval measured a peak of 1,003 MB at context 4096: weights + KV cache 117 MB + 133 MB" in text
    measured = render_text(_plan(GOOD_Q2, "1.8GB", overhead=None))
    assert "overhead 133 MB (measured)" in measured
    assert "overhead: the peak fleet eval measured, 1,003 MB at context 4096, minus weights" in measured
    assert "Not chosen:\n  qwen2.5-coder-1.5b: fits, but" in text and "\nRule: Footprint = GGUF weights" in text
    assert "at higher precision, is ahead on 3 of 3" in render_text(_plan(BASE, "800MB"))


def test_json_has_the_same_content() -> None:
    document = to_json(_plan(GOOD_Q2, "1.8GB"))
    assert document["budget"] == 1_800_000_000 and document["free"] == 1_800_000_000 - document["total"]
    primary, helper = document["models"]
    assert primary["footprint"] == {"weights": 752_880_192, "kv_cache": KV15 * 4096, "overhead": 150_000_000,
                                    "overhead_source": "fixed", "total": 752_880_192 + KV15 * 4096 + 150_000_000}
    assert primary["reference"] == "qwen2.5-coder-1.5b" and primary["tasks"] == ["mmlu", "humaneval"]
    assert primary["loss_vs_reference"]["gsm8k"] == pytest.approx(0.01)
    assert helper["role"] == "helper" and helper["tasks"] == ["gsm8k"] and helper["accuracy"]["gsm8k"] == 0.48
    assert document["assignment"]["gsm8k"] == "qwen2.5-coder-0.5b"
    assert document["alternative"]["name"] == "qwen2.5-coder-0.5b"
    assert {r["model"] for r in document["rejected"]} == {
        "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-q3_k_m", "smollm2-135m"}
    json.dumps(document)


def _write_table(tmp_path: Path, entries: list[dict[str, Any]], benchmarks: list[str] | None = None) -> Path:
    path = tmp_path / "table.json"
    document = {"rates": {}, "benchmarks": benchmarks or [], "limit": 200, "seed": 0, "table": entries}
    path.write_text(json.dumps(document))
    return path


# What the first two chunks of the real run measured: Q2_K loses HumanEval to the 0.5B.
Q2_AGAINST_05B = {
    "qwen2.5-coder-0.5b": {"humaneval": 0.543, "mmlu": 0.265},
    "qwen2.5-coder-1.5b-q2_k": {"humaneval": 0.335, "mmlu": 0.335},
}


def test_the_rule_prefers_parameters_and_the_output_says_when_the_measurement_does_not() -> None:
    text = render_text(_plan(Q2_AGAINST_05B, "1.6GB"))
    assert "qwen2.5-coder-1.5b-q2_k  primary: humaneval, mmlu" in text
    assert "is ahead on 1 of 2 tasks" in text
    assert "Note: qwen2.5-coder-0.5b has the higher mean accuracy in less memory" in text
    # with room for both, the 0.5B takes HumanEval (it is better there, and cheaper)
    plan = _plan(Q2_AGAINST_05B, "1.8GB")
    assert plan.assignment == {"humaneval": "qwen2.5-coder-0.5b", "mmlu": "qwen2.5-coder-1.5b-q2_k"}


def test_cli_lists_tasks_in_the_order_of_the_benchmarks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = str(_write_table(tmp_path, _table(BASE), ["gsm8k", "humaneval", "mmlu"]))
    assert main(["plan", "--memory", "1.6GB", "--table", table]) == 0
    assert "primary: gsm8k, humaneval, mmlu" in capsys.readouterr().out


def test_cli_text_json_and_refusal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = str(_write_table(tmp_path, _table(GOOD_Q2)))
    assert main(["plan", "--memory", "1.8GB", "--table", table]) == 0
    assert "qwen2.5-coder-0.5b  helper: gsm8k" in capsys.readouterr().out
    assert main(["plan", "--memory", "1.8GB", "--table", table, "--json", "--max-loss", "0"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["models"][0]["name"] == "qwen2.5-coder-1.5b" and document["max_loss"] == 0
    assert main(["plan", "--memory", "300MB", "--table", table]) == 2
    assert "error: nothing fits in 300 MB" in capsys.readouterr().err
    assert main(["plan", "--memory", "1GB", "--table", str(tmp_path / "none.json")]) == 2
    assert "no such table" in capsys.readouterr().err


def test_cli_reads_the_kv_shape_from_the_fleet_ggufs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], smollm2_gguf: str
) -> None:
    entries = [{**e, "kv_bytes_per_token": None, "context_length": None}
               for e in _table({"smollm2-135m": BASE["smollm2-135m"]})]
    table = str(_write_table(tmp_path, entries))
    assert main(["plan", "--memory", "1GB", "--table", table]) == 0  # the default fleet has it
    assert "smollm2-135m  primary" in capsys.readouterr().out
    config = tmp_path / "fleet.yaml"
    config.write_text(f"models:\n  - {{name: other, backend: llama_cpp, gguf: {smollm2_gguf}}}\n")
    assert main(["plan", "--memory", "1GB", "--table", table, "--config", str(config)]) == 2
    assert "no KV-cache shape or context for smollm2-135m" in capsys.readouterr().err
    config.write_text("models:\n  - {name: smollm2-135m, backend: llama_cpp, context_length: 1024, "
                      f"gguf: {smollm2_gguf}}}\n")
    assert main(["plan", "--memory", "1GB", "--table", table, "--config", str(config), "--json"]) == 0
    [model] = json.loads(capsys.readouterr().out)["models"]
    assert model["footprint"]["kv_cache"] == KVSMOL * 4096 and model["eval_context"] == 1024
    assert model["footprint"]["overhead"] == 250_000_000 - KVSMOL * 1024


@pytest.mark.parametrize(
    ("entries", "needle"),
    [
        ([{"model": "m", "task": "mmlu", "n": 10}], "table[0] has no accuracy"),
        ([{"task": "mmlu", "n": 10, "accuracy": 0.5}], "table[0] has no model"),
        (["not an entry"], "table[0] is not an object"),
    ],
)
def test_cli_a_malformed_table_is_an_error_naming_the_entry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], entries: list[Any], needle: str
) -> None:
    table = str(_write_table(tmp_path, entries))
    assert main(["plan", "--memory", "1GB", "--table", table]) == 2
    assert needle in capsys.readouterr().err


def test_a_helper_whose_tasks_are_taken_over_gives_its_memory_back() -> None:
    from fleet.plan import Candidate

    def model(name: str, params: float, size: int, accuracy: dict[str, float], cost: dict[str, float]) -> Candidate:
        return Candidate(name, params, "Q4_0", size, 0, accuracy, cost=cost)

    tasks = {"t1": 0.5, "t2": 0.5, "t3": 0.5}
    primary = model("p", 10, 1000, tasks, {"t1": 10, "t2": 10, "t3": 10})
    first = model("h1", 5, 100, {**tasks, "t3": 0.0}, {"t1": 5, "t2": 5, "t3": 5})
    cheaper = model("h2", 4, 200, {**tasks, "t3": 0.0}, {"t1": 1, "t2": 1, "t3": 1})  # takes t1, t2 from h1
    third = model("h3", 3, 150, {"t1": 0.0, "t2": 0.0, "t3": 0.5}, {"t1": 1, "t2": 1, "t3": 1})
    plan = make_plan([primary, first, cheaper, third], PlanSettings(1350, context=1, overhead=0))
    # h1 ends up serving nothing, so its 100 bytes are free again and h3 (150) fits next to p and h2
    assert plan.assignment == {"t1": "h2", "t2": "h2", "t3": "h3"}
    assert plan.total <= 1350
