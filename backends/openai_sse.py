"""OpenAI's answers on the wire, parsed into the backends' value objects; no I/O.

:func:`parse_completion` reads a whole answer's JSON body. :class:`EventParser` reads a streamed
answer (server-sent events) from pieces of its body of any size, as they arrive: each piece's
complete events are parsed together, so an answer whose events arrive in one read costs one
call, not one per event (``backends/openai_http.py`` does the reading).
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import orjson

from backends.errors import BackendError
from backends.types import (
    Completion,
    GenerationRequest,
    StreamChunk,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
    text_chunk,
)

log = logging.getLogger("backends.openai_http")  # its warnings are that backend's
_LINE_ENDS = (b"\n", b"\r")
_loads = orjson.loads


# A plain stream event, decoded straight into these (fields not named here are skipped, not
# built): the common event's text, finish reason and usage without a dict per JSON object. An
# event these do not fit (another type, an error, tool calls, nesting too deep) is parsed as a
# dict instead, so either way an event gives the same chunks or the same error. One exception: a
# number orjson refuses (out of a double's range) in a field skipped here is not seen, where the
# dict parse calls the event malformed. Usage is kept raw and parsed by orjson, as the dict
# parse reads it.
class _Delta(msgspec.Struct):
    content: str | None = None
    tool_calls: Any = None


class _Choice(msgspec.Struct):
    index: int = 0
    delta: _Delta | None = None
    text: str | None = None
    finish_reason: str | None = None


class _Event(msgspec.Struct):
    choices: list[_Choice] | None = None
    usage: msgspec.Raw = msgspec.Raw()  # empty when absent
    error: Any = msgspec.UNSET


_decode_event = msgspec.json.Decoder(_Event).decode


def _usage(data: dict[str, Any] | None) -> Usage | None:
    if not data:
        return None
    return Usage(int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0))


def _finish(reason: Any) -> Any:
    return reason if reason in ("length", "tool_calls") else "stop"


def _chat_logprobs(data: Any) -> tuple[TokenLogprob, ...]:
    """OpenAI's chat ``logprobs.content`` as token log-probabilities."""
    tokens = []
    for entry in (data or {}).get("content") or ():
        top = tuple((t["token"], float(t["logprob"])) for t in entry.get("top_logprobs") or ())
        tokens.append(TokenLogprob(entry["token"], float(entry["logprob"]), top))
    return tuple(tokens)


def _text_logprobs(data: Any) -> tuple[TokenLogprob, ...]:
    """The legacy completions' ``logprobs`` (parallel lists) as token log-probabilities."""
    if not data:
        return ()
    tops = data.get("top_logprobs") or [None] * len(data.get("tokens") or ())
    return tuple(
        TokenLogprob(token, float(logprob if logprob is not None else float("-inf")),
                     tuple((t, float(v)) for t, v in (top or {}).items()))
        for token, logprob, top in zip(
            data.get("tokens") or (), data.get("token_logprobs") or (), tops, strict=False
        )
    )


def _logprobs(choice: dict[str, Any], is_chat: bool) -> tuple[TokenLogprob, ...]:
    return _chat_logprobs(choice.get("logprobs")) if is_chat else _text_logprobs(choice.get("logprobs"))


def _tool_calls(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(call.get("id") or "", call["function"]["name"], call["function"].get("arguments") or "")
        for call in message.get("tool_calls") or ()
    )


def parse_completion(name: str, body: bytes, request: GenerationRequest) -> Completion:
    """A whole (non-streamed) answer's JSON body."""
    is_chat = request.is_chat
    try:
        data = orjson.loads(body)
        choice = data["choices"][0]
        text = choice["message"]["content"] if is_chat else choice["text"]
        calls = _tool_calls(choice["message"]) if is_chat else ()
        logprobs = _logprobs(choice, is_chat) if request.params.logprobs else None
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise BackendError(f"model {name!r} sent a malformed answer") from exc
    usage = _usage(data.get("usage")) or Usage()
    finish = _finish(choice.get("finish_reason"))
    return Completion(text or "", finish, usage, logprobs=logprobs, tool_calls=calls)


