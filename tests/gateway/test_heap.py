"""gateway/heap.py: the start-up heap frozen out of full collections, and freed again on a
router reload; through ``create_app(freeze_heap=True)`` as ``smallfleet serve`` builds it."""

from __future__ import annotations

import gc
import weakref

import httpx

import router
from fleet.config import parse_fleet
from gateway.access import AccessPolicy
from gateway.app import create_app
from gateway.heap import freeze_startup_heap, refreeze_heap, thaw_heap
from tests.conftest import LiveServer


class _Cycle:
    """An object that only the cyclic collector can free."""

    def __init__(self) -> None:
        self.me = self


def test_a_frozen_cycle_outlives_collections_until_refreeze() -> None:
    cycle = _Cycle()
    ref = weakref.ref(cycle)
    freeze_startup_heap()
    try:
        assert gc.get_freeze_count() > 0
        del cycle
        gc.collect()
        assert ref() is not None  # frozen: the collector skips it
        refreeze_heap()
        assert ref() is None and gc.get_freeze_count() > 0
    finally:
        thaw_heap()
    assert gc.get_freeze_count() == 0
    refreeze_heap()  # thawed: a no-op
    assert gc.get_freeze_count() == 0


def test_a_served_gateway_freezes_once_started_and_a_reload_frees_the_old_router(stub_upstream) -> None:
    config = parse_fleet({
        "models": [{"name": "qwen2.5-7b-instruct", "backend": "openai", "base_url": stub_upstream}],
        "router": {"artifact": str(router.DEFAULT_ARTIFACT)},
    })
    app = create_app(config, access=AccessPolicy(admin_loopback=True), freeze_heap=True)
    with LiveServer(app) as server:
        assert gc.get_freeze_count() > 0
        old = app.state.gateway.router
        old.cycle = _Cycle(), old  # garbage only the cyclic collector finds, once replaced
        ref = weakref.ref(old)
        del old
        reload = httpx.post(server.url + "/admin/router/reload", timeout=30)
        assert reload.status_code == 200, reload.text
        assert ref() is None and app.state.gateway.router is not None
        assert gc.get_freeze_count() > 0  # frozen again after the reload
    assert gc.get_freeze_count() == 0  # thawed at shutdown
