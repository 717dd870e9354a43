"""State shared by every gateway replica that names the same store (``state: {url: redis://...}``
in the fleet config, or ``SMALLFLEET_STATE_URL``). Without one, all of it stays per process.

- per-key rpm, tpm and budget: counted in the store, atomically (:mod:`gateway.shared.limits`);
- API keys made and revoked through ``/admin/keys`` (:mod:`gateway.shared.keys`);
- the router artifact version: a reload on one replica is followed by all (:mod:`gateway.shared.sync`).

The store unreachable (:mod:`gateway.shared.store`): every operation has a short deadline; the
gateway keeps serving with what each replica last saw; limits fail open (per-process counts) or
closed (503 for keyed requests) as ``state.on_error`` says; ``smallfleet_state_errors_total``
counts what could not be done and one log line marks each outage and its end.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fleet.config import StateConfig
from gateway.keys import KeyStore, KeyTable
from gateway.metrics import GatewayMetrics
from gateway.shared.keys import SharedKeyTable
from gateway.shared.limits import SharedLimiter
from gateway.shared.store import SharedStore
from gateway.shared.sync import RouterVersions, StateSync

__all__ = ["RouterVersions", "SharedKeyTable", "SharedLimiter", "SharedState", "SharedStore", "StateSync"]


@dataclass(slots=True)
class SharedState:
    """The store and what uses it, for one gateway; the app's lifespan starts and closes it."""

    store: SharedStore
    limiter: SharedLimiter
    keys: SharedKeyTable
    router: RouterVersions
    sync: StateSync

    @classmethod
    def connect(
        cls,
        url: str,
        config: StateConfig,
        metrics: GatewayMetrics,
        keys: KeyStore,
        table: KeyTable | None,
        *,
        reload: Callable[[str], Awaitable[str]],
        current: Callable[[], str | None],
    ) -> SharedState:
        """Wire it up; nothing is connected before :meth:`start`. ``reload`` loads an artifact
        without publishing it; ``current`` is the router version this replica serves."""
        store = SharedStore.connect(url, config, metrics)
        shared_keys = SharedKeyTable(store, keys, table)
        router = RouterVersions(store, reload, current)
        return cls(
            store,
            SharedLimiter(keys, metrics, store, on_error=config.on_error),
            shared_keys,
            router,
            StateSync(store, shared_keys, router, config.poll_interval),
        )

    async def start(self) -> None:
        await self.limiter.start()
        await self.sync.start()

    async def aclose(self) -> None:
        await self.sync.aclose()
        await self.limiter.aclose()
        await self.store.aclose()
