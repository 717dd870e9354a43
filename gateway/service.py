"""Answering one completion request: choose the member, call it (or its fallbacks), write the
answer, account for it.

:class:`Gateway` is the request path shared by ``/v1/chat/completions``, ``/v1/completions``
and ``/v1/responses``; the endpoint asks it one question (:meth:`Gateway.answer`). Its jobs live
apart: choosing (gateway/choosing.py), fallback and deadlines (gateway/fallback.py), writing the
answer (gateway/streaming.py) and accounting (gateway/accounting.py). It does no I/O of its own
beyond the backend call; the request log's writes are queued, not awaited.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response
from starlette.types import Receive

from backends.errors import BackendError, ContextLengthExceeded, Overloaded, SmallfleetError
from backends.resilience import DEFAULT_DEADLINE, FirstTokenDeadline
from backends.types import GenerationRequest
from fleet.members import Fleet
from gateway.accounting import Accounting
from gateway.answer import Answer, Ask
from gateway.auto import FleetRouter
from gateway.choosing import Chooser
from gateway.fallback import FallbackPolicy
from gateway.metrics import GatewayMetrics
from gateway.request_log import Feedback, FeedbackResult, RequestLog, RequestRecord
from gateway.shapes import AnswerShape
from gateway.sse import ClientDisconnected, EventStreamResponse
from gateway.streaming import CLIENT_CLOSED_REQUEST, JSON_MEDIA_TYPE, Responder

__all__ = ["JSON_MEDIA_TYPE", "Gateway"]


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
        self.chooser = Chooser(fleet, metrics)
        self.fallback = FallbackPolicy(fleet, metrics, deadline)
        self.accounting = Accounting(fleet, metrics, request_log)
        self.responder = Responder(metrics, self.accounting)

    @property
    def router(self) -> FleetRouter | None:
        """What ``auto`` routes with (None: no artifact); a reload swaps it whole."""
        return self.chooser.router

    @router.setter
    def router(self, router: FleetRouter | None) -> None:
        self.chooser.router = router

    @property
    def record_hooks(self) -> list[Callable[[RequestRecord], None]]:
        """Called with every record the request log gets (per-key usage accounting, ...)."""
        return self.accounting.record_hooks

    async def answer(
        self,
        ask: Ask,
        request: GenerationRequest,
        receive: Receive,
        *,
        stream: bool,
        shape: AnswerShape,
        chosen: Callable[[str], None] | None = None,
    ) -> Response | EventStreamResponse:
        """Answer ``request``, as ``shape`` says, from the member ``ask`` names or ``auto`` picks
        (``chosen`` is told its name, for the error's headers). A request no member can take is
        refused (counted as a rejection) before any is asked."""
        model = None
        try:
            answer = await self.chooser.choose(ask)
            model = answer.member.name
            if chosen is not None:
                chosen(model)
            self.chooser.check(answer, ask.max_tokens)
        except SmallfleetError as exc:
            code = exc.code or exc.error_type
            self.metrics.observe_rejection(model=model, status=exc.status_code, code=code)
            raise
        return await self.respond(answer, request, receive, stream=stream, shape=shape)

    async def respond(
        self,
        answer: Answer,
        request: GenerationRequest,
        receive: Receive,
        *,
        stream: bool,
        shape: AnswerShape,
    ) -> Response | EventStreamResponse:
        """Answer ``request`` with ``answer``'s member, or its fallbacks while nothing reached the
        client."""
        self.fallback.start(answer)
        try:
            while True:
                by = self.fallback.first_token_by(answer)
                try:
                    if stream:
                        return await self.responder.stream(answer, request, receive, shape, by)
                    return await self.responder.whole(answer, request, receive, shape, by)
                except (BackendError, Overloaded, ContextLengthExceeded) as exc:
                    successor = self.fallback.successor(answer, exc)
                    if successor is None:
                        raise
                    self.accounting.charge_unanswered(answer)  # under the member that failed
                    answer.member = successor
        except ClientDisconnected:
            self.accounting.charge_unanswered(answer)
            self.accounting.record(answer, CLIENT_CLOSED_REQUEST, code="client_closed_request")
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except SmallfleetError as exc:
            self.accounting.charge_unanswered(answer)
            self.accounting.record(answer, exc.status_code, code=exc.code or exc.error_type)
            raise

    async def feedback(self, feedback: Feedback) -> FeedbackResult:
        return await self.accounting.feedback(feedback)
