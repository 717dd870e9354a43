"""Per-key limits: requests and tokens per minute (sliding windows) and a spending budget.

A request is counted against its key's ``rpm`` when it is admitted (the start
of a ``/v1/`` completion or embedding). Tokens and cost are charged after the answer, from
the request's :class:`~gateway.request_log.RequestRecord` (a
``Gateway.record_hooks`` hook), so admission is refused while the last
minute's tokens are spent or the budget is. A refusal is a 429 in OpenAI's
shape with ``retry-after``; every ``/v1/`` answer to a keyed request carries
OpenAI's ``x-ratelimit-*`` headers for the limits the key has, and
``x-smallfleet-budget-remaining`` when it has a budget.

The counts here are per process. With a shared store (``state.url``) they live in Redis
instead, for every replica (:class:`gateway.shared.limits.SharedLimiter`, a subclass), and
this process's copy is what limits fall back on when the store is unreachable.

Input limits that are not per key (a ``max_tokens`` ceiling) are here too.
"""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backends.errors import RequestError, SmallfleetError
from gateway.auth import send_error
from gateway.keys import ApiKey, KeyLimits, KeyStore
from gateway.metrics import GatewayMetrics
from gateway.request_log import RequestRecord

WINDOW_S = 60.0
LIMITED_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings"})
Refusal = Literal["budget", "rpm", "tpm"]


class RateLimited(SmallfleetError):
    status_code = 429
    error_type = "rate_limit_error"
    code = "rate_limit_exceeded"


class BudgetExceeded(SmallfleetError):
    status_code = 429
    error_type = "insufficient_quota"  # OpenAI's type for a spent quota
    code = "budget_exceeded"


class SlidingWindow:
    """Amounts seen in the last ``WINDOW_S`` seconds."""

    def __init__(self) -> None:
        self._events: collections.deque[tuple[float, int]] = collections.deque()
        self.total = 0

    def used(self, now: float) -> int:
        events = self._events
        while events and events[0][0] <= now - WINDOW_S:
            self.total -= events.popleft()[1]
        return self.total

    def add(self, now: float, amount: int) -> None:
        if amount > 0:
            self._events.append((now, amount))
            self.total += amount

    def free_after(self, now: float, limit: int) -> float:
        """Seconds until the window's total falls below ``limit`` (0 if it is below now)."""
        total = self.used(now)
        if total < limit:
            return 0.0
        if limit <= 1:  # empty once the newest event leaves: no walk over the whole window
            return max(0.0, self._events[-1][0] + WINDOW_S - now)
        for at, amount in self._events:
            if total < limit:
                break
            total -= amount
            if total < limit:
                return max(0.0, at + WINDOW_S - now)
        return 0.0


@dataclass(slots=True)
class KeyUsage:
    requests: SlidingWindow = field(default_factory=SlidingWindow)
    tokens: SlidingWindow = field(default_factory=SlidingWindow)
    total_requests: int = 0
    total_tokens: int = 0
    spent: float = 0.0


def _duration(seconds: float) -> str:
    """OpenAI's reset format: ``1s``, ``6m0s``, ``0.5s``."""
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60)}s"
    return f"{math.ceil(seconds * 10) / 10:g}s"


