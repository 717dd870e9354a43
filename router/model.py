"""The router's fitted parameters and how they turn features into success probabilities.

Four estimates of P(model answers correctly | query), blended with fixed weights:
- cluster: similarity-weighted accuracy of the query's nearest k-means clusters (Avengers-Pro);
- group:   a softmax classifier over task groups times each group's per-model accuracy;
- logistic: one logistic regression per model on [embedding, format features, group probs];
- local:   per group and model, a logistic regression on the format features alone, mixed by
           the group probabilities (e.g. long maths problems favour other models than short ones).
The blend goes through each model's calibration map (router/calibration.py: isotonic, fitted
on out-of-fold predictions, so ``success`` is a frequency), then is scaled by each model's
coverage: the probability that the query belongs to a group the model was scored on. A model
never measured on a kind of question (a route evaluated on maths only) is not predicted to
succeed there from its results elsewhere.
Only numpy is needed here; fitting lives in router.fit.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from router.calibration import GRID, apply_calibration
from router.linear import sigmoid, softmax

# A candidate is eligible for a query when the query belongs, with at least this probability,
# to groups the candidate was scored on.
ELIGIBLE_REACH = 0.5


@dataclass(frozen=True)
class Prediction:
    success: np.ndarray  # (n, n_models)
    cluster: np.ndarray  # (n,) nearest cluster id
    similarity: np.ndarray  # (n,) cosine similarity to the nearest centroid
    eligible: np.ndarray  # (n, n_models) bool: the query is likely of a group the model was scored on

    def eligible_among(self, row: int, allowed: np.ndarray) -> np.ndarray:
        """``eligible[row, allowed]``, or all True when none of ``allowed`` is eligible."""
        chosen = self.eligible[row, allowed]
        return chosen if chosen.any() else np.ones_like(chosen)


@dataclass(frozen=True)
class RouterModel:
    """Arrays of a fitted router; every field round-trips through an .npz file."""

    prices: np.ndarray  # (M,) input price per 1M tokens
    centroids: np.ndarray  # (K, D), unit norm
    cluster_success: np.ndarray  # (K, M)
    feature_mean: np.ndarray  # (F,)
    feature_scale: np.ndarray  # (F,)
    group_coef: np.ndarray  # (G, D + F)
    group_intercept: np.ndarray  # (G,)
    group_success: np.ndarray  # (G, M)
    model_coef: np.ndarray  # (M, D + F + G)
    model_intercept: np.ndarray  # (M,)
    local_coef: np.ndarray  # (G, M, F)
    local_intercept: np.ndarray  # (G, M)
    blend: np.ndarray  # (4,) weights of cluster, group, logistic, local estimates
    top_clusters: np.ndarray  # () number of nearest clusters averaged
    coverage: np.ndarray  # (G, M) 1 where the model has scores among the group's rows, else 0
    calibration: np.ndarray  # (M, len(calibration.GRID)) calibrated success at each grid point

    @classmethod
    def array_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def check_shapes(self, n_models: int, dim: int, n_features: int) -> None:
        """Raise ValueError when the arrays disagree with each other or with the inputs."""
        k, g = self.centroids.shape[0], self.group_coef.shape[0]
        expected = {
            "prices": (n_models,),
            "centroids": (k, dim),
            "cluster_success": (k, n_models),
            "feature_mean": (n_features,),
            "feature_scale": (n_features,),
            "group_coef": (g, dim + n_features),
            "group_intercept": (g,),
            "group_success": (g, n_models),
            "model_coef": (n_models, dim + n_features + g),
            "model_intercept": (n_models,),
            "local_coef": (g, n_models, n_features),
            "local_intercept": (g, n_models),
            "blend": (4,),
            "top_clusters": (),
            "coverage": (g, n_models),
            "calibration": (n_models, len(GRID)),
        }
        for name, shape in expected.items():
            actual = getattr(self, name).shape
            if actual != shape:
                raise ValueError(f"array {name!r} has shape {actual}, expected {shape}")
        if k == 0:
            raise ValueError("the model has no clusters")

    def predict(self, embeddings: np.ndarray, formats: np.ndarray) -> Prediction:
        """Success probabilities for each query (rows of embeddings/formats) and model."""
        sims = embeddings @ self.centroids.T
        nearest = sims.argmax(axis=1)
        top = min(int(self.top_clusters), sims.shape[1])
        idx = np.argsort(-sims, axis=1)[:, :top]
        weight = np.clip(np.take_along_axis(sims, idx, axis=1), 1e-6, None)
        weight /= weight.sum(axis=1, keepdims=True)
        by_cluster = np.einsum("nk,nkm->nm", weight, self.cluster_success[idx])
        scaled = (formats - self.feature_mean) / self.feature_scale
        x = np.hstack([embeddings, scaled])
        success = self.blend[0] * by_cluster
        reach = None  # per query and model, the probability of a group the model was scored on
        if self.group_coef.shape[0]:
            groups = softmax(x @ self.group_coef.T + self.group_intercept)
            success = success + self.blend[1] * (groups @ self.group_success)
            if self.blend[3]:
                local = sigmoid(np.einsum("nf,gmf->ngm", scaled, self.local_coef) + self.local_intercept)
                success = success + self.blend[3] * np.einsum("ng,ngm->nm", groups, local)
            if not self.coverage.all():
                reach = groups @ self.coverage
            x = np.hstack([x, groups])
        if self.blend[2]:
            success = success + self.blend[2] * sigmoid(x @ self.model_coef.T + self.model_intercept)
        success = apply_calibration(success, self.calibration)
        if reach is not None:
            success = success * reach
            eligible = reach >= ELIGIBLE_REACH
            eligible[~eligible.any(axis=1)] = True  # no candidate was measured on it: all are
        else:
            eligible = np.ones(success.shape, dtype=bool)
        similarity = np.take_along_axis(sims, nearest[:, None], 1)[:, 0]
        return Prediction(success, nearest, similarity, eligible)
