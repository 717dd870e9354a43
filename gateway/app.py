"""The ASGI application: ``create_app(config)`` builds it; importing does nothing.

The app's lifespan owns every backend (models loaded at start, clients closed
at stop) and the health poller. Middleware order is written down in
:func:`_middleware`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from backends.base import Backend
from backends.embeddings import Embedder
from backends.errors import RequestError, SmallfleetError
from backends.resilience import FirstTokenDeadline
from fleet.config import FleetConfig
from fleet.embedders import build_embedders
from fleet.members import Fleet
from gateway.access import AccessPolicy, parse_networks
from gateway.auth import ApiKeyMiddleware
from gateway.auto import FleetRouter
from gateway.embeddings_api import EmbeddingsApi
from gateway.endpoints import Endpoints
from gateway.errors import MethodNotAllowed, NotFound, error_bytes
from gateway.fast_path import CompletionFastPath, GatewayApp
from gateway.health import HealthPoller
from gateway.heap import freeze_startup_heap, thaw_heap
from gateway.keys import KeyStore, KeyTable
from gateway.limits import InputLimits, KeyLimitsMiddleware, Limiter
from gateway.metrics import GatewayMetrics
from gateway.openapi import openapi_document
from gateway.request_id import RequestIdMiddleware
from gateway.request_log import RequestLog, open_request_log
from gateway.service import JSON_MEDIA_TYPE, Gateway
from gateway.settings import Settings
from gateway.shared import SharedState

logger = logging.getLogger("smallfleet")
HEALTH_POLL_SECONDS = 10.0


# -- middleware -------------------------------------------------------------
def _middleware(api_keys: KeyStore, limiter: Limiter, access: AccessPolicy) -> list[Middleware]:
    """Outermost first: the request id wraps everything, so even a 401 or 429 carries it;
    the key check sets ``state.api_key_id``, which the limits then admit or refuse."""
    return [
        Middleware(RequestIdMiddleware),
        Middleware(ApiKeyMiddleware, keys=api_keys, access=access),
        Middleware(KeyLimitsMiddleware, limiter=limiter),
    ]


# -- errors -----------------------------------------------------------------
def _error_response(request: Request, exc: BaseException) -> Response:
    status, body = error_bytes(exc)
    headers = {}
    model = getattr(request.state, "model", None)
    if model:
        headers["x-smallfleet-model"] = model
    retry_after = getattr(exc, "retry_after", None)  # an upstream's Retry-After, an open circuit's cool-down
    if retry_after is not None and status in (429, 503):
        headers["retry-after"] = str(max(1, math.ceil(retry_after)))
    return Response(body, status_code=status, media_type=JSON_MEDIA_TYPE, headers=headers)


async def _on_smallfleet_error(request: Request, exc: Exception) -> Response:
    return _error_response(request, exc)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        mapped: SmallfleetError = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}")
    elif exc.status_code == 404:
        mapped = NotFound(f"no such endpoint: {request.method} {request.url.path}")
    else:
        mapped = RequestError(str(exc.detail))
        mapped.status_code = exc.status_code
    return _error_response(request, mapped)


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error_response(request, exc)


def create_app(
    config: FleetConfig,
    *,
    backends: Mapping[str, Backend] | None = None,
    api_keys: KeyStore | None = None,
    admin_keys: KeyStore | None = None,
    router: FleetRouter | None = None,
    request_log: RequestLog | None = None,
    health_poll_seconds: float = HEALTH_POLL_SECONDS,
    input_limits: InputLimits | None = None,
    embedders: Mapping[str, Embedder] | None = None,
    access: AccessPolicy | None = None,
    settings: Settings | None = None,
    freeze_heap: bool = False,
) -> Starlette:
    """Build the gateway for ``config``.

    ``backends`` replaces some models' backends (tests). ``router`` is an already
    loaded router (the CLI loads it first to report a bad artifact cleanly);
    otherwise the lifespan loads ``config.router.artifact`` if one is set.
    ``request_log`` defaults to the one ``config.request_log`` describes; keys
    made through ``/admin/keys`` persist in it. With ``config.state`` (or
    ``SMALLFLEET_STATE_URL``) limits, admin-made keys and the router version are shared
    through that store (gateway/shared). ``settings`` are the environment's (gateway/settings.py),
    read here when not given; API and admin keys are not taken from them here (the caller builds
    the key stores). ``input_limits`` defaults to the settings' ``max_tokens``. ``embedders``
    replaces some embedding models by name (tests). ``freeze_heap``: once started, keep the
    start-up objects out of the garbage collector's full collections (gateway/heap.py; for a
    process that is the gateway's alone, as ``smallfleet serve``'s is).
    ``access`` says who is answered without keys (gateway/access.py); by default
    ``config.access``, with no API key local clients only.
    """
    settings = settings or Settings.from_environ()
    access = access or AccessPolicy(
        admin_loopback=config.access.admin_loopback,
        trusted_proxies=parse_networks(config.access.trusted_proxies, "access.trusted_proxies"),
    )
    metrics = GatewayMetrics()
    fleet = Fleet.from_config(config, backends, on_retry=metrics.observe_retry)
    metrics.watch_circuits(fleet.circuit_states)
    log = request_log or open_request_log(
        settings.request_log_url(config.request_log), store_prompts=config.request_log.store_prompts
    )
    deadline = FirstTokenDeadline(config.deadline.first_token, config.deadline.hand_over)
    gateway = Gateway(fleet, metrics, log, deadline)
    keys = api_keys if api_keys is not None else KeyStore()
    log_table = _key_table(log)
    state_url = settings.state_store_url(config.state)
    shared: SharedState | None = None
    if state_url is not None:
        shared = SharedState.connect(
            state_url,
            config.state,
            gateway.metrics,
            keys,
            log_table,
            reload=lambda artifact: endpoints.reload(artifact, publish=False),
            current=lambda: gateway.router.version if gateway.router is not None else None,
        )
    limiter = shared.limiter if shared is not None else Limiter(keys, gateway.metrics)
    gateway.record_hooks.append(limiter.charge)
    health = HealthPoller(fleet, gateway.metrics)
    endpoints = Endpoints(
        gateway,
        config,
        admin_keys or KeyStore(),
        keys=keys,
        limiter=limiter,
        health=health,
        key_table=shared.keys if shared is not None else log_table,
        input_limits=input_limits or InputLimits(settings.max_tokens),
        openapi=openapi_document(config.models[0].name),
        access=access,
    )
    if shared is not None:
        endpoints.on_router_reload = shared.router.publish
    embeddings = EmbeddingsApi(gateway, config, build_embedders(config, embedders))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await log.start()
        if log_table is not None:
            await keys.load(log_table)
            limiter.seed(await log_table.spend_by_key())
        if router is not None:
            gateway.router = router
            gateway.metrics.set_router_version(router.version, None)
        elif config.router.artifact:
            await endpoints.reload(config.router.artifact, publish=False)
        if shared is not None:  # after the router: a version published by another replica wins
            await shared.start()
        await fleet.start()
        await embeddings.start()
        await health.poll()
        poller = asyncio.create_task(health.poll_forever(health_poll_seconds))
        reload_on_sighup = _install_sighup_reload(endpoints)
        if freeze_heap:
            freeze_startup_heap()
        try:
            yield
        finally:
            if freeze_heap:
                thaw_heap()
            reload_on_sighup()
            poller.cancel()
            if shared is not None:
                await shared.aclose()
            await fleet.aclose()
            await embeddings.aclose()
            if gateway.router is not None:
                gateway.router.close()
            await log.aclose()

    handlers = {SmallfleetError: _on_smallfleet_error, HTTPException: _on_http_exception}
    app = GatewayApp(
        routes=[*endpoints.completion_routes(), *embeddings.routes(endpoints), *endpoints.routes()],
        middleware=_middleware(keys, limiter, access),
        exception_handlers={**handlers, Exception: _on_unexpected},
        lifespan=lifespan,
    )
    # the completion endpoints' POSTs: the work of the middleware and exception layers, in one
    app.fast_path = CompletionFastPath(
        endpoints.completion_endpoints(), keys=keys, access=access, limiter=limiter,
        handlers=handlers, on_unexpected=_on_unexpected,
    )
    app.state.gateway = gateway
    app.state.endpoints = endpoints
    return app


class _KeyLog(KeyTable, Protocol):
    async def spend_by_key(self) -> dict[str, tuple[int, float]]: ...


def _key_table(log: RequestLog) -> _KeyLog | None:
    """The request log, when it can keep API keys (the SQL logs can; a test's fake may not)."""
    needed = ("save_key", "revoke_key", "keys", "spend_by_key")
    return log if all(callable(getattr(log, name, None)) for name in needed) else None  # type: ignore[return-value]


def _install_sighup_reload(endpoints: Endpoints) -> Callable[[], None]:
    """SIGHUP reloads the router artifact (main thread only); returns the uninstaller."""
    loop = asyncio.get_running_loop()

    def reload() -> None:
        task = loop.create_task(endpoints.reload())
        task.add_done_callback(_log_reload)

    try:
        loop.add_signal_handler(signal.SIGHUP, reload)
    except (ValueError, RuntimeError, NotImplementedError):  # not the main thread, or no signals
        return lambda: None

    def uninstall() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return uninstall


def _log_reload(task: asyncio.Task[str]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        logger.error("router reload failed: %s", exc)
    else:
        logger.info("router reloaded: version %s", task.result())
