"""Value objects that cross the Backend boundary.

Backends know nothing of HTTP or of OpenAI's wire format: the gateway turns an
OpenAI request into a :class:`GenerationRequest`, and the typed values a backend
returns back into OpenAI JSON or SSE.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "tool_calls"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call of one of the request's tools, as the model made it: ``arguments`` is JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; ``content`` is plain text.

    An assistant turn may carry the ``tool_calls`` it made; a ``tool`` turn answers one of them
    (``tool_call_id``)."""

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: ``parameters`` is its arguments' JSON schema."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    strict: bool = False


ToolMode = Literal["auto", "none", "required", "function"]


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """``auto`` (the model decides), ``none``, ``required`` (at least one call), or ``function``
    (a call of ``name``)."""

    mode: ToolMode = "auto"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """The answer must be a JSON object (``json_object``), or one valid for ``schema``
    (``json_schema``)."""

    type: Literal["json_object", "json_schema"]
    schema: Mapping[str, Any] | None = None
    name: str | None = None
    strict: bool = False


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """The sampling knobs every backend honours."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Log-probabilities of the generated tokens (and of the ``top_logprobs`` likeliest at each
    # step) under the model's raw distribution, returned on the answer. Honoured by backends
    # whose ``supports_logprobs`` is true; the gateway does not pass it to others.
    logprobs: bool = False
    top_logprobs: int = 0
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    # token id -> bias added to its logit; ids of the answering model's own vocabulary
    logit_bias: Mapping[int, float] | None = None


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One generated token: its text, its log-probability and the likeliest alternatives."""

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A chat (``messages``) or a raw text completion (``prompt``), never both.

    It names no model: each backend knows which model it serves (a fallback hands
    the same request to another backend unchanged).
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    n: int = 1  # choices wanted; only a backend whose ``max_choices`` allows it gets n > 1
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice = ToolChoice()
    parallel_tool_calls: bool = True
    response_format: ResponseFormat | None = None
    # fields of the client's request that OpenAI does not define, for servers that take them
    # (vLLM's top_k, min_p, ...); only backends with Feature.VENDOR_FIELDS get any
    vendor_fields: Mapping[str, Any] = field(default_factory=dict)
    # where a composite route writes the inner calls it finished (for charging one that does not
    # answer); handed down with the request to the route's members, ignored by models
    ledger: InnerCallLedger | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("a GenerationRequest has either messages or a prompt")
        if self.n < 1:
            raise ValueError("a GenerationRequest asks for at least one choice")

    def with_ledger(self, ledger: InnerCallLedger | None) -> GenerationRequest:
        """This request with another ``ledger``: ``dataclasses.replace(self, ledger=ledger)``
        without its field-by-field keyword call and checks (every answer makes one)."""
        copy = _new(GenerationRequest)
        for name, set_field in _REQUEST_SETTERS:
            set_field(copy, getattr(self, name))
        _set_ledger(copy, ledger)
        return copy

    @property
    def is_chat(self) -> bool:
        return self.messages is not None

    @property
    def offers_tools(self) -> bool:
        """Whether the model is to see tools it may call (not with ``tool_choice: none``)."""
        return bool(self.tools) and self.tool_choice.mode != "none"


_new = object.__new__
# the slots' own setters (a frozen dataclass's __setattr__ refuses), every field's but the ledger's
_REQUEST_SLOTS: dict[str, Any] = dict(vars(GenerationRequest))
_REQUEST_SETTERS = tuple(
    (name, _REQUEST_SLOTS[name].__set__)
    for name in GenerationRequest.__dataclass_fields__
    if name != "ledger"
)
_set_ledger = _REQUEST_SLOTS["ledger"].__set__


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens
        )


@dataclass(frozen=True, slots=True)
class InnerCall:
    """One call a composite backend made to one of its members, and what it used.

    ``model`` is the member's name (the gateway prices the call at that model's
    price); ``error`` is the failure's code when the call gave no answer.
    """

    model: str
    step: str  # "planner", "solver", "sample"
    usage: Usage
    seconds: float
    error: str | None = None


class InnerCallLedger:
    """The inner calls a composite route finished for one attempt at a request.

    A route that answers reports its inner calls in its trace. One that fails, or that the client
    abandons (a cancellation carries nothing), leaves them here: whoever handed the route the
    request (the gateway, one ledger per attempt in ``GenerationRequest.ledger``) takes them and
    charges them. A call cut short by a cancellation is not written."""

    __slots__ = ("_calls",)

    def __init__(self) -> None:
        self._calls: list[InnerCall] = []

    def record(self, call: InnerCall) -> InnerCall:
        self._calls.append(call)
        return call

    def take(self) -> tuple[InnerCall, ...]:
        """The calls written since the last take, and an empty ledger."""
        calls, self._calls = tuple(self._calls), []
        return calls


@dataclass(frozen=True, slots=True)
class CompositeTrace:
    """What a composite backend did to produce an answer.

    ``calls`` are every inner call, failed ones included; ``summary`` is what a
    client always sees (e.g. a plan fallback, the distinct-sample ratio),
    ``details`` what it sees only when it asks (the plan, the votes, each sample).
    Both are JSON-ready.
    """

    kind: str
    calls: tuple[InnerCall, ...]
    summary: Mapping[str, Any] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    plan_fallback: str | None = None  # plan_solve: why the solver answered without a plan
    distinct_ratio: float | None = None  # diverse: distinct samples / successful samples

    @property
    def usage(self) -> Usage:
        total = Usage()
        for call in self.calls:
            total = total + call.usage
        return total


@dataclass(frozen=True, slots=True)
class Choice:
    """One more choice of an answer with n > 1."""

    text: str
    finish_reason: FinishReason


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole answer.

    A composite backend's answer carries its ``trace``, and with n > 1 its
    choices after the first in ``extra_choices``.
    """

    text: str
    finish_reason: FinishReason
    usage: Usage
    trace: CompositeTrace | None = None
    extra_choices: tuple[Choice, ...] = ()
    logprobs: tuple[TokenLogprob, ...] | None = None  # with SamplingParams.logprobs
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """A piece of a streamed answer.

    The last chunk of a stream carries ``finish_reason`` and ``usage``; its
    ``text`` may be empty. A composite's first chunk may carry a partial
    ``trace`` (what is known before the answer: a plan fallback), its last one
    the whole trace.
    """

    text: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    trace: CompositeTrace | None = None
    logprobs: tuple[TokenLogprob, ...] = ()  # of the tokens known so far (may lag the text)
    tool_calls: tuple[ToolCallDelta, ...] = ()


_CHUNK_SLOTS: dict[str, Any] = dict(vars(StreamChunk))
_CHUNK_TEXT = _CHUNK_SLOTS["text"].__set__
_CHUNK_DEFAULTS = tuple(
    (_CHUNK_SLOTS[name].__set__, spec.default)
    for name, spec in StreamChunk.__dataclass_fields__.items()
    if name != "text"
)


def text_chunk(text: str) -> StreamChunk:
    """``StreamChunk(text)``, made without the frozen dataclass's ``__init__`` (half the time):
    the chunk a stream parser makes for nearly every event."""
    chunk = _new(StreamChunk)
    _CHUNK_TEXT(chunk, text)
    for set_field, default in _CHUNK_DEFAULTS:
        set_field(chunk, default)
    return chunk


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: the first piece of call ``index`` names its ``id`` and
    ``name``; the ``arguments`` of its pieces, joined, are the call's JSON arguments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""
    queue_depth: int = 0
