"""K-fold cross-validation of the router on its training rows (the only place to tune).

Rows that score only some models (logged feedback, a route measured on some tasks) are
trained on in every fold they fall in, and judged among the models they score (at least two):
a pick, and every baseline's, is among those models (the best single model is the best one
measured on the row, by training accuracy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from router._errors import DataError
from router.calibration import apply_calibration, fit_calibration, reliability_table
from router.data import query_costs
from router.evaluate import Summary, baseline_picks, mean_summary, summarize, sweep
from router.fit import FitConfig, fit_router_model
from router.model import Prediction

if TYPE_CHECKING:
    from router.training_set import TrainingSet

CV_ALPHAS: tuple[float, ...] = tuple(round(a * 0.025, 3) for a in range(41))


@dataclass(frozen=True)
class CVReport:
    folds: int
    rows_per_fold: float
    curve: list[tuple[float, Summary]]
    baselines: dict[str, Summary]
    # per-model calibration map fitted on every out-of-fold prediction (router/calibration.py)
    calibration: np.ndarray | None = None
    # reliability of the out-of-fold predictions, raw and calibrated (cross-fitted)
    reliability: dict[str, Any] | None = None

    def at(self, alpha: float) -> Summary:
        return min(self.curve, key=lambda item: abs(item[0] - alpha))[1]

    def to_dict(self) -> dict[str, Any]:
        def one(s: Summary) -> dict[str, Any]:
            return {
                "accuracy": round(s.accuracy, 4),
                "cost": round(s.cost, 5),
                "share": {m: round(v, 4) for m, v in s.share.items()},
            }

        return {
            "folds": self.folds,
            "rows_per_fold": self.rows_per_fold,
            "cost_is": "summed cost per fold, averaged over folds",
            "curve": [{"alpha": a, **one(s)} for a, s in self.curve],
            "baselines": {name: one(s) for name, s in self.baselines.items()},
            **({"reliability": self.reliability} if self.reliability else {}),
        }


def fold_indices(
    n: int, groups: np.ndarray | None, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Shuffled folds, stratified by group when groups are known."""
    from sklearn.model_selection import KFold, StratifiedKFold

    if groups is not None and np.bincount(groups).min() >= folds:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(n), groups))
    return list(KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n)))


def out_of_fold_success(
    ts: TrainingSet,
    config: FitConfig,
    splits: list[tuple[np.ndarray, np.ndarray]],
    progress: Callable[[str], None],
) -> list[Prediction]:
    """Predicted success (and eligibility) of every model on each held-out fold."""
    result = []
    for number, (tr, te) in enumerate(splits, start=1):
        progress(f"cross-validation fold {number}/{len(splits)}: fitting on {len(tr)} rows")
        groups = None if ts.groups is None else ts.groups[tr]
        known = None if ts.data.known is None else ts.data.known[tr]
        model = fit_router_model(
            ts.embeddings[tr], ts.formats[tr], ts.data.scores[tr], ts.prices, groups, config, known
        )
        result.append(model.predict(ts.embeddings[te], ts.formats[te]))
    return result


def allowed_among(eligible: np.ndarray, known: np.ndarray) -> np.ndarray:
    """The candidates a judged row's pick may be: eligible and scored there (all scored ones
    where none of them is eligible)."""
    allowed = eligible & known
    none = ~allowed.any(axis=1)
    allowed[none] = known[none]
    return allowed


def calibrated_out_of_fold(
    success: np.ndarray,
    scores: np.ndarray,
    known: np.ndarray | None,
    splits: list[tuple[np.ndarray, np.ndarray]],
) -> np.ndarray:
    """Out-of-fold predictions each calibrated by a map fitted on the other folds' predictions
    (cross-fitting: no row's calibration saw its own score)."""
    calibrated = success.copy()
    everything = np.arange(len(success))
    for _, te in splits:
        others = np.setdiff1d(everything, te)
        mask = None if known is None else known[others]
        table = fit_calibration(success[others], scores[others], mask)
        calibrated[te] = apply_calibration(success[te], table)
    return calibrated


def cross_validate(
    ts: TrainingSet,
    config: FitConfig,
    folds: int,
    progress: Callable[[str], None] = lambda _: None,
    calibrate: bool = True,
) -> CVReport:
    """The alpha curve and baselines over ``folds`` folds. With ``calibrate``, predictions are
    calibrated as the trained router's will be (cross-fitted), and the report carries the
    calibration map fitted on all out-of-fold predictions and the reliability tables."""
    splits = fold_indices(len(ts.data.questions), ts.groups, folds, config.seed)
    predictions = out_of_fold_success(ts, config, splits, progress)
    n, m = ts.data.scores.shape
    raw, eligible_all = np.zeros((n, m)), np.ones((n, m), dtype=bool)
    for (_, te), prediction in zip(splits, predictions, strict=True):
        raw[te], eligible_all[te] = prediction.success, prediction.eligible
    success_all, calibration, reliability = raw, None, None
    if calibrate:
        known = ts.data.known
        success_all = calibrated_out_of_fold(raw, ts.data.scores, known, splits)
        calibration = fit_calibration(raw, ts.data.scores, known)
        reliability = {
            "raw": reliability_table(raw, ts.data.scores, ts.data.models, known),
            "calibrated": reliability_table(success_all, ts.data.scores, ts.data.models, known),
        }
    judged = np.zeros(n, dtype=bool)
    judged[ts.data.judged_rows()] = True
    known_all = ts.data.known_mask()
    curves, bases, sizes = [], [], []
    for tr, te in splits:
        te = te[judged[te]]
        if not len(te):
            continue
        scores, known = ts.data.scores[te], known_all[te]
        costs = query_costs([ts.data.questions[i] for i in te], ts.prices)
        allowed = allowed_among(eligible_all[te], known)
        curves.append(sweep(success_all[te], scores, costs, ts.data.models, CV_ALPHAS, allowed))
        train_acc = ts.data.subset(tr).single_model_means()
        mask = None if ts.data.known is None else known
        picks = baseline_picks(train_acc, ts.prices, scores, costs, config.seed, mask)
        bases.append({k: summarize(p, scores, costs, ts.data.models) for k, p in picks.items()})
        sizes.append(len(te))
    if not curves:
        raise DataError("cross-validation needs rows that score at least two models; there are none")
    curve = [(a, mean_summary([c[i][1] for c in curves])) for i, a in enumerate(CV_ALPHAS)]
    baselines = {k: mean_summary([b[k] for b in bases]) for k in bases[0]}
    return CVReport(folds, float(np.mean(sizes)), curve, baselines, calibration, reliability)
