"""Choosing who answers a request: the member it names, or the router's pick for ``auto``.

The choice honours what the request needs: a named member must have every feature the request
uses (else a 400 naming the field), must hold ``max_tokens`` in its context and give ``n``
choices; ``auto`` chooses among the members able to answer, skipping open circuits while an
able one is closed, and keeps the router's runners-up as fallbacks.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from backends.errors import ContextLengthExceeded, ModelNotFound, RequestError, UnsupportedParameter
from backends.features import Feature
from fleet.members import Fleet, FleetMember
from gateway.answer import Answer, Ask, Route
from gateway.auto import FleetRouter, is_auto
from gateway.metrics import GatewayMetrics

OUT_OF_DISTRIBUTION = "ood"
MAX_FALLBACKS = 2


class Chooser:
    """Turns an :class:`Ask` into an :class:`Answer`: its member, route and fallbacks."""

    def __init__(self, fleet: Fleet, metrics: GatewayMetrics) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.router: FleetRouter | None = None  # swapped whole by a reload

    async def choose(self, ask: Ask) -> Answer:
        """Who answers ``ask``; not yet checked that it can (see :meth:`check`)."""
        route, member, fallbacks = await self._pick(ask)
        return Answer(
            ask.request_id,
            route,
            member,
            ask.question,
            ask.started,
            fallbacks,
            ask.api_key_id,
            n=ask.n,
            details=ask.details,
            needs=frozenset(ask.needs),
        )

    @staticmethod
    def check(answer: Answer, max_tokens: int | None) -> None:
        """Refuse what the chosen member cannot give: a ``max_tokens`` past its context, or
        more choices than it draws."""
        check_token_limit(answer.member, max_tokens)
        check_choices(answer.member, answer.n)

    async def _pick(self, ask: Ask) -> tuple[Route, FleetMember, tuple[str, ...]]:
        needs, model = ask.needs, ask.model
        if not is_auto(model):
            member = self.fleet.get(model)
            missing = [param for feature, param in needs.items() if feature not in member.features]
            if missing:
                raise UnsupportedParameter(
                    f"model {model!r} does not support {missing[0]!r}{_capable_hint(self.fleet, needs)}",
                    param=missing[0],
                )
            return Route(model), member, member.fallbacks
        router = self.router  # one reference: a reload mid-request does not mix versions
        if router is None:
            raise ModelNotFound(
                f"model {model!r} needs a router artifact (router.artifact in the fleet config)",
                param="model",
            )
        alpha = router.alpha_for(model, ask.alpha_header)
        started = time.perf_counter()
        able = self._able(router, ask)
        pool = {m.name for m in self.fleet if m.name in able and m.max_choices >= ask.n} or able
        available = {name for name in pool if self.fleet.get(name).available} or pool
        decision = await router.decide(ask.question, alpha, available)
        cluster = OUT_OF_DISTRIBUTION if decision.out_of_distribution else str(decision.cluster)
        self.metrics.observe_decision(
            route=model,
            model=decision.model,
            cluster=cluster,
            out_of_distribution=decision.out_of_distribution,
            seconds=time.perf_counter() - started,
        )
        predicted = decision.success
        success = tuple((name, predicted[name]) for name in decision.ranked if name in predicted)
        route = Route(model, cluster, decision.alpha, decision.artifact_version, success)
        runners_up = tuple(name for name in decision.ranked[1:] if name in able)[:MAX_FALLBACKS]
        return route, self.fleet.get(decision.model), runners_up

    def _able(self, router: FleetRouter, ask: Ask) -> set[str]:
        """The router's candidates that can serve ``ask``: every feature it uses, and a context
        (when known) that holds its ``max_tokens`` (unless none does)."""
        able = {m.name for m in self.fleet if ask.needs.keys() <= m.features} & set(router.candidates)
        if ask.max_tokens is not None:
            wanted = ask.max_tokens
            holds = {n for n in able if (self.fleet.get(n).context_length or wanted) >= wanted}
            able = holds or able
        if ask.needs and not able:
            param = next(iter(ask.needs.values()))
            raise UnsupportedParameter(
                f"no model that {ask.model!r} chooses from supports {param!r}"
                f"{_capable_hint(self.fleet, ask.needs)}",
                param=param,
            )
        return able


def check_token_limit(member: FleetMember, max_tokens: int | None) -> None:
    limit = member.context_length
    if max_tokens is not None and limit is not None and max_tokens > limit:
        raise ContextLengthExceeded(
            f"max_tokens is {max_tokens}, but model {member.name!r} has a context of {limit} tokens",
            param="max_tokens",
        )


def check_choices(member: FleetMember, n: int) -> None:
    if n > member.max_choices:
        if member.max_choices == 1:
            reason = f"{member.name!r} gives one choice per request (only a diverse route gives more)"
        else:
            reason = f"route {member.name!r} draws {member.max_choices} samples, so no more choices"
        raise RequestError(f"n is {n}, but {reason}", param="n")


def _capable_hint(fleet: Fleet, needs: Mapping[Feature, str]) -> str:
    capable = [m.name for m in fleet if needs.keys() <= m.features]
    return f"; models that do: {', '.join(capable)}" if capable else "; no model of this fleet does"
