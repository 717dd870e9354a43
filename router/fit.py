"""Fitting a RouterModel on embedded training rows (uses scikit-learn, imported lazily)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router.calibration import identity
from router.data import masked_mean
from router.linear import softmax
from router.model import RouterModel


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters; the defaults are the ones that won 5-fold CV on train.json."""

    n_clusters: int = 60
    top_clusters: int = 3
    group_c: float = 10.0
    model_c: float = 0.3
    local_c: float = 0.05
    blend: tuple[float, float, float, float] = (0.0, 0.5, 0.5, 0.0)
    prior_strength: float = 2.0
    seed: int = 0


def _smoothed_means(
    labels: np.ndarray, n: int, scores: np.ndarray, strength: float, known: np.ndarray | None = None
) -> np.ndarray:
    """Per-label mean score, shrunk towards the global mean by ``strength`` pseudo-rows.

    With ``known`` (rows x models), each model's mean counts only the rows that score it.
    """
    prior = masked_mean(scores, known)
    sums = np.zeros((n, scores.shape[1]))
    if known is None:
        np.add.at(sums, labels, scores)
        counts: np.ndarray = np.bincount(labels, minlength=n)[:, None]
    else:
        np.add.at(sums, labels, np.where(known, scores, 0.0))
        counts = _known_counts(labels, n, known)
    return (sums + strength * prior) / (counts + strength)


def _known_counts(labels: np.ndarray, n: int, known: np.ndarray) -> np.ndarray:
    """(n, n_models): how many rows of each label score each model."""
    counts = np.zeros((n, known.shape[1]))
    np.add.at(counts, labels, known.astype(np.float64))
    return counts


def _coverage(labels: np.ndarray, n: int, n_models: int, known: np.ndarray | None) -> np.ndarray:
    """(n, n_models): 1 where some row of the label scores the model, else 0."""
    if known is None:
        return np.ones((n, n_models))
    return (_known_counts(labels, n, known) > 0).astype(np.float64)


def _fit_clusters(emb: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.cluster import KMeans

    k = max(1, min(k, len(emb)))
    km = KMeans(n_clusters=k, random_state=seed, n_init=4).fit(emb)
    centroids = km.cluster_centers_
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids = centroids / np.where(norms > 0, norms, 1.0)
    return centroids, km.labels_.astype(int)


def _fit_groups(x: np.ndarray, labels: np.ndarray, c: float, seed: int) -> tuple[np.ndarray, ...]:
    """Softmax classifier over groups; returns coef, intercept and the training probabilities."""
    from sklearn.linear_model import LogisticRegression

    n_groups = int(labels.max()) + 1
    coef = np.zeros((n_groups, x.shape[1]))
    intercept = np.full(n_groups, -30.0)  # groups absent from the data are never predicted
    present = np.unique(labels)
    if len(present) == 1:
        intercept[present[0]] = 0.0
    else:
        clf = LogisticRegression(C=c, max_iter=2000, random_state=seed).fit(x, labels)
        if len(present) == 2:  # binary fit: class 1 logit vs a zero logit for class 0
            coef[present[1]], intercept[present[1]] = clf.coef_[0], clf.intercept_[0]
            intercept[present[0]] = 0.0
        else:
            coef[clf.classes_], intercept[clf.classes_] = clf.coef_, clf.intercept_
    return coef, intercept, softmax(x @ coef.T + intercept)


def _fit_per_model(
    x: np.ndarray, scores: np.ndarray, c: float, seed: int, known: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One logistic regression per model, each on the rows that score that model."""
    from sklearn.linear_model import LogisticRegression

    coef = np.zeros((scores.shape[1], x.shape[1]))
    intercept = np.zeros(scores.shape[1])
    for j in range(scores.shape[1]):
        rows = slice(None) if known is None else known[:, j]
        y = (scores[rows, j] >= 0.5).astype(int)
        if not len(y):  # no score for this model here: an uninformed constant (p = 0.5)
            continue
        rate = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
        if y.min() == y.max():  # one class only: a constant model
            intercept[j] = np.log(rate / (1 - rate))
            continue
        clf = LogisticRegression(C=c, max_iter=1000, random_state=seed).fit(x[rows], y)
        coef[j], intercept[j] = clf.coef_[0], clf.intercept_[0]
    return coef, intercept


def _fit_local(
    formats: np.ndarray,
    labels: np.ndarray,
    n_groups: int,
    scores: np.ndarray,
    c: float,
    seed: int,
    known: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the per-model logistic fits on the (scaled) format features of that group's rows."""
    n_models, n_features = scores.shape[1], formats.shape[1]
    coef = np.zeros((n_groups, n_models, n_features))
    intercept = np.zeros((n_groups, n_models))
    for g in range(n_groups):
        rows = labels == g
        if rows.any():
            mask = None if known is None else known[rows]
            coef[g], intercept[g] = _fit_per_model(formats[rows], scores[rows], c, seed, mask)
    return coef, intercept


def fit_router_model(
    emb: np.ndarray,
    formats: np.ndarray,
    scores: np.ndarray,
    prices: np.ndarray,
    groups: np.ndarray | None,
    config: FitConfig,
    known: np.ndarray | None = None,
) -> RouterModel:
    """Fit every component; ``groups`` are task ids (0..G-1) or None to use the clusters.

    ``known`` (rows x models, or None when every score is known) masks unknown scores out of
    every per-model statistic and fit; the clusters and groups use every row's question.
    """
    centroids, cluster_of = _fit_clusters(emb, config.n_clusters, config.seed)
    cluster_success = _smoothed_means(cluster_of, len(centroids), scores, config.prior_strength, known)
    mean = formats.mean(axis=0)
    scale = formats.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    x = np.hstack([emb, (formats - mean) / scale])
    labels = cluster_of if groups is None else np.asarray(groups, dtype=int)
    group_coef, group_intercept, group_probs = _fit_groups(x, labels, config.group_c, config.seed)
    group_success = _smoothed_means(labels, len(group_coef), scores, config.prior_strength, known)
    model_coef, model_intercept = _fit_per_model(
        np.hstack([x, group_probs]), scores, config.model_c, config.seed, known
    )
    n_formats = formats.shape[1]
    local_coef = np.zeros((len(group_coef), scores.shape[1], n_formats))
    local_intercept = np.zeros((len(group_coef), scores.shape[1]))
    if config.blend[3]:
        local_coef, local_intercept = _fit_local(
            x[:, -n_formats:], labels, len(group_coef), scores, config.local_c, config.seed, known
        )
    return RouterModel(
        prices=np.asarray(prices, dtype=np.float64),
        centroids=centroids,
        cluster_success=cluster_success,
        feature_mean=mean,
        feature_scale=scale,
        group_coef=group_coef,
        group_intercept=group_intercept,
        group_success=group_success,
        model_coef=model_coef,
        model_intercept=model_intercept,
        local_coef=local_coef,
        local_intercept=local_intercept,
        blend=np.asarray(config.blend, dtype=np.float64),
        top_clusters=np.asarray(config.top_clusters),
        coverage=_coverage(labels, len(group_coef), scores.shape[1], known),
        calibration=identity(scores.shape[1]),
    )
