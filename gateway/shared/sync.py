"""What each replica learns from the store: new and revoked keys, and the router to serve.

Short polling, not pub/sub: every ``state.poll_interval`` (0.5 s by default) one ``MGET`` of
two small keys, the key table's version and the published router. Nothing is lost while a
connection drops (the next poll sees the latest state), there is no subscriber connection to
keep alive, and a revocation reaches every replica within one interval plus one round trip.
The cost is one tiny command per interval per replica, whatever the traffic.

The router: a replica that reloads its artifact (``POST /admin/router/reload``, SIGHUP, the
retraining CronJob's ``--reload-url``) publishes ``{"artifact": PATH, "version": V}`` to
``{prefix}:router``; every other replica that sees a record it has not acted on, naming a
version it does not serve, loads that PATH off the event loop and swaps it in, exactly as a
reload does (requests already routed finish on the old router), without publishing again. The
path must mean the same artifact on every replica (a shared volume, e.g. the chart's router
PVC). A replica that starts follows the published record before it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import orjson

from gateway.errors import StateUnavailable
from gateway.shared.keys import SharedKeyTable
from gateway.shared.store import SharedStore

logger = logging.getLogger("smallfleet.state")


class RouterVersions:
    """Publishes this replica's reloads; follows the others'."""

    def __init__(
        self,
        store: SharedStore,
        reload: Callable[[str], Awaitable[str]],
        current: Callable[[], str | None],
    ) -> None:
        self.store = store
        self.key = store.key("router")
        self.reload = reload  # loads an artifact without publishing it
        self.current = current  # the version this replica serves
        self._seen: str | None = None  # the last record acted on (or published)
        self._task: asyncio.Task[None] | None = None

    async def publish(self, artifact: str, version: str) -> None:
        """Tell every replica to serve ``artifact``; an unreachable store is logged, not raised."""
        record = orjson.dumps({"artifact": artifact, "version": version}).decode()
        self._seen = record
        try:
            await self.store.run("router_publish", lambda c: c.set(self.key, record))
        except StateUnavailable:
            logger.error("router version %s loaded here but not published: the store is unreachable", version)

    def follow(self, record: str | None) -> asyncio.Task[None] | None:
        """Start loading the published artifact if it is new to this replica; returns that task."""
        if record is None or record == self._seen or (self._task is not None and not self._task.done()):
            return None
        self._seen = record
        published = orjson.loads(record)
        if published.get("version") == self.current():
            return None
        loading = self._load(published["artifact"], published["version"])
        self._task = asyncio.get_running_loop().create_task(loading)
        return self._task

    async def _load(self, artifact: str, version: str) -> None:
        try:
            loaded = await self.reload(artifact)
        except Exception as exc:  # a bad or missing artifact here must not stop the poll
            self.store.metrics.observe_state_error("router_reload")
            logger.error("router version %s published by another replica did not load here: %s", version, exc)
            return
        logger.info("router reloaded from the shared store: version %s (%s)", loaded, artifact)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class StateSync:
    """The poll: keys and router from the store, every ``interval`` seconds."""

    def __init__(
        self, store: SharedStore, keys: SharedKeyTable, router: RouterVersions, interval: float
    ) -> None:
        self.store = store
        self.keys = keys
        self.router = router
        self.interval = interval
        self._poller: asyncio.Task[None] | None = None

    async def poll(self) -> None:
        """One round; raises :class:`StateUnavailable` when the store does not answer."""
        replies = await self.store.run("sync", lambda c: c.mget([self.keys.version_key, self.router.key]))
        keys_version, router = (None if reply is None else str(reply) for reply in replies)
        try:
            await self.keys.sync(keys_version)
        finally:
            task = self.router.follow(router)
        if task is not None and self._poller is None:  # starting: serve the published router
            await task

    async def start(self) -> None:
        """A first poll (keys pulled and pushed, the published router loaded), then one every interval."""
        await self._poll_once()
        self._poller = asyncio.get_running_loop().create_task(self._poll_forever())

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._poll_once()

    async def _poll_once(self) -> None:
        try:
            await self.poll()
        except StateUnavailable:
            self.keys.dirty = True  # push what changed here meanwhile, once it answers
        except Exception:  # never let one bad round end the sync, or stop a replica starting
            logger.exception("shared state sync failed")

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        await self.router.aclose()
