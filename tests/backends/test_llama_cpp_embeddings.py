"""Embeddings from a real GGUF through llama.cpp, over loopback with the openai client.

No embedding GGUF installs offline (../shared/MODELS.md), so the model is the default fleet's
SmolLM2-135M chat model, mean-pooled (it declares no pooling of its own): an honest embedding
of what the model reads, if not a trained sentence embedding.
"""

from __future__ import annotations

import numpy as np
import openai
import pytest

from backends.fake import FakeBackend
from fleet.config import parse_fleet
from gateway.app import create_app
from tests.conftest import LiveServer

pytestmark = pytest.mark.slow
SIMILAR = ("The cat sat on the mat.", "A cat was sitting on the mat.")
UNRELATED = "Quarterly revenue grew by eight percent."


@pytest.fixture(scope="module")
def server():
    config = parse_fleet(
        {
            "models": [{"name": "alpha", "backend": "openai", "base_url": "http://127.0.0.1:9/v1"}],
            "embeddings": [
                {
                    "name": "smollm2-embed",
                    "backend": "llama_cpp",
                    "gguf": "packaged:smollm2-135m-instruct-q4_1",
                    "context_length": 64,
                    "price": {"input": 0.01},
                }
            ],
        }
    )
    with LiveServer(create_app(config, backends={"alpha": FakeBackend("alpha")})) as live:
        yield live


@pytest.fixture
def client(server, openai_client):
    return openai_client(server.url)


def test_a_chat_gguf_mean_pooled_embeds_similar_sentences_closer(client):
    answer = client.embeddings.create(model="smollm2-embed", input=[*SIMILAR, UNRELATED])
    vectors = np.array([item.embedding for item in answer.data])
    assert vectors.shape == (3, 576)  # SmolLM2-135M's hidden size
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.05
    assert 20 < answer.usage.prompt_tokens < 40  # three short sentences, each with its BOS
    listed = {m.id: m for m in client.models.list()}["smollm2-embed"]
    assert listed.model_extra["embedding"] == {  # type: ignore[index]
        "dimensions": 576,
        "supports_dimensions": False,
        "max_input_tokens": 64,
    }


def test_a_text_longer_than_the_context_and_fewer_dimensions_are_refused(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="smollm2-embed", input=["short", "word " * 100])
    assert caught.value.code == "context_length_exceeded"
    assert "input[1]" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="smollm2-embed", input="hello", dimensions=64)
    assert caught.value.body["param"] == "dimensions"  # type: ignore[index]
