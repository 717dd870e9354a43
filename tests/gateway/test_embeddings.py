"""POST /v1/embeddings in process: the fleet config's embeddings, the wire format, refusals,
accounting (metrics, request log, per-key limits) and the model listing."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np
import pytest

from backends.embeddings import Embeddings
from backends.errors import BackendError, RequestError
from backends.fake import FakeBackend
from fleet.config import (
    ConfigError,
    LlamaCppEmbeddingModel,
    StaticEmbeddingModel,
    default_fleet,
    load_fleet,
    parse_fleet,
)
from gateway.app import create_app
from gateway.embeddings_api import embeddings_json, encode_vector, parse_request
from gateway.keys import KeyLimits, KeyStore
from tests.conftest import asgi_client

CHAT_MODEL = {"name": "alpha", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"}
AUTH = {"authorization": "Bearer sk-a"}


def fleet(*embeddings: dict, **extra: object):
    return parse_fleet({"models": [CHAT_MODEL], "embeddings": list(embeddings), **extra})


class FakeEmbedder:
    """Vectors that say which text they embed: [len(text), index, 1, 0], one token per character."""

    def __init__(self, name: str = "fake", *, fail: bool = False) -> None:
        self.name = name
        self.dimensions: int | None = 4
        self.supports_dimensions = False
        self.max_input_tokens: int | None = 100
        self.fail = fail
        self.calls: list[list[str]] = []

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...

    async def embed(self, texts: Sequence[str], dimensions: int | None = None) -> Embeddings:
        self.calls.append(list(texts))
        if self.fail:
            raise BackendError("the model fell over")
        rows = [[len(t), i, 1.0, 0.0] for i, t in enumerate(texts)]
        return Embeddings(np.asarray(rows, dtype=np.float32), sum(len(t) for t in texts))


# -- config --------------------------------------------------------------------------------------
def test_the_default_fleet_serves_the_routers_static_embedding():
    config = default_fleet()
    assert [(e.name, e.backend) for e in config.embeddings] == [("minilm-static", "static")]


def test_embedding_models_load_with_relative_gguf_paths_resolved(tmp_path):
    path = tmp_path / "fleet.yaml"
    path.write_text(
        "models: [{name: alpha, backend: openai, base_url: 'http://127.0.0.1:9/v1'}]\n"
        "embeddings:\n"
        "  - {name: minilm, backend: static, price: {input: 0.5}}\n"
        "  - {name: local, backend: llama_cpp, gguf: models/e.gguf, pooling: mean, context_length: 256}\n"
        "  - {name: remote, backend: openai, base_url: 'http://127.0.0.1:9/v1', dimensions: 1536,"
        " matryoshka: true, upstream_model: text-embedding-3-small}\n"
    )
    config = load_fleet(path)
    static, local, remote = config.embeddings
    assert isinstance(static, StaticEmbeddingModel) and static.price.cost(2_000_000) == 1.0
    assert isinstance(local, LlamaCppEmbeddingModel) and local.gguf == str(tmp_path / "models/e.gguf")
    assert remote.backend == "openai" and config.embedding("remote") is remote


@pytest.mark.parametrize(
    ("embeddings", "needle"),
    [
        ([{"name": "e", "backend": "onnx"}], "embeddings[0]: Input tag 'onnx'"),
        ([{"name": "e", "backend": "static", "embedding": "nope"}], "embeddings[0].embedding: no shipped"),
        ([{"name": "e", "backend": "llama_cpp"}], "embeddings[0].gguf: Field required"),
        ([{"name": "e", "backend": "static", "price": {"output": 1}}], "embeddings[0].price.output"),
        ([{"name": "e", "backend": "static", "dims": 3}], "embeddings[0].dims: Extra inputs"),
        ([{"name": "e", "backend": "llama_cpp", "gguf": "x", "pooling": "max"}], "embeddings[0].pooling"),
        ([{"name": "alpha", "backend": "static"}], "embeddings[0].name: 'alpha' is already a model's name"),
        (
            [{"name": "e", "backend": "static"}, {"name": "e", "backend": "static"}],
            "embeddings[1].name: 'e' is already an embedding model's name",
        ),
        ([{"name": "auto", "backend": "static"}], "reserved for the router"),
        ([{"name": "r", "backend": "openai", "base_url": "ftp://x"}], "embeddings[0].base_url"),
    ],
)
def test_a_bad_embeddings_entry_is_refused_naming_the_field(embeddings, needle):
    with pytest.raises(ConfigError) as caught:
        fleet(*embeddings)
    assert needle in str(caught.value)


# -- the wire format -----------------------------------------------------------------------------
def test_base64_is_little_endian_float32_as_the_openai_client_decodes_it():
    vector = np.array([0.25, -1.5, 3.0e-8], dtype=np.float32)
    encoded = encode_vector(vector, "base64")
    decoded = np.frombuffer(base64.b64decode(encoded), dtype="<f4")  # what openai-python does
    np.testing.assert_array_equal(decoded, vector)
    assert encode_vector(vector, "float").tolist() == vector.tolist()


def test_the_answer_is_openais_list_shape():
    import orjson

    body = orjson.loads(embeddings_json("m", Embeddings(np.eye(2, dtype=np.float32), 7), "float"))
    assert body == {
        "object": "list",
        "data": [
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
        ],
        "model": "m",
        "usage": {"prompt_tokens": 7, "total_tokens": 7},
    }


@pytest.mark.parametrize(
    ("body", "param", "needle"),
    [
        (b'{"model": "m", "input": "x", "temperature": 1}', "temperature", "unknown field 'temperature'"),
        (b'{"model": "m", "input": [1, 2, 3]}', "input", "token-id input"),
        (b'{"model": "m", "input": [[1, 2], [3]]}', "input", "token-id input"),
        (b'{"model": "m", "input": []}', "input", "empty list"),
        (b'{"model": "m", "input": ""}', "input", "empty string"),
        (b'{"model": "m", "input": ["a", ""]}', "input[1]", "empty string"),
        (b'{"model": "m", "input": ["a", null]}', "input[1]", "must be a string"),
        (
            b'{"model": "m", "input": "x", "encoding_format": "int8"}',
            "encoding_format",
            "'float' or 'base64'",
        ),
        (b'{"model": "m", "input": "x", "dimensions": 0}', "dimensions", "greater than or equal to 1"),
        (b'{"model": "m", "input": "x", "dimensions": "8"}', "dimensions", "valid integer"),
        (b'{"input": "x"}', "model", "Field required"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(body, param, needle):
    with pytest.raises(RequestError) as caught:
        parse_request(body).texts(max_inputs=4)
    assert caught.value.param == param
    assert needle in caught.value.message


def test_too_many_inputs_are_refused():
    parsed = parse_request(b'{"model": "m", "input": ["a", "b", "c"], "user": "u-1"}')
    assert parsed.texts(max_inputs=3) == ["a", "b", "c"]
    with pytest.raises(RequestError) as caught:
        parsed.texts(max_inputs=2)
    assert caught.value.param == "input" and "3 texts; the limit is 2" in caught.value.message


# -- the endpoint ---------------------------------------------------------------------------------
async def test_embeddings_are_answered_accounted_and_listed():
    config = fleet({"name": "fake", "backend": "static", "price": {"input": 10.0}})
    fake = FakeEmbedder()
    app = create_app(config, backends={"alpha": FakeBackend("alpha")}, embedders={"fake": fake})
    async with asgi_client(app) as client:
        answer = await client.post("/v1/embeddings", json={"model": "fake", "input": ["hello", "hi"]})
        listing = (await client.get("/v1/models")).json()
        one = (await client.get("/v1/models/fake")).json()
        chat_model = await client.get("/v1/models/alpha")
        log = app.state.gateway.request_log
        await log.flush()
        record = await log.get(answer.headers["x-request-id"])
        metrics = (await client.get("/metrics")).text
    assert answer.status_code == 200 and answer.headers["x-smallfleet-model"] == "fake"
    body = answer.json()
    assert [d["embedding"] for d in body["data"]] == [[5.0, 0.0, 1.0, 0.0], [2.0, 1.0, 1.0, 0.0]]
    assert body["usage"] == {"prompt_tokens": 7, "total_tokens": 7}
    assert [m["id"] for m in listing["data"]] == ["alpha", "fake"]
    assert one["embedding"] == {"dimensions": 4, "supports_dimensions": False, "max_input_tokens": 100}
    assert chat_model.status_code == 200 and chat_model.json()["id"] == "alpha"
    assert record is not None and (record.model, record.prompt_tokens, record.status) == ("fake", 7, 200)
    assert record.cost == pytest.approx(7e-5)
    assert 'smallfleet_embedding_requests_total{model="fake",status="200"} 1.0' in metrics
    assert 'smallfleet_embedding_inputs_total{model="fake"} 2.0' in metrics
    assert 'smallfleet_embedding_tokens_total{model="fake"} 7.0' in metrics
    assert 'smallfleet_embedding_cost_total{model="fake"} 7e-05' in metrics


async def test_unknown_and_chat_models_are_404_and_failures_are_accounted():
    config = fleet({"name": "fake", "backend": "static"}, {"name": "broken", "backend": "static"})
    embedders = {"fake": FakeEmbedder(), "broken": FakeEmbedder("broken", fail=True)}
    app = create_app(config, backends={"alpha": FakeBackend("alpha")}, embedders=embedders)
    async with asgi_client(app) as client:
        unknown = await client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
        chat = await client.post("/v1/embeddings", json={"model": "alpha", "input": "x"})
        refused = await client.post("/v1/embeddings", json={"model": "fake", "input": "x", "dimensions": 2})
        unknown_field = await client.post(
            "/v1/embeddings", content=b'{"model": "fake", "input": "x", "n": 2}'
        )
        broken = await client.post("/v1/embeddings", json={"model": "broken", "input": "x"})
        metrics = (await client.get("/metrics")).text
    for response in (unknown, chat):
        error = response.json()["error"]
        assert response.status_code == 404 and (error["code"], error["param"]) == ("model_not_found", "model")
    assert "'alpha' is a chat model; embedding models: fake, broken" in chat.json()["error"]["message"]
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "dimensions"
    assert unknown_field.status_code == 400 and unknown_field.json()["error"]["param"] == "n"
    assert embedders["fake"].calls == []  # nothing refused reached the model
    assert broken.status_code == 502 and broken.headers["x-smallfleet-model"] == "broken"
    assert 'smallfleet_embedding_requests_total{model="unknown",status="404"} 2.0' in metrics
    assert 'smallfleet_embedding_requests_total{model="fake",status="400"} 1.0' in metrics
    assert 'smallfleet_embedding_requests_total{model="unknown",status="400"} 1.0' in metrics  # unparsed
    assert 'smallfleet_embedding_requests_total{model="broken",status="502"} 1.0' in metrics


async def test_a_fleet_without_embedding_models_says_how_to_declare_them():
    app = create_app(fleet(), backends={"alpha": FakeBackend("alpha")})
    async with asgi_client(app) as client:
        answer = await client.post("/v1/embeddings", json={"model": "x", "input": "x"})
    assert answer.status_code == 404 and "under 'embeddings:'" in answer.json()["error"]["message"]


async def test_embeddings_need_a_key_and_count_against_its_limits():
    keys = KeyStore(["a:sk-a"], limits={"a": KeyLimits(rpm=3, tpm=5)})
    config = fleet({"name": "fake", "backend": "static"})
    app = create_app(
        config, backends={"alpha": FakeBackend("alpha")}, embedders={"fake": FakeEmbedder()}, api_keys=keys
    )
    request = {"model": "fake", "input": "hello"}
    async with asgi_client(app) as client:
        anonymous = await client.post("/v1/embeddings", json=request)
        first = await client.post("/v1/embeddings", json=request, headers=AUTH)
        second = await client.post("/v1/embeddings", json=request, headers=AUTH)  # over tpm now
        metrics = (await client.get("/metrics")).text
    assert anonymous.status_code == 401
    assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-tokens"] == "0"  # "hello": 5 tokens of 5
    assert second.status_code == 429 and "tokens per minute" in second.json()["error"]["message"]
    assert 'smallfleet_key_tokens_total{direction="input",key="a"} 5.0' in metrics
