"""Backends: where completions come from.

One :class:`Backend` protocol; an in-process llama.cpp backend, an
OpenAI-compatible HTTP backend, composites built from other backends
(:mod:`backends.composite`: plan_solve, diverse), and a fake for tests. This
package imports neither ``gateway`` nor ``router``.
"""

from __future__ import annotations

from backends.base import Backend
from backends.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    CircuitOpen,
    ContentPolicyViolation,
    ContextLengthExceeded,
    ModelNotFound,
    Overloaded,
    PayloadTooLarge,
    RequestError,
    SmallfleetError,
)
from backends.types import (
    Choice,
    Completion,
    CompositeTrace,
    GenerationRequest,
    Health,
    InnerCall,
    Message,
    SamplingParams,
    StreamChunk,
    Usage,
)

__all__ = [
    "Backend",
    "BackendError",
    "BackendTimeout",
    "BackendUnavailable",
    "Choice",
    "CircuitOpen",
    "Completion",
    "CompositeTrace",
    "ContentPolicyViolation",
    "ContextLengthExceeded",
    "GenerationRequest",
    "Health",
    "InnerCall",
    "Message",
    "ModelNotFound",
    "Overloaded",
    "PayloadTooLarge",
    "RequestError",
    "SamplingParams",
    "SmallfleetError",
    "StreamChunk",
    "Usage",
]
