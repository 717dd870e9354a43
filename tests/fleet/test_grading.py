"""The fleet evaluation's grading: letters, final numbers, HumanEval in the sandbox."""

from __future__ import annotations

from fractions import Fraction

import pytest

from backends.types import Message
from fleet.benchmarks import BenchmarkItem
from fleet.grading import (
    extract_code,
    extract_final_number,
    extract_letter,
    run_humaneval,
    score,
    score_letter,
    score_number,
)
from fleet.sandbox import network_isolation, run_python


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("Answer: C", "C"),
        ("The answer is (D).", "D"),
        ("I think A is wrong. The correct answer is B.", "B"),
        ("**C**", "C"),
        ("Let me think.\nA. no\nB. no\nAnswer: D", "D"),
        ("the answer is: option b", "B"),
        ("C) Paris", "C"),
        ("I am not sure.", None),
        ("A lot of people think so.", None),
        ("", None),
    ],
)
def test_extract_letter(text: str, letter: str | None) -> None:
    assert extract_letter(text) == letter


def test_score_letter() -> None:
    assert score_letter("Answer: b", "B") == 1
    assert score_letter("Answer: A", "B") == 0
    assert score_letter("nothing", "B") == 0


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("She makes 9 * 2 = $18 every day.\n#### 18", 18),
        ("#### 1,234", 1234),
        ("The answer is $1,000.50.", Fraction("1000.5")),
        ("The answer is 18 dollars.", 18),
        ("So she has 3 apples, then 5 more, 8 apples in all.", 8),
        ("#### -7", -7),
        ("The answer is: 3/4", Fraction(3, 4)),
        ("He ran 5 km in 20 minutes, so \\boxed{15}", 15),
        ("#### 18\nThen some chatter with 99", 18),
        ("no digits here", None),
    ],
)
def test_extract_final_number(text: str, number: Fraction | int | None) -> None:
    assert extract_final_number(text) == number


def test_score_number_compares_numerically() -> None:
    assert score_number("#### 18.00", "18") == 1
    assert score_number("The answer is 1,000", "1000") == 1
    assert score_number("#### 17", "18") == 0
    assert score_number("#### 18", "not a number") == 0


def test_extract_code() -> None:
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone") == "def f():\n    return 1\n"
    assert extract_code("```\nx = 1\n```") == "x = 1\n"
    assert extract_code("```python\ndef f():\n    return 1\n") == "def f():\n    return 1\n"
    assert extract_code("    return 1\n") == "    return 1\n"


PROMPT = 'def add(a: int, b: int) -> int:\n    """Sum of a and b."""\n'
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n"


def _item() -> BenchmarkItem:
    return BenchmarkItem(
        "HumanEval/x", "humaneval", PROMPT, (Message("user", PROMPT),), TEST,
        (("prompt", PROMPT), ("entry_point", "add")),
    )


def test_humaneval_whole_function_passes() -> None:
    result = run_humaneval(_item(), "```python\ndef add(a, b):\n    return a + b\n```")
    assert result.passed, result.output


def test_humaneval_body_completion_passes() -> None:
    assert score(_item(), "    return a + b\n")[0] == 1


def test_humaneval_wrong_solution_fails() -> None:
    result = run_humaneval(_item(), "def add(a, b):\n    return a - b\n")
    assert result.status == "failed"
    assert "AssertionError" in result.output


def test_humaneval_syntax_error_fails() -> None:
    assert score(_item(), "def add(a, b)\n    return a +\n")[0] == 0


def test_humaneval_infinite_loop_times_out() -> None:
    result = run_humaneval(_item(), "def add(a, b):\n    while True:\n        pass\n", timeout=1.0)
    assert result.status == "timeout"
    assert not result.passed


def test_sandbox_runs_in_an_empty_directory_without_proxies() -> None:
    program = "import os\nassert os.listdir('.') == ['program.py'], os.listdir('.')\n"
    program += "assert not [k for k in os.environ if 'proxy' in k.lower()]\n"
    assert run_python(program).passed


def test_sandbox_has_no_network() -> None:
    if not network_isolation():
        # Legitimately optional: the sandbox runs without isolation where the kernel or container
        # forbids (unprivileged) network namespaces, which no package installs (fleet/sandbox.py).
        pytest.skip("no network namespace on this machine (unshare unavailable)")
    program = (
        "import socket\n"
        "s = socket.socket()\n"
        "s.settimeout(3)\n"
        "try:\n"
        "    s.connect(('1.1.1.1', 80))\n"
        "except OSError:\n"
        "    raise SystemExit(0)\n"
        "raise SystemExit('connected')\n"
    )
    result = run_python(program)
    assert result.passed, result.output
    assert result.network_isolated
    assert "no network" in result.isolation


def test_sandbox_memory_limit() -> None:
    result = run_python("x = bytearray(2 << 30)\n", memory_bytes=256 << 20)
    assert result.status == "failed"
    assert "MemoryError" in result.output


def test_sandbox_says_when_the_network_is_not_isolated() -> None:
    result = run_python("pass\n", isolate_network=False)
    assert result.passed
    assert not result.network_isolated
    assert "network not isolated" in result.summary()
