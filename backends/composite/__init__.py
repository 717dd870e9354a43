"""Composite backends: Backends built from other Backends (STYLE.md).

- :class:`PlanSolveBackend`: a planner model writes a short plan, a solver model answers with it;
- :class:`DiverseBackend`: several samples across models, temperatures and seeds, near-duplicates
  dropped, then a vote over their final answers (or n distinct choices).

Each is a Backend, so the gateway serves, routes and accounts for it like a model. Its members
are Backends the caller owns (the fleet starts and closes them). The answer's
:class:`~backends.types.CompositeTrace` lists every inner call with its usage, so the caller can
price each at its own model's price.
"""

from __future__ import annotations

from backends.composite.diverse import DiverseBackend, DiverseSettings, Embed, Sampler
from backends.composite.plan_solve import PlanSolveBackend, PlanSolveSettings

__all__ = [
    "DiverseBackend",
    "DiverseSettings",
    "Embed",
    "PlanSolveBackend",
    "PlanSolveSettings",
    "Sampler",
]
