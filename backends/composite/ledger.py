"""The inner calls a route has finished for the current request, for charging a route that
did not answer.

A route that answers reports its inner calls in its trace. One that fails, or that the client
abandons (cancellation carries nothing), leaves them here: every finished inner call is written
to the ledger of the current context, a ContextVar the gateway opens per attempt and the tasks
a route starts inherit (asyncio copies the context into each new task; the list itself is
shared). The gateway charges the ledger when an attempt ends without an answer: a failure
(before a fallback, or the last one) or a client that left. Without an open ledger (a route
used outside the gateway), recording does nothing.
"""

from __future__ import annotations

from contextvars import ContextVar

from backends.types import InnerCall

_LEDGER: ContextVar[list[InnerCall] | None] = ContextVar("smallfleet_inner_call_ledger", default=None)


def open_ledger() -> list[InnerCall]:
    """A fresh ledger for the calls made from this context (and the tasks it starts) on."""
    ledger: list[InnerCall] = []
    _LEDGER.set(ledger)
    return ledger


def record(call: InnerCall) -> InnerCall:
    """Write ``call`` to the open ledger, if any; return it."""
    ledger = _LEDGER.get()
    if ledger is not None:
        ledger.append(call)
    return call
