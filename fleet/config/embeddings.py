"""The ``embeddings:`` section: embedding models served at /v1/embeddings (backends/embeddings.py),
named apart from the chat models and the routes."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from backends import embeddings
from fleet.config.base import ModelName, Strict, check_not_reserved
from fleet.config.models import TimeoutsConfig

MAX_EMBEDDING_INPUTS = 2048  # texts in one request, as OpenAI allows


class EmbeddingPrice(Strict):
    """Cost units per 1M input tokens (an embedding has no output tokens)."""

    input: float = Field(default=0.0, ge=0)

    def cost(self, prompt_tokens: int) -> float:
        return self.input * prompt_tokens / 1e6


class _EmbeddingBase(Strict):
    name: ModelName
    price: EmbeddingPrice = EmbeddingPrice()

    @model_validator(mode="after")
    def _name_not_reserved(self) -> _EmbeddingBase:
        check_not_reserved(self.name)
        return self


class StaticEmbeddingModel(_EmbeddingBase):
    """The router's shipped static sentence embedding (model2vec; no torch)."""

    backend: Literal["static"]
    embedding: str | None = Field(
        default=None, min_length=1, description="one under router/embedding/; default: the router's"
    )

    @field_validator("embedding")
    @classmethod
    def _shipped(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from router.embedding import EMBEDDING_ROOT

        shipped = sorted(p.name for p in EMBEDDING_ROOT.iterdir() if (p / "model.safetensors").is_file())
        if value not in shipped:
            raise ValueError(f"no shipped static embedding {value!r}; shipped: {', '.join(shipped)}")
        return value


class LlamaCppEmbeddingModel(_EmbeddingBase):
    """A GGUF through llama-cpp-python with ``embedding=True``."""

    backend: Literal["llama_cpp"]
    gguf: str = Field(min_length=1, description="a path, or packaged:<name>")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    context_length: int = Field(
        default=embeddings.DEFAULT_LLAMA_CONTEXT, gt=0, le=1 << 20, description="longest text, in tokens"
    )
    pooling: embeddings.Pooling = Field(
        default=embeddings.DEFAULT_POOLING,
        description="auto: the GGUF's own, or mean for a GGUF that declares none"
    )
    matryoshka: bool = Field(default=False, description="trained so fewer dimensions may be asked for")
    threads: int | None = Field(default=None, gt=0)
    max_queue: int = Field(default=embeddings.DEFAULT_MAX_QUEUE, ge=0, le=10_000)


class OpenAIEmbeddingModel(_EmbeddingBase):
    """A remote OpenAI-compatible ``/v1/embeddings``."""

    backend: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://", description="ends in /v1 for most servers")
    upstream_model: str | None = Field(default=None, description="model name on that server")
    api_key_env: str | None = Field(default=None, description="environment variable with its key")
    dimensions: int | None = Field(default=None, gt=0, description="the model's own number of dimensions")
    matryoshka: bool = Field(default=False, description="pass a request's dimensions on to the server")
    timeouts: TimeoutsConfig = TimeoutsConfig()
    max_connections: int = Field(default=embeddings.DEFAULT_MAX_CONNECTIONS, gt=0)


EmbeddingModelConfig = Annotated[
    StaticEmbeddingModel | LlamaCppEmbeddingModel | OpenAIEmbeddingModel, Field(discriminator="backend")
]
