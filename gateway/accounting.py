"""What each request cost, once it is over: metrics, the request log and the record hooks
(per-key usage), with what failed routes spent on it first.

A route that answers reports its inner calls in its trace, each priced at its own model's
price. One that fails, or that the client abandons, leaves the calls it finished in the
attempt's ledger (``Answer.ledger``, handed to the route with the request); they are charged
when the attempt ends, under the route in the composite metrics, and added to the request's
record whoever answers it in the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from backends.types import CompositeTrace, InnerCall, InnerCallLedger, Usage
from fleet.members import Fleet
from gateway.answer import Answer
from gateway.metrics import GatewayMetrics
from gateway.request_log import Feedback, FeedbackResult, RequestLog, RequestRecord


class Accounting:
    def __init__(self, fleet: Fleet, metrics: GatewayMetrics, request_log: RequestLog) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.request_log = request_log
        # Called with every record the request log gets (per-key usage accounting, ...).
        self.record_hooks: list[Callable[[RequestRecord], None]] = []

    def open_attempt(self, answer: Answer) -> InnerCallLedger:
        """A fresh ledger for the attempt ``answer.member`` is about to make."""
        answer.ledger = InnerCallLedger()
        return answer.ledger

    def charge_unanswered(self, answer: Answer) -> None:
        """The current attempt ended without an answer (its route failed, or the client left):
        the inner calls it had finished still count. A call cut short by a cancellation is not
        charged."""
        calls = answer.ledger.take()
        if not calls:
            return
        costs = self._call_costs(calls)
        self.metrics.observe_inner_calls(route=answer.member.name, calls=calls, costs=costs)
        for call in calls:
            answer.spent = answer.spent + call.usage
        answer.spent_cost += sum(costs)

    def record(
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
        self.log(
            RequestRecord(
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
        )

    def log(self, record: RequestRecord) -> None:
        """Queue ``record`` for the request log and tell the hooks (also for embeddings)."""
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

    def _call_costs(self, calls: Sequence[InnerCall]) -> list[float]:
        """Each inner call of a route at its own model's price."""
        costs = []
        for call in calls:
            price = self.fleet.get(call.model).price if call.model in self.fleet else None
            costs.append(price.cost(call.usage.prompt_tokens, call.usage.completion_tokens) if price else 0.0)
        return costs
