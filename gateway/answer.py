"""One request on its way through the gateway: how its member was chosen, who answers it, and
what it has cost so far. The gateway's parts (gateway/choosing.py, fallback.py, accounting.py,
streaming.py) each read and update this one object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backends.features import Feature
from backends.types import CompositeTrace, InnerCallLedger, Usage
from fleet.members import FleetMember
from gateway.protocol import route_json

PLAN_FALLBACK_HEADER = "x-smallfleet-plan-fallback"
SUCCESS_HEADER = "x-smallfleet-success"  # predicted success per candidate, as `auto` ranked them


@dataclass(frozen=True, slots=True)
class Route:
    """How the answering member was chosen: by name, or by the router."""

    name: str  # the metrics label: a member's name or an auto mode such as "auto:cheap"
    cluster: str | None = None
    alpha: float | None = None
    router_version: str | None = None
    # the router's predicted success of each candidate it ranked, best-ranked first
    success: tuple[tuple[str, float], ...] = ()

    def headers(self) -> dict[str, str]:
        headers = {"x-smallfleet-route": self.name}
        if self.cluster is not None:
            headers["x-smallfleet-cluster"] = self.cluster
        if self.alpha is not None:
            headers["x-smallfleet-alpha"] = f"{self.alpha:g}"
        if self.router_version is not None:
            headers["x-smallfleet-router-version"] = self.router_version
        if self.success:
            headers[SUCCESS_HEADER] = ", ".join(f"{name}={value:.2f}" for name, value in self.success)
        return headers


@dataclass(frozen=True, slots=True)
class Ask:
    """What the endpoint asks of the gateway, once the request is parsed and checked."""

    request_id: str
    model: str  # the request's ``model``: a member's name or an auto mode
    question: str  # what ``auto`` routes on; logged only when prompts are stored
    started: float  # time.perf_counter() at the request's arrival
    alpha_header: str | None = None
    n: int = 1
    needs: dict[Feature, str] = field(default_factory=dict)  # features used, each with its field
    max_tokens: int | None = None
    api_key_id: str | None = None
    details: bool = False  # the client asked for a route's inner workings


@dataclass(slots=True)
class Answer:
    """One request on its way: who answers it and what it has cost so far."""

    request_id: str
    route: Route
    member: FleetMember
    question: str  # what the route was chosen on; logged only when prompts are stored
    started: float
    fallbacks: tuple[str, ...] = ()  # who answers if ``member`` fails before sending anything
    api_key_id: str | None = None
    first_token_at: float | None = field(default=None)
    n: int = 1  # choices asked for
    details: bool = False  # the client asked for a route's inner workings
    needs: frozenset[Feature] = frozenset()  # what whoever answers must honour (tools, logprobs...)
    spent: Usage = field(default_factory=Usage)  # inner calls of routes that failed on it
    spent_cost: float = 0.0  # what those calls cost; its record adds both
    # the current attempt's finished inner calls, handed to the member with the request
    ledger: InnerCallLedger = field(default_factory=InnerCallLedger)
    deadline: float | None = None  # time.monotonic() by which the first token is due

    @property
    def headers(self) -> dict[str, str]:
        return {"x-smallfleet-model": self.member.name, **self.route.headers()}

    def headers_with(self, trace: CompositeTrace | None) -> dict[str, str]:
        """The answer's headers, plus what a route's trace says before the body (a plan fallback)."""
        headers = self.headers
        if trace is not None and trace.plan_fallback is not None:
            headers[PLAN_FALLBACK_HEADER] = trace.plan_fallback
        return headers

    def smallfleet_json(self, trace: CompositeTrace | None) -> dict[str, Any] | None:
        """The ``smallfleet`` field of a route's answer (None for a model's)."""
        if trace is None:
            return None
        return route_json(self.member.name, trace, details=self.details)
