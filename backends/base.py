"""The Backend protocol: what the gateway needs from anything that generates text."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from backends.features import Feature
from backends.types import Completion, GenerationRequest, Health, StreamChunk


@runtime_checkable
class Backend(Protocol):
    """A source of completions: an in-process model, a remote server, or a composite.

    ``chat`` returns a whole answer; ``stream_chat`` yields it in pieces, the last
    carrying ``finish_reason`` and ``usage``. Both take chat messages or a raw
    prompt (see :class:`GenerationRequest`). Cancelling the awaiting task, or
    closing the stream early, must stop the generation. Errors are raised as
    :mod:`backends.errors` types, never as a foreign library's exceptions.

    ``stream_chat`` may return a :class:`ChunkStream`, which can also hand over the rest of its
    answer at once (a whole answer read as a stream is collected that way, backends/resilience.py).
    """

    name: str

    @property
    def features(self) -> frozenset[Feature]:
        """What it honours beyond text (:mod:`backends.features`); a request using anything
        else never reaches it."""

    @property
    def context_length(self) -> int | None:
        """Tokens of context, if known (some backends learn it when they start)."""

    @property
    def max_choices(self) -> int:
        """Choices one request may ask for (``n``): 1, but for a route that draws several samples."""

    @property
    def available(self) -> bool:
        """False while it should not be asked (its circuit is open): routers and fallbacks skip it."""

    async def start(self) -> None:
        """Acquire resources (load weights, open connection pools)."""

    async def chat(self, request: GenerationRequest) -> Completion: ...

    def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]: ...

    async def health(self) -> Health: ...

    async def aclose(self) -> None: ...


class ChunkStream(AsyncIterator[StreamChunk]):
    """A stream of one answer's chunks that can also hand over what is left of it at once.

    ``stream_chat`` may return one (the ``openai`` backend does: backends/openai_http.py). A
    whole answer read as a stream, to hold it to a first-token deadline, takes its first chunk
    by ``anext`` and then the rest by :meth:`rest_in_hand` or :meth:`rest`: one wait, or none,
    instead of one per chunk (backends/resilience.py)."""

    def __aiter__(self) -> ChunkStream:
        return self

    @abstractmethod
    async def __anext__(self) -> StreamChunk: ...

    async def rest(self) -> list[StreamChunk]:
        """Every chunk not taken yet, up to the one with a finish reason (an error raises)."""
        chunks = []
        async for chunk in self:
            chunks.append(chunk)
            if chunk.finish_reason is not None:
                break
        return chunks

    def rest_in_hand(self) -> list[StreamChunk] | None:
        """What :meth:`rest` would return, when it is already read and needs no wait; None when
        more must be read (always, unless a stream knows better)."""
        return None

    def take_whole(self, first_by: float) -> None:
        """Say, before the first ``anext``, that the answer will be taken whole: its first chunk
        by loop time ``first_by`` at the latest (a whole answer only has to show by then that it
        has started), everything after it at once (:meth:`rest`). The stream may then wake its
        reader once, at the answer's end, rather than at its first piece while the rest is still
        arriving, and join the text of the chunks after the first into fewer chunks (the same
        text, in the same order). No effect unless a stream knows how."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop the answer (release what it holds); the chunks not taken are dropped."""
