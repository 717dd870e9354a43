"""Calibrating predicted success: P(correct) as the router predicts it, mapped to how often it
was right.

The router's blend of estimates ranks models well but its probabilities need not be
frequencies (shrunk cluster means, regularised logistic fits). Users see them as ``success``, and
the cost trade-off weighs them against cost, so they should mean what they say. Per model, Platt
scaling (a logistic regression of the observed score on the logit of the out-of-fold predicted
success: two parameters, strictly increasing, so a model's own ranking of queries is kept and
little data suffices) maps a prediction to a frequency; it is stored as values on a fixed grid
(:data:`GRID`) and applied by linear interpolation (numpy only, at routing time).

:func:`reliability_table` gives, per model and bin of predicted success, how many predictions
fell there, their mean, and how often the model was right: the evidence for both.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

GRID = np.linspace(0.0, 1.0, 21)
MIN_ROWS = 20  # a model with fewer known out-of-fold scores keeps its raw predictions


def identity(n_models: int) -> np.ndarray:
    """The calibration that changes nothing: (n_models, len(GRID))."""
    return np.tile(GRID, (n_models, 1))


def fit_calibration(success: np.ndarray, scores: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Per-model Platt maps (n_models, len(GRID)) from out-of-fold ``success`` to observed
    ``scores`` (>= 0.5 counts as correct), over the entries ``known`` marks. A model with fewer
    than :data:`MIN_ROWS` known scores, one outcome only, or a fit that does not increase keeps
    its raw predictions."""
    from sklearn.linear_model import LogisticRegression

    table = identity(success.shape[1])
    for j in range(success.shape[1]):
        rows = slice(None) if known is None else known[:, j]
        x, y = _logit(success[rows, j]), (scores[rows, j] >= 0.5).astype(int)
        if len(x) < MIN_ROWS or y.min() == y.max():
            continue
        fit = LogisticRegression(C=1.0).fit(x[:, None], y)
        slope, intercept = float(fit.coef_[0, 0]), float(fit.intercept_[0])
        if slope <= 0:
            continue
        table[j] = 1.0 / (1.0 + np.exp(-(slope * _logit(GRID) + intercept)))
    return table


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(clipped / (1 - clipped))


def apply_calibration(success: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``success`` (n, n_models) through each model's map."""
    out = np.empty_like(success)
    for j in range(success.shape[1]):
        out[:, j] = np.interp(np.clip(success[:, j], 0.0, 1.0), GRID, table[j])
    return out


def reliability_table(
    success: np.ndarray,
    scores: np.ndarray,
    models: Sequence[str],
    known: np.ndarray | None = None,
    bins: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0001),
) -> dict[str, Any]:
    """Per model: for each bin of predicted success, n, mean prediction and observed accuracy;
    and the Brier score and expected calibration error (ECE) over all its predictions."""
    result: dict[str, Any] = {}
    for j, model in enumerate(models):
        rows = np.ones(len(success), dtype=bool) if known is None else known[:, j]
        p, y = success[rows, j], (scores[rows, j] >= 0.5).astype(np.float64)
        table = []
        ece = 0.0
        for low, high in zip(bins[:-1], bins[1:], strict=True):
            inside = (p >= low) & (p < high)
            if not inside.any():
                continue
            mean_p, observed = float(p[inside].mean()), float(y[inside].mean())
            ece += inside.sum() / max(1, len(p)) * abs(mean_p - observed)
            table.append({
                "bin": f"{low:.1f}-{min(high, 1.0):.1f}", "n": int(inside.sum()),
                "predicted": round(mean_p, 3), "observed": round(observed, 3),
            })
        brier = float(((p - y) ** 2).mean()) if len(p) else float("nan")
        result[model] = {
            "bins": table, "brier": round(brier, 4), "ece": round(float(ece), 4), "n": int(len(p)),
        }
    return result


def reliability_markdown(tables: dict[str, Any]) -> str:
    """The reliability tables as Markdown: one line per model and bin."""
    lines = ["| model | predicted success | n | mean predicted | observed |", "|---|---|---:|---:|---:|"]
    for model, entry in tables.items():
        for row in entry["bins"]:
            lines.append(
                f"| {model} | {row['bin']} | {row['n']} | {row['predicted']:.3f} | {row['observed']:.3f} |"
            )
        lines.append(f"| {model} | Brier {entry['brier']:.3f}, ECE {entry['ece']:.3f} | {entry['n']} | | |")
    return "\n".join(lines) + "\n"
