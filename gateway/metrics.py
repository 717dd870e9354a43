"""All of smallfleet's Prometheus objects, in one registry per app.

Names carry base units (``_seconds``, ``_total``). Labels: ``route`` (a fleet
member's name, or an ``auto`` mode), ``model`` (a fleet member), ``cluster``
(the router's cluster id, ``ood`` or ``none``), and ``status``, ``code``,
``direction``, ``fallback``, ``reason`` (an error code), ``state`` (a circuit's) or
``version`` where they apply. Label values only
ever come from the fleet's own names, the router artifact, HTTP statuses and the
error tree (or ``unknown``), never from raw client input, so cardinality stays
bounded whatever clients send. The per-key series' ``key`` label is a
configured key's id, for the first :data:`MAX_KEY_LABELS` ids seen; later ones
share the label ``other``.

A route (a composite: plan_solve, diverse) is a fleet member like a model: its
answers count under ``model`` = the route's name, with the tokens and cost of
all its inner calls summed. The ``smallfleet_composite_*`` series break that
down by inner model and step (``route`` = the route's name there), and report
plan fallbacks, the distinct-sample ratio and the vote's agreement.

The request path's own series (requests, errors, tokens, cost, durations, in-flight gauges and
the per-key series) are not updated in prometheus_client as each answer ends: each update is a
sum in a plain dict (or an observation in a list), added to the series when the registry is read
(a scrape, :meth:`GatewayMetrics.render`, or anything else that collects it) and every
:data:`MAX_PENDING_OBSERVATIONS` observations. prometheus_client takes a lock and checks its
arguments on every update, about ten times per request; a scrape reads the same values.

Embeddings (``POST /v1/embeddings``) have series of their own, ``smallfleet_embedding_*``,
by ``model`` (an embedding model of the fleet, or ``unknown``); their tokens and cost also
count against the API key's in the ``smallfleet_key_*`` series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from backends.types import CompositeTrace, InnerCall

# LLM latencies span milliseconds (a cached routing answer) to minutes (a long generation).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 80, 160, 320)
TTFT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
UNKNOWN = "unknown"
MAX_KEY_LABELS = 100
OTHER_KEYS = "other"
RATIO_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
CIRCUIT_STATES = ("closed", "open", "half_open")
MAX_PENDING_OBSERVATIONS = 4096  # histogram observations held before they are added anyway

__all__ = ["CONTENT_TYPE_LATEST", "GatewayMetrics", "MAX_KEY_LABELS", "OTHER_KEYS", "UNKNOWN"]


class GatewayMetrics:
    """The gateway's metrics; ``render()`` gives the Prometheus text format."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}
        # updates not yet added to their series: (metric, label values) -> sum, and observations
        self._pending: dict[tuple[MetricWrapperBase, tuple[str, ...]], float] = {}
        self._observations: list[tuple[MetricWrapperBase, tuple[str, ...], float]] = []
        self._gauges: dict[str, _PendingGauge] = {}
        r.register(_Flush(self))  # first: the series below are read after it has run
        self.requests = Counter(
            "smallfleet_requests",
            "Completion requests answered, by route, model and HTTP status.",
            ["route", "model", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "smallfleet_request_duration_seconds",
            "Time from request received to the last byte of the answer.",
            ["route", "model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_to_first_token = Histogram(
            "smallfleet_time_to_first_token_seconds",
            "Time from request received to the first streamed token.",
            ["route", "model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "smallfleet_tokens",
            "Tokens processed, by direction (input = prompt, output = completion).",
            ["route", "model", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "smallfleet_cost",
            "Cost of answered requests, in the fleet config's price units.",
            ["route", "model", "cluster"],
            registry=r,
        )
        self.backend_up = Gauge(
            "smallfleet_backend_up", "1 if the model's backend is healthy, else 0.", ["model"], registry=r
        )
        self.backend_in_flight = Gauge(
            "smallfleet_backend_in_flight",
            "Requests the gateway has sent to the model and not yet seen finish (any backend).",
            ["model"],
            registry=r,
        )
        self.backend_queue_depth = Gauge(
            "smallfleet_backend_queue_depth",
            "Requests queued or running on the model's backend.",
            ["model"],
            registry=r,
        )

        self.router_decision_duration = Histogram(
            "smallfleet_router_decision_seconds",
            "Time the router took to choose a model, embedding included.",
            ["route"],
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=r,
        )
        self.router_decisions = Counter(
            "smallfleet_router_decisions",
            "Routing decisions by route, chosen model and cluster (ood = out of distribution).",
            ["route", "model", "cluster"],
            registry=r,
        )

        self.router_out_of_distribution = Counter(
            "smallfleet_router_out_of_distribution",
            "Routing decisions for queries far from every cluster (sent to the default model).",
            ["route"],
            registry=r,
        )
        self.router_info = Gauge(
            "smallfleet_router_info", "The router artifact in use (value 1).", ["version"], registry=r
        )
        self.errors = Counter(
            "smallfleet_request_errors",
            "Requests answered with an error, by route, model and OpenAI error code.",
            ["route", "model", "code"],
            registry=r,
        )
        self.feedback_score = Histogram(
            "smallfleet_feedback_score",
            "Answer quality from POST /v1/feedback (0 = wrong, 1 = right), per route, model and cluster.",
            ["route", "model", "cluster"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
            registry=r,
        )
        self.fallbacks = Counter(
            "smallfleet_fallbacks",
            "Requests handed to another model (fallback) after model failed before answering, by the "
            "failure's code (reason: backend_timeout, deadline_exceeded, context_length_exceeded, ...).",
            ["route", "model", "fallback", "reason"],
            registry=r,
        )
        self.retries = Counter(
            "smallfleet_retries",
            "Retries of a model's call before its first token, by the failure's code (reason).",
            ["model", "reason"],
            registry=r,
        )
        self._circuits = _CircuitCollector()
        r.register(self._circuits)

        self.key_requests = Counter(
            "smallfleet_key_requests",
            "Completion requests answered per API key id, by HTTP status.",
            ["key", "status"],
            registry=r,
        )
        self.key_tokens = Counter(
            "smallfleet_key_tokens",
            "Tokens per API key id, by direction (input = prompt, output = completion).",
            ["key", "direction"],
            registry=r,
        )
        self.key_cost = Counter(
            "smallfleet_key_cost", "Cost per API key id, in the fleet's price units.", ["key"], registry=r
        )
        self.key_rejections = Counter(
            "smallfleet_key_rejections",
            "Requests refused by a key's limits, by code (rate_limit_exceeded, budget_exceeded).",
            ["key", "code"],
            registry=r,
        )
        self._key_labels: set[str] = set()
        self.state_errors = Counter(
            "smallfleet_state_errors",
            "Operations on the shared state store (state.url) that failed, or were skipped while it "
            "was unreachable, by operation (admit, charge, key_sync, router_sync, ...).",
            ["operation"],
            registry=r,
        )

        self.embedding_requests = Counter(
            "smallfleet_embedding_requests",
            "POST /v1/embeddings requests answered, by embedding model and HTTP status.",
            ["model", "status"],
            registry=r,
        )
        self.embedding_inputs = Counter(
            "smallfleet_embedding_inputs",
            "Texts embedded, by embedding model.",
            ["model"],
            registry=r,
        )
        self.embedding_tokens = Counter(
            "smallfleet_embedding_tokens",
            "Input tokens embedded, by embedding model.",
            ["model"],
            registry=r,
        )
        self.embedding_cost = Counter(
            "smallfleet_embedding_cost",
            "Cost of embeddings, in the fleet config's price units, by embedding model.",
            ["model"],
            registry=r,
        )
        self.embedding_duration = Histogram(
            "smallfleet_embedding_duration_seconds",
            "Time from request received to the embeddings' answer, by embedding model.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        self.composite_calls = Counter(
            "smallfleet_composite_calls",
            "Inner calls of routes, by route, inner model, step and outcome (ok, or the error code).",
            ["route", "model", "step", "outcome"],
            registry=r,
        )
        self.composite_tokens = Counter(
            "smallfleet_composite_tokens",
            "Tokens of routes' inner calls, by route, inner model and direction.",
            ["route", "model", "direction"],
            registry=r,
        )
        self.composite_cost = Counter(
            "smallfleet_composite_cost",
            "Cost of routes' inner calls at each inner model's price, by route and inner model.",
            ["route", "model"],
            registry=r,
        )
        self.plan_fallbacks = Counter(
            "smallfleet_composite_plan_fallbacks",
            "plan_solve answers given without a plan, by route and reason.",
            ["route", "reason"],
            registry=r,
        )
        self.distinct_ratio = Histogram(
            "smallfleet_composite_distinct_ratio",
            "diverse answers: distinct samples / successful samples.",
            ["route"],
            buckets=RATIO_BUCKETS,
            registry=r,
        )
        self.vote_agreement = Histogram(
            "smallfleet_composite_vote_agreement",
            "diverse answers: the winning answer's share of the votes.",
            ["route"],
            buckets=RATIO_BUCKETS,
            registry=r,
        )

    def child(self, metric: MetricWrapperBase, *values: str) -> Any:
        """``metric.labels(*values)``, remembered: prometheus_client checks the values and takes a
        lock on every ``labels()`` call, several times per request. Label values are bounded (see
        above), so is this; the series cached here are never removed."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def add(self, metric: MetricWrapperBase, values: tuple[str, ...], amount: float = 1.0) -> None:
        """``metric.labels(*values).inc(amount)`` when the registry is next read (a counter's
        ``amount`` is never negative; a gauge's may be)."""
        key = (metric, values)
        pending = self._pending
        pending[key] = pending.get(key, 0.0) + amount

    def observe(self, metric: MetricWrapperBase, values: tuple[str, ...], amount: float) -> None:
        """``metric.labels(*values).observe(amount)`` when the registry is next read."""
        observations = self._observations
        observations.append((metric, values, amount))
        if len(observations) >= MAX_PENDING_OBSERVATIONS:
            self.flush()

    def flush(self) -> None:
        """Add the pending updates to their series."""
        pending, self._pending = self._pending, {}
        observations, self._observations = self._observations, []
        for (metric, values), amount in pending.items():
            self.child(metric, *values).inc(amount)
        for metric, values, amount in observations:
            self.child(metric, *values).observe(amount)

    def in_flight(self, model: str) -> _PendingGauge:
        """``smallfleet_backend_in_flight`` of ``model`` (a gauge to ``inc()`` and ``dec()``)."""
        gauge = self._gauges.get(model)
        if gauge is None:
            gauge = self._gauges[model] = _PendingGauge(self, (model,))
        return gauge

    def key_label(self, key_id: str) -> str:
        """``key_id`` for the first MAX_KEY_LABELS ids seen, ``other`` after that."""
        labels = self._key_labels
        if key_id in labels:
            return key_id
        if len(labels) < MAX_KEY_LABELS:
            labels.add(key_id)
            return key_id
        return OTHER_KEYS

    def observe_key_answer(
        self, key_id: str, *, status: int, prompt_tokens: int, completion_tokens: int, cost: float
    ) -> None:
        key = self.key_label(key_id)
        add = self.add
        add(self.key_requests, (key, str(status)))
        if prompt_tokens:
            add(self.key_tokens, (key, "input"), prompt_tokens)
        if completion_tokens:
            add(self.key_tokens, (key, "output"), completion_tokens)
        if cost:
            add(self.key_cost, (key,), cost)

    def observe_key_rejection(self, key_id: str, code: str) -> None:
        self.key_rejections.labels(self.key_label(key_id), code).inc()

    def observe_retry(self, model: str, reason: str) -> None:
        self.retries.labels(model, reason).inc()

    def watch_circuits(self, states: Callable[[], Mapping[str, str]]) -> None:
        """Report ``states()`` (model -> circuit state) as ``smallfleet_circuit_state`` at each scrape."""
        self._circuits.states = states

    def observe_state_error(self, operation: str) -> None:
        self.state_errors.labels(operation).inc()

    def observe_decision(
        self, *, route: str, model: str, cluster: str, out_of_distribution: bool, seconds: float
    ) -> None:
        self.router_decision_duration.labels(route).observe(seconds)
        self.router_decisions.labels(route, model, cluster).inc()
        if out_of_distribution:
            self.router_out_of_distribution.labels(route).inc()
        else:
            self.router_out_of_distribution.labels(route)  # a zero series, so rates show 0, not nothing

    def observe_feedback(self, *, route: str, model: str, cluster: str | None, score: float) -> None:
        self.feedback_score.labels(route, model, cluster or "none").observe(score)

    def set_router_version(self, version: str, previous: str | None) -> None:
        if previous is not None and previous != version:
            self.router_info.remove(previous)
        self.router_info.labels(version).set(1)

    def observe_answer(
        self,
        *,
        route: str,
        model: str,
        status: int,
        seconds: float,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        code: str | None = None,
        cluster: str | None = None,
    ) -> None:
        add = self.add
        add(self.requests, (route, model, str(status)))
        if code is not None:
            add(self.errors, (route, model, code))
        self.observe(self.request_duration, (route, model), seconds)
        if prompt_tokens:
            add(self.tokens, (route, model, "input"), prompt_tokens)
        if completion_tokens:
            add(self.tokens, (route, model, "output"), completion_tokens)
        if cost:
            add(self.cost, (route, model, cluster or "none"), cost)

    def observe_composite(self, *, route: str, trace: CompositeTrace, costs: Sequence[float]) -> None:
        """A route's answer: each inner call (``costs`` in the same order) and the route's own figures."""
        self.observe_inner_calls(route=route, calls=trace.calls, costs=costs)
        if trace.plan_fallback is not None:
            self.plan_fallbacks.labels(route, trace.plan_fallback).inc()
        if trace.distinct_ratio is not None:
            self.distinct_ratio.labels(route).observe(trace.distinct_ratio)
        agreement = trace.summary.get("agreement")
        if isinstance(agreement, float | int):
            self.vote_agreement.labels(route).observe(float(agreement))

    def observe_inner_calls(self, *, route: str, calls: Sequence[InnerCall], costs: Sequence[float]) -> None:
        """A route's inner calls (``costs`` in the same order), whether the route answered or failed."""
        for call, cost in zip(calls, costs, strict=True):
            self.composite_calls.labels(route, call.model, call.step, call.error or "ok").inc()
            if call.usage.prompt_tokens:
                self.composite_tokens.labels(route, call.model, "input").inc(call.usage.prompt_tokens)
            if call.usage.completion_tokens:
                self.composite_tokens.labels(route, call.model, "output").inc(call.usage.completion_tokens)
            if cost:
                self.composite_cost.labels(route, call.model).inc(cost)

    def observe_embedding(
        self,
        *,
        model: str | None,
        status: int,
        seconds: float,
        inputs: int = 0,
        tokens: int = 0,
        cost: float = 0.0,
    ) -> None:
        """One ``/v1/embeddings`` answer (``model`` None when the request named no known model)."""
        label = model or UNKNOWN
        self.embedding_requests.labels(label, str(status)).inc()
        self.embedding_duration.labels(label).observe(seconds)
        if inputs:
            self.embedding_inputs.labels(label).inc(inputs)
        if tokens:
            self.embedding_tokens.labels(label).inc(tokens)
        if cost:
            self.embedding_cost.labels(label).inc(cost)

    def observe_rejection(self, *, model: str | None, status: int, code: str) -> None:
        """A request refused before any model was asked (bad input, unknown model, ...)."""
        self.requests.labels(UNKNOWN, model or UNKNOWN, str(status)).inc()
        self.errors.labels(UNKNOWN, model or UNKNOWN, code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PendingGauge:
    """A gauge child's ``inc()`` and ``dec()``, held by :meth:`GatewayMetrics.add` until read."""

    __slots__ = ("_key", "_pending_of")

    def __init__(self, metrics: GatewayMetrics, values: tuple[str, ...]) -> None:
        self._pending_of = metrics
        self._key = (metrics.backend_in_flight, values)

    def inc(self, amount: float = 1.0) -> None:
        pending = self._pending_of._pending
        key = self._key
        pending[key] = pending.get(key, 0.0) + amount

    def dec(self, amount: float = 1.0) -> None:
        self.inc(-amount)


class _Flush(Collector):
    """Registered first in the gateway's registry: reading the registry adds the pending updates
    to their series before any series is read. It has no series of its own."""

    def __init__(self, metrics: GatewayMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self._metrics.flush()
        return iter(())

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class _CircuitCollector(Collector):
    """``smallfleet_circuit_state{model, state}``: 1 for each model's current state, 0 for the
    others, read when scraped (a breaker changes state on its own clock, between requests)."""

    def __init__(self) -> None:
        self.states: Callable[[], Mapping[str, str]] = dict

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "smallfleet_circuit_state",
            "Each model's circuit breaker: 1 for its current state (closed, open, half_open), else 0.",
            labels=["model", "state"],
        )
        for model, current in sorted(self.states().items()):
            for state in CIRCUIT_STATES:
                family.add_metric([model, state], 1.0 if state == current else 0.0)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("smallfleet_circuit_state", "", labels=["model", "state"])
