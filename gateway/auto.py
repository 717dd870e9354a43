"""``model: "auto"``: the router picks a fleet member for each request.

``auto`` uses the artifact's default alpha; ``auto:quality``, ``auto:balanced``
and ``auto:cheap`` pick a preset, and an ``x-smallfleet-alpha`` header (0..1)
overrides both. Only fleet members the artifact knows are candidates; an
artifact that knows none of them is refused at start.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor

from backends.errors import RequestError
from fleet.config import ConfigError
from router import Router, RoutingDecision

AUTO = "auto"
DEFAULT_PRESETS = {"quality": 1.0, "balanced": 0.7, "cheap": 0.4}
ALPHA_HEADER = "x-smallfleet-alpha"


def is_auto(model: str) -> bool:
    return model == AUTO or model.startswith(AUTO + ":")


class FleetRouter:
    """A router artifact bound to the fleet's models."""

    def __init__(self, router: Router, candidates: Sequence[str]) -> None:
        self.router = router
        self.candidates = tuple(candidates)
        self.version: str = router.version
        self.presets = {**DEFAULT_PRESETS, **router.presets}
        self.routes = (AUTO, *(f"{AUTO}:{name}" for name in self.presets))
        # Routing is CPU work: it runs off the event loop, one decision at a time.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="router")

    @classmethod
    def load(cls, artifact: str, fleet_models: Sequence[str]) -> FleetRouter:
        from router import RouterError, load_router

        try:
            router = load_router(artifact)
        except RouterError as exc:
            raise ConfigError(f"router.artifact: {exc}") from None
        candidates = [name for name in fleet_models if name in set(router.models)]
        if not candidates:
            raise ConfigError(
                f"router.artifact: artifact {artifact} knows none of the fleet's models "
                f"({', '.join(fleet_models)}); it knows {', '.join(router.models)}"
            )
        return cls(router, candidates)

    def alpha_for(self, model: str, header: str | None) -> float | None:
        """The alpha a request asks for (None: the artifact's default)."""
        if header is not None:
            try:
                alpha = float(header)
            except ValueError:
                alpha = math.nan
            if not 0.0 <= alpha <= 1.0:
                raise RequestError(f"{ALPHA_HEADER} must be a number from 0 to 1, got {header!r}")
            return alpha
        if model == AUTO:
            return None
        preset = model.removeprefix(AUTO + ":")
        if preset not in self.presets:
            raise RequestError(
                f"unknown routing mode {model!r}; use one of {', '.join(self.routes)}", param="model"
            )
        return self.presets[preset]

    async def decide(
        self, question: str, alpha: float | None, available: Collection[str] | None = None
    ) -> RoutingDecision:
        """Route ``question``; ``available`` narrows the candidates (e.g. skip open circuits)."""
        candidates = self.candidates
        if available is not None:
            candidates = tuple(c for c in self.candidates if c in available) or self.candidates
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self.router.route(question, alpha=alpha, candidates=candidates)
        )

    def close(self) -> None:
        # Decisions already queued still run: a reload must not drop requests in flight.
        self._executor.shutdown(wait=False, cancel_futures=False)
