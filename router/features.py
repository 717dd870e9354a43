"""Cheap surface features of a query's format (length, casing, code, maths, layout).

The benchmark's tasks differ sharply in format; these features let a linear model tell
them apart where a bag-of-words embedding blurs them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FEATURE_NAMES: tuple[str, ...] = (
    "log_words",
    "log_chars",
    "starts_lower",
    "ends_question",
    "ends_period",
    "has_newline",
    "newlines",
    "has_dollar",
    "has_backslash",
    "has_def",
    "has_docstring",
    "write_a",
    "boxed",
    "starts_q",
    "comma_ratio",
    "digit_ratio",
    "upper_ratio",
    "has_underscore_blank",
    "which_following",
    "ends_colon",
    "last_line_words",
)


def format_features(question: str) -> list[float]:
    """One row of FEATURE_NAMES for ``question``."""
    text = question.strip()
    words = question.split()
    n_chars = max(1, len(question))
    n_words = max(1, len(words))
    return [
        math.log1p(len(words)),
        math.log1p(len(question)),
        float(text[:1].islower()),
        float(text.endswith("?")),
        float(text.endswith(".")),
        float("\n" in question),
        question.count("\n") / 10.0,
        float("$" in question),
        float("\\" in question),
        float("def " in question),
        float('"""' in question),
        float("Write a" in question),
        float("\\boxed" in question),
        float(question.startswith("Q:")),
        question.count(",") / n_words,
        sum(c.isdigit() for c in question) / n_chars,
        sum(c.isupper() for c in question) / n_chars,
        float("_" in question),
        float("Which of the following" in question),
        float(text.endswith(":")),
        len(text.split("\n")[-1].split()) / 50.0,
    ]


def format_matrix(questions: Sequence[str]) -> np.ndarray:
    return np.array([format_features(q) for q in questions], dtype=np.float64).reshape(
        len(questions), len(FEATURE_NAMES)
    )
