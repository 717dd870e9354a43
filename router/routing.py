"""Routers: turn a query into a RoutingDecision using a loaded artifact."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from router._errors import ArtifactError, RoutingError
from router.artifact import Artifact, load_artifact
from router.data import query_costs
from router.decision import RoutingDecision
from router.embedding import StaticEncoder, embedding_path
from router.features import format_matrix
from router.model import Prediction
from router.scoring import rank


class Router(Protocol):
    """What a loaded router artifact offers to those who route with it (the gateway's ``auto``).

    ``models`` are the models the artifact knows, ``presets`` its named alphas
    (``quality``, ``balanced``, ``cheap``...), ``version`` the artifact's version.
    :meth:`route` is synchronous CPU work and safe to call from another thread."""

    @property
    def models(self) -> Sequence[str]: ...

    @property
    def version(self) -> str: ...

    @property
    def presets(self) -> Mapping[str, float]: ...

    def route(
        self, question: str, alpha: float | None = None, candidates: Collection[str] | None = None
    ) -> RoutingDecision: ...


class BlendRouter:
    """Embeds with the shipped static embedding and scores with the artifact's RouterModel.

    route() is synchronous, CPU-only, needs no torch and is safe to call from many threads.
    """

    def __init__(self, artifact: Artifact) -> None:
        self._artifact = artifact
        self._model = artifact.model
        self.models: list[str] = artifact.models
        self.version: str = artifact.version
        alpha = artifact.manifest["alpha"]
        self.default_alpha = float(alpha.get("default", 1.0))
        self.presets: dict[str, float] = {k: float(v) for k, v in alpha.get("presets", {}).items()}
        self.ood_threshold = float(artifact.manifest["ood"]["threshold"])
        self.default_model = str(artifact.manifest["ood"]["default_model"])
        self._index = {name: i for i, name in enumerate(self.models)}
        self._embedder = StaticEncoder(embedding_path(artifact.manifest["embedding"]["name"]))

    @property
    def manifest(self) -> dict[str, Any]:
        return dict(self._artifact.manifest)

    def predict(self, questions: Sequence[str]) -> Prediction:
        """Batch success probabilities for all models (used by eval and by route)."""
        embeddings = self._embedder.encode(list(questions)).astype(np.float64)
        return self._model.predict(embeddings, format_matrix(questions))

    def resolve_alpha(self, alpha: float | None) -> float:
        value = self.default_alpha if alpha is None else float(alpha)
        if not 0.0 <= value <= 1.0:
            raise RoutingError(f"alpha must be between 0 and 1, got {alpha!r}")
        return value

    def _candidate_index(self, candidates: Collection[str] | None) -> np.ndarray:
        if candidates is None:
            return np.arange(len(self.models))
        known = sorted({self._index[c] for c in candidates if c in self._index})
        if not known:
            raise RoutingError(
                f"none of the candidates {sorted(candidates)} is known to router artifact {self.version}"
            )
        return np.asarray(known)

    def route(
        self,
        question: str,
        alpha: float | None = None,
        candidates: Collection[str] | None = None,
    ) -> RoutingDecision:
        """Pick the candidate with the best alpha-weighted success/cost score for ``question``."""
        if not isinstance(question, str):
            raise RoutingError("question must be a string")
        value = self.resolve_alpha(alpha)
        allowed = self._candidate_index(candidates)
        pred = self.predict([question])
        success = pred.success[0, allowed]
        cost = query_costs([question], self._model.prices[allowed])[0]
        order, scores = rank(success, cost, value, pred.eligible_among(0, allowed))
        names = [self.models[i] for i in allowed]
        ranked = [names[i] for i in order]
        similarity = float(pred.similarity[0])
        ood = similarity < self.ood_threshold
        if ood and self.default_model in names:
            ranked.remove(self.default_model)
            ranked.insert(0, self.default_model)
        return RoutingDecision(
            model=ranked[0],
            cluster=None if ood else int(pred.cluster[0]),
            alpha=value,
            ranked=tuple(ranked),
            scores={n: float(s) for n, s in zip(names, scores, strict=True)},
            out_of_distribution=ood,
            artifact_version=self.version,
            success={n: float(s) for n, s in zip(names, success, strict=True)},
            similarity=similarity,
        )


ROUTERS: dict[str, Callable[[Artifact], BlendRouter]] = {"blend": BlendRouter}  # by manifest "kind"


def load_router(path: str | Path) -> BlendRouter:
    """Load a router artifact directory; raises ArtifactError when it is missing or unusable."""
    artifact = load_artifact(path)
    kind = str(artifact.manifest.get("kind", "blend"))
    factory = ROUTERS.get(kind)
    if factory is None:
        raise ArtifactError(f"router artifact {path} is of unknown kind {kind!r} (known: {sorted(ROUTERS)})")
    return factory(artifact)
