"""Answering one completion request: choose the member, call it, account for it.

:class:`Gateway` is the request path shared by ``/v1/chat/completions`` and
``/v1/completions``: it resolves the ``model`` field (a fleet member, or
``auto`` through the router), turns the backend's answer into JSON or SSE, and
accounts for it in metrics and the request log. It does no I/O of its own
beyond the backend call; the request log's writes are queued, not awaited.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Receive

from backends.composite.ledger import open_ledger
from backends.errors import (
    BackendError,
    ContextLengthExceeded,
    ModelNotFound,
    Overloaded,
    RequestError,
    SmallfleetError,
    UnsupportedParameter,
)
from backends.features import Feature
from backends.resilience import DEFAULT_DEADLINE, FirstTokenDeadline
from backends.types import Completion, CompositeTrace, GenerationRequest, InnerCall, StreamChunk, Usage
from fleet.members import Fleet, FleetMember
from gateway.metrics import GatewayMetrics
from gateway.protocol import ChunkWriter, route_json
from gateway.request_log import Feedback, FeedbackResult, RequestLog, RequestRecord
from gateway.routing import FleetRouter, is_auto
from gateway.shapes import AnswerShape, AnswerStream, CompletionShape
from gateway.sse import DONE_EVENT, ClientDisconnected, EventStreamResponse, sse_event, until_disconnect

JSON_MEDIA_TYPE = "application/json"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for "the client went away"
OUT_OF_DISTRIBUTION = "ood"
MAX_FALLBACKS = 2
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
    ledger: list[InnerCall] = field(default_factory=list)  # the current attempt's finished inner calls
    deadline: float | None = None  # time.monotonic() by which the first token is due; set by respond

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


class Gateway:
    def __init__(
        self,
        fleet: Fleet,
        metrics: GatewayMetrics,
        request_log: RequestLog,
        deadline: FirstTokenDeadline = DEFAULT_DEADLINE,
    ) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.request_log = request_log
        self.deadline = deadline  # each request's budget to its first token (docs/resilience.md)
        self.router: FleetRouter | None = None
        # Called with every record the request log gets (per-key usage accounting, ...).
        self.record_hooks: list[Callable[[RequestRecord], None]] = []

    # -- choosing ---------------------------------------------------------
    async def choose(
        self,
        model: str,
        question: str,
        alpha_header: str | None,
        n: int = 1,
        needs: Mapping[Feature, str] | None = None,
        max_tokens: int | None = None,
    ) -> tuple[Route, FleetMember, tuple[str, ...]]:
        """Who answers ``model``: itself, or the router's pick for ``auto`` (with the runners-up).

        ``needs`` are the features the request uses, each with the field asking for it: a named
        member must have them all (else a 400 naming the field), and ``auto`` chooses among the
        members that do, and whose context (when known) holds ``max_tokens``; for n > 1 it
        chooses among members that give that many choices, if any."""
        needs = needs or {}
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
        alpha = router.alpha_for(model, alpha_header)
        started = time.perf_counter()
        # The router chooses among the members able to answer, skipping open circuits while any
        # able one is closed; members that cannot give n choices only when none can.
        able = {m.name for m in self.fleet if needs.keys() <= m.features} & set(router.candidates)
        if max_tokens is not None:  # a context known to be too short cannot answer (unless none can)
            holds = {n for n in able if (self.fleet.get(n).context_length or max_tokens) >= max_tokens}
            able = holds or able
        if needs and not able:
            param = next(iter(needs.values()))
            raise UnsupportedParameter(
                f"no model that {model!r} chooses from supports {param!r}{_capable_hint(self.fleet, needs)}",
                param=param,
            )
        pool = {m.name for m in self.fleet if m.name in able and m.max_choices >= n} or able
        available = {name for name in pool if self.fleet.get(name).available} or pool
        decision = await router.decide(question, alpha, available)
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

    def check_token_limit(self, member: FleetMember, max_tokens: int | None) -> None:
        limit = member.context_length
        if max_tokens is not None and limit is not None and max_tokens > limit:
            raise ContextLengthExceeded(
                f"max_tokens is {max_tokens}, but model {member.name!r} has a context of {limit} tokens",
                param="max_tokens",
            )

    def check_choices(self, member: FleetMember, n: int) -> None:
        if n > member.max_choices:
            if member.max_choices == 1:
                reason = f"{member.name!r} gives one choice per request (only a diverse route gives more)"
            else:
                reason = f"route {member.name!r} draws {member.max_choices} samples, so no more choices"
            raise RequestError(f"n is {n}, but {reason}", param="n")

    # -- accounting -------------------------------------------------------
    def _call_costs(self, calls: Sequence[InnerCall]) -> list[float]:
        """Each inner call of a route at its own model's price."""
        costs = []
        for call in calls:
            price = self.fleet.get(call.model).price if call.model in self.fleet else None
            costs.append(price.cost(call.usage.prompt_tokens, call.usage.completion_tokens) if price else 0.0)
        return costs

    def _charge_unanswered(self, answer: Answer) -> None:
        """The current attempt ended without an answer (its route failed, or the client left):
        the inner calls it had finished still count, under the route in the composite metrics,
        and in the answer's record (whoever answers it in the end). A call cut short by a
        cancellation is not charged."""
        calls, answer.ledger = tuple(answer.ledger), []
        if not calls:
            return
        costs = self._call_costs(calls)
        self.metrics.observe_inner_calls(route=answer.member.name, calls=calls, costs=costs)
        for call in calls:
            answer.spent = answer.spent + call.usage
        answer.spent_cost += sum(costs)

    def _record(
        self,
        answer: Answer,
        status: int,
        usage: Usage | None = None,
        code: str | None = None,
        trace: CompositeTrace | None = None,
    ) -> None:
        """Account for ``answer`` once it is over, with what failed routes spent on it first."""
        usage = usage or Usage()
        seconds = time.perf_counter() - answer.started
        route, model = answer.route, answer.member.name
        if trace is not None:
            costs = self._call_costs(trace.calls)
            cost = sum(costs)
            self.metrics.observe_composite(route=model, trace=trace, costs=costs)
        else:
            cost = answer.member.price.cost(usage.prompt_tokens, usage.completion_tokens)
        usage, cost = usage + answer.spent, cost + answer.spent_cost
        self.metrics.observe_answer(
            route=route.name,
            model=model,
            status=status,
            seconds=seconds,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=cost,
            code=code,
            cluster=route.cluster,
        )
        ttft = None if answer.first_token_at is None else answer.first_token_at - answer.started
        record = RequestRecord(
            request_id=answer.request_id,
            created_at=time.time() - seconds,
            route=route.name,
            model=model,
            cluster=route.cluster,
            alpha=route.alpha,
            router_version=route.router_version,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost=cost,
            latency_s=seconds,
            ttft_s=ttft,
            status=status,
            api_key_id=answer.api_key_id,
            prompt=answer.question,
        )
        self.request_log.record(record)
        for hook in self.record_hooks:
            hook(record)

    async def feedback(self, feedback: Feedback) -> FeedbackResult:
        """Store feedback on an answered request and count it in that route's quality series."""
        result = await self.request_log.add_feedback(feedback)
        if not result.duplicate:
            record = result.record
            self.metrics.observe_feedback(
                route=record.route, model=record.model, cluster=record.cluster, score=feedback.score
            )
        return result

    # -- answering --------------------------------------------------------
    async def respond(
        self,
        answer: Answer,
        request: GenerationRequest,
        receive: Receive,
        *,
        stream: bool,
        shape: AnswerShape,
    ) -> Response | EventStreamResponse:
        """Answer ``request`` with ``answer``'s member (or its fallbacks), written as ``shape`` says."""
        if self.deadline.budget is not None and answer.deadline is None:
            waited = time.perf_counter() - answer.started  # the budget counts from the request's arrival
            answer.deadline = time.monotonic() + self.deadline.budget - waited
        try:
            while True:
                by = self._first_token_by(answer)
                try:
                    if stream:
                        return await self._respond_stream(answer, request, receive, shape, by)
                    return await self._respond_whole(answer, request, receive, shape, by)
                except (BackendError, Overloaded, ContextLengthExceeded) as exc:
                    if not self._fall_back(answer, exc):
                        raise
        except ClientDisconnected:
            self._charge_unanswered(answer)
            self._record(answer, CLIENT_CLOSED_REQUEST, code="client_closed_request")
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except SmallfleetError as exc:
            self._charge_unanswered(answer)
            self._record(answer, exc.status_code, code=exc.code or exc.error_type)
            raise

    def _fall_back(self, answer: Answer, failure: SmallfleetError) -> bool:
        """Hand ``answer`` to the next member that can take it; nothing has reached the client yet.

        A member's declared ``fallbacks`` (or the router's runner-ups) are tried in order,
        skipping open circuits; a prompt too long for the failed member goes to the first one
        whose context is longer or unknown in that chain, else to one known to be longer. A failed route's
        inner calls are charged to the answer here; without a successor, the caller charges them.
        """
        failed = answer.member
        successor = self._successor(answer, failed, isinstance(failure, ContextLengthExceeded))
        if successor is None:
            return False
        self._charge_unanswered(answer)
        answer.member = successor
        reason = failure.code or failure.error_type
        self.metrics.errors.labels(answer.route.name, failed.name, reason).inc()
        self.metrics.fallbacks.labels(answer.route.name, failed.name, successor.name, reason).inc()
        return True

    def _first_token_by(self, answer: Answer) -> float | None:
        """When ``answer.member``'s first token is due (``time.monotonic()``): its share of what is
        left of the request's deadline, given the candidates that could still answer after it;
        None for a member not held to the deadline (a route, an in-process model by default)."""
        if answer.deadline is None or not answer.member.deadline:
            return None
        now = time.monotonic()
        failed = answer.member
        after = sum(1 for name in answer.fallbacks if self._can_take(answer, self.fleet.get(name), failed))
        return now + self.deadline.share(answer.deadline - now, after)

    def _can_take(
        self,
        answer: Answer,
        member: FleetMember,
        failed: FleetMember,
        needs_longer_context: bool = False,
        unknown_may_fit: bool = True,
    ) -> bool:
        """Whether ``member`` could answer in ``failed``'s place."""
        if not member.available or member.name == failed.name or member.max_choices < answer.n:
            return False
        if not answer.needs <= member.features:
            return False
        if member.deadline and answer.deadline is not None and time.monotonic() >= answer.deadline:
            return False  # the first-token deadline is spent: it would be abandoned before it began
        if not needs_longer_context:
            return True
        # a context known to be no longer cannot help; in the declared chain (fallbacks,
        # router runners-up) an unknown one may, elsewhere only one known to be longer
        mine, theirs = member.context_length, failed.context_length
        if mine is None or theirs is None:
            return unknown_may_fit
        return mine > theirs

    def _successor(
        self, answer: Answer, failed: FleetMember, needs_longer_context: bool
    ) -> FleetMember | None:
        def fits(member: FleetMember, unknown_may_fit: bool = True) -> bool:
            return self._can_take(answer, member, failed, needs_longer_context, unknown_may_fit)

        chain = [self.fleet.get(name) for name in answer.fallbacks]
        for index, member in enumerate(chain):
            if fits(member):
                answer.fallbacks = answer.fallbacks[index + 1 :]
                return member
        if needs_longer_context:
            # Only models: a route costs several calls, so it answers only when asked for by name.
            models = (m for m in self.fleet if not m.composite and fits(m, unknown_may_fit=False))
            longer = sorted(models, key=lambda m: m.context_length or 0)
            if longer:
                answer.fallbacks = ()
                return longer[0]
        return None

    async def _respond_whole(
        self,
        answer: Answer,
        request: GenerationRequest,
        receive: Receive,
        shape: AnswerShape,
        first_token_by: float | None = None,
    ) -> Response:
        completion = await self._whole(answer, request, receive, first_token_by)
        trace = completion.trace
        smallfleet = answer.smallfleet_json(trace)
        payload = shape.whole(answer.request_id, answer.member.name, completion, smallfleet)
        self._record(answer, 200, completion.usage, trace=trace)
        return Response(orjson.dumps(payload), media_type=JSON_MEDIA_TYPE, headers=answer.headers_with(trace))

    async def _whole(
        self,
        answer: Answer,
        request: GenerationRequest,
        receive: Receive,
        first_token_by: float | None = None,
    ) -> Completion:
        in_flight = self.metrics.backend_in_flight.labels(answer.member.name)
        in_flight.inc()
        answer.ledger = open_ledger()
        try:
            return await until_disconnect(answer.member.chat(request, first_token_by), receive)
        finally:
            in_flight.dec()

    async def _respond_stream(
        self,
        answer: Answer,
        request: GenerationRequest,
        receive: Receive,
        shape: AnswerShape,
        first_token_by: float | None = None,
    ) -> EventStreamResponse:
        if answer.n > 1:
            assert isinstance(shape, CompletionShape)  # only completions ask for n
            return await self._respond_choices_stream(answer, request, receive, shape.include_usage)
        answer.ledger = open_ledger()  # the stream's tasks inherit it, to its last chunk
        chunks = answer.member.stream_chat(request, first_token_by)
        in_flight = self.metrics.backend_in_flight.labels(answer.member.name)
        in_flight.inc()  # the stream's end (in _events) takes it back
        # Peek at the first chunk so an early failure is an HTTP error, not a broken stream.
        try:
            first = await until_disconnect(anext(chunks), receive)
        except BaseException:
            in_flight.dec()
            await chunks.aclose()  # type: ignore[attr-defined]
            raise
        self._first_token(answer)
        events = self._events(answer, first, chunks, shape.stream(answer.request_id, answer.member.name))
        return EventStreamResponse(events, answer.headers_with(first.trace))

    def _first_token(self, answer: Answer) -> None:
        answer.first_token_at = time.perf_counter()
        self.metrics.time_to_first_token.labels(answer.route.name, answer.member.name).observe(
            answer.first_token_at - answer.started
        )

    async def _respond_choices_stream(
        self, answer: Answer, request: GenerationRequest, receive: Receive, include_usage: bool
    ) -> EventStreamResponse:
        """n > 1 (a diverse route): the choices exist only once the samples are voted on, so the
        whole answer is made first and then sent as a stream, one choice after another."""
        completion = await self._whole(answer, request, receive)
        self._first_token(answer)
        events = self._choice_events(answer, completion, request.is_chat, include_usage)
        return EventStreamResponse(events, answer.headers_with(completion.trace))

    async def _choice_events(
        self, answer: Answer, completion: Completion, chat: bool, include_usage: bool
    ) -> AsyncIterator[bytes]:
        writer = ChunkWriter(answer.request_id, answer.member.name, chat=chat)
        choices = [(completion.text, completion.finish_reason)]
        choices += [(c.text, c.finish_reason) for c in completion.extra_choices]
        status: int = CLIENT_CLOSED_REQUEST
        try:
            for index, (text, finish) in enumerate(choices):
                if chat:
                    yield sse_event(writer.role(index))
                if text:
                    yield sse_event(writer.chunk(StreamChunk(text), index))
                last = index == len(choices) - 1
                metadata = answer.smallfleet_json(completion.trace) if last else None
                yield sse_event(writer.chunk(StreamChunk("", finish), index, metadata))
            if include_usage:
                yield sse_event(writer.usage(completion.usage))
            status = 200
            yield DONE_EVENT
        finally:
            code = None if status == 200 else "client_closed_request"
            self._record(answer, status, completion.usage, code, completion.trace)

    async def _events(
        self,
        answer: Answer,
        first: StreamChunk,
        chunks: AsyncIterator[StreamChunk],
        stream: AnswerStream,
    ) -> AsyncIterator[bytes]:
        status, usage, trace = CLIENT_CLOSED_REQUEST, None, None
        code: str | None = "client_closed_request"
        try:
            for event in stream.opening():
                yield event
            chunk = first
            while True:
                if chunk.finish_reason is not None:
                    usage, trace = chunk.usage, chunk.trace
                    for event in stream.chunk(chunk, smallfleet=answer.smallfleet_json(trace)):
                        yield event
                    break
                for event in stream.chunk(chunk):
                    yield event
                next_chunk = await anext(chunks, None)
                chunk = next_chunk if next_chunk is not None else _missing_final_chunk(answer)
            closing = stream.closing(usage)
            status, code = 200, None
            for event in closing:
                yield event
        except SmallfleetError as exc:
            status, code = exc.status_code, exc.code or exc.error_type
            self._charge_unanswered(answer)
            for event in stream.failure(exc):
                yield event
        finally:
            self.metrics.backend_in_flight.labels(answer.member.name).dec()
            await chunks.aclose()  # type: ignore[attr-defined]
            if status == CLIENT_CLOSED_REQUEST and trace is None:
                self._charge_unanswered(answer)
            self._record(answer, status, usage, code, trace)


def _capable_hint(fleet: Fleet, needs: Mapping[Feature, str]) -> str:
    capable = [m.name for m in fleet if needs.keys() <= m.features]
    return f"; models that do: {', '.join(capable)}" if capable else "; no model of this fleet does"


def _missing_final_chunk(answer: Answer) -> StreamChunk:
    raise BackendError(f"model {answer.member.name!r} ended its stream without finishing")
