"""A model served by a Ray Serve deployment, reached through its ``DeploymentHandle``.

The deployment (``deploy.rayserve.model.ModelServer``) wraps an ordinary backend and
exposes ``describe``, ``chat``, ``stream_chat`` (a generator, called with
``handle.options(stream=True)``) and ``health``. This module is the one place where Ray's
exceptions become smallfleet's:

    an error of the error tree raised in the replica   -> the same error, unwrapped
      (Ray delivers it wrapped in RayTaskError; the original travels as ``.cause``)
    Serve's BackPressureError (replica queues full)    -> Overloaded          429
    replica or actor gone, deployment unavailable      -> BackendUnavailable  503
    Ray's timeouts                                     -> BackendTimeout      504
    any other failure in the replica or in Ray         -> BackendError        502

Ray is never imported here: the handle is given, and exceptions are recognised by the
classes Ray defines (looked up lazily, only once one is raised).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from backends.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    Overloaded,
    SmallfleetError,
)
from backends.features import NO_FEATURES, Feature
from backends.types import Completion, GenerationRequest, Health, StreamChunk


def _ray_error_classes() -> dict[str, tuple[type[BaseException], ...]]:
    try:
        from ray import exceptions as ray_errors
        from ray.serve import exceptions as serve_errors
    except ImportError:  # no Ray, so no Ray exception can reach us
        return {}
    return {
        "task": (ray_errors.RayTaskError,),
        "overloaded": (serve_errors.BackPressureError,),
        "unavailable": (
            ray_errors.RayActorError,
            serve_errors.DeploymentUnavailableError,
            getattr(serve_errors, "ReplicaUnavailableError", serve_errors.DeploymentUnavailableError),
            ray_errors.NodeDiedError,
        ),
        "timeout": (ray_errors.GetTimeoutError,),
        "ray": (ray_errors.RayError, serve_errors.RayServeException),
    }


def translate_ray_error(name: str, exc: BaseException) -> BaseException:
    """What the gateway should see for ``exc``, raised by a call to model ``name`` over Ray."""
    if isinstance(exc, asyncio.CancelledError):
        return exc
    classes = _ray_error_classes()
    if classes and isinstance(exc, classes["task"]):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, SmallfleetError):
            return cause
        return BackendError(f"model {name!r} failed in its Ray replica: {cause or exc}")
    if isinstance(exc, SmallfleetError):
        return exc
    if not classes:
        return exc
    if isinstance(exc, classes["overloaded"]):
        return Overloaded(f"model {name!r}: every Ray replica's queue is full; retry later")
    if isinstance(exc, classes["unavailable"]):
        return BackendUnavailable(f"model {name!r} is unavailable in Ray: {exc}")
    if isinstance(exc, classes["timeout"]):
        return BackendTimeout(f"model {name!r} timed out in Ray: {exc}")
    if isinstance(exc, classes["ray"]):
        return BackendError(f"model {name!r} failed in Ray: {exc}")
    return exc


class RayHandleBackend:
    """The Backend protocol over a Ray Serve ``DeploymentHandle`` to a model deployment."""

    max_choices = 1  # one choice per request
    available = True  # no circuit of its own (ResilientBackend adds one)

    def __init__(self, name: str, handle: Any, *, context_length: int | None = None) -> None:
        self.name = name
        self.context_length = context_length
        self.features: frozenset[Feature] = NO_FEATURES  # the deployment's, once started
        self._handle = handle

    async def start(self) -> None:
        """Wait for the deployment to answer and learn its real context length and features."""
        info = await self._call("describe")
        self.context_length = info.get("context_length") or self.context_length
        self.features = frozenset(Feature(f) for f in info.get("features", ()))

    async def aclose(self) -> None:
        """Nothing to release: the deployment's replicas belong to Ray Serve."""

    async def health(self) -> Health:
        try:
            health: Health = await self._call("health")
        except SmallfleetError as exc:
            return Health(ok=False, detail=str(exc))
        return health

    async def chat(self, request: GenerationRequest) -> Completion:
        completion: Completion = await self._call("chat", request)
        return completion

    async def stream_chat(self, request: GenerationRequest) -> AsyncIterator[StreamChunk]:
        stream = getattr(self._handle.options(stream=True), "stream_chat").remote(request)  # noqa: B009
        finished = False
        try:
            async for chunk in stream:
                yield chunk
            finished = True
        except Exception as exc:
            finished = True
            raise translate_ray_error(self.name, exc) from None
        finally:
            if not finished:  # closed early (client gone) or cancelled: stop the replica's generation
                stream.cancel()

    async def _call(self, method: str, *args: Any) -> Any:
        response = getattr(self._handle, method).remote(*args)
        try:
            return await response
        except asyncio.CancelledError:
            response.cancel()
            raise
        except Exception as exc:
            raise translate_ray_error(self.name, exc) from None
