"""The ``resilience:`` and ``fallbacks:`` sections of the fleet config, and how the fleet applies them."""

from __future__ import annotations

from typing import Any

import pytest

from backends.circuit import CircuitState
from backends.fake import FakeBackend
from backends.resilience import ResilientBackend
from fleet.config import ConfigError, parse_fleet
from fleet.members import Fleet


def openai_model(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "backend": "openai", "base_url": "http://127.0.0.1:9/v1", **extra}


def test_defaults_are_sane() -> None:
    config = parse_fleet(
        {"models": [openai_model("a"), {"name": "b", "backend": "llama_cpp", "gguf": "/x.gguf"}]}
    )
    a, b = config.models
    assert a.retry_config().attempts == 3 and b.retry_config().attempts == 1
    assert a.retry_config().base_delay == 0.2 and a.retry_config().max_delay == 2.0
    assert a.resilience.circuit_breaker.failure_threshold == 5
    assert a.resilience.circuit_breaker.cool_down == 30.0
    timeouts = a.resilience.timeouts
    assert (timeouts.first_token, timeouts.idle, timeouts.total) == (60.0, 30.0, 600.0)
    assert a.fallbacks == []


def test_llama_cpp_retries_when_asked() -> None:
    model = {"name": "b", "backend": "llama_cpp", "gguf": "/x.gguf", "resilience": {"retry": {"attempts": 2}}}
    assert parse_fleet({"models": [model]}).models[0].retry_config().attempts == 2


@pytest.mark.parametrize(
    ("resilience", "message"),
    [
        ({"retries": 3}, "models[0].resilience.retries: Extra inputs are not permitted"),
        ({"retry": {"attempts": 0}}, "models[0].resilience.retry.attempts"),
        ({"retry": {"jitter": 2}}, "models[0].resilience.retry.jitter"),
        ({"circuit_breaker": {"failure_threshold": 0}}, "models[0].resilience.circuit_breaker"),
        ({"timeouts": {"idle": 0}}, "models[0].resilience.timeouts.idle"),
        ({"timeouts": {"ttft": 1}}, "models[0].resilience.timeouts.ttft"),
    ],
)
def test_bad_resilience_settings_are_refused_by_field(resilience: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_fleet({"models": [openai_model("a", resilience=resilience)]})


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [
        (["a"], "cannot fall back to itself"),
        (["zzz"], "'zzz' is not a model of this fleet"),
        (["b", "b"], "listed twice"),
    ],
)
def test_bad_fallbacks_are_refused(fallbacks: list[str], message: str) -> None:
    models = [openai_model("a", fallbacks=fallbacks), openai_model("b")]
    with pytest.raises(ConfigError, match=r"models\[0\]\.fallbacks: .*" + message):
        parse_fleet({"models": models})


def test_fleet_wraps_backends_and_exposes_fallbacks() -> None:
    config = parse_fleet(
        {
            "models": [
                openai_model("a", fallbacks=["b", "c"]),
                openai_model("b", resilience={"circuit_breaker": {"enabled": False}}),
                openai_model("c", resilience={"enabled": False}),
            ]
        }
    )
    fakes = {name: FakeBackend(name) for name in ("a", "b", "c")}
    fleet = Fleet.from_config(config, fakes)
    a, b, c = (fleet.get(name) for name in "abc")
    assert a.fallbacks == ("b", "c") and b.fallbacks == ()
    assert isinstance(a.backend, ResilientBackend) and a.backend.inner is fakes["a"]
    assert a.backend.retry.attempts == 3 and a.backend.breaker is not None
    assert isinstance(b.backend, ResilientBackend) and b.backend.breaker is None
    assert c.backend is fakes["c"]
    assert a.available and c.available and a.circuit_state is CircuitState.CLOSED
    assert c.circuit_state is CircuitState.CLOSED
    unwrapped = Fleet.from_config(config, fakes, resilience=False)
    assert unwrapped.get("a").backend is fakes["a"]
    already = ResilientBackend(fakes["a"])
    assert Fleet.from_config(config, {"a": already}).get("a").backend is already
