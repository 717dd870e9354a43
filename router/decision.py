"""The value a router returns for one query."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RoutingDecision:
    """Which model should answer one query, and why.

    ``ranked`` holds every candidate best-first so callers can fall back in order;
    ``scores`` is the alpha-weighted score per candidate (higher is better);
    ``success`` is the predicted probability that each candidate answers correctly.
    """

    model: str
    cluster: int | None
    alpha: float
    ranked: tuple[str, ...]
    scores: dict[str, float]
    out_of_distribution: bool
    artifact_version: str
    success: dict[str, float] = field(default_factory=dict)
    similarity: float | None = None

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready view of the decision."""
        return {
            "model": self.model,
            "cluster": self.cluster,
            "alpha": self.alpha,
            "ranked": list(self.ranked),
            "scores": dict(self.scores),
            "success": dict(self.success),
            "out_of_distribution": self.out_of_distribution,
            "similarity": self.similarity,
            "artifact_version": self.artifact_version,
        }
