"""The start-up heap kept out of the cyclic garbage collector's way.

A gateway that has loaded its fleet, router and keys holds ~100,000 objects that live as long as
the process. Each full collection of the cyclic garbage collector walks all of them (20-50 ms on a
small machine, a few times a minute under load: ~3% of the event loop's time), to find nothing.
:func:`freeze_startup_heap` moves every object alive once the gateway has started into the collector's
permanent generation (:func:`gc.freeze`), which its collections skip.

The price: a frozen object that later becomes *cyclic* garbage is not reclaimed (plain reference
counting still frees the rest). The loss is bounded by what was alive when frozen, and the one
planned replacement of start-up objects, a router reload, calls :func:`refreeze_heap`, which
unfreezes and collects before freezing again.

Only ``smallfleet serve``, whose process is the gateway's alone, freezes (``create_app``'s
``freeze_heap``): a library caller (a test building many apps in one process) does not, so
nothing here changes another program's heap unasked.
"""

from __future__ import annotations

import gc

_frozen = False  # this process's heap was frozen here (and not thawed since)


def freeze_startup_heap() -> None:
    """Collect garbage, then freeze every object still alive."""
    global _frozen
    gc.collect()
    gc.freeze()
    _frozen = True


def refreeze_heap() -> None:
    """After start-up objects were replaced (a router reload): free what became garbage among the
    frozen objects, then freeze again. A no-op where :func:`freeze_startup_heap` was not called.
    It is one full collection (20-50 ms for a gateway with the default router artifact on a small
    machine: benchmarks/request_steps.py), on the calling thread: a reload pauses the event loop
    that long."""
    if _frozen:
        gc.unfreeze()
        freeze_startup_heap()


def thaw_heap() -> None:
    """Give the frozen objects back to the collector (at shutdown)."""
    global _frozen
    if _frozen:
        gc.unfreeze()
        _frozen = False
