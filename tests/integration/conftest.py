"""Fixtures shared by the cluster tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.services import Service, nats_server, redis_server


@pytest.fixture(params=["redis", "nats"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Service]:
    """A private redis-server, then a private nats-server."""
    start = {"redis": redis_server, "nats": nats_server}[request.param]
    (tmp_path / request.param).mkdir()
    with start(tmp_path / request.param) as service:
        yield service
