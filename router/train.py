"""Training pipeline: rows -> embeddings -> fitted RouterModel -> CV metrics -> artifact."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from router._errors import DataError
from router.artifact import Artifact, save_artifact
from router.cv import CVReport, cross_validate
from router.data import RoutingData, file_sha256, load_prices, load_rows, load_task_labels
from router.embedding import DEFAULT_EMBEDDING, StaticEncoder, embedding_path
from router.features import FEATURE_NAMES, format_matrix
from router.fit import FitConfig, fit_router_model
from router.holdout import HOLDOUT_RULE, split_holdout
from router.training_set import TrainingSet

Progress = Callable[[str], None]
# Presets: the most accurate alpha (by CV) whose cost stays under a share of the best single
# model's cost, with a safety margin because a new split's mix of tasks moves the cost a little.
PRESET_COST_FRACTIONS = {"cheap": 0.2, "balanced": 0.5}
PRESET_SAFETY = 0.9
OOD_QUANTILE = 0.001  # training queries less similar than this quantile count as out of distribution


def _group_ids(questions: list[str], tasks: Path | None) -> tuple[np.ndarray | None, list[str]]:
    if tasks is None:
        return None, []
    labels = load_task_labels(tasks)
    names = [labels.get(q, "unknown") for q in questions]
    vocab = sorted(set(names))
    index = {name: i for i, name in enumerate(vocab)}
    return np.array([index[n] for n in names]), vocab


def load_training_set(
    data: Path, models: Path, tasks: Path | None, progress: Progress, *, holdout: float = 0.0
) -> TrainingSet:
    """Rows of ``data`` (less the held-out slice when ``holdout`` > 0), embedded and featurised."""
    prices = load_prices(models)
    rows = load_rows(data, list(prices))
    progress(f"loaded {len(rows.questions)} rows scoring {len(rows.models)} models")
    if rows.known is not None:
        partial = len(rows.questions) - len(rows.full_rows())
        progress(f"{partial} rows score only some models (the others are unknown, not 0)")
    if holdout:
        kept, held = split_holdout(rows, holdout)
        rows = rows.subset(kept)
        progress(f"held out {len(held)} rows for evaluation (by hash, fraction {holdout:g})")
    progress("embedding questions with the static MiniLM embedding")
    embedder = StaticEncoder(embedding_path(DEFAULT_EMBEDDING))
    emb = embedder.encode(rows.questions).astype(np.float64)
    groups, names = _group_ids(rows.questions, tasks)
    return TrainingSet(
        rows, np.array(list(prices.values())), emb, format_matrix(rows.questions), groups, names
    )


def choose_alpha(report: CVReport, cost_fraction: float) -> float:
    """Most accurate alpha whose CV cost stays under ``cost_fraction`` of the best single model's."""
    cap = cost_fraction * PRESET_SAFETY * report.baselines["best single"].cost
    fitting = [(s.accuracy, a) for a, s in report.curve if s.cost <= cap]
    return max(fitting)[1] if fitting else 0.0


def resolve_default_alpha(choice: str | None, presets: dict[str, float]) -> float:
    """What plain ``auto`` uses: a preset's name, a number 0..1, or (None) pure quality."""
    if choice is None:
        return 1.0
    try:
        alpha = presets[choice] if choice in presets else float(choice)
    except ValueError:
        alpha = -1.0
    if not 0.0 <= alpha <= 1.0:
        raise DataError(f"default alpha must name a preset ({', '.join(presets)}) or be 0..1, not {choice!r}")
    return alpha


def choose_presets(report: CVReport | None) -> dict[str, float]:
    presets = {"quality": 1.0}
    if report is not None:
        presets.update({name: choose_alpha(report, f) for name, f in PRESET_COST_FRACTIONS.items()})
    return presets


def _fallback_model(data: RoutingData) -> str:
    """The model for out-of-distribution questions: the best on the rows every model answered,
    among the models scored on every row when there are any (one measured on a single task,
    like a composite route evaluated on maths, is no default for unfamiliar questions)."""
    return data.models[int(data.single_model_means().argmax())]


def _partial_rows(data: RoutingData) -> int:
    return len(data.questions) - len(data.full_rows())


def _manifest(
    ts: TrainingSet,
    config: FitConfig,
    report: CVReport | None,
    default_model: str,
    threshold: float,
    tasks: Path | None,
    holdout: float,
    default_alpha: str | None = None,
) -> dict[str, Any]:
    presets = choose_presets(report)
    held = {"fraction": holdout, "rule": HOLDOUT_RULE} if holdout else None
    return {
        "kind": "blend",
        "models": ts.data.models,
        "prices": dict(zip(ts.data.models, ts.prices.tolist(), strict=True)),
        "embedding": {
            "name": DEFAULT_EMBEDDING,
            "dim": int(ts.embeddings.shape[1]),
            "sha256": file_sha256(embedding_path(DEFAULT_EMBEDDING) / "model.safetensors"),
        },
        "features": list(FEATURE_NAMES),
        "groups": ts.group_names,
        "training_data": {
            "sha256": ts.data.sha256,
            "rows": len(ts.data.questions),
            "tasks_sha256": file_sha256(tasks) if tasks else None,
            **({"partial_rows": _partial_rows(ts.data)} if ts.data.known is not None else {}),
            **({"holdout": held} if held else {}),
        },
        "train_accuracy": dict(zip(ts.data.models, np.round(ts.data.mean_scores(), 4).tolist(), strict=True)),
        "alpha": {"default": resolve_default_alpha(default_alpha, presets), "presets": presets},
        "ood": {"threshold": threshold, "default_model": default_model},
        "fit_config": asdict(config),
        "cv": report.to_dict() if report is not None else None,
    }


def train(
    data: Path,
    models: Path,
    out: Path,
    *,
    tasks: Path | None = None,
    folds: int = 5,
    config: FitConfig | None = None,
    default_model: str | None = None,
    holdout: float = 0.0,
    default_alpha: str | None = None,
    progress: Progress = lambda _: None,
) -> Artifact:
    """Train on all rows, cross-validate with ``folds`` folds (0 = skip), write the artifact.

    ``holdout`` > 0 leaves the hash-chosen evaluation slice (router.holdout) out of training
    and records it in the manifest, so two artifacts can be compared on rows neither saw.
    """
    config = config or FitConfig()
    ts = load_training_set(data, models, tasks, progress, holdout=holdout)
    if default_model is not None and default_model not in ts.data.models:
        raise DataError(f"default model {default_model!r} is not in {models}")
    report = None
    if folds:
        report = cross_validate(ts, config, folds, progress)
    progress("fitting on all rows")
    model = fit_router_model(
        ts.embeddings, ts.formats, ts.data.scores, ts.prices, ts.groups, config, ts.data.known
    )
    if report is not None and report.calibration is not None:
        model = replace(model, calibration=report.calibration)
    nearest = (ts.embeddings @ model.centroids.T).max(axis=1)
    threshold = float(np.quantile(nearest, OOD_QUANTILE))
    fallback = default_model or _fallback_model(ts.data)
    manifest = _manifest(ts, config, report, fallback, threshold, tasks, holdout, default_alpha)
    artifact = save_artifact(out, model, manifest)
    progress(f"wrote router artifact {artifact.version} to {out}")
    return artifact
