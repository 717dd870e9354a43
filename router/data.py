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
    """Questions with the measured score of each model (rows x models).

    ``known`` is None when every row scores every model (the benchmark's rows). Otherwise it
    marks which scores were measured: a logged request with feedback scores one model only.
    Unknown scores are stored as 0 and must be masked out by everything that reads ``scores``.
    """

    questions: list[str]
    models: list[str]
    scores: np.ndarray  # float64, shape (n_rows, n_models)
    sha256: str
    known: np.ndarray | None = None  # bool, shape (n_rows, n_models); None: all known

    def subset(self, index: Sequence[int] | np.ndarray) -> RoutingData:
        idx = np.asarray(index, dtype=int)
        questions = [self.questions[i] for i in idx]
        known = None if self.known is None else self.known[idx]
        return RoutingData(questions, self.models, self.scores[idx], self.sha256, known)

    def full_rows(self) -> np.ndarray:
        """Indices of the rows that score every model (the only rows a routing pick can be judged on)."""
        if self.known is None:
            return np.arange(len(self.questions))
        return np.flatnonzero(self.known.all(axis=1))

    def judged_rows(self) -> np.ndarray:
        """Indices of the rows a routing pick can be judged on: those scoring at least two models
        (a pick among the models known there; every row when every score is known)."""
        if self.known is None:
            return np.arange(len(self.questions))
        return np.flatnonzero(self.known.sum(axis=1) >= 2)

    def known_mask(self) -> np.ndarray:
        """(rows, models): which scores are known (all True without a mask)."""
        if self.known is None:
            return np.ones(self.scores.shape, dtype=bool)
        return self.known

    def mean_scores(self) -> np.ndarray:
        """Per-model mean over the rows that score it."""
        return masked_mean(self.scores, self.known)

    def comparable_means(self) -> np.ndarray:
        """Per-model mean over the rows that score every model (all rows if there are none).

        What "the best single model" is judged by: a model scored only on easy questions (a
        route evaluated on one task, logged feedback) must not beat the others on its own.
        """
        full = self.full_rows()
        return self.scores[full].mean(axis=0) if len(full) else self.mean_scores()

    def single_model_means(self) -> np.ndarray:
        """``comparable_means``, with -inf for a model not scored on every row when some model is.

        What ranks candidates for "the best single model" and the default model: a candidate
        measured on one task only (a composite route evaluated on maths) may be the best there,
        but it is no single model to send every question to.
        """
        means = self.comparable_means()
        if self.known is None:
            return means
        everywhere = self.known.all(axis=0)
        return np.where(everywhere, means, -np.inf) if everywhere.any() else means


def masked_mean(scores: np.ndarray, known: np.ndarray | None) -> np.ndarray:
    """Column means of ``scores`` over the ``known`` entries (all rows when ``known`` is None)."""
    if known is None:
        return np.asarray(scores.mean(axis=0))
    counts = known.sum(axis=0)
    sums = np.where(known, scores, 0.0).sum(axis=0)
    return np.divide(sums, counts, out=np.zeros(scores.shape[1]), where=counts > 0)


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


def _row_scores(
    path: Path, i: int, row: object, index: dict[str, int], scores: np.ndarray, known: np.ndarray
) -> str:
    """Fill row ``i`` of ``scores``/``known`` from one raw row; return its question."""
    if not isinstance(row, dict) or not isinstance(row.get("question"), str):
        raise DataError(f"{path}: row {i} needs a string 'question'")
    row_scores = row.get("scores")
    if not isinstance(row_scores, dict) or not row_scores:
        raise DataError(f"{path}: row {i} needs a non-empty object 'scores'")
    for model, value in row_scores.items():
        j = index.get(model)
        if j is None:
            raise DataError(f"{path}: row {i} scores model {model!r}, which the models file does not list")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise DataError(f"{path}: row {i} has a non-numeric score for model {model!r}")
        scores[i, j] = float(value)
        known[i, j] = True
    return row["question"]


def load_rows(path: Path, models: Sequence[str]) -> RoutingData:
    """Rows ``{"question": str, "scores": {model: float}}``.

    A row may score a subset of ``models`` (the others are unknown, not 0); a row that names
    a model outside ``models`` is a DataError. Every model needs at least one score.
    """
    raw = _read_json(path)
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{path}: expected a non-empty JSON array of rows")
    index = {model: j for j, model in enumerate(models)}
    scores = np.zeros((len(raw), len(models)), dtype=np.float64)
    known = np.zeros((len(raw), len(models)), dtype=bool)
    questions = [_row_scores(path, i, row, index, scores, known) for i, row in enumerate(raw)]
    unscored = [m for j, m in enumerate(models) if not known[:, j].any()]
    if unscored:
        raise DataError(f"{path}: no row scores model(s) {', '.join(map(repr, unscored))}")
    return RoutingData(questions, list(models), scores, file_sha256(path), None if known.all() else known)


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


def estimated_tokens(questions: Sequence[str]) -> np.ndarray:
    """The benchmark's token estimate of each question: 1.3 * words + 256."""
    return np.array([TOKENS_PER_WORD * word_count(q) + PROMPT_OVERHEAD_TOKENS for q in questions])


def query_costs(questions: Sequence[str], prices: np.ndarray) -> np.ndarray:
    """Cost of each question on each model: price * estimated tokens / 1e6."""
    return estimated_tokens(questions)[:, None] * np.asarray(prices, dtype=np.float64)[None, :] / 1e6
