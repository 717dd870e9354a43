"""Deduplicating and voting over samples: which are near-duplicates, which answer wins.

Pure functions over the successful samples (in the order they were asked for), no I/O:

- **duplicates**: a sample duplicates an earlier distinct one when their normalized texts are
  equal, or their embeddings' cosine similarity reaches the threshold, unless their final answers
  differ: two definite answers (a number, a letter) that differ, or a definite answer and none.
  Two solutions that read alike but end on different numbers are different answers, and a sample
  that commits to an answer never merges into one that does not (its vote would be lost).
- **groups**: samples with the same definite answer form one group; a sample without one
  (free text) forms a group with its own duplicates.
- **votes**: every sample votes for its group (self-consistency: samples that agree are
  evidence, even word for word, as short answers often are); with ``count_duplicates=False`` a
  group's votes are its distinct samples only, so a model repeating itself counts once. The
  winner has the most votes; a tie goes to the group seen first. Distinct samples rank by their
  group's votes, then by order (an answer that ran out of tokens after one that finished), so the
  first ranked is the vote's answer and duplicates are never offered as separate choices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from backends.composite.answers import FinalAnswer, normalize_text
from backends.types import FinishReason


@dataclass(frozen=True, slots=True)
class Candidate:
    """A successful sample: its position among all samples, its text and its final answer."""

    index: int
    text: str
    finish_reason: FinishReason
    answer: FinalAnswer


@dataclass(frozen=True, slots=True)
class Ballot:
    """The outcome, by position in the candidate list.

    ``duplicate_of[i]`` is the position of the distinct candidate ``i`` duplicates (None when
    ``i`` is distinct); ``groups[i]`` its group's label; ``votes`` each group's votes;
    ``ranked`` the distinct candidates, best first.
    """

    duplicate_of: tuple[int | None, ...]
    groups: tuple[str, ...]
    votes: dict[str, int]
    ranked: tuple[int, ...]

    @property
    def distinct(self) -> int:
        return sum(d is None for d in self.duplicate_of)

    @property
    def winner(self) -> str | None:
        return self.groups[self.ranked[0]] if self.ranked else None


def unit_rows(vectors: Any, count: int) -> np.ndarray:
    """``vectors`` as a (count, dim) float array with unit-length rows (zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float64).reshape(count, -1)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.divide(array, norms, out=np.zeros_like(array), where=norms > 0)


def find_duplicates(
    candidates: Sequence[Candidate], vectors: np.ndarray | None, threshold: float
) -> tuple[int | None, ...]:
    """For each candidate, the earlier distinct candidate it duplicates, or None."""
    texts = [normalize_text(c.text) for c in candidates]
    similarity = vectors @ vectors.T if vectors is not None else None
    kept: list[int] = []
    duplicate_of: list[int | None] = []
    for i, candidate in enumerate(candidates):
        match = None
        for j in kept:
            if texts[i] == texts[j] or (
                similarity is not None
                and similarity[i, j] >= threshold
                and not _different_answers(candidate.answer, candidates[j].answer)
            ):
                match = j
                break
        duplicate_of.append(match)
        if match is None:
            kept.append(i)
    return tuple(duplicate_of)


def _different_answers(a: FinalAnswer, b: FinalAnswer) -> bool:
    """Whether two answers cannot be duplicates: both free text is no difference, else any is."""
    return (a.definite or b.definite) and a != b


def ballot(
    candidates: Sequence[Candidate],
    vectors: np.ndarray | None,
    threshold: float,
    *,
    count_duplicates: bool = True,
) -> Ballot:
    duplicate_of = find_duplicates(candidates, vectors, threshold)
    groups: list[str] = []
    for i, candidate in enumerate(candidates):
        if candidate.answer.definite:
            groups.append(str(candidate.answer))
        else:
            root = duplicate_of[i]
            groups.append(f"sample {candidates[i if root is None else root].index}")
    votes: dict[str, int] = {}
    first_seen: dict[str, int] = {}
    for i, group in enumerate(groups):
        first_seen.setdefault(group, i)
        if count_duplicates or duplicate_of[i] is None:
            votes[group] = votes.get(group, 0) + 1
    distinct = [i for i, d in enumerate(duplicate_of) if d is None]
    ranked = sorted(
        distinct,
        key=lambda i: (-votes[groups[i]], first_seen[groups[i]], candidates[i].finish_reason != "stop", i),
    )
    return Ballot(duplicate_of, tuple(groups), votes, tuple(ranked))
