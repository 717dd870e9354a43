"""In-process GGUF models through llama-cpp-python.

A ``Llama`` object is not thread-safe, so each model owns one worker thread:
requests run one at a time in arrival order (a fair FIFO queue), the queue is
bounded (:class:`~backends.errors.Overloaded` when full), and the event loop
never runs model code. Generation checks a cancel flag between tokens, so a
cancelled request (client gone, timeout) stops burning CPU at the next token,
and a request still waiting in the queue never starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from backends.assembly import Assembly
from backends.errors import BackendError, ContextLengthExceeded, Overloaded
from backends.features import Feature
from backends.gguf_store import resolve_gguf
from backends.llama_grammars import grammar_for
from backends.token_logprobs import LogprobRecorder
from backends.tool_calls import HermesToolCallParser, template_renders_tools, tool_call_message
from backends.types import (
    Completion,
    FinishReason,
    GenerationRequest,
    Health,
    Message,
    StreamChunk,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)

DEFAULT_CONTEXT_LENGTH = 4096
DEFAULT_MAX_QUEUE = 16
LLAMA_THREAD_NICENESS = 10
_END = object()


def _lower_thread_priority() -> None:
    """Let this thread, and the compute threads llama.cpp starts from it, yield to the event loop.

    On Linux a thread's nice value is its own and new threads inherit it; a
    generation that saturates every core then cannot starve the thread that
    answers ``/health`` and accepts connections.
    """
    with contextlib.suppress(AttributeError, OSError):  # not Linux or not permitted: normal priority
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LLAMA_THREAD_NICENESS)


def _template_message(message: Message) -> dict[str, Any]:
    """A message as chat templates read it (Hugging Face's convention)."""
    turn: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        turn["tool_calls"] = [tool_call_message(call) for call in message.tool_calls]
    if message.tool_call_id is not None:
        turn["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        turn["name"] = message.name
    return turn


def _template_tool(tool: Any) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters) or {"type": "object"}}
    if tool.description:
        function["description"] = tool.description
    return {"type": "function", "function": function}


class _Cancelled(Exception):
    """Raised inside the worker thread when the request was cancelled."""


# Structured output through a grammar; log-probabilities from a logits processor
# (backends/token_logprobs.py); tools only where the chat template renders them (after load).
_FEATURES = frozenset({Feature.STRUCTURED_OUTPUT, Feature.LOGPROBS, Feature.PENALTIES, Feature.LOGIT_BIAS})


