"""Embedding models: texts in, unit-length vectors out.

One small contract, :class:`Embedder`, with three engines beside each other:

- :class:`StaticEmbedder` — a model2vec static embedding directory (the router ships one;
  tokenise, average token vectors, normalise; no torch);
- :class:`LlamaCppEmbedder` — a GGUF through llama-cpp-python with ``embedding=True``;
- :class:`OpenAIEmbedder` — a remote OpenAI-compatible ``/v1/embeddings``.

The in-process engines return unit-length float32 rows (a text with no known token gets a zero
row); a remote one passes on the vectors its server sent. Each counts the prompt tokens. Model
code runs on one worker thread per in-process model (a bounded FIFO queue,
:class:`~backends.errors.Overloaded` when full), never on the event loop.

``dimensions`` (fewer dimensions than the model's own) is honoured only where the model's
leading dimensions are an embedding of their own: a Matryoshka-trained model, or a static
embedding distilled with PCA (its dimensions are principal components, largest variance first,
so the first k are the best k-dimensional linear projection of it, which is what model2vec's own
``dimensionality`` option loads). Then the vectors are cut and renormalised
(:func:`truncate_dimensions`). A remote model that allows it gets ``dimensions`` passed on.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

import httpx
import numpy as np
import orjson

from backends.errors import BackendError, BackendTimeout, ContextLengthExceeded, Overloaded, RequestError
from backends.openai_http import Timeouts, _error_for_status, _map_transport_errors
from backends.timeouts import timeout

Pooling = Literal["auto", "mean", "cls", "last"]
DEFAULT_MAX_QUEUE = 16
DEFAULT_LLAMA_CONTEXT = 512
DEFAULT_POOLING: Pooling = "auto"  # the GGUF's own, or mean for a GGUF that declares none
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_TIMEOUTS = Timeouts()
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Embeddings:
    """``vectors``: float32, shape (len(texts), dimensions); ``prompt_tokens``: all texts' together."""

    vectors: np.ndarray
    prompt_tokens: int


class Embedder(Protocol):
    name: str
    dimensions: int | None  # the model's own; None while a remote model's is unknown
    supports_dimensions: bool  # whether fewer ``dimensions`` may be asked for
    max_input_tokens: int | None  # longest text, in the model's tokens (None: the model decides)

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def embed(self, texts: Sequence[str], dimensions: int | None = None) -> Embeddings: ...


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (float32); an all-zero row stays zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def truncate_dimensions(vectors: np.ndarray, dimensions: int | None) -> np.ndarray:
    """The first ``dimensions`` columns, renormalised (all of them, unchanged, for None)."""
    if dimensions is None or dimensions >= vectors.shape[1]:
        return vectors
    return unit_rows(vectors[:, :dimensions])


def check_dimensions(embedder: Embedder, dimensions: int | None) -> None:
    """Refuse a ``dimensions`` the model cannot give (a 400 naming ``dimensions``)."""
    if dimensions is None:
        return
    native = embedder.dimensions
    if native is not None and dimensions == native:
        return  # the model's own size: nothing to cut
    if not embedder.supports_dimensions:
        own = f" (its own is {native})" if native is not None else ""
        raise RequestError(
            f"model {embedder.name!r} gives only its own number of dimensions{own}; "
            "it was not trained so that fewer make sense",
            param="dimensions",
        )
    if native is not None and not 1 <= dimensions <= native:
        raise RequestError(
            f"dimensions must be from 1 to {native} for model {embedder.name!r}, got {dimensions}",
            param="dimensions",
        )


def check_lengths(embedder: Embedder, counts: Sequence[int]) -> None:
    """Refuse a text longer than the model embeds (it is never silently cut)."""
    limit = embedder.max_input_tokens
    if limit is None:
        return
    for index, count in enumerate(counts):
        if count > limit:
            raise ContextLengthExceeded(
                f"input[{index}] has {count} tokens; model {embedder.name!r} embeds at most {limit}",
                param="input",
            )


class ModelWorker:
    """One thread that runs a model's jobs in arrival order; at most ``max_queue`` wait."""

    def __init__(self, name: str, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self.name = name
        self.max_queue = max_queue
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"embed-{name}")
        self.pending = 0  # jobs submitted and not finished; touched on the loop only

    async def run(self, job: Callable[[], T]) -> T:
        if self.pending > self.max_queue:
            raise Overloaded(
                f"model {self.name!r} has {self.pending} requests queued or running "
                f"(limit {self.max_queue + 1}); retry later"
            )
        loop = asyncio.get_running_loop()
        self.pending += 1
        future: Future[T] = self._executor.submit(job)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._done))
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()  # a job still queued never starts; a running one finishes unseen
            raise

    def _done(self) -> None:
        self.pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


