"""The served fleet: every model's and route's backend, and what the gateway needs to know of it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass

from backends.base import Backend
from backends.circuit import CircuitBreaker, CircuitBreakerPolicy, CircuitState
from backends.composite import Embed
from backends.errors import ModelNotFound
from backends.features import Feature
from backends.resilience import ResilientBackend, RetryPolicy, StreamTimeouts
from backends.types import Completion, GenerationRequest, StreamChunk
from fleet.composites import StaticEmbedding, build_route
from fleet.config import FleetConfig, LlamaCppModel, ModelConfig, OpenAIModel, Price


def model_api_key(variable: str | None) -> str | None:
    """The key a model's ``api_key_env`` names, from the environment (None: no variable, or unset).
    The one place a fleet config's variables are read, for chat and embedding models alike."""
    return os.environ.get(variable) if variable else None


def _llama_cpp(config: ModelConfig) -> Backend:
    from backends.llama_cpp import LlamaCppBackend

    assert isinstance(config, LlamaCppModel)
    return LlamaCppBackend(
        config.name,
        config.gguf,
        sha256=config.sha256,
        context_length=config.context_length,
        threads=config.threads,
        max_queue=config.max_queue,
    )


def _openai(config: ModelConfig) -> Backend:
    from backends.openai_http import REMOTE_FEATURES, OpenAIHTTPBackend, Timeouts

    assert isinstance(config, OpenAIModel)
    return OpenAIHTTPBackend(
        config.name,
        config.base_url,
        upstream_model=config.upstream_model,
        api_key=model_api_key(config.api_key_env),
        context_length=config.context_length,
        timeouts=Timeouts(**config.timeouts.model_dump()),
        max_connections=config.max_connections,
        features=REMOTE_FEATURES if config.features is None else frozenset(config.features),
    )


BACKEND_FACTORIES: dict[str, Callable[[ModelConfig], Backend]] = {
    "llama_cpp": _llama_cpp,
    "openai": _openai,
}


RetryObserver = Callable[[str, str], None]  # (model, reason) for each retry: the metrics


def with_resilience(backend: Backend, config: ModelConfig, on_retry: RetryObserver | None = None) -> Backend:
    """``backend`` wrapped in the retries, timeouts and circuit breaker ``config`` asks for."""
    settings = config.resilience
    if not settings.enabled or isinstance(backend, ResilientBackend):
        return backend
    breaker_settings = settings.circuit_breaker
    breaker = None
    if breaker_settings.enabled:
        breaker = CircuitBreaker(
            CircuitBreakerPolicy(breaker_settings.failure_threshold, breaker_settings.cool_down)
        )
    return ResilientBackend(
        backend,
        retry=RetryPolicy(**config.retry_config().model_dump()),
        breaker=breaker,
        timeouts=StreamTimeouts(**settings.timeouts.model_dump()),
        on_retry=on_retry,
    )


@dataclass(frozen=True, slots=True)
class FleetMember:
    """A model, or a route (a composite of models; ``owned_by`` is then its type, and its cost
    is its inner calls' cost at their own models' prices)."""

    name: str
    backend: Backend
    price: Price
    owned_by: str  # llama_cpp, openai, or a route's type (plan_solve, diverse)
    fallbacks: tuple[str, ...] = ()  # from the fleet config: who answers, in order, when this one fails
    composite: bool = False
    deadline: bool = False  # held to the request's first-token deadline (a model with resilience on)
    in_process: bool = False  # generates in this process: its health (queue depth) is free to read

    def chat(self, request: GenerationRequest, first_token_by: float | None = None) -> Awaitable[Completion]:
        """The whole answer; ``first_token_by`` (``time.monotonic()``) is this member's share of
        the request's first-token deadline, for a member held to it (else ignored)."""
        if first_token_by is not None and self.deadline and isinstance(self.backend, ResilientBackend):
            return self.backend.chat(request, first_token_by=first_token_by)
        return self.backend.chat(request)

    def stream_chat(
        self, request: GenerationRequest, first_token_by: float | None = None
    ) -> AsyncIterator[StreamChunk]:
        """The answer's chunks; ``first_token_by`` as for :meth:`chat`."""
        if first_token_by is not None and self.deadline and isinstance(self.backend, ResilientBackend):
            return self.backend.stream_chat(request, first_token_by=first_token_by)
        return self.backend.stream_chat(request)

    @property
    def max_choices(self) -> int:
        """Choices one request may ask for (``n``): more than one only from a diverse route."""
        return self.backend.max_choices

    @property
    def context_length(self) -> int | None:
        return self.backend.context_length

    @property
    def features(self) -> frozenset[Feature]:
        """What it honours beyond text; read live (a llama.cpp model learns TOOLS when it loads)."""
        return self.backend.features

    @property
    def circuit_state(self) -> CircuitState:
        """``closed`` for a backend without a breaker."""
        backend = self.backend
        return backend.circuit_state if isinstance(backend, ResilientBackend) else CircuitState.CLOSED

    @property
    def available(self) -> bool:
        """False while the member's circuit is open: routers and fallbacks should skip it."""
        return self.backend.available


class Fleet:
    """Name -> member. Owns its backends' lifecycle (``start`` / ``aclose``)."""

    def __init__(self, members: Mapping[str, FleetMember]) -> None:
        self._members = dict(members)

    @classmethod
    def from_config(
        cls,
        config: FleetConfig,
        backends: Mapping[str, Backend] | None = None,
        *,
        resilience: bool = True,
        embed: Embed | None = None,
        on_retry: RetryObserver | None = None,
    ) -> Fleet:
        """Build every model's backend, wrapped as its ``resilience`` section says (unless
        ``resilience=False``), then every route's from those; ``backends`` overrides some models
        by name (tests), and those are wrapped too. ``embed`` is the diverse routes' dedupe
        embedding (default: the router's static embedding, loaded on first use). ``on_retry`` is
        told of every retry (the metrics)."""
        members = {}
        for model in config.models:
            backend = (backends or {}).get(model.name) or BACKEND_FACTORIES[model.backend](model)
            if resilience:
                backend = with_resilience(backend, model, on_retry)
            fallbacks = tuple(model.fallbacks)
            deadline = isinstance(backend, ResilientBackend) and model.held_to_deadline()
            members[model.name] = FleetMember(
                model.name,
                backend,
                model.price,
                model.backend,
                fallbacks,
                deadline=deadline,
                in_process=isinstance(model, LlamaCppModel),
            )
        if config.routes:
            models = {name: member.backend for name, member in members.items()}
            embed = embed or StaticEmbedding()
            for route in config.routes:
                composite = build_route(route, models, embed)
                members[route.name] = FleetMember(route.name, composite, Price(), route.type, composite=True)
        return cls(members)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._members.values())

    def names(self) -> list[str]:
        return list(self._members)

    def circuit_states(self) -> dict[str, str]:
        """Each model's circuit state (``closed`` without a breaker); routes have none of their own."""
        return {m.name: m.circuit_state.value for m in self._members.values() if not m.composite}

    def get(self, name: str) -> FleetMember:
        member = self._members.get(name)
        if member is None:
            known = ", ".join(self._members)
            raise ModelNotFound(f"model {name!r} is not served here; available: {known}", param="model")
        return member

    async def start(self) -> None:
        await asyncio.gather(*(m.backend.start() for m in self._members.values()))

    async def aclose(self) -> None:
        await asyncio.gather(*(m.backend.aclose() for m in self._members.values()), return_exceptions=True)
