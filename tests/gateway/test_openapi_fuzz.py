"""Property-based fuzzing of the HTTP API from its own OpenAPI document (schemathesis).

A live gateway with fake backends; every operation but the key-changing admin
ones gets generated requests (valid and invalid), and every answer must be
free of 5xx, documented, and conform to the documented schema. Bounded:
``MAX_EXAMPLES`` per operation, a fixed seed (derandomized), well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from backends.fake import FakeBackend
from fleet.config import parse_fleet
from gateway.app import create_app
from gateway.openapi import openapi_document
from tests.conftest import LiveServer, fleet_of

MAX_EXAMPLES = 40
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

schema = schemathesis.openapi.from_dict(openapi_document("alpha")).exclude(path_regex="^/admin/keys")


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    backends = {"alpha": FakeBackend("alpha"), "beta": FakeBackend("beta")}
    fleet = fleet_of("alpha", "beta").model_dump()
    fleet["embeddings"] = [{"name": "minilm-static", "backend": "static"}]  # the router's, for real
    with LiveServer(create_app(parse_fleet(fleet), backends=backends)) as server:
        yield server.url


def test_the_document_is_served(gateway_url: str) -> None:
    import httpx

    served = httpx.get(gateway_url + "/openapi.json").json()
    assert served == openapi_document("alpha")
    assert served["openapi"].startswith("3.1")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_the_api_keeps_its_contract(case: schemathesis.Case, gateway_url: str) -> None:
    case.call_and_validate(base_url=gateway_url, checks=CHECKS, timeout=10)
