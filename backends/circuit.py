"""A model's circuit breaker: after repeated failures, stop asking it for a while.

:class:`CircuitBreaker` opens after ``failure_threshold`` failures in a row, lets one probe
through after ``cool_down`` seconds, and closes on the probe's success (reopens on its failure).
``ResilientBackend`` (backends/resilience.py) asks it before each call and tells it how each
call went; routers and fallbacks skip a model whose circuit is open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOL_DOWN = 30.0


@dataclass(frozen=True, slots=True)
class CircuitBreakerPolicy:
    """Open after ``failure_threshold`` failures in a row; after ``cool_down`` seconds let
    one probe through; close on its success, reopen on its failure."""

    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cool_down: float = DEFAULT_COOL_DOWN

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if self.cool_down < 0:
            raise ValueError("cool_down must not be negative")


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # cooled down: the next request is the probe, or the probe is out


class CircuitBreaker:
    """One model's breaker. ``clock`` (monotonic seconds) is injectable for tests."""

    def __init__(
        self,
        policy: CircuitBreakerPolicy = CircuitBreakerPolicy(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._probing or self._clock() >= self._opened_at + self.policy.cool_down:
            return CircuitState.HALF_OPEN
        return CircuitState.OPEN

    @property
    def available(self) -> bool:
        """Whether a request sent now would be let through (without taking the probe)."""
        state = self.state
        return state is CircuitState.CLOSED or (state is CircuitState.HALF_OPEN and not self._probing)

    def retry_in(self) -> float:
        """Seconds until a probe may go (0 when closed or cooled down)."""
        if self._opened_at is None:
            return 0.0
        return max(0.0, self._opened_at + self.policy.cool_down - self._clock())

    def acquire(self) -> bool:
        """Let one request through? In half-open state only the first caller (the probe) is."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def record_success(self) -> None:
        if self._opened_at is not None and not self._probing:
            return  # a late answer to a request sent before the circuit opened decides nothing
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        if self._probing:
            self._probing = False
            self._opened_at = self._clock()
            return
        if self._opened_at is not None:
            return
        self._failures += 1
        if self._failures >= self.policy.failure_threshold:
            self._opened_at = self._clock()

    def release(self) -> None:
        """A call ended with no verdict on the model (a 429, a client gone): free the probe."""
        self._probing = False
