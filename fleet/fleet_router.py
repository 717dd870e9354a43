"""A router artifact for a fleet, trained on that fleet's own `fleet eval` results.

``build_fleet_router(results, out)`` reads a fleet evaluation's ``rows.json`` (router rows
with ``task``) and ``queries.json`` (per-query costs), writes the training inputs the router
trainer expects next to the artifact (``training/models.json`` with one price per model and
``training/tasks.jsonl``) and trains a blend router on them.

Prices: the router charges a query ``price * estimated_tokens / 1e6`` (router.data.query_costs).
A fleet model's price is set so that, over the evaluated questions, that convention gives back
what the model was measured to cost (``measured``: CPU seconds and memory held) or what its
configured per-token price gives (``config``):
``price = sum(cost of each query) / sum(estimated tokens of each question) * 1e6``, over the
questions that model answered.

Models need not all be scored on every question: a composite route evaluated on GSM8K only
trains on the rows that score it, its unknown scores are masked (not 0), and the router gives
it no credit on kinds of question it was never measured on (router/model.py, coverage).
Cross-validation judges the rows that score every model.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from router._errors import DataError
from router.artifact import Artifact
from router.data import estimated_tokens
from router.fit import FitConfig

COST_SOURCES = ("measured", "config")
DEFAULT_COST = "measured"
DEFAULT_FOLDS = 5  # cross-validation folds for the manifest
# Few rows and three well-separated tasks: fewer clusters than the benchmark router's.
DEFAULT_CLUSTERS = 12


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: not found (is it a `smallfleet fleet eval` output directory?)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


def fleet_prices(
    rows: Sequence[dict[str, Any]], queries: Sequence[dict[str, Any]], models: Sequence[str], cost: str
) -> dict[str, float]:
    """Price per 1M estimated tokens for each model, from its measured or configured cost."""
    if cost not in COST_SOURCES:
        raise DataError(f"cost source must be one of {', '.join(COST_SOURCES)}, not {cost!r}")
    field = f"{cost}_cost"
    spent: dict[str, float] = defaultdict(float)
    for query in queries:
        spent[query["model"]] += float(query.get(field) or 0.0)
    prices = {}
    for model in models:
        questions = [row["question"] for row in rows if model in row["scores"]]
        tokens = float(estimated_tokens(questions).sum())
        prices[model] = spent[model] / tokens * 1e6 if tokens else 0.0
    if cost == "config" and not any(prices.values()):
        raise DataError("no model has a configured price; use --cost measured")
    return prices


def select_rows(rows: Sequence[dict[str, Any]], models: Sequence[str]) -> list[dict[str, Any]]:
    """Rows that score any of ``models``, with only those models' scores."""
    chosen = []
    for row in rows:
        scores = {model: row["scores"][model] for model in models if model in row.get("scores", {})}
        if scores:
            chosen.append({**row, "scores": scores})
    return chosen


def read_results(results: Path | Sequence[Path]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows and queries of one or several `fleet eval` / `fleet report` outputs, taken together.

    Several outputs (benchmarks measured apart, e.g. with another item count) are joined by
    question: a question in two of them keeps the scores of both (a model scored twice on it
    keeps the first)."""
    paths = [results] if isinstance(results, Path) else list(results)
    rows: dict[str, dict[str, Any]] = {}
    queries: list[dict[str, Any]] = []
    for path in paths:
        for row in _read(path / "rows.json"):
            known = rows.setdefault(row["question"], {**row, "scores": {}})
            known["scores"] = {**row["scores"], **known["scores"]}
        queries.extend(_read(path / "queries.json"))
    return list(rows.values()), queries


def write_training_inputs(
    results: Path | Sequence[Path],
    directory: Path,
    models: Sequence[str] | None = None,
    cost: str = DEFAULT_COST,
) -> tuple[Path, Path, Path]:
    """``rows.json``, ``models.json`` and ``tasks.jsonl`` for the router trainer, in ``directory``."""
    rows, queries = read_results(results)
    where = ", ".join(str(p) for p in ([results] if isinstance(results, Path) else results))
    evaluated = sorted({query["model"] for query in queries})
    models = list(models) if models else evaluated
    unknown = sorted(set(models) - set(evaluated))
    if unknown:
        raise DataError(
            f"{where}: no evaluation of {', '.join(unknown)} (evaluated: {', '.join(evaluated)})"
        )
    if len(models) < 2:
        raise DataError("a router needs at least two models to choose from")
    rows = select_rows(rows, models)
    if not any(len(row["scores"]) == len(models) for row in rows):
        raise DataError(f"{where}: no question was answered by all of {', '.join(models)}")
    queries = [q for q in queries if q["model"] in models]
    prices = fleet_prices(rows, queries, models, cost)
    directory.mkdir(parents=True, exist_ok=True)
    rows_path, models_path, tasks_path = (directory / n for n in ("rows.json", "models.json", "tasks.jsonl"))
    rows_path.write_text(json.dumps(rows, indent=1))
    models_path.write_text(json.dumps(
        {m: {"input_price": prices[m], "output_price": prices[m], "cost_source": cost} for m in models},
        indent=2,
    ))
    labels = (json.dumps({"question": r["question"], "task": r["task"]}) for r in rows)
    tasks_path.write_text("".join(line + "\n" for line in labels))
    return rows_path, models_path, tasks_path


def build_fleet_router(
    results: Path | Sequence[Path],
    out: Path,
    *,
    models: Sequence[str] | None = None,
    cost: str = DEFAULT_COST,
    folds: int = DEFAULT_FOLDS,
    clusters: int = DEFAULT_CLUSTERS,
    seed: int = 0,
    default_alpha: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> Artifact:
    """Train the router artifact of a fleet from its evaluation in ``results``; write it to ``out``.

    ``default_alpha`` is what plain ``model: "auto"`` uses: a preset's name (``quality``,
    ``balanced``, ``cheap``: chosen by cross-validation) or a number 0..1; by default pure quality.
    """
    from router.train import train

    rows, prices, tasks = write_training_inputs(results, out / "training", models, cost)
    progress(f"training on {rows} with {cost} costs ({prices})")
    return train(
        rows, prices, out, tasks=tasks, folds=folds,
        config=FitConfig(seed=seed, n_clusters=clusters), default_alpha=default_alpha, progress=progress,
    )
