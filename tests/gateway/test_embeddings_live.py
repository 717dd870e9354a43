"""POST /v1/embeddings over real loopback HTTP, driven by the official openai client: the
router's static embedding served by one gateway, and the same model served by a second gateway
through its remote (``backend: openai``) embedding engine."""

from __future__ import annotations

import base64

import httpx
import numpy as np
import openai
import pytest

from backends.fake import FakeBackend
from fleet.config import parse_fleet
from gateway.app import create_app

CHAT_MODEL = {"name": "alpha", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"}
SIMILAR = ("How do I reset my password?", "I forgot my password and cannot log in.")
UNRELATED = "The recipe needs two cups of flour and an egg."


def _fleet(*embeddings: dict):
    return parse_fleet({"models": [CHAT_MODEL], "embeddings": list(embeddings)})


@pytest.fixture
def upstream(live_server):
    """A gateway serving the router's static embedding as ``minilm-static``."""
    config = _fleet({"name": "minilm-static", "backend": "static", "price": {"input": 0.02}})
    return live_server(create_app(config, backends={"alpha": FakeBackend("alpha")}))


@pytest.fixture
def downstream(live_server, upstream):
    """A gateway whose embedding models live on ``upstream``: one passes ``dimensions`` on."""
    remote = {"backend": "openai", "base_url": upstream.url + "/v1", "upstream_model": "minilm-static"}
    config = _fleet(
        {"name": "remote", "dimensions": 256, "matryoshka": True, **remote},
        {"name": "remote-fixed", "dimensions": 256, **remote},
    )
    return live_server(create_app(config, backends={"alpha": FakeBackend("alpha")}))


def _vectors(answer) -> np.ndarray:
    return np.array([item.embedding for item in answer.data])


def test_float_and_base64_answers_agree_and_similar_sentences_are_closer(upstream, openai_client):
    client = openai_client(upstream.url)
    floats = client.embeddings.create(
        model="minilm-static", input=[*SIMILAR, UNRELATED], encoding_format="float"
    )
    default = client.embeddings.create(
        model="minilm-static", input=[*SIMILAR, UNRELATED]
    )  # base64 on the wire
    assert floats.model == "minilm-static" and [d.index for d in floats.data] == [0, 1, 2]
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    vectors = _vectors(floats)
    assert vectors.shape == (3, 256)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(_vectors(default), vectors, rtol=1e-6, atol=1e-7)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2, (similar, unrelated)


def test_base64_on_the_wire_is_little_endian_float32(upstream):
    request = {"model": "minilm-static", "input": "hello world", "encoding_format": "base64"}
    body = httpx.post(upstream.url + "/v1/embeddings", json=request).json()
    vector = np.frombuffer(base64.b64decode(body["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (256,) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_a_single_string_and_fewer_dimensions(upstream, openai_client):
    client = openai_client(upstream.url)
    whole = _vectors(
        client.embeddings.create(model="minilm-static", input=SIMILAR[0], encoding_format="float")
    )
    cut = _vectors(client.embeddings.create(model="minilm-static", input=SIMILAR[0], dimensions=64))
    assert whole.shape == (1, 256) and cut.shape == (1, 64)
    np.testing.assert_allclose(cut[0], whole[0, :64] / np.linalg.norm(whole[0, :64]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"dimensions": 300}, "dimensions"),
        ({"extra_body": {"truncate": True}}, "truncate"),
        ({"input": [[101, 2023]]}, "input"),
        ({"input": ""}, "input"),
    ],
)
def test_refusals_are_openai_400s_naming_the_field(upstream, openai_client, options, param):
    client = openai_client(upstream.url)
    request = {"model": "minilm-static", "input": "hello", **options}
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(**request)
    assert caught.value.status_code == 400
    assert caught.value.body["param"] == param  # type: ignore[index]


def test_an_unknown_model_is_404(upstream, openai_client):
    client = openai_client(upstream.url)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="alpha", input="hello")  # a chat model


def test_the_models_list_shows_the_embedding_model(upstream, openai_client):
    models = {m.id: m for m in openai_client(upstream.url).models.list()}
    assert set(models) == {"alpha", "minilm-static"}
    assert models["minilm-static"].model_extra["embedding"]["dimensions"] == 256  # type: ignore[index]


def test_a_remote_embedding_model_serves_the_upstreams_vectors(upstream, downstream, openai_client):
    direct = openai_client(upstream.url).embeddings.create(model="minilm-static", input=list(SIMILAR))
    client = openai_client(downstream.url)
    remote = client.embeddings.create(model="remote", input=list(SIMILAR))
    assert remote.model == "remote" and remote.usage.prompt_tokens == direct.usage.prompt_tokens
    np.testing.assert_allclose(_vectors(remote), _vectors(direct), rtol=1e-6, atol=1e-7)
    cut = client.embeddings.create(model="remote", input=list(SIMILAR), dimensions=32)  # passed on
    assert _vectors(cut).shape == (2, 32)
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="remote-fixed", input="hello", dimensions=32)
    assert caught.value.body["param"] == "dimensions"  # type: ignore[index]
