"""Routes of the fleet config built into composite backends (backends/composite).

A route's members are the fleet's own backends, each already wrapped in its resilience
(retries, timeouts, circuit breaker), so a route's inner calls behave as direct calls to those
models would. ``smallfleet serve`` and ``smallfleet fleet eval`` both build routes here.

The diverse route's dedupe embeds samples with the router's shipped static embedding
(router/embedding, no torch), loaded on first use in the thread that asks for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from backends.base import Backend
from backends.composite import (
    CascadeBackend,
    CascadeSettings,
    DiverseBackend,
    DiverseSettings,
    Embed,
    PlanSolveBackend,
    PlanSolveSettings,
    Sampler,
)
from fleet.config import CascadeRoute, DiverseRoute, PlanSolveRoute, RouteConfig


class StaticEmbedding:
    """The router's static sentence embedding as a plain ``texts -> vectors`` callable.

    Loaded once, on first call (which the diverse backend makes off the event loop).
    """

    def __init__(self, name: str | None = None) -> None:
        self._name = name
        self._embedder: Any = None
        self._lock = threading.Lock()

    def __call__(self, texts: list[str]) -> Any:
        with self._lock:
            if self._embedder is None:
                from router.embedding import DEFAULT_EMBEDDING, StaticEncoder, embedding_path

                self._embedder = StaticEncoder(embedding_path(self._name or DEFAULT_EMBEDDING))
        return self._embedder.encode(texts)


def _plan_solve(route: RouteConfig, members: Mapping[str, Backend], embed: Embed | None) -> Backend:
    assert isinstance(route, PlanSolveRoute)
    optional = {
        key: value
        for key, value in (("planner_prompt", route.planner_prompt), ("solver_prompt", route.solver_prompt))
        if value is not None
    }
    settings = PlanSolveSettings(
        plan_max_tokens=route.plan_max_tokens,
        max_steps=route.max_steps,
        planner_temperature=route.planner_temperature,
        planner_timeout=route.timeouts.planner,
        solver_timeout=route.timeouts.solver,
        **optional,
    )
    return PlanSolveBackend(route.name, members[route.planner], members[route.solver], settings)


def samplers(route: DiverseRoute, members: Mapping[str, Backend]) -> list[Sampler]:
    """One sampler per sample, in the order the config lists them."""
    drawn = []
    for sample in route.samples:
        for i in range(sample.count):
            seed = None if sample.seed is None else sample.seed + i
            drawn.append(Sampler(members[sample.model], sample.temperature, sample.top_p, seed))
    return drawn


def _diverse(route: RouteConfig, members: Mapping[str, Backend], embed: Embed | None) -> Backend:
    assert isinstance(route, DiverseRoute)
    settings = DiverseSettings(
        dedupe_threshold=route.dedupe_threshold,
        sample_timeout=route.timeout,
        count_duplicates=route.count_duplicates,
        stop_when_agreed=route.stop_when_agreed,
    )
    return DiverseBackend(route.name, samplers(route, members), embed, settings)


def _cascade(route: RouteConfig, members: Mapping[str, Backend], embed: Embed | None) -> Backend:
    assert isinstance(route, CascadeRoute)
    settings = CascadeSettings(threshold=route.threshold, signal=route.signal, step_timeout=route.timeout)
    return CascadeBackend(route.name, members[route.first], members[route.then], settings)


ROUTE_FACTORIES: dict[str, Callable[[RouteConfig, Mapping[str, Backend], Embed | None], Backend]] = {
    "plan_solve": _plan_solve,
    "diverse": _diverse,
    "cascade": _cascade,
}


def build_route(route: RouteConfig, members: Mapping[str, Backend], embed: Embed | None) -> Backend:
    """The composite backend of ``route``; ``members`` maps model names to their backends."""
    return ROUTE_FACTORIES[route.type](route, members, embed)


def member_names(route: RouteConfig) -> Sequence[str]:
    """The distinct models a route is built from, in the order the config names them."""
    return list(dict.fromkeys(name for _, name in route.member_names()))
