"""The fleet's embedding models (``embeddings:`` in the fleet config) built as embedders, the way
fleet/members.py builds its chat models as backends."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from backends.embeddings import Embedder
from fleet.config import (
    EmbeddingModelConfig,
    FleetConfig,
    LlamaCppEmbeddingModel,
    OpenAIEmbeddingModel,
    StaticEmbeddingModel,
)
from fleet.members import model_api_key


def _static(config: EmbeddingModelConfig) -> Embedder:
    from backends.embeddings import StaticEmbedder
    from router.embedding import DEFAULT_EMBEDDING, embedding_path

    assert isinstance(config, StaticEmbeddingModel)
    return StaticEmbedder(config.name, embedding_path(config.embedding or DEFAULT_EMBEDDING))


def _llama_cpp(config: EmbeddingModelConfig) -> Embedder:
    from backends.embeddings import LlamaCppEmbedder

    assert isinstance(config, LlamaCppEmbeddingModel)
    return LlamaCppEmbedder(
        config.name,
        config.gguf,
        sha256=config.sha256,
        context_length=config.context_length,
        pooling=config.pooling,
        matryoshka=config.matryoshka,
        threads=config.threads,
        max_queue=config.max_queue,
    )


def _openai(config: EmbeddingModelConfig) -> Embedder:
    from backends.embeddings import OpenAIEmbedder
    from backends.openai_http import Timeouts

    assert isinstance(config, OpenAIEmbeddingModel)
    return OpenAIEmbedder(
        config.name,
        config.base_url,
        upstream_model=config.upstream_model,
        api_key=model_api_key(config.api_key_env),
        dimensions=config.dimensions,
        matryoshka=config.matryoshka,
        timeouts=Timeouts(**config.timeouts.model_dump()),
        max_connections=config.max_connections,
    )


EMBEDDER_FACTORIES: dict[str, Callable[[EmbeddingModelConfig], Embedder]] = {
    "static": _static,
    "llama_cpp": _llama_cpp,
    "openai": _openai,
}


def build_embedders(
    config: FleetConfig, overrides: Mapping[str, Embedder] | None = None
) -> dict[str, Embedder]:
    """Each embedding model of ``config`` by name; ``overrides`` replaces some by name (tests)."""
    return {
        model.name: (overrides or {}).get(model.name) or EMBEDDER_FACTORIES[model.backend](model)
        for model in config.embeddings
    }
