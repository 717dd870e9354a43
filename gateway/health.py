"""The fleet's health, polled in the background: what ``GET /health`` answers and what the
``smallfleet_backend_up`` and ``smallfleet_backend_queue_depth`` gauges say between scrapes."""

from __future__ import annotations

import asyncio

from backends.errors import SmallfleetError
from backends.types import Health
from fleet.members import Fleet
from gateway.metrics import GatewayMetrics

HEALTH_CHECK_TIMEOUT = 5.0  # seconds: a member slower than this to say how it is counts as down


class HealthPoller:
    def __init__(self, fleet: Fleet, metrics: GatewayMetrics) -> None:
        self.fleet = fleet
        self.metrics = metrics
        self.last: dict[str, Health] = {}  # each member's last answer, by name

    @property
    def healthy(self) -> bool:
        return bool(self.last) and all(h.ok for h in self.last.values())

    async def poll(self) -> None:
        """Ask every member once and keep the answers."""
        for member in self.fleet:
            try:
                health = await asyncio.wait_for(member.backend.health(), timeout=HEALTH_CHECK_TIMEOUT)
            except (TimeoutError, SmallfleetError) as exc:
                health = Health(ok=False, detail=f"health check failed: {exc}")
            self.last[member.name] = health
            self.metrics.backend_up.labels(member.name).set(1 if health.ok else 0)
            self.metrics.backend_queue_depth.labels(member.name).set(health.queue_depth)

    async def poll_forever(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self.poll()

    async def local_queue_depths(self) -> None:
        """Read in-process members' queue depths now (free to read); a remote member's waits
        for the next poll."""
        for member in self.fleet:
            if member.in_process:
                health = await member.backend.health()
                self.metrics.backend_queue_depth.labels(member.name).set(health.queue_depth)
