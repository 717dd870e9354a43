"""The stub upstream these live-gateway resilience tests put their faults behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import STUB_UPSTREAM, script_server


@pytest.fixture(scope="module")
def fault_url() -> Iterator[str]:
    """One stub upstream per module (its root URL, without /v1): a member names its fault as its model."""
    with script_server(STUB_UPSTREAM) as url:
        yield url
