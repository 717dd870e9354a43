"""The embedding engines: the static one for real, the remote one's wire and error mapping."""

from __future__ import annotations

import asyncio
import threading

import httpx
import numpy as np
import orjson
import pytest

from backends.embeddings import (
    ModelWorker,
    OpenAIEmbedder,
    StaticEmbedder,
    check_dimensions,
    pooling_for,
    truncate_dimensions,
    unit_rows,
)
from backends.errors import (
    BackendError,
    BackendUnavailable,
    ContextLengthExceeded,
    Overloaded,
    RequestError,
)
from router.embedding import DEFAULT_EMBEDDING, embedding_path
from tests.conftest import free_port

SIMILAR = ("The cat sat on the mat.", "A cat was sitting on a rug.")
UNRELATED = "Quarterly revenue grew by eight percent."


def test_unit_rows_keeps_zero_rows_zero_and_truncation_renormalises():
    rows = unit_rows(np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]))
    assert rows.dtype == np.float32
    np.testing.assert_allclose(rows, [[0.6, 0.8, 0.0], [0.0, 0.0, 0.0]])
    cut = truncate_dimensions(unit_rows(np.array([[1.0, 1.0, 1.0, 1.0]])), 2)
    assert cut.shape == (1, 2)
    np.testing.assert_allclose(np.linalg.norm(cut, axis=1), [1.0], rtol=1e-6)
    same = np.ones((1, 3), dtype=np.float32)
    assert truncate_dimensions(same, None) is same and truncate_dimensions(same, 3) is same


class _Model:
    def __init__(self, dimensions: int | None, supports: bool) -> None:
        self.name, self.dimensions, self.supports_dimensions = "m", dimensions, supports


@pytest.mark.parametrize(
    ("dimensions", "supports", "asked", "refused"),
    [
        (256, True, 64, False),
        (256, True, 256, False),
        (256, True, 257, True),  # more than the model has
        (256, False, 64, True),  # not trained for fewer
        (256, False, 256, False),  # its own size is always fine
        (None, True, 1000, False),  # unknown size: the remote server decides
        (None, False, 64, True),
        (256, False, None, False),
    ],
)
def test_check_dimensions(dimensions, supports, asked, refused):
    model = _Model(dimensions, supports)
    if refused:
        with pytest.raises(RequestError) as caught:
            check_dimensions(model, asked)  # type: ignore[arg-type]
        assert caught.value.param == "dimensions"
    else:
        check_dimensions(model, asked)  # type: ignore[arg-type]


def test_pooling_is_the_ggufs_own_else_mean_for_a_chat_model():
    assert pooling_for({"general.architecture": "bert", "bert.pooling_type": 2}, "auto") == -1
    assert pooling_for({"general.architecture": "llama"}, "auto") == 1  # mean
    assert pooling_for({"general.architecture": "llama", "llama.pooling_type": 0}, "auto") == 1
    assert pooling_for({"general.architecture": "bert", "bert.pooling_type": 2}, "last") == 3


@pytest.fixture(scope="module")
def static_model():
    async def load() -> StaticEmbedder:
        model = StaticEmbedder("minilm", embedding_path(DEFAULT_EMBEDDING))
        await model.start()
        return model

    model = asyncio.run(load())
    yield model
    asyncio.run(model.aclose())


async def test_the_static_embedding_puts_similar_sentences_closer(static_model):
    assert (static_model.dimensions, static_model.supports_dimensions) == (256, True)  # PCA-ordered
    assert static_model.max_input_tokens == 512
    result = await static_model.embed([*SIMILAR, UNRELATED])
    vectors = result.vectors
    assert vectors.shape == (3, 256) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3
    assert result.prompt_tokens == sum(len(t.split()) for t in (*SIMILAR, UNRELATED)) + 3  # words + "."


async def test_fewer_static_dimensions_are_the_leading_ones_renormalised_and_keep_the_order(static_model):
    whole = (await static_model.embed([*SIMILAR, UNRELATED])).vectors
    cut = (await static_model.embed([*SIMILAR, UNRELATED], 64)).vectors
    assert cut.shape == (3, 64)
    np.testing.assert_allclose(cut, unit_rows(whole[:, :64]), rtol=1e-5, atol=1e-6)
    assert cut[0] @ cut[1] > cut[0] @ cut[2] + 0.3