# -- static (model2vec) -------------------------------------------------------------------------
class StaticEmbedder:
    """A model2vec static embedding directory, e.g. the router's ``router/embedding/minilm-static``.

    Texts longer than the model's ``max_length`` (from its config; 512 for the shipped one) are
    refused rather than cut. Its dimensions are cut only if it was distilled with PCA."""

    def __init__(self, name: str, path: str | Path, *, max_queue: int = DEFAULT_MAX_QUEUE) -> None:
        self.name = name
        self.path = Path(path)
        self.dimensions: int | None = None
        self.supports_dimensions = False
        self.max_input_tokens: int | None = None
        self._worker = ModelWorker(name, max_queue)
        self._model: Any = None

    async def start(self) -> None:
        await self._worker.run(self._load)

    def _load(self) -> None:
        if not (self.path / "model.safetensors").is_file():
            raise BackendError(f"embedding model {self.name!r}: no model2vec model at {self.path}")
        from model2vec import StaticModel

        model = StaticModel.from_pretrained(str(self.path))
        self.max_input_tokens = model.max_length
        self.dimensions = int(model.dim)
        self.supports_dimensions = bool(model.config.get("apply_pca"))
        self._model = model

    async def aclose(self) -> None:
        self._worker.close()
        self._model = None

    async def embed(self, texts: Sequence[str], dimensions: int | None = None) -> Embeddings:
        if self._model is None:
            raise BackendError(f"embedding model {self.name!r} is not loaded")
        check_dimensions(self, dimensions)
        return await self._worker.run(lambda: self._embed(list(texts), dimensions))

    def _embed(self, texts: list[str], dimensions: int | None) -> Embeddings:
        model = self._model
        model.tokenizer.no_truncation()  # count every token, so a long text is refused, not cut
        counts = [len(ids) for ids in model.tokenize(texts)]
        check_lengths(self, counts)
        vectors = model.encode(texts, max_length=None, normalize=True, use_multiprocessing=False)
        vectors = unit_rows(np.asarray(vectors).reshape(len(texts), -1))
        return Embeddings(truncate_dimensions(vectors, dimensions), sum(counts))


# -- llama.cpp --------------------------------------------------------------------------------------
_POOLING_TYPES = {"mean": 1, "cls": 2, "last": 3}  # llama.cpp's LLAMA_POOLING_TYPE_*
_POOLING_UNSPECIFIED, _POOLING_NONE = -1, 0


def pooling_for(metadata: dict[str, Any], pooling: Pooling) -> int:
    """llama.cpp's pooling type: the configured one; for ``auto`` the GGUF's own, or mean for a
    GGUF that declares none (a chat model, whose per-token states llama.cpp would not pool)."""
    if pooling != "auto":
        return _POOLING_TYPES[pooling]
    arch = metadata.get("general.architecture")
    declared = metadata.get(f"{arch}.pooling_type")
    if isinstance(declared, int) and declared not in (_POOLING_NONE, _POOLING_UNSPECIFIED):
        return _POOLING_UNSPECIFIED  # let llama.cpp use the model's own
    return _POOLING_TYPES["mean"]


