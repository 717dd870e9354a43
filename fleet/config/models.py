"""The ``models:`` section: chat models served in process (llama.cpp) or over HTTP, with their
resilience (retries, circuit breaker, stream timeouts) and the fleet-wide first-token deadline."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from backends import circuit, http1, llama_cpp, openai_http, resilience
from backends.features import Feature
from fleet.config.base import ModelName, Price, Strict, check_not_reserved


class RetryConfig(Strict):
    """Retries of failures before the first token (see docs/resilience.md)."""

    attempts: int = Field(
        default=resilience.DEFAULT_RETRY_ATTEMPTS, ge=1, le=10, description="tries in all; 1 never retries"
    )
    base_delay: float = Field(
        default=resilience.DEFAULT_RETRY_BASE_DELAY, ge=0, le=60, description="seconds before the first retry"
    )
    max_delay: float = Field(
        default=resilience.DEFAULT_RETRY_MAX_DELAY, ge=0, le=600, description="longest backoff, seconds"
    )
    jitter: float = Field(
        default=resilience.DEFAULT_RETRY_JITTER, ge=0, le=1, description="random fraction of each backoff"
    )
    max_retry_after: float = Field(
        default=resilience.DEFAULT_MAX_RETRY_AFTER, ge=0, le=3600,
        description="a longer Retry-After is not waited for",
    )


class CircuitBreakerConfig(Strict):
    enabled: bool = True
    failure_threshold: int = Field(
        default=circuit.DEFAULT_FAILURE_THRESHOLD, ge=1, le=10_000, description="failures in a row to open"
    )
    cool_down: float = Field(
        default=circuit.DEFAULT_COOL_DOWN, ge=0, le=86_400, description="seconds open before a probe"
    )


class StreamTimeoutsConfig(Strict):
    first_token: float = Field(
        default=resilience.DEFAULT_FIRST_TOKEN_TIMEOUT, gt=0, description="seconds to the first chunk"
    )
    idle: float = Field(
        default=resilience.DEFAULT_IDLE_TIMEOUT, gt=0, description="longest gap between two stream chunks"
    )
    total: float = Field(
        default=resilience.DEFAULT_TOTAL_TIMEOUT, gt=0, description="whole call, retries included"
    )


class ResilienceConfig(Strict):
    """Per model: retries, circuit breaker, stream timeouts; ``enabled: false`` turns all off."""

    enabled: bool = True
    retry: RetryConfig | None = Field(
        default=None,
        description=f"default: {resilience.DEFAULT_RETRY_ATTEMPTS} attempts for openai models, "
        "1 (no retries) for llama_cpp",
    )
    circuit_breaker: CircuitBreakerConfig = CircuitBreakerConfig()
    timeouts: StreamTimeoutsConfig = StreamTimeoutsConfig()
    deadline: bool | None = Field(
        default=None,
        description="held to the request's first-token deadline (deadline: in the fleet config); "
        "default: true for openai models, false for llama_cpp (in process a slow first token is a "
        "busy model, and abandoning it wastes its work)",
    )


class DeadlineConfig(Strict):
    """A request's time budget to its first token, across retries and fallbacks (docs/resilience.md)."""

    first_token: float | None = Field(
        default=resilience.DEFAULT_FIRST_TOKEN_DEADLINE,
        gt=0,
        le=86_400,
        description="seconds from arrival to the first token; null: none",
    )
    hand_over: float = Field(
        default=resilience.DEFAULT_HAND_OVER, gt=0, le=86_400,
        description="longest wait for one model's first token while another candidate could answer",
    )


NO_RETRIES = RetryConfig(attempts=1)


class _ModelBase(Strict):
    name: ModelName
    params: float | None = Field(default=None, gt=0, description="parameter count")
    quant: str | None = Field(default=None, description="GGUF type, e.g. Q4_K_M")
    price: Price = Price()
    resilience: ResilienceConfig = ResilienceConfig()
    fallbacks: list[ModelName] = Field(
        default_factory=list, description="models that answer, in order, when this one fails"
    )

    def retry_config(self) -> RetryConfig:
        """The configured retries, else this kind of backend's default."""
        return self.resilience.retry or RetryConfig()

    def held_to_deadline(self) -> bool:
        """Whether the request's first-token deadline may cut this model short (else its own timeouts)."""
        return self.resilience.deadline if self.resilience.deadline is not None else True

    @model_validator(mode="after")
    def _name_not_reserved(self) -> _ModelBase:
        check_not_reserved(self.name)
        return self


class LlamaCppModel(_ModelBase):
    backend: Literal["llama_cpp"]
    gguf: str = Field(min_length=1, description="a path, or packaged:<name>")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    context_length: int = Field(default=llama_cpp.DEFAULT_CONTEXT_LENGTH, gt=0, le=1 << 20)
    threads: int | None = Field(default=None, gt=0)
    max_queue: int = Field(default=llama_cpp.DEFAULT_MAX_QUEUE, ge=0, le=10_000)

    def retry_config(self) -> RetryConfig:
        # In process, a failure is a bug or a full queue: retrying it soon does not help.
        return self.resilience.retry or NO_RETRIES

    def held_to_deadline(self) -> bool:
        # In process, a slow first token is a busy model: it cannot hang, only queue.
        return bool(self.resilience.deadline)


class TimeoutsConfig(Strict):
    connect: float = Field(default=http1.DEFAULT_CONNECT_TIMEOUT, gt=0)
    read: float = Field(default=openai_http.DEFAULT_READ_TIMEOUT, gt=0)
    total: float = Field(default=openai_http.DEFAULT_TOTAL_TIMEOUT, gt=0)


class OpenAIModel(_ModelBase):
    backend: Literal["openai"]
    base_url: str = Field(pattern=r"^https?://", description="ends in /v1 for most servers")
    upstream_model: str | None = Field(default=None, description="model name on that server")
    api_key_env: str | None = Field(default=None, description="environment variable with its key")
    context_length: int | None = Field(default=None, gt=0)
    timeouts: TimeoutsConfig = TimeoutsConfig()
    max_connections: int = Field(default=openai_http.DEFAULT_MAX_CONNECTIONS, gt=0)
    features: list[Feature] | None = Field(
        default=None,
        description="what the server honours beyond text (default: all; docs/api.md): requests using "
        "anything else are refused, or routed elsewhere by auto",
    )


ModelConfig = Annotated[LlamaCppModel | OpenAIModel, Field(discriminator="backend")]
