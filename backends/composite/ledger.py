"""The inner calls a route has finished for the current request, for charging a request the
client abandons.

A route reports its inner calls with its answer (the trace) or with its failure
(``SmallfleetError.inner_calls``). A request the client leaves ends in cancellation, which
carries nothing, so every finished inner call is also written to the ledger of the current
context: a ContextVar the gateway opens per attempt, inherited by the tasks a route starts
(asyncio copies the context into each new task; the list itself is shared). The gateway reads
the ledger only when the request was abandoned before the route answered. Without an open
ledger (a route used outside the gateway), recording does nothing.
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
