"""Composite backends: Backends built from other Backends (STYLE.md).

- :class:`PlanSolveBackend`: a planner model writes a short plan, a solver model answers with it;
- :class:`DiverseBackend`: several samples across models, temperatures and seeds, near-duplicates
  dropped, then a vote over their final answers (or n distinct choices);
- :class:`CascadeBackend`: a small model answers first; a larger one answers instead when the
  first answer's token confidence is low.

Each is a Backend, so the gateway serves, routes and accounts for it like a model. Its members
are Backends the caller owns (the fleet starts and closes them). The answer's
:class:`~backends.types.CompositeTrace` lists every inner call with its usage, so the caller can
price each at its own model's price.
"""

from __future__ import annotations

from backends.composite.cascade import CascadeBackend, CascadeSettings
from backends.composite.diverse import DiverseBackend, DiverseSettings, Embed, Sampler
from backends.composite.plan_solve import PlanSolveBackend, PlanSolveSettings

__all__ = [
    "CascadeBackend",
    "CascadeSettings",
    "DiverseBackend",
    "DiverseSettings",
    "Embed",
    "PlanSolveBackend",
    "PlanSolveSettings",
    "Sampler",
]