async def test_a_static_text_too_long_is_refused_not_cut(static_model):
    fits = await static_model.embed(["word " * 512])
    assert fits.prompt_tokens == 512
    with pytest.raises(ContextLengthExceeded) as caught:
        await static_model.embed(["fine", "word " * 513])
    assert caught.value.param == "input" and "input[1] has 513 tokens" in caught.value.message
    again = await static_model.embed(["word " * 512])  # the refusal left the tokenizer as it was
    assert again.prompt_tokens == 512


async def test_a_static_text_of_unknown_tokens_is_a_zero_vector(static_model):
    result = await static_model.embed(["\u2063\u2063"])
    assert not result.vectors.any()


async def test_the_worker_refuses_beyond_its_queue():
    worker = ModelWorker("w", max_queue=1)
    gate = threading.Event()
    try:
        running = asyncio.ensure_future(worker.run(gate.wait))
        queued = asyncio.ensure_future(worker.run(lambda: 7))
        await asyncio.sleep(0.05)
        with pytest.raises(Overloaded):
            await worker.run(lambda: 8)
        gate.set()
        assert await running is True and await queued == 7
        await asyncio.sleep(0)
        assert worker.pending == 0
    finally:
        gate.set()
        worker.close()


# -- the remote engine -------------------------------------------------------------------------
def _answer(vectors: list[list[float]], tokens: int = 5, *, shuffle: bool = False) -> bytes:
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    if shuffle:
        data.reverse()
    return orjson.dumps(
        {
            "object": "list",
            "data": data,
            "model": "up",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def _remote(handler, **options) -> OpenAIEmbedder:
    embedder = OpenAIEmbedder(
        "remote", "http://upstream/v1", upstream_model="up", transport=httpx.MockTransport(handler), **options
    )
    await embedder.start()
    return embedder


async def test_the_remote_engine_posts_openais_request_and_keeps_the_input_order():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append({"url": str(request.url), **orjson.loads(request.content)})
        return httpx.Response(200, content=_answer([[1.0, 0.0], [0.0, 2.0]], shuffle=True))

    embedder = await _remote(handler, dimensions=2)
    try:
        result = await embedder.embed(["a", "b"])
    finally:
        await embedder.aclose()
    assert seen == [
        {
            "url": "http://upstream/v1/embeddings",
            "model": "up",
            "input": ["a", "b"],
            "encoding_format": "float",
        }
    ]
    np.testing.assert_array_equal(result.vectors, [[1.0, 0.0], [0.0, 2.0]])  # as the server sent them
    assert result.prompt_tokens == 5


async def test_the_remote_engine_passes_dimensions_on_only_where_allowed():
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        seen.append(body)
        return httpx.Response(200, content=_answer([[0.6, 0.8][: body.get("dimensions", 2)]]))

    matryoshka = await _remote(handler, dimensions=2, matryoshka=True)
    plain = await _remote(handler, dimensions=2)
    try:
        assert (await matryoshka.embed(["a"], 1)).vectors.shape == (1, 1)
        assert (await plain.embed(["a"], 2)).vectors.shape == (1, 2)  # its own size, not passed on
        with pytest.raises(RequestError) as caught:
            await plain.embed(["a"], 1)
    finally:
        await matryoshka.aclose()
        await plain.aclose()
    assert caught.value.param == "dimensions"
    assert [s.get("dimensions") for s in seen] == [1, None]


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, b'{"error": {"message": "boom"}}', BackendError),
        (400, b'{"error": {"message": "bad input"}}', RequestError),
        (429, b'{"error": {"message": "slow down"}}', Overloaded),
        (200, b"not json", BackendError),
        (200, _answer([[1.0]]), BackendError),  # one vector for two texts
        (200, _answer([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]]), BackendError),  # 3 dimensions, not 2
    ],
)
async def test_the_remote_engine_maps_failures_into_the_error_tree(status, body, error):
    embedder = await _remote(lambda request: httpx.Response(status, content=body), dimensions=2)
    try:
        with pytest.raises(error):
            await embedder.embed(["a", "b"])
    finally:
        await embedder.aclose()


async def test_an_unreachable_remote_is_unavailable():
    embedder = OpenAIEmbedder("gone", f"http://127.0.0.1:{free_port()}/v1")
    await embedder.start()
    try:
        with pytest.raises(BackendUnavailable):
            await embedder.embed(["a"])
    finally:
        await embedder.aclose()
