"""One labelled benchmark query (:class:`BenchmarkItem`) and the deterministic sampling of rows
that every benchmark loader shares (fleet/benchmarks.py, fleet/routing_tasks.py)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from backends.types import Message
from router._errors import DataError


@dataclass(frozen=True)
class BenchmarkItem:
    """One labelled query: what to send, and what its scorer compares the answer with.

    ``question`` is the text a router sees (the row key of the training format); ``reference``
    is a letter (mmlu), a number as text (gsm8k), or the test code (humaneval). ``extra`` holds
    what a scorer needs besides: the HumanEval prompt and entry point.
    """

    id: str
    task: str
    question: str
    messages: tuple[Message, ...]
    reference: str
    extra: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str:
        return dict(self.extra)[key]


def sample_rows(
    rows: list[dict[str, Any]], limit: int | None, seed: int, name: str
) -> list[tuple[int, dict]]:
    indexed = list(enumerate(rows))
    if limit is None or limit >= len(indexed):
        return indexed
    if limit < 0:
        raise DataError(f"{name}: limit must be >= 0")
    picked = random.Random(f"{name}:{seed}").sample(indexed, limit)
    return sorted(picked, key=lambda pair: pair[0])
