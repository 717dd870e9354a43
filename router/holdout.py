"""A fixed evaluation slice chosen by hashing each question (independent of row order).

A row is held out when the first 32 bits of sha256(question) fall below ``fraction`` of the
range, so the same question is held out in every run, from every file that contains it, and
the slice for 0.1 lies inside the slice for 0.2. Only rows that score every model are held
out: a routing pick can be judged on them alone.
"""

from __future__ import annotations

import hashlib

import numpy as np

from router._errors import DataError
from router.data import RoutingData

HOLDOUT_RULE = "sha256(question)[:4] / 2**32 < fraction, rows that score every model"


def check_fraction(fraction: float) -> float:
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"the held-out fraction must be at least 0 and below 1, got {fraction!r}")
    return fraction


def is_held_out(question: str, fraction: float) -> bool:
    bucket = int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:4], "big")
    return bucket < fraction * 2**32


def split_holdout(data: RoutingData, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) as index arrays; held-out rows score every model."""
    check_fraction(fraction)
    held = np.zeros(len(data.questions), dtype=bool)
    if fraction > 0:
        full = data.full_rows()
        held[full] = [is_held_out(data.questions[i], fraction) for i in full]
    return np.flatnonzero(~held), np.flatnonzero(held)
