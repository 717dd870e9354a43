"""Value objects that cross the Backend boundary.

Backends know nothing of HTTP or of OpenAI's wire format: the gateway turns an
OpenAI request into a :class:`GenerationRequest`, and the typed values a backend
returns back into OpenAI JSON or SSE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``content`` is plain text."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """The sampling knobs every backend honours."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A chat (``messages``) or a raw text completion (``prompt``), never both.

    It names no model: each backend knows which model it serves (a fallback hands
    the same request to another backend unchanged).
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a GenerationRequest has either messages or a prompt")

    @property
    def is_chat(self) -> bool:
        return self.messages is not None


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer."""

    text: str
    finish_reason: FinishReason
    usage: Usage


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed answer.

    The last chunk of a stream carries ``finish_reason`` and ``usage``; its
    ``text`` may be empty.
    """

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""
    queue_depth: int = 0
