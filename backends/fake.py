"""A scripted backend for unit tests of the gateway's logic.

It answers with a fixed reply split into words (or one a function makes from the
request: a composite's members can answer each sample differently), can wait
before the first chunk and between chunks, and can fail before or during the stream, always or only on
its first ``fail_times`` calls. It records every request it saw, how many
whole answers were cancelled while it worked on them, and whether its last
stream was closed early, so tests can check cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from backends.errors import SmallfleetError
from backends.features import NO_FEATURES, Feature
from backends.types import (
    Completion,
    FinishReason,
    GenerationRequest,
    Health,
    StreamChunk,
    TokenLogprob,
    Usage,
)


class FakeBackend:
    max_choices = 1  # one choice per request
    available = True  # no circuit of its own (ResilientBackend adds one)

    def __init__(
        self,
        name: str = "fake",
        reply: str | Callable[[GenerationRequest], str] = "Hello from the fake backend.",
        *,
        context_length: int | None = 2048,
        chunk_delay: float = 0.0,
        error: SmallfleetError | None = None,
        fail_after_chunks: int | None = None,
        fail_times: int | None = None,
        first_chunk_delay: float = 0.0,
        logprob: float | Callable[[GenerationRequest], float] | None = None,
        features: frozenset[Feature] | None = None,
    ) -> None:
        self.name = name
        self._features = features
        self.context_length = context_length
        self.reply = reply
        self.chunk_delay = chunk_delay
        self.error = error
        self.fail_after_chunks = fail_after_chunks
        self.fail_times = fail_times
        self.first_chunk_delay = first_chunk_delay
        self.logprob = logprob  # every token's log-probability, when set (and asked for)
        self.calls = 0
        self.requests: list[GenerationRequest] = []
        self.chunks_sent = 0
        self.stream_closed_early = False
        self.cancelled = 0
        self.started = False
        self.closed = False

    async def start(self) -> None:
        self.started = True

    async def aclose(self) -> None:
        self.closed = True

    async def health(self) -> Health:
        return Health(ok=self.error is None, detail="fake")

    @property
    def features(self) -> frozenset[Feature]:
        """As given; else log-probabilities when it has them (it honours nothing else)."""
        if self._features is not None:
            return self._features
        return frozenset({Feature.LOGPROBS}) if self.logprob is not None else NO_FEATURES

    def _logprobs(self, request: GenerationRequest, words: list[str]) -> tuple[TokenLogprob, ...] | None:
        if self.logprob is None or not request.params.logprobs:
            return None
        value = self.logprob(request) if callable(self.logprob) else self.logprob
        return tuple(TokenLogprob(word, value) for word in words)

    def reply_for(self, request: GenerationRequest) -> str:
        return self.reply(request) if callable(self.reply) else self.reply

    def _words(self, request: GenerationRequest) -> list[str]:
        words = [w + " " for w in self.reply_for(request).split(" ")]
        words[-1] = words[-1].rstrip(" ")
        limit = request.params.max_tokens
        return words if limit is None else words[:limit]

    def _finish(self, request: GenerationRequest, words: list[str]) -> FinishReason:
        return "length" if len(words) < len(self.reply_for(request).split(" ")) else "stop"

    def _usage(self, request: GenerationRequest, completion_tokens: int) -> Usage:
        if request.messages is not None:
            prompt = " ".join(m.content for m in request.messages)
        else:
            prompt = request.prompt or ""
        return Usage(prompt_tokens=len(prompt.split()), completion_tokens=completion_tokens)

    def _failing(self) -> SmallfleetError | None:
        """Count a call; the error it should fail with, if any."""
        self.calls += 1
        if self.fail_times is not None and self.calls > self.fail_times:
            return None
        return self.error

    async def chat(self, request: GenerationRequest) -> Completion:
        self.requests.append(request)
        error = self._failing()
        if error is not None:
            raise error
        words = self._words(request)
        try:
            await asyncio.sleep(self.first_chunk_delay + self.chunk_delay * len(words))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        return Completion(
            "".join(words), self._finish(request, words), self._usage(request, len(words)),
            logprobs=self._logprobs(request, words),
        )

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        self.requests.append(request)
        self.chunks_sent = 0
        self.stream_closed_early = True
        error = self._failing()
        if error is not None and not self.fail_after_chunks:
            raise error
        if self.first_chunk_delay:
            await asyncio.sleep(self.first_chunk_delay)
        words = self._words(request)
        for word in words:
            if error is not None and self.chunks_sent == self.fail_after_chunks:
                raise error
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            self.chunks_sent += 1
            yield StreamChunk(word)
        self.stream_closed_early = False
        usage = self._usage(request, len(words))
        yield StreamChunk("", finish_reason=self._finish(request, words), usage=usage)
