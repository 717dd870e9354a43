"""RayHandleBackend over a stand-in DeploymentHandle, ModelServer over the fake backend,
and how Ray's exceptions become smallfleet's. No Ray cluster is started here."""

from __future__ import annotations

import asyncio
import pickle
from collections.abc import AsyncIterator
from typing import Any

import pytest
import ray.exceptions as ray_exceptions
import ray.serve.exceptions as serve_exceptions

from backends.base import Backend
from backends.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    ContextLengthExceeded,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    RequestError,
    SmallfleetError,
)
from backends.fake import FakeBackend
from backends.features import Feature
from backends.ray_handle import RayHandleBackend, translate_ray_error
from backends.types import GenerationRequest, Message
from deploy.rayserve.model import ModelServer

REQUEST = GenerationRequest(messages=(Message("user", "hi"),))


def wrapped(cause: BaseException) -> BaseException:
    """What Ray raises in the caller when the replica raised ``cause``: the task error is
    serialized with the cause inside, and rebuilt as an instance of the cause's class."""
    from ray import cloudpickle

    task_error = ray_exceptions.RayTaskError("ModelServer.chat", "Traceback ...", cause)
    return cloudpickle.loads(cloudpickle.dumps(task_error)).as_instanceof_cause()


class _Response:
    """Stands in for DeploymentResponse / DeploymentResponseGenerator."""

    def __init__(
        self, result: Any = None, chunks: list[Any] | None = None, error: BaseException | None = None
    ):
        self.result, self.chunks, self.error = result, chunks or [], error
        self.cancelled = False

    def __await__(self) -> Any:
        async def get() -> Any:
            if self.error is not None:
                raise self.error
            return self.result

        return get().__await__()

    def __aiter__(self) -> AsyncIterator[Any]:
        async def items() -> AsyncIterator[Any]:
            for chunk in self.chunks:
                yield chunk
            if self.error is not None:
                raise self.error

        return items()

    def cancel(self) -> None:
        self.cancelled = True


class _Method:
    def __init__(self, handle: FakeHandle, name: str) -> None:
        self.handle, self.name = handle, name

    def remote(self, *args: Any) -> _Response:
        self.handle.calls.append((self.name, self.handle.streaming, args))
        response = self.handle.responses[self.name]
        self.handle.issued.append(response)
        return response


class FakeHandle:
    """The slice of DeploymentHandle that RayHandleBackend uses."""

    def __init__(self, **responses: _Response) -> None:
        self.responses = responses
        self.calls: list[tuple[str, bool, tuple[Any, ...]]] = []
        self.issued: list[_Response] = []
        self.streaming = False

    def options(self, *, stream: bool) -> FakeHandle:
        clone = FakeHandle(**self.responses)
        clone.calls, clone.issued, clone.streaming = self.calls, self.issued, stream
        return clone

    def __getattr__(self, name: str) -> _Method:
        return _Method(self, name)


# -- error translation ------------------------------------------------------------------------
ERRORS = [
    RequestError("bad", param="messages"),
    ContextLengthExceeded("too long", param="messages"),
    ModelNotFound("no such model", param="model"),
    PayloadTooLarge("big"),
    Overloaded("queue full"),
    BackendError("failed"),
    BackendUnavailable("gone"),
    BackendTimeout("slow"),
]


@pytest.mark.parametrize("error", ERRORS, ids=lambda e: type(e).__name__)
def test_smallfleet_errors_survive_pickling_and_ray_wrapping(error: SmallfleetError) -> None:
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert (copy.message, copy.param, copy.status_code, copy.code) == (
        error.message,
        error.param,
        error.status_code,
        error.code,
    )
    remote = wrapped(error)
    assert isinstance(remote, type(error))  # Ray's dual class, with Ray's traceback as its text
    translated = translate_ray_error("m", remote)
    assert type(translated) is type(error) and translated.message == error.message  # type: ignore[attr-defined]
    assert translated.param == error.param  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (serve_exceptions.BackPressureError(num_queued_requests=5, max_queued_requests=5), Overloaded),
        (ray_exceptions.ActorDiedError(), BackendUnavailable),
        (ray_exceptions.GetTimeoutError("timed out"), BackendTimeout),
        (ray_exceptions.RaySystemError("boom"), BackendError),
        (wrapped(ValueError("llama.cpp said no")), BackendError),
    ],
)
def test_ray_failures_map_onto_the_error_tree(raised: BaseException, expected: type[SmallfleetError]) -> None:
    translated = translate_ray_error("m", raised)
    assert type(translated) is expected
    assert "'m'" in str(translated)


