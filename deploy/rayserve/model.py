"""One fleet model in a Ray Serve replica.

:class:`ModelServer` exposes a backend's methods to Ray handles; it knows nothing of Ray,
so tests drive it with any backend. :class:`ModelDeployment` is what Ray runs: it builds
the model's backend from its fleet config (llama.cpp in-process, loading the GGUF in its
async constructor), and closes it when Serve stops the replica (after Serve has let running
requests finish: ``graceful_shutdown_*`` options).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from backends.base import Backend
from backends.errors import BackendUnavailable
from backends.types import Completion, GenerationRequest, Health, StreamChunk


class ModelServer:
    """A backend's methods as a Ray deployment's methods (plain values in, plain values out)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    async def describe(self) -> dict[str, Any]:
        return {
            "name": self.backend.name,
            "context_length": self.backend.context_length,
            "features": sorted(self.backend.features),
        }

    async def chat(self, request: GenerationRequest) -> Completion:
        return await self.backend.chat(request)

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        stream = self.backend.stream_chat(request)
        try:
            async for chunk in stream:
                yield chunk
        finally:  # cancelled by the caller, or done: either way stop the generation now
            await stream.aclose()  # type: ignore[attr-defined]

    async def health(self) -> Health:
        return await self.backend.health()

    async def check_health(self) -> None:
        """Ray Serve's health-check hook: raising marks the replica unhealthy and replaces it."""
        health = await self.backend.health()
        if not health.ok:
            raise BackendUnavailable(f"model {self.backend.name!r} is unhealthy: {health.detail}")


class ModelDeployment(ModelServer):
    """The class Ray Serve deploys once per fleet model (see ``deploy.rayserve.app``)."""

    async def __init__(self, model: dict[str, Any]) -> None:  # type: ignore[misc]
        from fleet.config import FleetConfig
        from fleet.members import BACKEND_FACTORIES

        config = FleetConfig.model_validate({"models": [model]}).models[0]
        super().__init__(BACKEND_FACTORIES[config.backend](config))
        await self.backend.start()

    async def __del__(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            await backend.aclose()
