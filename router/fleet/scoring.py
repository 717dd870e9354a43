"""Scoring a model's answer against a benchmark's label: 1 correct, 0 not.

- multiple choice (mmlu): the letter the answer commits to, found by :func:`extract_letter`;
- gsm8k: the final number (:func:`extract_final_number`) equals the reference numerically;
- humaneval: pass@1 of the completion, run with the tests by :mod:`router.fleet.sandbox`.

The answer extraction is shared with the gateway's voting routes (:mod:`backends.composite.answers`).
"""

from __future__ import annotations

import re

from backends.composite.answers import LETTERS, extract_final_number, extract_letter, parse_number
from router.fleet.benchmarks import BenchmarkItem
from router.fleet.sandbox import SandboxResult, run_python

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


def run_humaneval(item: BenchmarkItem, completion: str, timeout: float = 10.0) -> SandboxResult:
    program = humaneval_program(item.get("prompt"), completion, item.reference, item.get("entry_point"))
    return run_python(program, timeout=timeout)


def score(item: BenchmarkItem, completion: str, timeout: float = 10.0) -> tuple[int, str]:
    """(1 or 0, a short note) for ``completion`` as an answer to ``item``."""
    if item.task == "mmlu":
        return score_letter(completion, item.reference), f"letter={extract_letter(completion)}"
    if item.task == "gsm8k":
        found = extract_final_number(completion)
        return score_number(completion, item.reference), f"number={found}"
    if item.task == "humaneval":
        result = run_humaneval(item, completion, timeout)
        return int(result.passed), result.summary()
    raise ValueError(f"no scorer for task {item.task!r}")
