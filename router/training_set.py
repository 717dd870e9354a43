"""The rows a router is trained and cross-validated on, embedded and featurised."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router.data import RoutingData


@dataclass(frozen=True)
class TrainingSet:
    data: RoutingData
    prices: np.ndarray
    embeddings: np.ndarray
    formats: np.ndarray
    groups: np.ndarray | None
    group_names: list[str]

    def subset(self, index: np.ndarray) -> TrainingSet:
        """The rows ``index`` (same prices and group names)."""
        groups = None if self.groups is None else self.groups[index]
        return TrainingSet(
            self.data.subset(index), self.prices, self.embeddings[index], self.formats[index],
            groups, self.group_names,
        )
