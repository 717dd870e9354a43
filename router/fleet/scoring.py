"""Scoring a model's answer against a benchmark's label: 1 correct, 0 not.

- multiple choice (mmlu): the letter the answer commits to, found by :func:`extract_letter`;
- gsm8k: the final number (:func:`extract_final_number`) equals the reference numerically;
- humaneval: pass@1 of the completion, run with the tests by :mod:`router.fleet.sandbox`.
"""

from __future__ import annotations

import re
from fractions import Fraction

from router.fleet.benchmarks import BenchmarkItem
from router.fleet.sandbox import SandboxResult, run_python

LETTERS = "ABCD"

# Most explicit first; the last match of the first pattern that matches wins.
_LETTER_PATTERNS = (
    re.compile(r"answer\s*(?:is|:)?\s*(?:option\s*)?[\(\[\*]*\s*([A-D])\b(?![\w'])", re.IGNORECASE),
    re.compile(r"\*\*\s*\(?([A-D])\)?[.:)]?\s*\*\*"),
    re.compile(r"\(([A-D])\)"),
    re.compile(r"^\s*([A-D])\s*[.:)]", re.MULTILINE),
    re.compile(r"^\s*([A-D])\s*$", re.MULTILINE),
    re.compile(r"\boption\s+([A-D])\b", re.IGNORECASE),
)


def extract_letter(text: str) -> str | None:
    """The option letter (A-D) an answer commits to, or None if it names none."""
    for pattern in _LETTER_PATTERNS:
        matches = pattern.findall(text)
        if matches:
            return str(matches[-1]).upper()
    return None


def score_letter(text: str, reference: str) -> int:
    return int(extract_letter(text) == reference.strip().upper())


_NUMBER = r"-?\$?\s*(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?"
_FINAL_MARKERS = (
    re.compile(r"####\s*(" + _NUMBER + ")"),
    re.compile(r"answer\s+is\s*:?\s*(" + _NUMBER + ")", re.IGNORECASE),
    re.compile(r"\\boxed\{\s*(" + _NUMBER + r")\s*\}"),
)
_ANY_NUMBER = re.compile(_NUMBER)


def parse_number(text: str) -> Fraction | None:
    """``"$1,234.50"`` -> 1234.5 and ``"3/4"`` -> 0.75, exactly; None if it is no number."""
    cleaned = text.replace(",", "").replace("$", "").replace(" ", "")
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def extract_final_number(text: str) -> Fraction | None:
    """The answer's final number: after the last '####' or 'the answer is', else its last number.

    Commas, a dollar sign, spaces and trailing units ('18 dollars', '5 km') do not matter.
    """
    for pattern in _FINAL_MARKERS:
        matches = pattern.findall(text)
        if matches:
            return parse_number(matches[-1])
    numbers = _ANY_NUMBER.findall(text)
    return parse_number(numbers[-1]) if numbers else None


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
