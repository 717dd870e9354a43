"""The fleet of `smallfleet fleet eval`, built from the gateway's validated config.

router/ cannot import gateway/, so `router.cli.add_commands(..., fleet_loader=load_eval_models)`
is how the gateway hands it models built exactly as `serve` builds them (same validation, same
backend factories), without the resilience wrappers: an evaluation measures the bare model.

Routes (plan_solve, diverse) are evaluated too, after the models, built by the same function as
`serve` builds them: from fresh backends of their member models, each in its resilience wrapper
as `serve` wraps it (a route's per-step timeouts and fallbacks are part of what it is). A route
answer's configured cost is its inner calls' cost at their own models' prices; its memory is what
its members hold together (they load when the route starts, and close with it).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from backends.base import Backend
from backends.composite import Embed
from backends.features import Feature
from backends.types import Completion, GenerationRequest, Health, StreamChunk
from fleet.models import EvalModel
from gateway.composites import StaticEmbedding, build_route, member_names
from gateway.config import FleetConfig, LlamaCppModel, ModelConfig, RouteConfig, default_fleet, load_fleet
from gateway.fleet import BACKEND_FACTORIES, with_resilience


def _eval_model(model: ModelConfig) -> EvalModel:
    llama = model if isinstance(model, LlamaCppModel) else None
    return EvalModel(
        name=model.name,
        backend=BACKEND_FACTORIES[model.backend](model),
        gguf=llama.gguf if llama else None,
        sha256=llama.sha256 if llama else None,
        params=model.params,
        quant=model.quant,
        price_input=model.price.input,
        price_output=model.price.output,
        in_process=llama is not None,
    )


class RouteWithMembers:
    """A route's backend that also starts and closes its members (under `serve` the fleet does)."""

    def __init__(self, route: Backend, members: Sequence[Backend]) -> None:
        self.route = route
        self.members = tuple(members)
        self.name = route.name

    @property
    def context_length(self) -> int | None:
        return self.route.context_length

    @property
    def features(self) -> frozenset[Feature]:
        return self.route.features

    async def start(self) -> None:
        for member in self.members:
            await member.start()

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()

    async def health(self) -> Health:
        return await self.route.health()

    async def chat(self, request: GenerationRequest) -> Completion:
        return await self.route.chat(request)

    def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        return self.route.stream_chat(request)


def route_eval_model(config: FleetConfig, route: RouteConfig, embed: Embed | None = None) -> EvalModel:
    """An evaluable route, with fresh member backends of its own."""
    models = {model.name: model for model in config.models}
    parts = [models[name] for name in member_names(route)]
    members = {part.name: with_resilience(BACKEND_FACTORIES[part.backend](part), part) for part in parts}
    backend = build_route(route, members, embed or StaticEmbedding())
    params = [part.params for part in parts]
    quants = list(dict.fromkeys(part.quant for part in parts if part.quant))
    return EvalModel(
        name=route.name,
        backend=RouteWithMembers(backend, list(members.values())),
        params=math.fsum(p for p in params if p is not None) if None not in params else None,
        quant="+".join(quants) or None,
        in_process=all(isinstance(part, LlamaCppModel) for part in parts),
        member_prices={part.name: (part.price.input, part.price.output) for part in parts},
    )


def eval_models(config: FleetConfig) -> list[EvalModel]:
    """One :class:`EvalModel` per llama_cpp or openai model of ``config``, then one per route."""
    models = [_eval_model(model) for model in config.models if model.backend in BACKEND_FACTORIES]
    embed = StaticEmbedding() if config.routes else None
    return models + [route_eval_model(config, route, embed) for route in config.routes]


def load_eval_models(path: Path | None) -> list[EvalModel]:
    """The evaluable models and routes of the fleet at ``path`` (the embedded default fleet when None)."""
    return eval_models(load_fleet(path) if path is not None else default_fleet())
