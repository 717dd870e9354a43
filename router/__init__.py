"""smallfleet's query router: pick the fleet model with the best quality/cost trade-off.

    from router import load_router
    router = load_router("router/artifacts/default")
    decision = router.route("What is 2 + 2?", alpha=1.0)

Importing this package is cheap: numpy only; model2vec loads when a router is built and
scikit-learn only when training.
"""

from __future__ import annotations

from pathlib import Path

from router._errors import ArtifactError, DataError, RouterError, RoutingError
from router.decision import RoutingDecision
from router.routing import ROUTERS, BlendRouter, Router, load_router

DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "default"

__all__ = [
    "DEFAULT_ARTIFACT",
    "ROUTERS",
    "ArtifactError",
    "BlendRouter",
    "DataError",
    "Router",
    "RouterError",
    "RoutingDecision",
    "RoutingError",
    "load_router",
]
