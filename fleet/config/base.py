"""What every section of the fleet config shares: strict models, the error, names and prices."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

RESERVED_MODEL_PREFIX = "auto"


class ConfigError(ValueError):
    """A fleet config that cannot be served; the message names the field."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ModelName = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][\w.:\-/]*$")]


class Price(Strict):
    """Cost units per 1M tokens."""

    input: float = Field(default=0.0, ge=0)
    output: float = Field(default=0.0, ge=0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (self.input * prompt_tokens + self.output * completion_tokens) / 1e6


def check_not_reserved(name: str) -> None:
    if name == RESERVED_MODEL_PREFIX or name.startswith(RESERVED_MODEL_PREFIX + ":"):
        raise ValueError(f"name {name!r} is reserved for the router")