class Limiter:
    def __init__(
        self, keys: KeyStore, metrics: GatewayMetrics, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.keys = keys
        self.metrics = metrics
        self.clock = clock
        self._usage: dict[str, KeyUsage] = {}

    def usage(self, key_id: str) -> KeyUsage:
        usage = self._usage.get(key_id)
        if usage is None:
            usage = self._usage[key_id] = KeyUsage()
        return usage

    def seed(self, spend: Mapping[str, tuple[int, float]]) -> None:
        """Totals from the request log of earlier runs (budgets outlive restarts)."""
        for key_id, (tokens, cost) in spend.items():
            usage = self.usage(key_id)
            usage.total_tokens += tokens
            usage.spent += cost

    async def admit(self, key: ApiKey) -> SmallfleetError | None:
        """Count one request, or say why it is refused (nothing is counted then)."""
        limits, usage, now = self.keys.limits_of(key), self.usage(key.id), self.clock()
        reason: Refusal | None = None
        if limits.budget is not None and usage.spent >= limits.budget:
            reason = "budget"
        elif limits.rpm is not None and usage.requests.used(now) >= limits.rpm:
            reason = "rpm"
        elif limits.tpm is not None and usage.tokens.used(now) >= limits.tpm:
            reason = "tpm"
        if reason is not None:
            return self.refuse(key, reason)
        usage.requests.add(now, 1)
        usage.total_requests += 1
        return None

    def refuse(self, key: ApiKey, reason: Refusal) -> SmallfleetError:
        """The error for a refusal, counted in ``smallfleet_key_rejections_total``."""
        limits = self.keys.limits_of(key)
        refusal: SmallfleetError
        if reason == "budget":
            refusal = BudgetExceeded(f"API key {key.id!r} has spent its budget of {limits.budget:g}")
        elif reason == "rpm":
            refusal = RateLimited(f"API key {key.id!r} is limited to {limits.rpm} requests per minute")
        else:
            refusal = RateLimited(f"API key {key.id!r} is limited to {limits.tpm} tokens per minute")
        self.metrics.observe_key_rejection(key.id, refusal.code or refusal.error_type)
        return refusal

    async def refresh(self, key: ApiKey) -> None:
        """Bring ``key``'s usage up to date before a report (kept here: nothing to do)."""

    def retry_after(self, key: ApiKey) -> float:
        limits, usage, now = self.keys.limits_of(key), self.usage(key.id), self.clock()
        waits = [1.0]
        if limits.rpm is not None:
            waits.append(usage.requests.free_after(now, limits.rpm))
        if limits.tpm is not None:
            waits.append(usage.tokens.free_after(now, limits.tpm))
        return max(waits)

    def charge(self, record: RequestRecord) -> None:
        """A ``Gateway.record_hooks`` hook: the answer's tokens and cost, against its key."""
        if record.api_key_id is None:
            return
        usage = self.usage(record.api_key_id)
        tokens = record.prompt_tokens + record.completion_tokens
        usage.tokens.add(self.clock(), tokens)
        usage.total_tokens += tokens
        usage.spent += record.cost
        self.metrics.observe_key_answer(
            record.api_key_id,
            status=record.status,
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            cost=record.cost,
        )

    def headers(self, key: ApiKey) -> list[tuple[bytes, bytes]]:
        """OpenAI's ``x-ratelimit-*`` headers for the limits ``key`` has (built as bytes: every
        answer to a keyed request carries them)."""
        limits, usage, now = self.keys.limits_of(key), self.usage(key.id), self.clock()
        out: list[tuple[bytes, bytes]] = []
        if limits.rpm is not None:
            used = usage.requests.used(now)
            out += [
                (b"x-ratelimit-limit-requests", str(limits.rpm).encode()),
                (b"x-ratelimit-remaining-requests", str(max(0, limits.rpm - used)).encode()),
                (b"x-ratelimit-reset-requests", _duration(usage.requests.free_after(now, 1)).encode()),
            ]
        if limits.tpm is not None:
            used = usage.tokens.used(now)
            out += [
                (b"x-ratelimit-limit-tokens", str(limits.tpm).encode()),
                (b"x-ratelimit-remaining-tokens", str(max(0, limits.tpm - used)).encode()),
                (b"x-ratelimit-reset-tokens", _duration(usage.tokens.free_after(now, 1)).encode()),
            ]
        if limits.budget is not None:
            remaining = f"{max(0.0, limits.budget - usage.spent):.6g}"
            out.append((b"x-smallfleet-budget-remaining", remaining.encode()))
        return out

    def report(self, key: ApiKey) -> dict[str, object]:
        """Usage for ``GET /admin/keys``."""
        usage, now = self.usage(key.id), self.clock()
        return {
            "requests_last_minute": usage.requests.used(now),
            "tokens_last_minute": usage.tokens.used(now),
            "requests": usage.total_requests,
            "tokens": usage.total_tokens,
            "spent": usage.spent,
        }


def key_of(scope: Scope, limiter: Limiter) -> ApiKey | None:
    """The key a request came with (``key_refusal`` checked it), None without one."""
    key_id = scope.get("state", {}).get("api_key_id")
    return limiter.keys.get(key_id) if key_id is not None else None


async def admit(limiter: Limiter, key: ApiKey) -> tuple[SmallfleetError, list[tuple[bytes, bytes]]] | None:
    """Count one request against ``key``'s limits; when they refuse it, the error and its headers
    (``retry-after``, unless a budget is spent, and the limit headers)."""
    refusal = await limiter.admit(key)
    if refusal is None:
        return None
    retry = str(math.ceil(limiter.retry_after(key)))
    headers = [(b"retry-after", retry.encode()), *limiter.headers(key)]
    if isinstance(refusal, BudgetExceeded):
        headers = headers[1:]  # waiting does not refill a budget
    elif refusal.retry_after is not None:  # the store's own, when it is unreachable
        headers[0] = (b"retry-after", str(math.ceil(refusal.retry_after)).encode())
    return refusal, headers


class KeyLimitsMiddleware:
    """Admits keyed completion requests against their limits and adds the limit headers."""

    def __init__(self, app: ASGIApp, limiter: Limiter) -> None:
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter = self.limiter
        key = key_of(scope, limiter) if scope["type"] == "http" else None
        if key is None:
            await self.app(scope, receive, send)
            return
        if scope["path"] in LIMITED_PATHS and scope["method"] == "POST":
            refused = await admit(limiter, key)
            if refused is not None:
                await send_error(send, *refused)
                return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *limiter.headers(key)]
            await send(message)

        await self.app(scope, receive, send_with_limits)


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Input limits not in the fleet config (yet): a ceiling on ``max_tokens`` for every model
    (``SMALLFLEET_MAX_TOKENS``, :attr:`gateway.settings.Settings.max_tokens`)."""

    max_tokens: int | None = None

    def check_max_tokens(self, value: int | None, param: str) -> None:
        if self.max_tokens is not None and value is not None and value > self.max_tokens:
            raise RequestError(f"{param} is {value}; the limit is {self.max_tokens}", param=param)


__all__ = [
    "BudgetExceeded",
    "InputLimits",
    "KeyUsage",
    "Limiter",
    "KeyLimits",
    "KeyLimitsMiddleware",
    "RateLimited",
    "Refusal",
    "SlidingWindow",
    "admit",
    "key_of",
]
