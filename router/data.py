"""Loading routing rows, model prices and task labels; the benchmark's cost convention."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from router._errors import DataError

PROMPT_OVERHEAD_TOKENS = 256
TOKENS_PER_WORD = 1.3


@dataclass(frozen=True)
class RoutingData:
    """Questions with the measured score of each model (rows x models)."""

    questions: list[str]
    models: list[str]
    scores: np.ndarray  # float64, shape (n_rows, n_models)
    sha256: str

    def subset(self, index: Sequence[int] | np.ndarray) -> RoutingData:
        idx = np.asarray(index, dtype=int)
        questions = [self.questions[i] for i in idx]
        return RoutingData(questions, self.models, self.scores[idx], self.sha256)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def load_prices(path: Path) -> dict[str, float]:
    """Input price per 1M tokens for each model in a models.json file."""
    raw = _read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{path}: expected a non-empty object of models")
    prices: dict[str, float] = {}
    for name, spec in raw.items():
        price = spec.get("input_price") if isinstance(spec, dict) else None
        if not isinstance(price, (int, float)) or isinstance(price, bool) or price < 0:
            raise DataError(f"{path}: model {name!r} needs a non-negative number 'input_price'")
        prices[str(name)] = float(price)
    return prices


def load_rows(path: Path, models: Sequence[str]) -> RoutingData:
    """Rows ``{"question": str, "scores": {model: float}}``; every row must score every model."""
    raw = _read_json(path)
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{path}: expected a non-empty JSON array of rows")
    questions: list[str] = []
    scores = np.empty((len(raw), len(models)), dtype=np.float64)
    for i, row in enumerate(raw):
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise DataError(f"{path}: row {i} needs a string 'question'")
        row_scores = row.get("scores")
        if not isinstance(row_scores, dict):
            raise DataError(f"{path}: row {i} needs an object 'scores'")
        for j, model in enumerate(models):
            value = row_scores.get(model)
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise DataError(f"{path}: row {i} has no numeric score for model {model!r}")
            scores[i, j] = float(value)
        questions.append(row["question"])
    return RoutingData(questions, list(models), scores, file_sha256(path))


def load_task_labels(path: Path) -> dict[str, str]:
    """Question -> task name from a tasks.jsonl file (lines with "question" and "task")."""
    labels: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read task labels ({exc})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{path}: line {number} is not valid JSON") from None
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise DataError(f"{path}: line {number} needs a string 'question'")
        labels[item["question"]] = str(item.get("task", ""))
    return labels


def word_count(question: str) -> int:
    return len(question.split())


def query_costs(questions: Sequence[str], prices: np.ndarray) -> np.ndarray:
    """Cost of each question on each model: price * (1.3 * words + 256) / 1e6."""
    tokens = np.array([TOKENS_PER_WORD * word_count(q) + PROMPT_OVERHEAD_TOKENS for q in questions])
    return tokens[:, None] * np.asarray(prices, dtype=np.float64)[None, :] / 1e6