def _tool_call_deltas(delta: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
    deltas = []
    for call in delta.get("tool_calls") or ():
        function = call.get("function") or {}
        deltas.append(
            ToolCallDelta(int(call.get("index", 0)), call.get("id"), function.get("name"),
                          function.get("arguments") or "")
        )
    return tuple(deltas)


_WARNED_NO_STREAM_USAGE: set[str] = set()


def _stream_usage(name: str, usage: Usage | None, pieces: int) -> Usage:
    """The stream's usage; a server that reports none (llama-cpp-python's ignores
    ``stream_options.include_usage``) is counted by its pieces, with no prompt tokens, and said
    once in the log."""
    if usage is not None:
        return usage
    if name not in _WARNED_NO_STREAM_USAGE:
        _WARNED_NO_STREAM_USAGE.add(name)
        log.warning(
            "model %r reports no usage in streams: its streamed answers (and whole answers held to the "
            "first-token deadline, which are read as streams) are counted without prompt tokens; set "
            "resilience.deadline: false on it to count its whole answers exactly",
            name,
        )
    return Usage(completion_tokens=pieces)


class EventParser:
    """One streamed answer's events turned into chunks; the last chunk carries finish_reason and
    usage.

    Feed it the body in pieces (:meth:`feed`), then tell it the body ended (:meth:`end`). Lines
    may end in CR, LF or CRLF and may be split anywhere between pieces (a CRLF split in two gives
    one extra empty line, which SSE ignores). A stream ends at ``data: [DONE]``, or when the
    server closes it cleanly after a chunk with a ``finish_reason`` (some servers omit [DONE]): a
    complete answer either way. A stream that ends without any finish reason, [DONE] or not, was
    cut short, and is an error (before the first token the gateway retries it or falls back).

    With ``join_after_first`` (a whole answer read as a stream: only its first chunk is looked at
    alone), the text-only events after the first are given as one chunk per piece fed: their
    texts joined, before any other chunk, in order. Fewer chunks to make and to assemble."""

    def __init__(self, name: str, request: GenerationRequest) -> None:
        self.name = name
        self.done = False  # the final chunk is given: what follows in the body is not read
        self._is_chat = request.is_chat
        self._logprobs = request.params.logprobs
        self._partial = b""  # the start of a line whose end has not arrived yet
        self._finish: Any = None
        self._usage: Usage | None = None
        self._pieces = 0  # chunks with content given so far
        # with join_after_first, the texts of the plain-text events after the first, not yet given
        self.join_after_first = False
        self._texts: list[str] = []

    def feed(self, data: bytes, chunks: list[StreamChunk]) -> None:
        """Append to ``chunks`` the chunks of every complete line of ``data`` (after what was left
        of the last piece). A broken stream raises :class:`BackendError`; the chunks of the events
        before the broken one are in ``chunks`` by then."""
        if self._partial:
            data = self._partial + data
        if b"\r" in data:  # a server that ends lines in CR or CRLF
            lines = data.splitlines(keepends=True)
            self._partial = lines.pop() if lines and not lines[-1].endswith(_LINE_ENDS) else b""
        else:  # LF only, as most servers send: split at each LF (a fraction of splitlines' cost)
            lines = data.split(b"\n")
            self._partial = lines.pop()  # what follows the last LF: b"" when the piece ends a line
        try:
            for line in lines:
                # only data lines carry anything (the blank line after each event, comments and
                # other fields do not); what follows "data:" is read on its own
                if line.startswith(b"data:"):
                    self._line(line[5:], chunks)
                    if self.done:
                        return
        finally:
            if self._texts:
                self._flush(chunks)

    def end(self, chunks: list[StreamChunk]) -> None:
        """The body is over: parse its unended last line, then give the final chunk of an answer
        whose finish reason came without [DONE], or raise for one cut short."""
        if self._partial and not self.done:
            partial, self._partial = self._partial, b""
            try:
                if partial.startswith(b"data:"):
                    self._line(partial[5:], chunks)
            finally:
                if self._texts:
                    self._flush(chunks)
        if self.done:
            return
        if self._finish is not None:  # a complete answer whose server closed cleanly without [DONE]
            chunks.append(self._final())
            return
        raise BackendError(
            f"model {self.name!r} ended its stream without a finish reason", retryable=self._pieces == 0
        )

    def _flush(self, chunks: list[StreamChunk]) -> None:
        """The texts joined so far, as one chunk (before any other chunk, and at each piece's end)."""
        texts = self._texts
        chunks.append(text_chunk(texts[0] if len(texts) == 1 else "".join(texts)))
        texts.clear()

    def _final(self) -> StreamChunk:
        self.done = True
        usage = _stream_usage(self.name, self._usage, self._pieces)
        return StreamChunk("", finish_reason=_finish(self._finish), usage=usage)

    def _line(self, payload: bytes, chunks: list[StreamChunk]) -> None:
        """One ``data:`` line's payload. An event (a JSON object in UTF-8) is parsed from the
        bytes as they are; anything else (``[DONE]``, a malformed event, bytes that are not
        UTF-8) goes through :meth:`_data`, decoded and stripped, as every line once did."""
        payload = payload.strip()
        if payload.startswith(b"{"):
            if not self._logprobs:
                try:
                    plain = _decode_event(payload)
                except (msgspec.DecodeError, RecursionError):  # not a plain event, or too deep
                    plain = None
                if plain is not None and self._plain(plain, chunks):
                    return
            try:
                event = _loads(payload)
            except orjson.JSONDecodeError:
                event = None
            if type(event) is dict:
                self._event(event, chunks)
                return
        self._data(payload.decode("utf-8", "replace").strip(), chunks)

    def _data(self, data: str, chunks: list[StreamChunk]) -> None:
        """One event's data (a ``data:`` line's, stripped)."""
        if data == "[DONE]":
            if self._finish is None:
                # llama-cpp-python's server, for one, ends an interrupted generation this way
                message = f"model {self.name!r} ended its stream without a finish reason"
                raise BackendError(message, retryable=self._pieces == 0)  # nothing sent yet: try again
            if self._texts:
                self._flush(chunks)
            chunks.append(self._final())
            return
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise BackendError(f"model {self.name!r} sent a malformed stream chunk") from exc
        self._event(event, chunks)

    def _plain(self, event: _Event, chunks: list[StreamChunk]) -> bool:
        """A decoded event, as :meth:`_event` would take it, when it is plain: no error, no tool
        calls (log-probabilities are not asked for). False, having done nothing, otherwise."""
        if event.error is not msgspec.UNSET:
            return False
        choices = event.choices or ()
        for choice in choices:
            if choice.delta is not None and choice.delta.tool_calls:
                return False
        usage = None
        if event.usage:
            try:
                usage = orjson.loads(memoryview(event.usage))
            except orjson.JSONDecodeError:
                return False
        if usage:
            self._usage = _usage(usage)
        is_chat = self._is_chat
        for choice in choices:
            if choice.index != 0:
                continue
            if is_chat:
                delta = choice.delta
                text = delta.content if delta is not None else None
            else:
                text = choice.text
            if choice.finish_reason:
                self._finish = choice.finish_reason
            if text:
                self._text(text, chunks)
        return True

    def _text(self, text: str, chunks: list[StreamChunk]) -> None:
        """A piece of text and nothing else: a chunk of its own, or with ``join_after_first``
        (after the first) joined with the texts beside it, given at the next other chunk or at
        the end of the piece fed."""
        self._pieces += 1
        if self.join_after_first and self._pieces > 1:
            self._texts.append(text)
        else:
            chunks.append(text_chunk(text))

    def _event(self, event: Any, chunks: list[StreamChunk]) -> None:
        """One parsed event."""
        if "error" in event:
            raise BackendError(f"model {self.name!r} failed mid-stream: {event['error']}")
        usage = event.get("usage")
        if usage:  # only the last event or two carry usage: skip the call for the rest
            self._usage = _usage(usage)
        is_chat = self._is_chat
        for choice in event.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one choice is asked for (n > 1 goes to diverse routes only)
            delta = choice.get("delta") or {}
            text = delta.get("content") if is_chat else choice.get("text")
            finish = choice.get("finish_reason")
            if finish:
                self._finish = finish
            if is_chat and delta.get("tool_calls") or self._logprobs:
                try:
                    calls = _tool_call_deltas(delta) if is_chat and delta.get("tool_calls") else ()
                    logprobs = _logprobs(choice, is_chat) if self._logprobs else ()
                except (KeyError, TypeError, ValueError) as exc:
                    raise BackendError(f"model {self.name!r} sent a malformed stream chunk") from exc
                if text or calls or logprobs:
                    self._pieces += 1
                    if self._texts:
                        self._flush(chunks)
                    chunks.append(StreamChunk(text or "", logprobs=logprobs, tool_calls=calls))
            elif text:  # the common event: a piece of text and nothing else
                self._text(text, chunks)