class LlamaCppEmbedder:
    """A GGUF loaded with ``embedding=True``; one text embeds in one batch of ``context_length``
    tokens, so a longer text is refused. ``matryoshka=True`` says the model was trained so its
    leading dimensions are an embedding of their own (then fewer ``dimensions`` may be asked)."""

    def __init__(
        self,
        name: str,
        gguf: str,
        *,
        sha256: str | None = None,
        context_length: int = DEFAULT_LLAMA_CONTEXT,
        pooling: Pooling = DEFAULT_POOLING,
        matryoshka: bool = False,
        threads: int | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
    ) -> None:
        self.name = name
        self.dimensions: int | None = None
        self.supports_dimensions = matryoshka
        self.max_input_tokens: int | None = context_length
        self._gguf = gguf
        self._sha256 = sha256
        self._pooling: Pooling = pooling
        self._threads = threads
        self._worker = ModelWorker(name, max_queue)
        self._llm: Any = None

    async def start(self) -> None:
        await self._worker.run(self._load)

    def _load(self) -> None:
        from llama_cpp import Llama

        from backends.gguf_meta import read_metadata
        from backends.gguf_store import resolve_gguf

        path = resolve_gguf(self._gguf, self._sha256)
        n_ctx = self.max_input_tokens or DEFAULT_LLAMA_CONTEXT
        threads = self._threads or os.cpu_count() or 1
        self._llm = Llama(
            model_path=str(path),
            embedding=True,
            pooling_type=pooling_for(read_metadata(path), self._pooling),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            verbose=False,
        )
        self.dimensions = int(self._llm.n_embd())

    async def aclose(self) -> None:
        self._worker.close()
        if self._llm is not None:
            self._llm.close()
            self._llm = None

    async def embed(self, texts: Sequence[str], dimensions: int | None = None) -> Embeddings:
        if self._llm is None:
            raise BackendError(f"embedding model {self.name!r} is not loaded")
        check_dimensions(self, dimensions)
        return await self._worker.run(lambda: self._embed(list(texts), dimensions))

    def _embed(self, texts: list[str], dimensions: int | None) -> Embeddings:
        llm = self._llm
        counts = [len(llm.tokenize(text.encode())) for text in texts]  # as llm.embed tokenizes
        check_lengths(self, counts)
        try:
            vectors, tokens = llm.embed(texts, truncate=False, return_count=True)
        except Exception as exc:  # foreign errors become BackendError here, and only here
            raise BackendError(f"embedding model {self.name!r} failed: {exc}") from exc
        rows = unit_rows(np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1))
        return Embeddings(truncate_dimensions(rows, dimensions), int(tokens))


# -- remote (OpenAI-compatible) -------------------------------------------------------------------
class OpenAIEmbedder:
    """``POST {base_url}/embeddings`` on an OpenAI-compatible server (vLLM, llama.cpp's server,
    OpenAI). ``dimensions`` is the model's own size if known; ``matryoshka=True`` passes a
    request's ``dimensions`` on to the server, which cuts the vectors itself."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        upstream_model: str | None = None,
        api_key: str | None = None,
        dimensions: int | None = None,
        matryoshka: bool = False,
        timeouts: Timeouts = DEFAULT_TIMEOUTS,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.dimensions = dimensions
        self.supports_dimensions = matryoshka
        self.max_input_tokens: int | None = None
        self.base_url = base_url.rstrip("/")
        self.upstream_model = upstream_model or name
        self._timeouts = timeouts
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._max_connections = max_connections
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        timeout = httpx.Timeout(
            connect=self._timeouts.connect,
            read=self._timeouts.read,
            write=self._timeouts.read,
            pool=self._timeouts.connect,
        )
        limits = httpx.Limits(max_connections=self._max_connections)
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._headers,
            timeout=timeout,
            limits=limits,
            transport=self._transport,
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def embed(self, texts: Sequence[str], dimensions: int | None = None) -> Embeddings:
        if self._client is None:
            raise BackendError(f"embedding model {self.name!r} is not started")
        check_dimensions(self, dimensions)
        payload: dict[str, Any] = {"model": self.upstream_model, "input": list(texts)}
        payload["encoding_format"] = "float"
        if dimensions is not None and dimensions != self.dimensions:
            payload["dimensions"] = dimensions
        try:
            with timeout(self._timeouts.total), _map_transport_errors(self.name):
                response = await self._client.post("/embeddings", content=orjson.dumps(payload))
        except TimeoutError as exc:
            raise BackendTimeout(f"embedding model {self.name!r} did not answer in time") from exc
        if response.status_code != 200:
            raise _error_for_status(self.name, response.status_code, response.content, response.headers)
        result = parse_embeddings(self.name, response.content, len(texts))
        wanted = dimensions or self.dimensions
        if wanted is not None and result.vectors.shape[1] != wanted:
            raise BackendError(
                f"embedding model {self.name!r} sent {result.vectors.shape[1]} dimensions, not {wanted}"
            )
        return result


def parse_embeddings(name: str, body: bytes, count: int) -> Embeddings:
    """An OpenAI ``/v1/embeddings`` answer with float vectors, in input order, as sent."""
    try:
        data = orjson.loads(body)
        items = sorted(data["data"], key=lambda item: int(item["index"]))
        rows = [item["embedding"] for item in items]
        if [int(item["index"]) for item in items] != list(range(count)):
            raise ValueError("indices do not match the inputs")
        vectors = np.asarray(rows, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError("vectors of different lengths")
        usage = data.get("usage") or {}
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise BackendError(f"embedding model {name!r} sent a malformed answer: {exc}") from exc
    return Embeddings(vectors, prompt_tokens)
