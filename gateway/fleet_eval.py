"""The fleet of `smallfleet fleet eval`, built from the gateway's validated config.

router/ cannot import gateway/, so `router.cli.add_commands(..., fleet_loader=load_eval_models)`
is how the gateway hands it models built exactly as `serve` builds them (same validation, same
backend factories), without the resilience wrappers: an evaluation measures the bare model.
"""

from __future__ import annotations

from pathlib import Path

from gateway.config import FleetConfig, LlamaCppModel, default_fleet, load_fleet
from gateway.fleet import BACKEND_FACTORIES
from router.fleet.models import EvalModel


def eval_models(config: FleetConfig) -> list[EvalModel]:
    """One :class:`EvalModel` per llama_cpp or openai model of ``config``."""
    models = []
    for model in config.models:
        factory = BACKEND_FACTORIES.get(model.backend)
        if factory is None:
            continue
        llama = model if isinstance(model, LlamaCppModel) else None
        models.append(
            EvalModel(
                name=model.name,
                backend=factory(model),
                gguf=llama.gguf if llama else None,
                sha256=llama.sha256 if llama else None,
                params=model.params,
                quant=model.quant,
                price_input=model.price.input,
                price_output=model.price.output,
                in_process=llama is not None,
            )
        )
    return models


def load_eval_models(path: Path | None) -> list[EvalModel]:
    """The evaluable models of the fleet at ``path`` (the embedded default fleet when None)."""
    return eval_models(load_fleet(path) if path is not None else default_fleet())
