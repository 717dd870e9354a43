"""diverse: several samples across models, temperatures and seeds; dedupe; vote or pick n.

Every sample is asked at once (a llama.cpp member runs its share one after another on its own
worker), each within ``sample_timeout`` seconds. Samples that fail or time out are left out; if
none succeeds the answer fails with the samples' common error (else a 502 naming each). The
successful ones are deduplicated by embedding similarity (``embed``, a callable from texts to
vectors, run off the event loop; without it, or if it fails, only equal normalized texts are
duplicates) and voted on by their final answers (:mod:`backends.composite.vote`).

With n = 1 the answer is the vote's winner; with n > 1 it is up to n distinct samples, the
winner first. With ``stop_when_agreed = k`` (n = 1 only) the first k samples are drawn first, and
when they all give the same definite answer (a number or a letter) that answer stands and the
other samples are never drawn: a question the model is sure of costs k answers, not all of them.
A stream carries the answer only once the vote is done: its first token comes as late as the
whole answer. The trace reports the distinct-sample ratio (distinct / successful).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from backends.base import Backend
from backends.composite.answers import final_answer
from backends.composite.calls import CallResult, call_member, member_available, member_health
from backends.composite.vote import Ballot, Candidate, ballot, unit_rows
from backends.errors import BackendError, RequestError, SmallfleetError
from backends.features import NO_FEATURES
from backends.types import (
    Choice,
    Completion,
    CompositeTrace,
    GenerationRequest,
    Health,
    StreamChunk,
)

KIND = "diverse"
DEFAULT_DEDUPE_THRESHOLD = 0.95
DEFAULT_SAMPLE_TIMEOUT = 120.0
DEFAULT_COUNT_DUPLICATES = True  # every sample votes; False: near-duplicates vote once

Embed = Callable[[list[str]], Any]  # texts -> an array-like of shape (len(texts), dim)


@dataclass(frozen=True, slots=True)
class Sampler:
    """One sample to draw from ``backend``.

    ``temperature`` and ``top_p`` override the request's when set. ``seed`` fixes the sample's
    seed; when None it is the request's seed plus the sample's position (the position alone when
    the request has none), so every sample differs and a repeated request repeats them.
    """

    backend: Backend
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class DiverseSettings:
    dedupe_threshold: float = DEFAULT_DEDUPE_THRESHOLD
    sample_timeout: float = DEFAULT_SAMPLE_TIMEOUT
    count_duplicates: bool = DEFAULT_COUNT_DUPLICATES
    stop_when_agreed: int | None = None  # draw this many first; all the same definite answer: stop

    def __post_init__(self) -> None:
        if not 0.0 < self.dedupe_threshold <= 1.0:
            raise ValueError("dedupe_threshold must be in (0, 1]")
        if self.sample_timeout <= 0:
            raise ValueError("sample_timeout must be positive")
        if self.stop_when_agreed is not None and self.stop_when_agreed < 2:
            raise ValueError("stop_when_agreed must be at least 2 samples")


class DiverseBackend:
    """A Backend that samples its members and votes (the fleet owns the members' lifecycle)."""

    def __init__(
        self,
        name: str,
        samplers: Sequence[Sampler],
        embed: Embed | None = None,
        settings: DiverseSettings = DiverseSettings(),
    ) -> None:
        if not samplers:
            raise ValueError("a diverse backend needs at least one sampler")
        if settings.stop_when_agreed is not None and settings.stop_when_agreed >= len(samplers):
            raise ValueError("stop_when_agreed must be fewer than the samples")
        self.name = name
        self.samplers = tuple(samplers)
        self.embed = embed
        self.settings = settings

    # -- what the fleet sees ------------------------------------------------
    @property
    def members(self) -> tuple[Backend, ...]:
        return tuple({id(s.backend): s.backend for s in self.samplers}.values())

    # Text only: votes compare final answers, which tool calls and log-probabilities are not.
    features = NO_FEATURES

    @property
    def max_choices(self) -> int:
        return len(self.samplers)

    @property
    def context_length(self) -> int | None:
        known = [m.context_length for m in self.members if m.context_length is not None]
        return min(known) if known else None

    @property
    def available(self) -> bool:
        return any(member_available(m) for m in self.members)

    async def start(self) -> None:
        """Nothing of its own to start: its members are the fleet's."""

    async def aclose(self) -> None:
        """Nothing of its own to close."""

    async def health(self) -> Health:
        members = self.members
        healths = await asyncio.gather(*(member_health(m) for m in members))
        detail = "; ".join(f"{m.name}: {h.detail}" for m, h in zip(members, healths, strict=True))
        return Health(ok=any(h.ok for h in healths), detail=detail)

    # -- generation ---------------------------------------------------------
    async def chat(self, request: GenerationRequest) -> Completion:
        results = await self._draw(request)
        candidates = [
            Candidate(i, r.completion.text, r.completion.finish_reason, final_answer(r.completion.text))
            for i, r in enumerate(results)
            if r.completion is not None
        ]
        if not candidates:
            raise self._all_failed(results)
        vectors, dedupe = await self._vectors(candidates)
        outcome = ballot(
            candidates,
            vectors,
            self.settings.dedupe_threshold,
            count_duplicates=self.settings.count_duplicates,
        )
        chosen = [candidates[i] for i in outcome.ranked[: request.n]]
        trace = self._trace(request, results, candidates, outcome, dedupe)
        first, rest = chosen[0], chosen[1:]
        extra = tuple(Choice(c.text, c.finish_reason) for c in rest)
        return Completion(first.text, first.finish_reason, trace.usage, trace=trace, extra_choices=extra)

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        """The voted answer in one piece once every sample is in (one choice only)."""
        if request.n > 1:
            raise RequestError("a diverse stream gives one choice; ask chat() for n > 1", param="n")
        answer = await self.chat(request)
        if answer.text:
            yield StreamChunk(answer.text, trace=answer.trace)
        yield StreamChunk("", answer.finish_reason, answer.usage, trace=answer.trace)

    # -- sampling -----------------------------------------------------------
    def sample_request(self, request: GenerationRequest, position: int) -> GenerationRequest:
        sampler = self.samplers[position]
        params = request.params
        seed = sampler.seed if sampler.seed is not None else (params.seed or 0) + position
        params = replace(
            params,
            temperature=params.temperature if sampler.temperature is None else sampler.temperature,
            top_p=params.top_p if sampler.top_p is None else sampler.top_p,
            seed=seed,
        )
        return replace(request, params=params, n=1)

    async def _draw(self, request: GenerationRequest) -> list[CallResult]:
        """The samples, in order: every one at once, or the first ``stop_when_agreed`` and then the
        rest only if those disagree. Cancelling this cancels every sample in flight."""
        everyone = range(len(self.samplers))
        first = self.settings.stop_when_agreed
        if first is None or request.n > 1:
            return await self._draw_positions(request, everyone)
        head = await self._draw_positions(request, everyone[:first])
        if _agree(head):
            return head
        return head + await self._draw_positions(request, everyone[first:])

    async def _draw_positions(self, request: GenerationRequest, positions: range) -> list[CallResult]:
        timeout = self.settings.sample_timeout
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(call_member(
                    self.name, "sample", self.samplers[i].backend, self.sample_request(request, i), timeout
                ))
                for i in positions
            ]
        return [task.result() for task in tasks]

    async def _vectors(self, candidates: list[Candidate]) -> tuple[np.ndarray | None, str]:
        """Unit embeddings of the candidates' texts and how duplicates were found."""
        if self.embed is None or len(candidates) < 2:
            return None, "text"
        texts = [c.text for c in candidates]
        try:
            vectors = await asyncio.to_thread(self.embed, texts)
            return unit_rows(vectors, len(texts)), "embedding"
        except Exception as exc:  # a broken embedding degrades dedupe; it never fails the answer
            return None, f"text (embedding failed: {type(exc).__name__}: {exc})"

    def _all_failed(self, results: list[CallResult]) -> SmallfleetError:
        """The route's failure (its samples' calls are in the request's ledger, for the gateway to charge)."""
        errors = [r.error for r in results if r.error is not None]
        summary = "; ".join(f"{r.call.model}: {r.error.message}" for r in results if r.error is not None)
        message = f"route {self.name!r}: all {len(results)} samples failed: {summary}"
        kinds = {type(e) for e in errors}
        failure: SmallfleetError
        if len(kinds) == 1:
            first = errors[0]
            failure = type(first)(message, param=first.param, retry_after=first.retry_after)
            failure.retryable = first.retryable
        else:
            failure = BackendError(message)
        return failure

    def _trace(
        self,
        request: GenerationRequest,
        results: list[CallResult],
        candidates: list[Candidate],
        outcome: Ballot,
        dedupe: str,
    ) -> CompositeTrace:
        ratio = outcome.distinct / len(candidates)
        winner = outcome.winner
        total_votes = sum(outcome.votes.values())
        summary = {
            "samples": len(results),
            "stopped_early": len(results) < len(self.samplers),
            "succeeded": len(candidates),
            "distinct": outcome.distinct,
            "distinct_ratio": ratio,
            "agreement": outcome.votes[winner] / total_votes if winner is not None and total_votes else None,
        }
        position = {c.index: p for p, c in enumerate(candidates)}
        samples = []
        for i, result in enumerate(results):
            sampler, params = self.samplers[i], self.sample_request(request, i).params
            entry: dict[str, Any] = {
                "model": sampler.backend.name,
                "temperature": params.temperature,
                "seed": params.seed,
            }
            p = position.get(i)
            if p is None:
                entry["error"] = result.error.message if result.error is not None else "no answer"
            else:
                duplicate = outcome.duplicate_of[p]
                entry.update(
                    text=candidates[p].text,
                    finish_reason=candidates[p].finish_reason,
                    answer=outcome.groups[p],
                    duplicate_of=None if duplicate is None else candidates[duplicate].index,
                )
            samples.append(entry)
        details = {"votes": outcome.votes, "winner": winner, "dedupe": dedupe, "samples": samples}
        calls = tuple(r.call for r in results)
        return CompositeTrace(KIND, calls, summary, details, distinct_ratio=ratio)


def _agree(results: list[CallResult]) -> bool:
    """Every sample answered, all with the same definite answer (a number or a letter)."""
    answers = {final_answer(r.completion.text) if r.completion is not None else None for r in results}
    (only, *others) = answers
    return not others and only is not None and only.definite
