"""The ``routes:`` section: composites built from the fleet's models (backends/composite,
docs/composite-routes.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from backends.composite import cascade, diverse, plan_solve
from fleet.config.base import ModelName, Strict, check_not_reserved

MAX_ROUTE_SAMPLES = 32


class _RouteBase(Strict):
    name: ModelName

    @model_validator(mode="after")
    def _name_not_reserved(self) -> _RouteBase:
        check_not_reserved(self.name)
        return self

    def member_names(self) -> list[tuple[str, str]]:
        """(field path relative to the route, model name) of every model it is built from."""
        raise NotImplementedError


class PlanSolveTimeouts(Strict):
    planner: float = Field(
        default=plan_solve.DEFAULT_PLANNER_TIMEOUT, gt=0,
        description="seconds for the plan; then it solves directly"
    )
    solver: float = Field(
        default=plan_solve.DEFAULT_SOLVER_TIMEOUT, gt=0, description="seconds for the whole answer"
    )


class PlanSolveRoute(_RouteBase):
    """A planner model writes a short numbered plan; a solver model follows it and answers."""

    type: Literal["plan_solve"]
    planner: ModelName
    solver: ModelName
    plan_max_tokens: int = Field(
        default=plan_solve.DEFAULT_PLAN_MAX_TOKENS, ge=8, le=4096, description="a longer plan is dropped"
    )
    max_steps: int = Field(
        default=plan_solve.DEFAULT_MAX_STEPS, ge=1, le=50, description="a plan with more steps is dropped"
    )
    planner_temperature: float = Field(default=plan_solve.DEFAULT_PLANNER_TEMPERATURE, ge=0, le=2)
    planner_prompt: str | None = Field(default=None, min_length=1, description="may use {max_steps}")
    solver_prompt: str | None = Field(default=None, min_length=1, description="must use {plan}")
    timeouts: PlanSolveTimeouts = PlanSolveTimeouts()

    @field_validator("solver_prompt")
    @classmethod
    def _solver_prompt_has_plan(cls, value: str | None) -> str | None:
        if value is not None and "{plan}" not in value:
            raise ValueError("must contain {plan}, where the plan goes")
        return value

    def member_names(self) -> list[tuple[str, str]]:
        return [("planner", self.planner), ("solver", self.solver)]


class DiverseSample(Strict):
    """``count`` samples from ``model``; seeds follow one another from ``seed`` when it is set."""

    model: ModelName
    count: int = Field(default=1, ge=1, le=MAX_ROUTE_SAMPLES)
    temperature: float | None = Field(default=None, ge=0, le=2, description="default: the request's")
    top_p: float | None = Field(default=None, ge=0, le=1, description="default: the request's")
    seed: int | None = Field(default=None, description="default: the request's seed + the sample's position")


class DiverseRoute(_RouteBase):
    """Samples across models, temperatures and seeds; near-duplicates dropped; vote or n choices."""

    type: Literal["diverse"]
    samples: list[DiverseSample] = Field(min_length=1)
    dedupe_threshold: float = Field(
        default=diverse.DEFAULT_DEDUPE_THRESHOLD,
        gt=0,
        le=1,
        description="cosine similarity at which two samples are duplicates",
    )
    count_duplicates: bool = Field(
        default=diverse.DEFAULT_COUNT_DUPLICATES,
        description="every sample votes; false: near-duplicates vote once"
    )
    timeout: float = Field(
        default=diverse.DEFAULT_SAMPLE_TIMEOUT, gt=0, description="seconds per sample, queueing included"
    )
    stop_when_agreed: int | None = Field(
        default=None,
        ge=2,
        description="draw this many samples first; when they all give the same number or letter, that "
        "is the answer and the rest are never drawn (n = 1); null: always draw every sample",
    )

    @model_validator(mode="after")
    def _stops_before_the_end(self) -> DiverseRoute:
        if self.stop_when_agreed is not None and self.stop_when_agreed >= self.sample_count:
            raise ValueError(
                f"stop_when_agreed: {self.stop_when_agreed} is not fewer than the route's "
                f"{self.sample_count} samples"
            )
        return self

    @field_validator("samples")
    @classmethod
    def _bounded(cls, value: list[DiverseSample]) -> list[DiverseSample]:
        total = sum(sample.count for sample in value)
        if total > MAX_ROUTE_SAMPLES:
            raise ValueError(f"{total} samples in all; at most {MAX_ROUTE_SAMPLES}")
        return value

    @property
    def sample_count(self) -> int:
        return sum(sample.count for sample in self.samples)

    def member_names(self) -> list[tuple[str, str]]:
        return [(f"samples[{i}].model", sample.model) for i, sample in enumerate(self.samples)]


class CascadeRoute(_RouteBase):
    """A small model answers first (greedy, with token log-probabilities); below a confidence
    threshold the request goes to a larger model instead (backends/composite/cascade.py)."""

    type: Literal["cascade"]
    first: ModelName
    then: ModelName
    threshold: float = Field(
        le=0, description="token log-probability (by signal) under which the first answer is escalated"
    )
    signal: cascade.Signal = Field(
        default=cascade.DEFAULT_SIGNAL,
        description="mean: over the first answer's tokens; min: its least likely token"
    )
    timeout: float = Field(
        default=cascade.DEFAULT_STEP_TIMEOUT, gt=0, description="seconds for each model's answer"
    )

    def member_names(self) -> list[tuple[str, str]]:
        return [("first", self.first), ("then", self.then)]


RouteConfig = Annotated[PlanSolveRoute | DiverseRoute | CascadeRoute, Field(discriminator="type")]
ROUTE_TYPES = ("plan_solve", "diverse", "cascade")
