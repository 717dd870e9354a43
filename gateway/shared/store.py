"""The connection to the shared state store (Redis), and what happens when it does not answer.

Every operation goes through :meth:`SharedStore.run`: one deadline of ``state.timeout``
(0.25 s by default) for connecting and answering, no retries. A failure raises
:class:`~gateway.errors.StateUnavailable`, counts ``smallfleet_state_errors_total{operation}``
and, once per outage, logs a line. For :data:`RETRY_AFTER_S` after a failure the store is not
tried at all: each operation fails at once (and is counted), so an unreachable store, even one
whose packets vanish, costs a request at most one timeout per second per replica, never a hang.
The first success after an outage logs that the store is back. What each caller does with the
error (fail open or closed) is the caller's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from fleet.config import DEFAULT_STATE_PREFIX, DEFAULT_STATE_TIMEOUT, StateConfig
from gateway.errors import StateUnavailable
from gateway.metrics import GatewayMetrics

RETRY_AFTER_S = 1.0
T = TypeVar("T")
logger = logging.getLogger("smallfleet.state")

__all__ = ["RETRY_AFTER_S", "SharedStore", "StateUnavailable"]


class SharedStore:
    """One Redis client (a connection pool) with the gateway's error policy around it."""

    def __init__(
        self,
        client: aioredis.Redis,
        metrics: GatewayMetrics,
        *,
        prefix: str = DEFAULT_STATE_PREFIX,
        timeout: float = DEFAULT_STATE_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.metrics = metrics
        self.prefix = prefix
        self.timeout = timeout
        self.clock = clock
        self._down_until = 0.0
        self._down = False

    @classmethod
    def connect(cls, url: str, config: StateConfig, metrics: GatewayMetrics) -> SharedStore:
        """A store for ``url``; nothing is connected until the first operation."""
        client = aioredis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=config.timeout,
            socket_connect_timeout=config.timeout,
            retry=Retry(NoBackoff(), 0),
        )
        return cls(client, metrics, prefix=config.prefix, timeout=config.timeout)

    @property
    def reachable(self) -> bool:
        """False from a failure until the next success."""
        return not self._down

    def key(self, *parts: str) -> str:
        """A Redis key under this gateway's prefix: ``smallfleet:usage:{team-a}:w``."""
        return ":".join((self.prefix, *parts))

    def script(self, source: str) -> AsyncScript:
        """A Lua script, sent once and then called by its digest (EVALSHA)."""
        return self.client.register_script(source)

    async def run(self, operation: str, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """``call(client)`` within the timeout; :class:`StateUnavailable` if the store fails."""
        if self.clock() < self._down_until:
            self.metrics.observe_state_error(operation)
            raise StateUnavailable("the shared state store is unreachable (retrying shortly)")
        try:
            async with asyncio.timeout(self.timeout):
                result = await call(self.client)
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(operation, exc)
            raise StateUnavailable("the shared state store is unreachable") from None
        if self._down:
            self._down = False
            logger.warning("shared state store is reachable again")
        return result

    async def run_script(
        self, operation: str, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> Any:
        """A script of :meth:`script` through :meth:`run`."""
        return await self.run(operation, lambda client: script(keys=keys, args=args, client=client))

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.metrics.observe_state_error(operation)
        self._down_until = self.clock() + RETRY_AFTER_S
        if not self._down:
            self._down = True
            detail = str(exc) or "no answer within the timeout"
            logger.error(
                "shared state store unreachable during %s (%s: %s); each replica goes on with "
                "what it last saw, limits per state.on_error",
                operation,
                type(exc).__name__,
                detail,
            )

    async def aclose(self) -> None:
        await self.client.aclose()