def test_foreign_and_cancellation_errors_pass_unchanged() -> None:
    cancelled = asyncio.CancelledError()
    assert translate_ray_error("m", cancelled) is cancelled
    other = KeyError("x")
    assert translate_ray_error("m", other) is other


# -- RayHandleBackend ---------------------------------------------------------------------------
def test_is_a_backend_and_learns_its_context_length() -> None:
    describe = {"name": "m", "context_length": 1024, "features": ["logprobs", "tools"]}
    handle = FakeHandle(describe=_Response(describe))
    backend = RayHandleBackend("m", handle, context_length=4096)
    assert isinstance(backend, Backend)
    assert backend.features == frozenset()  # nothing promised before the deployment says
    asyncio.run(backend.start())
    assert backend.context_length == 1024
    assert backend.features == {Feature.LOGPROBS, Feature.TOOLS}


async def test_chat_and_errors_from_the_replica() -> None:
    completion = await FakeBackend("m", reply="two words").chat(REQUEST)
    backend = RayHandleBackend("m", FakeHandle(chat=_Response(completion)))
    assert await backend.chat(REQUEST) == completion
    failing = RayHandleBackend("m", FakeHandle(chat=_Response(error=wrapped(Overloaded("full")))))
    with pytest.raises(Overloaded, match="full"):
        await failing.chat(REQUEST)


async def test_stream_passes_chunks_through_and_translates_a_late_error() -> None:
    chunks = [c async for c in FakeBackend("m", reply="one two three").stream_chat(REQUEST)]
    handle = FakeHandle(stream_chat=_Response(chunks=chunks))
    got = [c async for c in RayHandleBackend("m", handle).stream_chat(REQUEST)]
    assert got == chunks
    assert handle.calls == [("stream_chat", True, (REQUEST,))]
    assert not handle.issued[0].cancelled
    broken = FakeHandle(stream_chat=_Response(chunks=chunks[:1], error=ray_exceptions.ActorDiedError()))
    with pytest.raises(BackendUnavailable):
        _ = [c async for c in RayHandleBackend("m", broken).stream_chat(REQUEST)]


async def test_closing_a_stream_early_cancels_the_replica_call() -> None:
    chunks = [c async for c in FakeBackend("m", reply="one two three").stream_chat(REQUEST)]
    handle = FakeHandle(stream_chat=_Response(chunks=chunks))
    stream = RayHandleBackend("m", handle).stream_chat(REQUEST)
    await stream.__anext__()
    await stream.aclose()  # type: ignore[attr-defined]
    assert handle.issued[0].cancelled


async def test_health_reports_an_unreachable_deployment_as_down() -> None:
    handle = FakeHandle(health=_Response(error=serve_exceptions.RayServeException("no replicas")))
    health = await RayHandleBackend("m", handle).health()
    assert not health.ok and "no replicas" in health.detail


# -- ModelServer: the deployment's methods over a backend ---------------------------------------
async def test_model_server_exposes_the_backend() -> None:
    fake = FakeBackend("m", reply="a b c", context_length=777)
    server = ModelServer(fake)
    assert await server.describe() == {"name": "m", "context_length": 777, "features": []}
    assert (await server.chat(REQUEST)).text == "a b c"
    assert "".join([c.text async for c in server.stream_chat(REQUEST)]) == "a b c"
    await server.check_health()  # healthy: returns


async def test_check_health_raises_when_the_model_is_down() -> None:
    class Down(FakeBackend):
        async def health(self) -> Any:
            from backends.types import Health

            return Health(ok=False, detail="not loaded")

    with pytest.raises(BackendUnavailable, match="not loaded"):
        await ModelServer(Down("m")).check_health()


async def test_model_server_stream_closed_early_stops_the_backend_stream() -> None:
    fake = FakeBackend("m", reply="one two three four", chunk_delay=0.01)
    stream = ModelServer(fake).stream_chat(REQUEST)
    await stream.__anext__()
    await stream.aclose()
    assert fake.stream_closed_early
