"""The fleet's models and routes as an evaluation runs them: a backend plus what the tables
report about it.

They are built from the fleet config exactly as ``smallfleet serve`` builds them (same
validation, same backend factories: fleet/config/, fleet/members.py), without the resilience
wrappers: an evaluation measures the bare model.

Routes (plan_solve, diverse, cascade) are evaluated too, after the models, built by the same
function as ``serve`` builds them: from fresh backends of their member models, each in its
resilience wrapper as ``serve`` wraps it (a route's per-step timeouts and fallbacks are part of
what it is). A route answer's configured cost is its inner calls' cost at their own models'
prices; its memory is what its members hold together (they load when the route starts, and close
with it).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from backends.base import Backend
from backends.composite import Embed
from backends.features import Feature
from backends.types import Completion, GenerationRequest, Health, StreamChunk
from fleet.composites import StaticEmbedding, build_route, member_names
from fleet.config import (
    ConfigError,
    FleetConfig,
    LlamaCppModel,
    ModelConfig,
    RouteConfig,
    default_fleet,
    load_fleet,
)
from fleet.members import BACKEND_FACTORIES, with_resilience
from router._errors import DataError


@dataclass(frozen=True)
class EvalModel:
    """One fleet model to evaluate.

    ``price_input``/``price_output`` are the config's cost units per 1M tokens; ``in_process``
    says whether generation runs in this process (then its CPU time is the model's compute).
    A route (a composite of models) has no price of its own: ``member_prices`` holds its
    members' (input, output) prices by name, and each answer costs its inner calls at those.
    """

    name: str
    backend: Backend
    gguf: str | None = None
    sha256: str | None = None
    params: float | None = None
    quant: str | None = None
    price_input: float = 0.0
    price_output: float = 0.0
    in_process: bool = False
    member_prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    def config_cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (self.price_input * prompt_tokens + self.price_output * completion_tokens) / 1e6

    def completion_cost(self, completion: Completion) -> float:
        """The configured cost of an answer: a route's inner calls each at its own model's price."""
        trace = completion.trace
        if trace is None or not self.member_prices:
            return self.config_cost(completion.usage.prompt_tokens, completion.usage.completion_tokens)
        cost = 0.0
        for call in trace.calls:
            price_input, price_output = self.member_prices.get(call.model, (0.0, 0.0))
            usage = call.usage
            cost += (price_input * usage.prompt_tokens + price_output * usage.completion_tokens) / 1e6
        return cost


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

    @property
    def max_choices(self) -> int:
        return self.route.max_choices

    @property
    def available(self) -> bool:
        return self.route.available

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
    try:
        config = load_fleet(path) if path is not None else default_fleet()
    except ConfigError as exc:
        raise DataError(str(exc)) from None
    return eval_models(config)
