"""Benchmark loaders read the pinned packages' data as uniform items."""

from __future__ import annotations

import pytest

from fleet.benchmarks import load_benchmarks, load_gsm8k, load_humaneval, load_mmlu
from router._errors import DataError


def test_mmlu_sample_is_deterministic_and_drops_bad_labels() -> None:
    first = load_mmlu(20, seed=3)
    assert [i.id for i in first] == [i.id for i in load_mmlu(20, seed=3)]
    assert [i.id for i in first] != [i.id for i in load_mmlu(20, seed=4)]
    assert all(i.reference in "ABCD" for i in first)
    assert "\nA. " in first[0].question and "Answer: X" in first[0].messages[0].content
    assert all(i.reference in "ABCD" for i in load_mmlu(None))


def test_gsm8k_reference_is_the_final_number() -> None:
    items = load_gsm8k(None)
    assert len(items) == 1319
    assert items[0].reference == "18"
    assert "####" in items[0].messages[0].content


def test_humaneval_items_carry_prompt_and_entry_point() -> None:
    items = load_humaneval(3, seed=0)
    assert len(items) == 3
    assert all(i.id.startswith("HumanEval/") and i.get("entry_point") for i in items)
    assert "def check" in items[0].reference


def test_load_benchmarks_limits_each_and_rejects_unknown() -> None:
    items = load_benchmarks(["mmlu", "gsm8k", "humaneval"], limit=2)
    assert [i.task for i in items] == ["mmlu"] * 2 + ["gsm8k"] * 2 + ["humaneval"] * 2
    with pytest.raises(DataError, match="unknown benchmark"):
        load_benchmarks(["nope"])
