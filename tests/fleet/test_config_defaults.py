"""The fleet config's defaults are the backends' own: a model configured with nothing gets what
the backend would have chosen (each default is written once, in the backend that uses it)."""

from __future__ import annotations

import dataclasses
import inspect

from backends.circuit import CircuitBreakerPolicy
from backends.composite import CascadeSettings, DiverseSettings, PlanSolveSettings
from backends.embeddings import LlamaCppEmbedder, OpenAIEmbedder
from backends.llama_cpp import LlamaCppBackend
from backends.openai_http import OpenAIHTTPBackend, Timeouts
from backends.resilience import FirstTokenDeadline, RetryPolicy, StreamTimeouts
from fleet.config import (
    CascadeRoute,
    CircuitBreakerConfig,
    DeadlineConfig,
    DiverseRoute,
    LlamaCppEmbeddingModel,
    LlamaCppModel,
    OpenAIEmbeddingModel,
    OpenAIModel,
    PlanSolveRoute,
    PlanSolveTimeouts,
    RetryConfig,
    StreamTimeoutsConfig,
    TimeoutsConfig,
)


def _defaults(cls: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def _parameters(function: object) -> dict[str, object]:
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()  # type: ignore[arg-type]
        if p.default is not inspect.Parameter.empty
    }


def test_resilience_defaults_are_the_policies() -> None:
    assert RetryConfig().model_dump() == _defaults(RetryPolicy)
    breaker = CircuitBreakerConfig().model_dump()
    assert {k: breaker[k] for k in ("failure_threshold", "cool_down")} == _defaults(CircuitBreakerPolicy)
    assert StreamTimeoutsConfig().model_dump() == _defaults(StreamTimeouts)
    deadline = FirstTokenDeadline()
    assert (DeadlineConfig().first_token, DeadlineConfig().hand_over) == (deadline.budget, deadline.hand_over)


def test_model_defaults_are_the_backends() -> None:
    llama = _parameters(LlamaCppBackend.__init__)
    fields = LlamaCppModel.model_fields
    assert fields["context_length"].default == llama["context_length"]
    assert fields["max_queue"].default == llama["max_queue"]
    assert TimeoutsConfig().model_dump() == _defaults(Timeouts)
    assert OpenAIModel.model_fields["max_connections"].default == _parameters(OpenAIHTTPBackend.__init__)[
        "max_connections"
    ]


def test_embedding_defaults_are_the_embedders() -> None:
    llama = _parameters(LlamaCppEmbedder.__init__)
    fields = LlamaCppEmbeddingModel.model_fields
    for name in ("context_length", "pooling", "matryoshka", "max_queue"):
        assert fields[name].default == llama[name], name
    remote = _parameters(OpenAIEmbedder.__init__)
    for name in ("matryoshka", "max_connections"):
        assert OpenAIEmbeddingModel.model_fields[name].default == remote[name], name


def test_route_defaults_are_the_composites() -> None:
    plan = _defaults(PlanSolveSettings)
    fields = PlanSolveRoute.model_fields
    for name in ("plan_max_tokens", "max_steps", "planner_temperature"):
        assert fields[name].default == plan[name], name
    assert PlanSolveTimeouts().model_dump() == {
        "planner": plan["planner_timeout"],
        "solver": plan["solver_timeout"],
    }
    diverse = _defaults(DiverseSettings)
    fields = DiverseRoute.model_fields
    assert fields["dedupe_threshold"].default == diverse["dedupe_threshold"]
    assert fields["count_duplicates"].default == diverse["count_duplicates"]
    assert fields["timeout"].default == diverse["sample_timeout"]
    cascade = _defaults(CascadeSettings)
    assert CascadeRoute.model_fields["signal"].default == cascade["signal"]
    assert CascadeRoute.model_fields["timeout"].default == cascade["step_timeout"]