class LlamaCppBackend:
    """One GGUF model loaded in this process."""

    max_choices = 1  # one choice per request
    available = True  # no circuit of its own (ResilientBackend adds one)

    def __init__(
        self,
        name: str,
        gguf: str,
        *,
        sha256: str | None = None,
        context_length: int = DEFAULT_CONTEXT_LENGTH,
        threads: int | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.name = name
        self.context_length: int | None = context_length
        self._gguf = gguf
        self._sha256 = sha256
        self._threads = threads or os.cpu_count() or 1
        self._max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llama-{name}")
        self._pending = 0  # jobs submitted and not finished; touched on the loop only
        self._llm: Any = None
        self._formatter: Any = None
        self.features: frozenset[Feature] = _FEATURES

    # -- lifecycle ---------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        from llama_cpp import Llama

        _lower_thread_priority()
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path: Path = resolve_gguf(self._gguf, self._sha256)
        llm = Llama(
            model_path=str(path),
            n_ctx=self.context_length or 0,
            n_threads=self._threads,
            n_threads_batch=self._threads,
            verbose=False,
        )
        template = llm.metadata.get("tokenizer.chat_template")
        if template:
            eos_id = llm.token_eos()
            bos_id = llm.token_bos()
            vocab_text = llm._model.token_get_text  # noqa: SLF001 - no public accessor
            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=vocab_text(eos_id) if eos_id != -1 else "",
                bos_token=vocab_text(bos_id) if bos_id != -1 else "",
                stop_token_ids=[eos_id],
            )
            if template_renders_tools(template):
                self.features = _FEATURES | {Feature.TOOLS}
        self.context_length = llm.n_ctx()
        self._llm = llm

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    async def health(self) -> Health:
        loaded = self._llm is not None
        return Health(ok=loaded, detail="loaded" if loaded else "not loaded", queue_depth=self._pending)

    # -- generation --------------------------------------------------------
    async def chat(self, request: GenerationRequest) -> Completion:
        answer = Assembly(request)
        async for chunk in self.stream_chat(request):
            answer.add(chunk)
            if chunk.finish_reason is not None:
                return answer.completion()
        raise BackendError(f"model {self.name!r} ended without a final chunk")

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: object) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        grammar = grammar_for(request)  # a schema it cannot enforce is the client's error: 400 now
        job = self._submit(lambda: self._generate(request, grammar, cancel, emit), loop)
        try:
            while (item := await queue.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, StreamChunk)
                yield item
        finally:
            cancel.set()
            if not job.done():
                # Wait for the worker to notice, without giving up if cancelled again.
                await asyncio.shield(asyncio.wrap_future(job))

    def _submit(self, job: Callable[[], None], loop: asyncio.AbstractEventLoop) -> Future[None]:
        if self._llm is None:
            raise BackendError(f"model {self.name!r} is not loaded")
        if self._pending > self._max_queue:
            raise Overloaded(
                f"model {self.name!r} has {self._pending} requests queued or running "
                f"(limit {self._max_queue + 1}); retry later"
            )
        self._pending += 1
        future = self._executor.submit(job)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._job_done))
        return future

    def _job_done(self) -> None:
        self._pending -= 1

    # -- worker thread -----------------------------------------------------
    def _generate(
        self,
        request: GenerationRequest,
        grammar: str | None,
        cancel: threading.Event,
        emit: Callable[[object], None],
    ) -> None:
        try:
            if not cancel.is_set():
                self._run(request, grammar, cancel, emit)
        except _Cancelled:
            pass
        except ContextLengthExceeded as exc:
            emit(exc)
        except Exception as exc:  # foreign errors become BackendError here, and only here
            emit(BackendError(f"model {self.name!r} failed: {exc}"))
        finally:
            emit(_END)

    def _run(
        self,
        request: GenerationRequest,
        grammar: str | None,
        cancel: threading.Event,
        emit: Callable[[object], None],
    ) -> None:
        from llama_cpp import LlamaGrammar, LogitsProcessorList, StoppingCriteriaList

        prompt_tokens, stop, criteria = self._prompt(request)
        params = request.params
        budget = self._token_budget(len(prompt_tokens), params.max_tokens)

        def cancelled(_ids: Any, _logits: Any) -> bool:
            return cancel.is_set()

        if params.seed is not None:
            # A seed promises a repeatable answer. Reusing the cached prefix of the previous
            # prompt evaluates this one in other batch shapes than a fresh context would, and
            # the logits differ in their last bits, enough to change a sample: start afresh.
            self._llm.reset()
        recorder = None
        if params.logprobs:
            recorder = LogprobRecorder(self._token_text, top=params.top_logprobs)
        parser = HermesToolCallParser(request.tools) if request.offers_tools else None
        if parser is not None and not request.parallel_tool_calls:
            stop = [*stop, "</tool_call>"]  # one call: end at its close (the parser allows it missing)

        stream = self._llm.create_completion(
            prompt=prompt_tokens,
            max_tokens=budget,
            temperature=0.8 if params.temperature is None else params.temperature,
            top_p=0.95 if params.top_p is None else params.top_p,
            stop=[*params.stop, *stop],
            seed=params.seed,
            stream=True,
            stopping_criteria=StoppingCriteriaList([cancelled, *criteria]),
            logits_processor=LogitsProcessorList([recorder]) if recorder else None,
            grammar=LlamaGrammar.from_string(grammar) if grammar else None,
            frequency_penalty=params.frequency_penalty or 0.0,
            presence_penalty=params.presence_penalty or 0.0,
            logit_bias=dict(params.logit_bias) if params.logit_bias else None,
        )
        pieces: list[str] = []
        finish: FinishReason = "stop"
        for event in stream:
            if cancel.is_set():
                stream.close()
                raise _Cancelled
            choice = event["choices"][0]
            if choice["text"]:
                pieces.append(choice["text"])
                shown = parser.feed(choice["text"]) if parser else choice["text"]
                known = recorder.take() if recorder else ()
                if shown or known:
                    emit(StreamChunk(shown, logprobs=known))
            if choice.get("finish_reason"):
                finish = "length" if choice["finish_reason"] == "length" else "stop"
        if cancel.is_set():
            raise _Cancelled
        text = "".join(pieces)
        if finish == "length":
            completion_tokens = budget
        else:  # llama-cpp-python's stream does not count; re-tokenizing the text does
            completion_tokens = len(self._llm.tokenize(text.encode(), add_bos=False, special=True))
        usage = Usage(prompt_tokens=len(prompt_tokens), completion_tokens=completion_tokens)
        logprobs: tuple[TokenLogprob, ...] = ()
        if recorder is not None:
            recorder.finish(self._last_token(recorder.ids, text) if finish == "length" else None)
            logprobs = recorder.take()
        rest, calls = parser.finish() if parser else ("", ())
        deltas = tuple(ToolCallDelta(i, c.id, c.name, c.arguments) for i, c in enumerate(calls))
        if calls and finish == "stop":
            finish = "tool_calls"
        emit(StreamChunk(rest, finish_reason=finish, usage=usage, logprobs=logprobs, tool_calls=deltas))

    def _token_text(self, token: int) -> str:
        return bytes(self._llm.detokenize([token])).decode("utf-8", errors="replace")

    def _last_token(self, known: list[int], text: str) -> int | None:
        """The token sampled at the last step of a generation cut at max_tokens: the one that
        follows ``known`` when the answer is tokenized again (None if that does not line up)."""
        ids = self._llm.tokenize(text.encode(), add_bos=False, special=True)
        if len(ids) == len(known) + 1 and ids[: len(known)] == known:
            return int(ids[-1])
        return None

    def _prompt(self, request: GenerationRequest) -> tuple[list[int], list[str], list[Any]]:
        """Token ids of the prompt, extra stop strings and stopping criteria."""
        if request.messages is None:
            assert request.prompt is not None
            tokens = self._llm.tokenize(request.prompt.encode(), add_bos=True, special=False)
            return tokens, [], []
        if self._formatter is None:
            raise BackendError(f"model {self.name!r} has no chat template in its GGUF")
        messages = [_template_message(m) for m in request.messages]
        tools = None
        if request.offers_tools:
            tools = [_template_tool(tool) for tool in request.tools]
        formatted = self._formatter(messages=messages, tools=tools)
        tokens = self._llm.tokenize(
            formatted.prompt.encode(), add_bos=not formatted.added_special, special=True
        )
        stop = formatted.stop if isinstance(formatted.stop, list) else [formatted.stop]
        criteria = list(formatted.stopping_criteria or [])
        return tokens, [s for s in stop if s], criteria

    def _token_budget(self, prompt_tokens: int, max_tokens: int | None) -> int:
        n_ctx = self.context_length or 0
        if prompt_tokens >= n_ctx:
            raise ContextLengthExceeded(
                f"the prompt has {prompt_tokens} tokens; model {self.name!r} has a context of {n_ctx} tokens",
                param="messages",
            )
        if max_tokens is None:
            return n_ctx - prompt_tokens
        if prompt_tokens + max_tokens > n_ctx:
            raise ContextLengthExceeded(
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({max_tokens}) "
                f"exceeds model {self.name!r}'s context of {n_ctx} tokens",
                param="max_tokens",
            )
        return max_tokens
