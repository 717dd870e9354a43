"""Routes in the fleet YAML: typed, validated, named apart from models, built into the fleet."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.composite import DiverseBackend, PlanSolveBackend
from backends.fake import FakeBackend
from backends.resilience import ResilientBackend
from fleet.config import ConfigError, DiverseRoute, PlanSolveRoute, default_fleet, load_fleet, parse_fleet
from fleet.members import Fleet

MODELS = [
    {"name": "small", "backend": "openai", "base_url": "http://127.0.0.1:9/v1", "context_length": 1024},
    {"name": "large", "backend": "openai", "base_url": "http://127.0.0.1:9/v1", "context_length": 4096},
]
PLAN = {"name": "ps", "type": "plan_solve", "planner": "small", "solver": "large"}
VOTE = {"name": "vote", "type": "diverse", "samples": [{"model": "large", "temperature": 0.7, "count": 3}]}


def test_routes_parse_into_typed_models_with_defaults():
    config = parse_fleet({"models": MODELS, "routes": [PLAN, VOTE]})
    plan, vote = config.routes
    assert isinstance(plan, PlanSolveRoute) and plan.plan_max_tokens == 128 and plan.timeouts.planner == 30
    assert isinstance(vote, DiverseRoute) and vote.sample_count == 3 and vote.dedupe_threshold == 0.95
    assert vote.count_duplicates and vote.timeout == 120
    assert config.route("vote") is vote and config.route("small") is None


@pytest.mark.parametrize(
    ("route", "needle"),
    [
        ({**PLAN, "type": "committee"}, "routes[0]: Input tag 'committee'"),
        ({**PLAN, "planner": "ghost"}, "routes[0].planner: 'ghost' is not a model of this fleet"),
        ({**PLAN, "name": "small"}, "routes[0].name: 'small' is already a model's name"),
        ({**PLAN, "name": "auto:fast"}, "reserved for the router"),
        ({**PLAN, "plan_max_tokens": 0}, "routes[0].plan_max_tokens"),
        ({**PLAN, "timeouts": {"planner": -1}}, "routes[0].timeouts.planner"),
        ({**PLAN, "solver_prompt": "no placeholder"}, "routes[0].solver_prompt: must contain {plan}"),
        ({**PLAN, "colour": "red"}, "routes[0].colour: Extra inputs are not permitted"),
        ({k: v for k, v in PLAN.items() if k != "solver"}, "routes[0].solver: Field required"),
        ({**VOTE, "samples": []}, "routes[0].samples"),
        ({**VOTE, "samples": [{"model": "ghost"}]}, "routes[0].samples[0].model: 'ghost' is not a model"),
        ({**VOTE, "samples": [{"model": "large", "count": 40}]}, "routes[0].samples[0].count"),
        ({**VOTE, "samples": [{"model": "large", "count": 20}] * 2}, "40 samples in all; at most 32"),
        ({**VOTE, "samples": [{"model": "large", "temperature": 3}]}, "routes[0].samples[0].temperature"),
        ({**VOTE, "dedupe_threshold": 1.5}, "routes[0].dedupe_threshold"),
        ({**VOTE, "mode": "vote"}, "routes[0].mode: Extra inputs are not permitted"),
        ({**VOTE, "stop_when_agreed": 1}, "routes[0].stop_when_agreed"),
        ({**VOTE, "stop_when_agreed": 3}, "routes[0]: stop_when_agreed: 3 is not fewer than the route's 3 samples"),
    ],
)
def test_a_bad_route_is_refused_naming_the_field(route, needle):
    with pytest.raises(ConfigError) as caught:
        parse_fleet({"models": MODELS, "routes": [route]})
    assert needle in str(caught.value)


def test_route_names_are_unique():
    with pytest.raises(ConfigError, match=r"routes\[1\].name: duplicate route name 'ps'"):
        parse_fleet({"models": MODELS, "routes": [PLAN, PLAN]})


def test_the_fleet_builds_routes_from_its_members_resilient_backends():
    config = parse_fleet({"models": MODELS, "routes": [PLAN, VOTE]})
    fakes = {"small": FakeBackend("small", context_length=1024), "large": FakeBackend("large", context_length=4096)}
    fleet = Fleet.from_config(config, fakes)
    assert fleet.names() == ["small", "large", "ps", "vote"]
    plan, vote = fleet.get("ps"), fleet.get("vote")
    assert plan.composite and plan.owned_by == "plan_solve" and plan.max_choices == 1
    assert isinstance(plan.backend, PlanSolveBackend) and plan.backend.solver is fleet.get("large").backend
    assert isinstance(plan.backend.planner, ResilientBackend)
    assert isinstance(vote.backend, DiverseBackend) and vote.max_choices == 3
    assert vote.context_length == 4096 and plan.context_length == 4096
    assert not fleet.get("small").composite and fleet.get("small").max_choices == 1


def test_the_default_fleet_declares_the_route_that_won_and_the_measured_ones_load():
    measured = load_fleet(Path(__file__).resolve().parents[2] / "benchmarks" / "fleet" / "routes_fleet.yaml")
    # the default fleet serves vote-1.5b as measured, stopping once its first two samples agree
    (shipped,) = default_fleet().routes
    assert isinstance(shipped, DiverseRoute) and shipped.stop_when_agreed == 2
    assert shipped.model_copy(update={"stop_when_agreed": None}) == measured.route("vote-1.5b")
    assert [(r.name, r.type) for r in measured.routes] == [
        ("plan-solve-0.5b", "plan_solve"), ("plan-1.5b-solve-0.5b", "plan_solve"), ("vote-0.5b", "diverse"),
        ("cascade-0.5b-1.5b", "cascade"), ("vote-1.5b", "diverse"),
    ]


def test_a_diverse_route_cannot_ask_an_in_process_model_for_more_than_it_queues():
    local = {"name": "local", "backend": "llama_cpp", "gguf": "/nonexistent.gguf", "max_queue": 2}
    many = {"name": "many", "type": "diverse", "samples": [
        {"model": "local", "temperature": 0.0, "count": 1}, {"model": "local", "temperature": 0.7, "count": 3},
    ]}
    with pytest.raises(ConfigError, match=r"routes\[0\].samples: 4 samples of 'local', which holds at most 3"):
        parse_fleet({"models": [local], "routes": [many]})
    many["samples"][1]["count"] = 2
    assert parse_fleet({"models": [local], "routes": [many]}).route("many").sample_count == 3


def test_a_vote_that_stops_once_its_first_samples_agree_is_built_so():
    config = parse_fleet({"models": MODELS, "routes": [{**VOTE, "stop_when_agreed": 2}]})
    fakes = {"small": FakeBackend("small"), "large": FakeBackend("large")}
    vote = Fleet.from_config(config, fakes).get("vote").backend
    assert isinstance(vote, DiverseBackend) and vote.settings.stop_when_agreed == 2
    assert parse_fleet({"models": MODELS, "routes": [VOTE]}).routes[0].stop_when_agreed is None
