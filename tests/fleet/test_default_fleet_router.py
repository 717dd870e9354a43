"""The embedded default fleet ships a router trained on its own fleet evaluation."""

from __future__ import annotations

from pathlib import Path

from fleet.config import default_fleet
from fleet.routing_tasks import NAMES
from router.routing import load_router
from tests.routing_examples import KINDS


def test_the_default_fleets_router_knows_the_fleets_models_and_routes():
    fleet = default_fleet()
    assert fleet.router.artifact is not None
    router = load_router(fleet.router.artifact)
    assert Path(fleet.router.artifact).name == "default-fleet"
    assert set(router.models) == {m.name for m in fleet.models} | {r.name for r in fleet.routes}
    # trained on the precision benchmarks and the routing benchmark's own tasks
    assert set(router.manifest["groups"]) == {"mmlu", "gsm8k", "humaneval", *NAMES}


def test_auto_on_the_default_fleet_sends_kinds_of_questions_to_different_models():
    router = load_router(default_fleet().router.artifact)
    decisions = {kind: router.route(question) for kind, question in KINDS.items()}
    assert not any(d.out_of_distribution for d in decisions.values()), decisions
    assert len({d.model for d in decisions.values()}) >= 2, {k: d.model for k, d in decisions.items()}
