"""Who answers when the chosen member fails before sending anything, and how long each may take.

A member's declared ``fallbacks`` (or the router's runners-up) are tried in order, skipping open
circuits and members that lack what the request needs; a prompt too long for the failed member
goes to the first one in that chain whose context is longer or unknown, else to a model known to
be longer. Each candidate held to the first-token deadline gets its share of what is left of the
request's budget (docs/resilience.md).
"""

from __future__ import annotations

import time

from backends.errors import ContextLengthExceeded, SmallfleetError
from backends.resilience import DEFAULT_DEADLINE, FirstTokenDeadline
from fleet.members import Fleet, FleetMember
from gateway.answer import Answer
from gateway.metrics import GatewayMetrics


class FallbackPolicy:
    def __init__(
        self, fleet: Fleet, metrics: GatewayMetrics, deadline: FirstTokenDeadline = DEFAULT_DEADLINE
    ) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.deadline = deadline  # each request's budget to its first token

    def start(self, answer: Answer) -> None:
        """Set ``answer``'s first-token deadline, counted from the request's arrival."""
        if self.deadline.budget is not None and answer.deadline is None:
            waited = time.perf_counter() - answer.started
            answer.deadline = time.monotonic() + self.deadline.budget - waited

    def first_token_by(self, answer: Answer) -> float | None:
        """When ``answer.member``'s first token is due (``time.monotonic()``): its share of what is
        left of the request's deadline, given the candidates that could still answer after it;
        None for a member not held to the deadline (a route, an in-process model by default)."""
        if answer.deadline is None or not answer.member.deadline:
            return None
        now = time.monotonic()
        failed = answer.member
        after = sum(1 for name in answer.fallbacks if self._can_take(answer, self.fleet.get(name), failed))
        return now + self.deadline.share(answer.deadline - now, after)

    def successor(self, answer: Answer, failure: SmallfleetError) -> FleetMember | None:
        """The member to hand ``answer`` to after ``failure`` (counted in the metrics), or None.
        The chain left in ``answer.fallbacks`` is what remains after the one chosen."""
        failed = answer.member
        longer = isinstance(failure, ContextLengthExceeded)

        def fits(member: FleetMember, unknown_may_fit: bool = True) -> bool:
            return self._can_take(answer, member, failed, longer, unknown_may_fit)

        successor = None
        for index, member in enumerate(self.fleet.get(name) for name in answer.fallbacks):
            if fits(member):
                answer.fallbacks = answer.fallbacks[index + 1 :]
                successor = member
                break
        if successor is None and longer:
            # Only models: a route costs several calls, so it answers only when asked for by name.
            models = (m for m in self.fleet if not m.composite and fits(m, unknown_may_fit=False))
            candidates = sorted(models, key=lambda m: m.context_length or 0)
            if candidates:
                answer.fallbacks = ()
                successor = candidates[0]
        if successor is not None:
            reason = failure.code or failure.error_type
            self.metrics.errors.labels(answer.route.name, failed.name, reason).inc()
            self.metrics.fallbacks.labels(answer.route.name, failed.name, successor.name, reason).inc()
        return successor

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
