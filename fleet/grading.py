"""Grading a model's answer against a benchmark's label: 1 correct, 0 not.

- multiple choice (mmlu): the letter the answer commits to, found by :func:`extract_letter`;
- gsm8k: the final number (:func:`extract_final_number`) equals the reference numerically;
- humaneval: pass@1 of the completion, run with the tests by :mod:`fleet.sandbox`;
- the routing benchmark's tasks (``routing:*``) by their own metric: ``em_mc`` the committed
  letter, ``f1_score`` the short answer's token F1 with the reference at least
  :data:`F1_THRESHOLD` (SQuAD normalisation: lower case, no punctuation or articles),
  ``code_eval`` (MBPP) the code with the task's asserts exits 0 in the sandbox.

The answer extraction is shared with the gateway's voting routes (:mod:`backends.composite.answers`).
"""

from __future__ import annotations

import re
import string
from collections import Counter

from backends.composite.answers import LETTERS, extract_final_number, extract_letter, parse_number
from fleet.benchmarks import BenchmarkItem
from fleet.sandbox import DEFAULT_TIMEOUT, SandboxResult, run_python

__all__ = [
    "LETTERS",
    "extract_code",
    "extract_final_number",
    "extract_letter",
    "humaneval_program",
    "parse_number",
    "run_humaneval",
    "score",
    "score_letter",
    "score_number",
]


def score_letter(text: str, reference: str) -> int:
    return int(extract_letter(text) == reference.strip().upper())


def score_number(text: str, reference: str) -> int:
    expected = parse_number(reference)
    return int(expected is not None and extract_final_number(text) == expected)


_CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(text: str) -> str:
    """The code of the first fenced block (an unclosed one runs to the end), else the whole text."""
    match = _CODE_BLOCK.search(text)
    return match.group(1) if match else text


def humaneval_program(prompt: str, completion: str, test: str, entry_point: str) -> str:
    """prompt + completion + tests + ``check(entry_point)``.

    A completion that is a whole function redefines the prompt's stub (a stub whose body is
    only its docstring is valid Python); one that is the body continues it.
    """
    code = extract_code(completion)
    return f"{prompt}{code}\n\n{test}\n\ncheck({entry_point})\n"


def run_humaneval(item: BenchmarkItem, completion: str, timeout: float = DEFAULT_TIMEOUT) -> SandboxResult:
    program = humaneval_program(item.get("prompt"), completion, item.reference, item.get("entry_point"))
    return run_python(program, timeout=timeout)


F1_THRESHOLD = 0.5
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_ANSWER_PREFIX = re.compile(r"^\s*(?:\**\s*(?:final\s+)?answer\s*\**\s*[:\-]\s*\**)", re.IGNORECASE)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, punctuation and articles removed, spaces squeezed."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


def short_answer(text: str) -> str:
    """The answer a short-answer reply gives: its first non-empty line, without 'Answer:'."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return _ANSWER_PREFIX.sub("", lines[0]).strip() if lines else ""


def token_f1(prediction: str, reference: str) -> float:
    """Token-overlap F1 of two normalised answers (SQuAD's ``f1_score``)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(reference).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if not predicted or not expected or common == 0:
        return float(predicted == expected)
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def score_short_answer(text: str, reference: str) -> tuple[int, str]:
    answer = short_answer(text)
    f1 = token_f1(answer, reference)
    return int(f1 >= F1_THRESHOLD), f"f1={f1:.2f}"


def mbpp_program(completion: str, tests: str) -> str:
    return f"{extract_code(completion)}\n\n{tests}\n"


def score_routing_task(item: BenchmarkItem, completion: str, timeout: float) -> tuple[int, str]:
    metric = item.get("metric")
    if metric == "em_mc":
        letter = extract_letter(completion, item.get("letters"))
        return int(letter == item.reference), f"letter={letter}"
    if metric == "f1_score":
        return score_short_answer(completion, item.reference)
    if metric == "code_eval":
        result = run_python(mbpp_program(completion, item.reference), timeout=timeout)
        return int(result.passed), result.summary()
    raise ValueError(f"no scorer for metric {metric!r} of {item.task!r}")


def score(item: BenchmarkItem, completion: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
    """(1 or 0, a short note) for ``completion`` as an answer to ``item``."""
    if item.task == "mmlu":
        return score_letter(completion, item.reference), f"letter={extract_letter(completion)}"
    if item.task == "gsm8k":
        found = extract_final_number(completion)
        return score_number(completion, item.reference), f"number={found}"
    if item.task == "humaneval":
        result = run_humaneval(item, completion, timeout)
        return int(result.passed), result.summary()
    if item.task.startswith("routing:"):
        return score_routing_task(item, completion, timeout)
    raise ValueError(f"no scorer for task {item.task!r}")
