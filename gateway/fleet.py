"""The served fleet: each configured model's backend plus what the gateway needs to know of it."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from backends.base import Backend
from backends.errors import ModelNotFound
from gateway.config import FleetConfig, LlamaCppModel, ModelConfig, OpenAIModel, Price


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
    from backends.openai_http import OpenAIHTTPBackend, Timeouts

    assert isinstance(config, OpenAIModel)
    api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
    return OpenAIHTTPBackend(
        config.name,
        config.base_url,
        upstream_model=config.upstream_model,
        api_key=api_key,
        context_length=config.context_length,
        timeouts=Timeouts(**config.timeouts.model_dump()),
        max_connections=config.max_connections,
    )


BACKEND_FACTORIES: dict[str, Callable[[ModelConfig], Backend]] = {
    "llama_cpp": _llama_cpp,
    "openai": _openai,
}


@dataclass(frozen=True, slots=True)
class FleetMember:
    name: str
    backend: Backend
    price: Price
    owned_by: str

    @property
    def context_length(self) -> int | None:
        return self.backend.context_length


class Fleet:
    """Name -> member. Owns its backends' lifecycle (``start`` / ``aclose``)."""

    def __init__(self, members: Mapping[str, FleetMember]) -> None:
        self._members = dict(members)

    @classmethod
    def from_config(cls, config: FleetConfig, backends: Mapping[str, Backend] | None = None) -> Fleet:
        """Build every model's backend; ``backends`` overrides some by name (tests)."""
        members = {}
        for model in config.models:
            backend = (backends or {}).get(model.name) or BACKEND_FACTORIES[model.backend](model)
            members[model.name] = FleetMember(model.name, backend, model.price, model.backend)
        return cls(members)

    def __contains__(self, name: object) -> bool:
        return name in self._members

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._members.values())

    def names(self) -> list[str]:
        return list(self._members)

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
