"""Evaluating one fleet model on benchmark items through its real backend.

Each query is sent alone (no batching), timed from request to complete answer, and scored off
the event loop (HumanEval runs a subprocess). Memory is the peak of this process's resident set
above what it held before the model loaded, sampled while the model loads and answers: for an
in-process llama.cpp model that is the weights it touched plus its KV cache and buffers.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.composite.answers import final_answer
from backends.errors import SmallfleetError
from backends.features import Feature
from backends.gguf_meta import KvShape
from backends.types import Completion, GenerationRequest, SamplingParams
from fleet.benchmarks import BenchmarkItem
from fleet.grading import score
from fleet.models import EvalModel
from fleet.sandbox import DEFAULT_TIMEOUT as SANDBOX_TIMEOUT

DEFAULT_MAX_TOKENS = {
    "mmlu": 64, "gsm8k": 384, "humaneval": 384,
    # the routing benchmark's tasks: a short answer, a letter after a little reasoning, code
    "routing:trivia_qa": 32, "routing:natural_qa": 32,
    "routing:commonsense_qa": 64, "routing:openbook_qa": 64, "routing:arc_challenge": 64,
    "routing:mmlu": 64, "routing:mbpp": 384,
}


@dataclass(frozen=True)
class QueryResult:
    """One model's answer to one item, scored."""

    item_id: str
    task: str
    question: str
    score: int
    note: str
    seconds: float
    cpu_seconds: float
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    config_cost: float
    answer: str = ""  # the model's reply, as scored
    # log-probability of each generated token (in-process models; empty where not measured):
    # what a cascade's escalation rule is calibrated on
    token_logprobs: tuple[float, ...] = ()
    # a diverse route's samples, each scored alone: model, temperature, score, final answer, tokens
    # (what a vote of any subset of them, or a stop once they agree, can be replayed from)
    samples: tuple[dict[str, Any], ...] = ()


@dataclass
class ModelRun:
    """Everything measured for one model: per-query results and the model's footprint."""

    model: EvalModel
    results: list[QueryResult] = field(default_factory=list)
    load_seconds: float = 0.0
    file_bytes: int | None = None
    peak_memory_bytes: int | None = None
    kv_shape: KvShape | None = None  # from the GGUF header: what the KV cache's size depends on
    context_length: int | None = None  # n_ctx the model ran with (its KV cache holds that many tokens)


class RssSampler:
    """Peak resident set size of this process above a baseline, sampled in a thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.baseline = current_rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss())

    @property
    def delta(self) -> int:
        return max(0, self.peak - self.baseline)


def current_rss() -> int:
    """Resident bytes of this process now (Linux /proc), else its peak so far (getrusage)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def gguf_file_bytes(model: EvalModel) -> int | None:
    """Size of the model's GGUF file (verified by its sha256 on the way), None if it has none."""
    if model.gguf is None:
        return None
    from backends.gguf_store import resolve_gguf

    return Path(resolve_gguf(model.gguf, model.sha256)).stat().st_size


def gguf_kv_shape(model: EvalModel) -> KvShape | None:
    """The KV-cache shape from the model's GGUF header; None without a GGUF or when unreadable."""
    if model.gguf is None:
        return None
    from backends.gguf_meta import read_kv_shape
    from backends.gguf_store import resolve_gguf

    try:
        return read_kv_shape(resolve_gguf(model.gguf, model.sha256))
    except (SmallfleetError, OSError):
        return None


def request_for(item: BenchmarkItem, max_tokens: int, seed: int, logprobs: bool = False) -> GenerationRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=0.0, seed=seed, logprobs=logprobs)
    return GenerationRequest(messages=item.messages, params=params)


async def _ask(
    model: EvalModel, item: BenchmarkItem, max_tokens: int, seed: int, timeout: float
) -> QueryResult:
    cpu_start, start = time.process_time(), time.perf_counter()
    try:
        logprobs = Feature.LOGPROBS in model.backend.features
        completion = await model.backend.chat(request_for(item, max_tokens, seed, logprobs))
    except SmallfleetError as exc:
        seconds = time.perf_counter() - start
        return QueryResult(item.id, item.task, item.question, 0, f"error: {exc}", seconds,
                           time.process_time() - cpu_start, 0, 0, "error", 0.0)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    points, note = await asyncio.to_thread(score, item, completion.text, timeout)
    usage = completion.usage
    return QueryResult(
        item.id, item.task, item.question, points, note, seconds, cpu_seconds,
        usage.prompt_tokens, usage.completion_tokens, completion.finish_reason,
        model.completion_cost(completion), completion.text,
        tuple(round(entry.logprob, 4) for entry in completion.logprobs or ()),
        await asyncio.to_thread(scored_samples, item, completion, timeout),
    )


def scored_samples(item: BenchmarkItem, completion: Completion, timeout: float) -> tuple[dict[str, Any], ...]:
    """Each sample of a diverse route's answer, scored as if it had answered alone (empty otherwise)."""
    trace = completion.trace
    if trace is None or "samples" not in trace.details:
        return ()
    entries = trace.details["samples"]
    calls = trace.calls if len(trace.calls) == len(entries) else (None,) * len(entries)  # one call per sample
    samples = []
    for entry, call in zip(entries, calls, strict=True):
        record: dict[str, Any] = {"model": entry["model"], "temperature": entry["temperature"]}
        if call is not None:
            usage = call.usage
            record.update(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)
        if "text" in entry:
            record.update(score=score(item, entry["text"], timeout)[0], answer=entry["answer"],
                          definite=final_answer(entry["text"]).definite, finish_reason=entry["finish_reason"])
        else:
            record.update(score=0, error=entry.get("error", "no answer"))
        samples.append(record)
    return tuple(samples)


async def evaluate_model(
    model: EvalModel,
    items: Sequence[BenchmarkItem],
    *,
    max_tokens: dict[str, int] | None = None,
    seed: int = 0,
    timeout: float = SANDBOX_TIMEOUT,
    progress: bool = True,
) -> ModelRun:
    """Start ``model``'s backend, ask it every item in order, close it; the measurements."""
    from tqdm import tqdm

    limits = {**DEFAULT_MAX_TOKENS, **(max_tokens or {})}
    run = ModelRun(model, file_bytes=await asyncio.to_thread(gguf_file_bytes, model))
    run.kv_shape = await asyncio.to_thread(gguf_kv_shape, model)
    run.context_length = model.backend.context_length
    with RssSampler() as memory:
        started = time.perf_counter()
        await model.backend.start()
        run.load_seconds = time.perf_counter() - started
        try:
            bar = tqdm(total=len(items), desc=model.name, unit="q", file=sys.stderr, disable=not progress)
            with bar:
                for item in items:
                    result = await _ask(model, item, limits.get(item.task, 256), seed, timeout)
                    run.results.append(result)
                    correct = sum(r.score for r in run.results)
                    bar.set_postfix_str(f"acc={correct / len(run.results):.2f}", refresh=False)
                    bar.update(1)
        finally:
            await model.backend.aclose()
    run.peak_memory_bytes = memory.delta
    return run
